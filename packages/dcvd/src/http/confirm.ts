/**
 * The confirmation pages (CONTRACT §6): server-rendered HTML, no JavaScript,
 * no external assets. Opening the email's link (GET) changes nothing; only a
 * POST from our own form approves or declines, checked three ways: a token
 * bound to the code (HMAC with the instance's key), `Sec-Fetch-Site`, and
 * `Origin`. Strict headers keep the pages out of frames and the code out of
 * Referer headers.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { canonicalCode } from '../orders/random-values.ts';
import type { CodeLookup, ConfirmationService, DecisionOutcome } from '../orders/confirmation.ts';
import type { Clock } from '../deps.ts';
import { headerText } from '../text.ts';

export interface ConfirmPagesOptions {
  confirmation: ConfirmationService;
  /** Dates the forms' tokens: the clock of the codes they decide (the sandbox's clock in the sandbox). */
  clock: Clock;
  /** Signs the forms' tokens. */
  formKey: Buffer;
  /** --public-url as configured: its path is the pages' prefix, its origin an accepted Origin. */
  publicUrl?: string | undefined;
  /** The CA's name (--ca-name), named on the page that asks for the decision; "dcvd" when absent. */
  caName?: string | undefined;
}

/** How long a form stays usable after it was shown. */
const TOKEN_TTL_S = 2 * 3600;
const FORM_BODY_LIMIT = 4096;

const CSP = [
  "default-src 'none'",
  "style-src 'self'",
  "img-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const STYLESHEET = `:root{color-scheme:light dark;--fg:#1b1f24;--bg:#ffffff;--muted:#4a5563;--line:#c9ced6;--ok:#0b6b2e;--no:#a3161b;--focus:#1f5fd1;--box:#f4f6f8}
@media (prefers-color-scheme:dark){:root{--fg:#eef1f4;--bg:#14171b;--muted:#b8c0ca;--line:#3b434d;--ok:#3fb96b;--no:#ff8a8f;--focus:#8ab4ff;--box:#1d2228}}
*{box-sizing:border-box}
html{font:100%/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
body{margin:0;padding:1.25rem}
main{max-width:36rem;margin:0 auto}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
p{margin:0 0 1rem}
.muted{color:var(--muted);font-size:.95rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem;margin:0 0 1.5rem;padding:1rem;background:var(--box);border:1px solid var(--line);border-radius:.5rem}
dt{font-weight:600}
dd{margin:0;overflow-wrap:anywhere;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
@media (max-width:30rem){dl{grid-template-columns:1fr}dd{margin-bottom:.5rem}}
.actions{display:flex;flex-wrap:wrap;gap:.75rem}
button{font:inherit;font-weight:600;min-height:2.75rem;padding:.6rem 1.4rem;border-radius:.4rem;border:2px solid transparent;cursor:pointer}
button.approve{background:var(--ok);color:var(--bg)}
button.decline{background:transparent;color:var(--no);border-color:var(--no)}
button.primary{background:var(--focus);color:var(--bg)}
button:focus-visible,input:focus-visible,a:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
label{display:block;font-weight:600;margin-bottom:.35rem}
input[type=text]{font:inherit;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;width:100%;padding:.6rem .7rem;border:2px solid var(--line);border-radius:.4rem;background:var(--bg);color:var(--fg);letter-spacing:.05em;margin-bottom:.35rem}
.field{margin-bottom:1.25rem}
.error{color:var(--no);font-weight:600}
.status{font-size:2.5rem;line-height:1;margin:0 0 .5rem}
.status.ok{color:var(--ok)}.status.no{color:var(--no)}
a{color:var(--focus)}
`;

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function sign(key: Buffer, purpose: string, ts: number): string {
  return createHmac('sha256', key).update(`dcvd-form|${purpose}|${ts}`).digest('base64url').slice(0, 32);
}

export function formToken(key: Buffer, purpose: string, nowMs: number): string {
  const ts = Math.floor(nowMs / 1000);
  return `${ts}.${sign(key, purpose, ts)}`;
}

export function checkFormToken(key: Buffer, purpose: string, token: string, nowMs: number): boolean {
  const m = /^(\d{1,12})\.([A-Za-z0-9_-]{32})$/.exec(token);
  if (!m) return false;
  const ts = Number(m[1]);
  const age = Math.floor(nowMs / 1000) - ts;
  if (age < -60 || age > TOKEN_TTL_S) return false;
  return timingSafeEqual(Buffer.from(sign(key, purpose, ts)), Buffer.from(m[2]!));
}

const decidePurpose = (canonical: string) => `decide|${canonical}`;
const LOOKUP_PURPOSE = 'lookup';

type Field = string | undefined;
const field = (body: unknown, name: string): Field => {
  const v = body && typeof body === 'object' ? (body as Record<string, unknown>)[name] : undefined;
  return typeof v === 'string' ? v : undefined;
};

interface Page {
  status: number;
  title: string;
  body: string;
  /** Sent as Retry-After (a 429's). */
  retryAfterS?: number;
}

/** How long to wait, in words: "a minute", "14 minutes", "3 hours". */
function waitText(seconds: number): string {
  const minutes = Math.ceil(seconds / 60);
  if (minutes <= 1) return 'a minute';
  return minutes < 120 ? `${minutes} minutes` : `${Math.ceil(minutes / 60)} hours`;
}

export async function confirmPages(app: FastifyInstance, options: ConfirmPagesOptions): Promise<void> {
  const prefix = options.publicUrl ? new URL(options.publicUrl).pathname.replace(/\/+$/, '') : '';
  const publicOrigin = options.publicUrl ? new URL(options.publicUrl).origin : undefined;
  const action = `${prefix}/dcv/confirm`;
  const { confirmation, clock, formKey } = options;

  app.removeAllContentTypeParsers();
  await app.register(formbody, { bodyLimit: FORM_BODY_LIMIT });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('content-security-policy', CSP);
    reply.header('x-frame-options', 'DENY');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('cross-origin-opener-policy', 'same-origin');
    reply.header('cross-origin-resource-policy', 'same-origin');
    reply.header('permissions-policy', 'camera=(), microphone=(), geolocation=(), interest-cohort=()');
    if (request.protocol === 'https') reply.header('strict-transport-security', 'max-age=31536000');
  });

  const layout = (page: Page) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(page.title)}</title>
<link rel="stylesheet" href="${escapeHtml(prefix)}/dcv/style.css">
</head>
<body>
<main>
${page.body}
</main>
</body>
</html>
`;

  const send = (reply: FastifyReply, page: Page) => {
    if (page.retryAfterS !== undefined) reply.header('retry-after', String(page.retryAfterS));
    return reply.code(page.status).type('text/html; charset=utf-8').send(layout(page));
  };

  const codeForm = (error?: string, status = 200): Page => ({
    status,
    title: 'Enter your validation code',
    body: `<h1>Enter your validation code</h1>
<p>The domain control validation email carries a 26-character code. Type it here to see the request it belongs to.</p>
<form method="post" action="${escapeHtml(action)}">
<div class="field">
<label for="code">Validation code</label>
<input type="text" id="code" name="code" required maxlength="64" autocomplete="off" autocapitalize="characters" spellcheck="false" aria-describedby="code-help${error ? ' code-error' : ''}"${error ? ' aria-invalid="true" autofocus' : ''}>
<p id="code-help" class="muted">Letters and digits; spaces and hyphens are ignored.</p>
${error ? `<p id="code-error" class="error" role="alert">${escapeHtml(error)}</p>` : ''}
</div>
<input type="hidden" name="csrf" value="${formToken(formKey, LOOKUP_PURPOSE, clock.now())}">
<button type="submit" class="primary">Continue</button>
</form>`,
  });

  const details = (code: string, found: Extract<CodeLookup, { state: 'active' }>): Page => ({
    status: 200,
    title: `Approve the certificate request for ${found.domain}?`,
    body: `<h1>Approve the certificate request for ${escapeHtml(found.domain)}?</h1>
<p>Someone asked the certificate authority <strong>${escapeHtml(options.caName ?? 'dcvd')}</strong> for a certificate for <strong>${escapeHtml(found.domain)}</strong>. This email address is a contact for <strong>${escapeHtml(found.adn)}</strong>, so the request needs your approval.</p>
<dl>
<dt>Certificate authority</dt><dd>${escapeHtml(options.caName ?? 'dcvd')}</dd>
<dt>Order number</dt><dd>${found.orderNumber}</dd>
<dt>Domain</dt><dd>${escapeHtml(found.domain)}</dd>
<dt>Authorization domain</dt><dd>${escapeHtml(found.adn)}</dd>
<dt>Sent to</dt><dd>${escapeHtml(found.recipient)}</dd>
<dt>Code valid until</dt><dd>${new Date(found.expiresAt).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC')}</dd>
</dl>
<p>Approve only if you, or someone you trust, asked for this certificate. If you do not know about it, decline.</p>
<form method="post" action="${escapeHtml(action)}">
<input type="hidden" name="code" value="${escapeHtml(code)}">
<input type="hidden" name="csrf" value="${formToken(formKey, decidePurpose(code), clock.now())}">
<div class="actions">
<button type="submit" name="decision" value="approve" class="approve">Approve</button>
<button type="submit" name="decision" value="decline" class="decline">Decline</button>
</div>
</form>`,
  });

  /** The page of an outcome; `lookup` names the domain (approved, declined) or when a block ends (blocked). */
  const result = (outcome: DecisionOutcome, lookup?: CodeLookup): Page => {
    const domain = lookup?.state === 'active' ? lookup.domain : undefined;
    const d = domain ? ` for <strong>${escapeHtml(domain)}</strong>` : '';
    // The block's remaining time (--code-failure-window from the guess that reached the limit).
    const retryAfterS = lookup?.state === 'blocked' ? Math.max(1, Math.ceil((lookup.until - clock.now()) / 1000)) : undefined;
    const pages: Record<DecisionOutcome, [number, string, string, string]> = {
      approved: [200, 'Approved', 'ok', `<p>Thank you. Control of the domain${d} is confirmed; the certificate authority has been told.</p><p class="muted">You can close this page.</p>`],
      declined: [200, 'Declined', 'no', `<p>The request${d} was declined and the code no longer works. The certificate authority has been told.</p><p class="muted">You can close this page.</p>`],
      expired: [410, 'This code has expired', 'no', '<p>Validation codes work for a limited time. Ask whoever requested the certificate to send a new email.</p>'],
      spent: [409, 'This code was already used', 'no', '<p>The request this code belongs to has already been approved or declined. Nothing more is needed.</p>'],
      superseded: [410, 'This code was replaced', 'no', '<p>A newer email was sent for the same request; only its code works. Look for the most recent email.</p>'],
      cancelled: [410, 'This request was cancelled', 'no', '<p>The certificate order this code belongs to was cancelled. Nothing more is needed.</p>'],
      unknown: [404, 'Code not recognised', 'no', `<p>This validation code does not match any request. Check that you copied the whole link, or <a href="${escapeHtml(action)}">type the code</a>.</p>`],
      blocked: [429, 'Too many attempts', 'no', `<p>Too many unrecognised codes came from your network. Wait ${waitText(retryAfterS ?? 0)} and try again.</p>`],
      refused: [403, 'Email validation is no longer accepted', 'no', '<p>The certificate authority no longer accepts approval by email for this domain, so this code cannot approve the request. Nothing was changed. Ask whoever requested the certificate to use another validation method.</p>'],
    };
    const [status, title, tone, text] = pages[outcome];
    const mark = tone === 'ok' ? '&#10003;' : '&#33;';
    return { status, title, body: `<p class="status ${tone}" aria-hidden="true">${mark}</p>\n<h1>${title}</h1>\n${text}`, ...(retryAfterS === undefined ? {} : { retryAfterS }) };
  };

  const refused = (why: string): Page => ({
    status: 403,
    title: 'Request refused',
    body: `<h1>Request refused</h1>\n<p>${escapeHtml(why)}</p>\n<p><a href="${escapeHtml(action)}">Start again</a></p>`,
  });

  /** Pages carry codes: HTTPS only (directly, or as a trusted proxy says). */
  const insecure = (request: FastifyRequest) => request.protocol !== 'https';
  const notPrefetched: Page = {
    status: 503,
    title: 'Open the link to see this page',
    body: '<h1>Open the link to see this page</h1>\n<p>This page is shown when its link is opened, not fetched ahead of time.</p>',
  };
  const httpsOnly: Page = { status: 403, title: 'HTTPS required', body: '<h1>HTTPS required</h1>\n<p>Open this page over HTTPS.</p>' };

  /** Cross-site POSTs are refused before the token is even read. */
  function crossSite(request: FastifyRequest): string | undefined {
    const site = request.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') return 'This form can only be sent from this site.';
    const origin = request.headers.origin;
    // `Origin: null` is what browsers send under `Referrer-Policy: no-referrer`; the token still has to match.
    if (origin !== undefined && origin !== 'null') {
      const own = `${request.protocol}://${request.host}`;
      if (origin !== own && origin !== publicOrigin) return 'This form can only be sent from this site.';
    }
    return undefined;
  }

  /**
   * A browser's request for something other than a page to show (Fetch Metadata). Browsers send
   * Sec-Fetch-Site with every request; other clients may send a lone Sec-Fetch-Mode (node's fetch
   * sends `cors`), and they are not a hostile page's sub-resources: they are looked up as before.
   */
  function subresource(request: FastifyRequest): boolean {
    if (request.headers['sec-fetch-site'] === undefined) return false;
    const mode = request.headers['sec-fetch-mode'];
    const dest = request.headers['sec-fetch-dest'];
    return (mode !== undefined && mode !== 'navigate') || (dest !== undefined && dest !== 'document');
  }

  /**
   * A browser fetching the page ahead of a navigation that may never come: Chromium's speculation rules
   * (`Sec-Purpose: prefetch`, `prefetch;prerender`), `<link rel=prefetch>` in older browsers (`Purpose:
   * prefetch`, Firefox's `X-Moz: prefetch`), Safari's link previews (`X-Purpose: preview`). A hostile page can
   * make the recipient's browser prefetch any number of links, as top-level navigations (Sec-Fetch-Mode
   * `navigate`), so these are no sign of someone opening a link.
   */
  function speculative(request: FastifyRequest): boolean {
    const h = request.headers;
    const has = (name: string, pattern: RegExp) => {
      const value = h[name];
      return value !== undefined && pattern.test(Array.isArray(value) ? value.join(',') : value);
    };
    return has('sec-purpose', /prefetch|prerender/i) || has('purpose', /prefetch/i) || has('x-purpose', /prefetch|preview/i) || has('x-moz', /prefetch/i);
  }

  app.get('/dcv/style.css', async (_request, reply) => reply.header('cache-control', 'public, max-age=3600').type('text/css; charset=utf-8').send(STYLESHEET));

  app.get('/dcv/confirm', async (request, reply) => send(reply, insecure(request) ? httpsOnly : codeForm()));

  app.get<{ Params: { code: string } }>('/dcv/confirm/:code', async (request, reply) => {
    if (insecure(request)) return send(reply, httpsOnly);
    // A prefetch or prerender is answered before any lookup, so a hostile page's speculation rules neither
    // count guesses against the recipient's address nor load a real code's page. The status is not 2xx, and
    // nothing is stored (Cache-Control: no-store): the browser drops the prefetch and, should the link really
    // be opened, fetches it again.
    if (speculative(request)) return send(reply, notPrefetched);
    // An <img>, <script>, <iframe> or fetch() aimed at a code (e.g. from a hostile page in the
    // recipient's browser) is not someone opening a link: it is answered without a lookup, so it
    // neither counts against the recipient's address nor shows a real code's details (issue 14).
    if (subresource(request)) return send(reply, refused('Open the link from the email in your browser.'));
    const found = await confirmation.lookup(request.params.code, request.ip);
    if (found.state !== 'active') return send(reply, result(found.state, found));
    return send(reply, details(canonicalCode(request.params.code)!, found));
  });

  app.post('/dcv/confirm', async (request, reply) => {
    if (insecure(request)) return send(reply, httpsOnly);
    const why = crossSite(request);
    if (why) return send(reply, refused(why));
    const code = field(request.body, 'code') ?? '';
    const csrf = field(request.body, 'csrf') ?? '';
    const decision = field(request.body, 'decision');
    const now = clock.now();
    if (decision === undefined) {
      if (!checkFormToken(formKey, LOOKUP_PURPOSE, csrf, now)) return send(reply, refused('This form has expired or was not sent from this site. Please try again.'));
      const found = await confirmation.lookup(code, request.ip);
      if (found.state === 'unknown') return send(reply, codeForm('That code was not recognised. Check it and try again.', 404));
      if (found.state !== 'active') return send(reply, result(found.state, found));
      return send(reply, details(canonicalCode(code)!, found));
    }
    if (decision !== 'approve' && decision !== 'decline') return send(reply, refused('Unknown decision.'));
    // The token is bound to the code, so a code that is not code-shaped has none: refused like any other
    // failed token, before the decision is looked up and counted as a guess (until 2026-12-04 it was not
    // checked for such a code, so a cross-site form could spend the recipient's address's guesses).
    const canonical = canonicalCode(code);
    if (canonical === undefined || !checkFormToken(formKey, decidePurpose(canonical), csrf, now)) {
      return send(reply, refused('This form has expired or was not sent from this site. Open the link in the email again.'));
    }
    const ua = request.headers['user-agent'];
    const { outcome, lookup } = await confirmation.decide(code, decision, { ip: request.ip, userAgent: typeof ua === 'string' ? headerText(ua) : undefined });
    request.log.info({ outcome, orderNumber: lookup.state === 'active' ? lookup.orderNumber : undefined }, 'dcv decision');
    return send(reply, result(outcome, lookup));
  });

  // A body fastify refused (too large, wrong type) still gets a page, not a bare status.
  app.setErrorHandler(async (error: { statusCode?: number }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: error }, 'unexpected error');
    return send(reply, {
      status,
      title: status === 500 ? 'Something went wrong' : 'Bad request',
      body: status === 500 ? '<h1>Something went wrong</h1>\n<p>Please try again in a moment.</p>' : '<h1>Bad request</h1>\n<p>Use the form on this site.</p>',
    });
  });
}

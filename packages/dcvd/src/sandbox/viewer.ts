/**
 * The sandbox's mail viewer (issue 17), on the API's HTTPS listener under
 * /sandbox/mail: the DCV emails dcvd sent, each with its text body, its HTML
 * body (served from its own route under a CSP `sandbox` policy and shown in a
 * sandboxed iframe: no scripts, no same-origin access), and its confirmation
 * link. Server-rendered, no JavaScript; every value HTML-escaped.
 */
import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import type { MailCapture, MailView } from './mail.ts';
import { OperatorError } from '../errors.ts';

export const VIEWER_PATH = '/sandbox/mail';

const CSP = ["default-src 'none'", "style-src 'self'", "frame-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"].join('; ');
/** The email's own HTML: no scripts, no forms, no origin (the `sandbox` directive), only inline styles and data: images. */
const HTML_BODY_CSP = ["sandbox allow-popups allow-popups-to-escape-sandbox", "default-src 'none'", "style-src 'unsafe-inline'", "img-src data:", "frame-ancestors 'self'", "base-uri 'none'", "form-action 'none'"].join('; ');

const STYLESHEET = `:root{color-scheme:light dark}
html{font:100%/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
body{margin:0;padding:1rem}
.sandbox{margin:0 0 1rem;padding:.5rem .75rem;border:2px dashed #b35c00;border-radius:.4rem;font-weight:600}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #8884;vertical-align:top;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;padding:.75rem;border:1px solid #8886;border-radius:.4rem}
iframe{width:100%;min-height:24rem;border:1px solid #8886;border-radius:.4rem;background:#fff}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dd{margin:0;overflow-wrap:anywhere}
form.inline{display:inline}
button{font:inherit;padding:.35rem .9rem}
.confirm{font-size:1.1rem;font-weight:600}
`;

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export const SANDBOX_NOTICE = 'Sandbox: this dcvd runs in sandbox mode for integration tests. No email leaves this machine; nothing here is a real certificate request.';

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} \u2013 dcvd sandbox</title>
<link rel="stylesheet" href="/sandbox/style.css">
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

function row(m: MailView): string {
  const cell = (v: string | number | null) => `<td>${v === null ? '\u2013' : escapeHtml(String(v))}</td>`;
  return `<tr>${cell(m.sentAt.replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC'))}${cell(m.to)}<td><a href="${VIEWER_PATH}/${encodeURIComponent(m.id)}">${escapeHtml(m.subject)}</a></td>${cell(m.orderNumber)}${cell(m.domain)}${cell(m.state)}${cell(m.orderStatus)}</tr>`;
}

export interface ViewerOptions {
  mail: MailCapture;
  db: () => Kysely<Database>;
}

/** Cross-site POSTs (a page elsewhere deleting the mailbox) are refused, as on the confirmation pages. */
function crossSite(request: FastifyRequest): boolean {
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return true;
  const origin = request.headers.origin;
  return origin !== undefined && origin !== 'null' && origin !== `${request.protocol}://${request.host}`;
}

export async function mailViewer(app: FastifyInstance, options: ViewerOptions): Promise<void> {
  const { mail } = options;
  app.removeAllContentTypeParsers();
  await app.register(formbody, { bodyLimit: 1024 });
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('content-security-policy', CSP);
    reply.header('x-frame-options', 'DENY');
    reply.header('referrer-policy', 'no-referrer');
  });
  const html = (reply: FastifyReply, status: number, title: string, body: string) => reply.code(status).type('text/html; charset=utf-8').send(page(title, body));
  const notFound = (reply: FastifyReply) => html(reply, 404, 'Not found', `<h1>Not found</h1>\n<p>No such email; it may have been deleted. <a href="${VIEWER_PATH}">All emails</a></p>`);

  app.get('/sandbox/style.css', async (_request, reply) => reply.type('text/css; charset=utf-8').send(STYLESHEET));
  app.get('/sandbox', async (_request, reply) => reply.redirect(VIEWER_PATH));

  app.get(VIEWER_PATH, async (_request, reply) => {
    const views = await mail.views(options.db(), { limit: 500 });
    const table =
      views.length === 0
        ? '<p>No DCV email yet. Emails appear here once the outbox has delivered them (within a second of being queued).</p>'
        : `<table>
<thead><tr><th scope="col">Sent (sandbox clock)</th><th scope="col">To</th><th scope="col">Subject</th><th scope="col">Order</th><th scope="col">Domain</th><th scope="col">Delivery</th><th scope="col">Order status</th></tr></thead>
<tbody>
${views.map(row).join('\n')}
</tbody>
</table>
<form method="post" action="${VIEWER_PATH}/clear"><p><button type="submit">Delete all emails</button></p></form>`;
    return html(reply, 200, 'DCV emails', `<h1>DCV emails</h1>\n${table}`);
  });

  app.get<{ Params: { id: string } }>(`${VIEWER_PATH}/:id`, async (request, reply) => {
    let d;
    try {
      d = await mail.detail(options.db(), request.params.id);
    } catch (err) {
      if (err instanceof OperatorError) return notFound(reply);
      throw err;
    }
    const path = `${VIEWER_PATH}/${encodeURIComponent(d.id)}`;
    const dd = (v: string | number | null) => `<dd>${v === null ? '\u2013' : escapeHtml(String(v))}</dd>`;
    const body = `<p><a href="${VIEWER_PATH}">\u2190 All emails</a></p>
<h1>${escapeHtml(d.subject)}</h1>
<dl>
<dt>From</dt>${dd(d.from)}
<dt>To</dt>${dd(d.to)}
<dt>Sent (sandbox clock)</dt>${dd(d.sentAt)}
<dt>Order</dt>${dd(d.orderNumber)}
<dt>Domain</dt>${dd(d.domain)}
<dt>Delivery</dt>${dd(d.state)}
<dt>Order status</dt>${dd(d.orderStatus)}
<dt>Message-ID</dt>${dd(d.messageId)}
</dl>
${d.confirmationUrl ? `<p class="confirm"><a id="confirmation-link" href="${escapeHtml(d.confirmationUrl)}">Open the confirmation link</a></p>\n<p>Code: <code>${escapeHtml(d.code ?? '')}</code></p>` : '<p>No confirmation link found in this email.</p>'}
<h2>Text</h2>
<pre>${escapeHtml(d.text)}</pre>
${d.html !== null ? `<h2>HTML</h2>\n<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" src="${path}/html" title="HTML body of the email"></iframe>` : ''}
<form method="post" action="${path}/delete"><p><button type="submit">Delete this email</button></p></form>`;
    return html(reply, 200, d.subject, body);
  });

  app.get<{ Params: { id: string } }>(`${VIEWER_PATH}/:id/html`, async (request, reply) => {
    let captured;
    try {
      captured = mail.get(request.params.id);
    } catch {
      return notFound(reply);
    }
    if (captured.html === null) return notFound(reply);
    // Replaces the viewer's headers: the email's HTML may be framed by the viewer, and runs nothing.
    reply.header('content-security-policy', HTML_BODY_CSP);
    reply.header('x-frame-options', 'SAMEORIGIN');
    return reply.code(200).type('text/html; charset=utf-8').send(captured.html);
  });

  app.post<{ Params: { id: string } }>(`${VIEWER_PATH}/:id/delete`, async (request, reply) => {
    if (crossSite(request)) return html(reply, 403, 'Refused', '<h1>Refused</h1>\n<p>This form can only be sent from this site.</p>');
    try {
      await mail.delete(request.params.id);
    } catch (err) {
      if (err instanceof OperatorError) return notFound(reply);
      throw err;
    }
    return reply.redirect(VIEWER_PATH, 303);
  });

  app.post(`${VIEWER_PATH}/clear`, async (request, reply) => {
    if (crossSite(request)) return html(reply, 403, 'Refused', '<h1>Refused</h1>\n<p>This form can only be sent from this site.</p>');
    await mail.clear();
    return reply.redirect(VIEWER_PATH, 303);
  });
}

// DCV email templates (CONTRACT §5: "rendered with a logic-less engine that
// escapes HTML; they can use the order number, domain, ADN, validation code
// and the confirmation link"). Mustache is the engine. Operators write
// templates, so validateTemplate is strict: a typo that would silently render
// an email without its validation code is refused when the template is
// created, not discovered by a recipient.

import Mustache from 'mustache';

import { TemplateError, type TemplatePart } from './errors.ts';
import { MAX_SUBJECT } from './message.ts';
import { CONTROL_CHARS, CONTROL_RUNS } from '../text.ts';

export { TemplateError } from './errors.ts';

export interface TemplateView {
  orderNumber: string;
  domain: string;
  /** Authorization Domain Name the address was found for (BR 1.6.1). */
  adn: string;
  /** The Random Value (BR 3.2.2.4.4). */
  validationCode: string;
  confirmationUrl: string;
  /** ISO or human-readable date. */
  expiresAt: string;
  /** The CA's name, --ca-name (issue 13). Optional for callers; rendered as "dcvd" when absent. */
  caName?: string;
}

export interface EmailTemplate {
  subject: string;
  text: string;
  html?: string;
}

export interface RenderedEmail {
  subject: string;
  text: string;
  html?: string;
}

const VIEW_KEYS: readonly (keyof TemplateView)[] = [
  'orderNumber',
  'domain',
  'adn',
  'validationCode',
  'confirmationUrl',
  'expiresAt',
  'caName',
];
const VIEW_KEY_SET: ReadonlySet<string> = new Set(VIEW_KEYS);

// Subjects show up in mail-server and dcvd logs; the code, and the link that
// carries it, must not (CONTRACT §7: nothing secret in logs).
const SECRET_IN_SUBJECT: ReadonlySet<string> = new Set(['validationCode', 'confirmationUrl']);

const MAX_PART_LENGTH = 100_000;

type Spans = ReturnType<typeof Mustache.parse>;

function parsePart(part: TemplatePart, source: unknown): Spans {
  if (typeof source !== 'string') throw new TemplateError(part, 'is not a string');
  if (source.length > MAX_PART_LENGTH) throw new TemplateError(part, `is longer than ${MAX_PART_LENGTH} characters`);
  try {
    return Mustache.parse(source);
  } catch (err) {
    // Mustache's own messages are clear ("Unclosed section "domain" at 12").
    throw new TemplateError(part, `syntax error: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Checks every tag of a part; returns the variables used outside any section. */
function checkSpans(part: TemplatePart, spans: Spans, topLevel: Set<string>, depth: number): void {
  for (const span of spans) {
    const [type, name] = span;
    switch (type) {
      case 'text':
      case '!': // comment
      case '=': // delimiter change
        break;
      case '>':
        throw new TemplateError(part, `partials ({{> ${name}}}) are not supported`);
      case 'name':
      case '&':
      case '#':
      case '^': {
        if (!VIEW_KEY_SET.has(name)) {
          // Also refuses '.' and dotted names: no reaching into string properties.
          throw new TemplateError(part, `unknown variable "${name}"; available: ${VIEW_KEYS.join(', ')}`);
        }
        if (type === '&' && part === 'html') {
          throw new TemplateError(part, `unescaped variable "${name}" ({{{…}}} or {{&…}}) is not allowed in HTML; use {{${name}}}`);
        }
        if (part === 'subject' && SECRET_IN_SUBJECT.has(name)) {
          throw new TemplateError(part, `must not contain ${name}: subjects end up in logs`);
        }
        if ((type === 'name' || type === '&') && depth === 0) topLevel.add(name);
        const children = span[4];
        if (Array.isArray(children)) checkSpans(part, children, topLevel, depth + 1);
        break;
      }
      default:
        throw new TemplateError(part, `unsupported tag type "${type}"`);
    }
  }
}

/**
 * Throws TemplateError unless `t` can be rendered safely: mustache syntax
 * parses; only TemplateView variables; no partials; HTML only through
 * escaping tags; no CR/LF or code in the subject; and the validation code
 * appears (outside any section) in the text part and in the HTML part when
 * there is one — BR 3.2.2.4.4 requires the Random Value in the email.
 */
export function validateTemplate(t: EmailTemplate): void {
  if (t === null || typeof t !== 'object') throw new TemplateError('text', 'template is not an object');

  const subject = parsePart('subject', t.subject);
  if (CONTROL_CHARS.test(t.subject)) throw new TemplateError('subject', 'must be a single line without control characters');
  if (t.subject.trim() === '') throw new TemplateError('subject', 'is empty');
  // The email refuses a longer subject (assertSafeEmail): such a template could never send anything.
  if (t.subject.length > MAX_SUBJECT) throw new TemplateError('subject', `is longer than ${MAX_SUBJECT} characters`);
  checkSpans('subject', subject, new Set(), 0);

  const parts: [TemplatePart, unknown][] = [['text', t.text]];
  if (t.html !== undefined) parts.push(['html', t.html]);
  for (const [part, source] of parts) {
    // PostgreSQL cannot store NUL; refused on both databases alike (issue 14).
    if (typeof source === 'string' && source.includes('\0')) throw new TemplateError(part, 'must not contain NUL characters');
    const used = new Set<string>();
    checkSpans(part, parsePart(part, source), used, 0);
    if (!used.has('validationCode')) {
      throw new TemplateError(part, 'must contain {{validationCode}} outside any section');
    }
  }
}

/** Frozen templates that passed validateTemplate. */
const validated = new WeakSet<EmailTemplate>();

const noEscape = { escape: (value: unknown): string => String(value) };

/**
 * Renders a (validated) template. HTML is escaped in the HTML part only; the
 * text part and the subject are not HTML, so '&' stays '&'. The subject is
 * forced onto one line whatever the view holds.
 */
export function renderTemplate(t: EmailTemplate, view: TemplateView): RenderedEmail {
  // One definition of "safe", checked once per frozen template (nothing can change it afterwards), else every time.
  if (!validated.has(t)) {
    validateTemplate(t);
    if (Object.isFrozen(t)) validated.add(t);
  }
  // Only the six known strings, whatever else the caller's object carries.
  const v: TemplateView = {
    orderNumber: String(view.orderNumber),
    domain: String(view.domain),
    adn: String(view.adn),
    validationCode: String(view.validationCode),
    confirmationUrl: String(view.confirmationUrl),
    expiresAt: String(view.expiresAt),
    caName: String(view.caName ?? 'dcvd'),
  };
  const subject = withinSubjectLimit(Mustache.render(t.subject, v, {}, noEscape).replace(CONTROL_RUNS, ' ').replace(/ {2,}/g, ' ').trim());
  const text = Mustache.render(t.text, v, {}, noEscape);
  if (t.html === undefined) return { subject, text };
  return { subject, text, html: Mustache.render(t.html, v) }; // default escape: HTML
}

/**
 * A subject the variables made longer than the email allows (a template within MAX_SUBJECT that repeats
 * {{domain}}, say) ends in '…' at the limit, not in an email that fails for good. Never inside a
 * surrogate pair. The code is never in a subject (SECRET_IN_SUBJECT), so nothing the recipient needs is cut.
 */
function withinSubjectLimit(subject: string): string {
  if (subject.length <= MAX_SUBJECT) return subject;
  let end = MAX_SUBJECT - 1;
  const last = subject.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${subject.slice(0, end)}…`;
}

const DEFAULT_TEXT = `Hello,

A TLS certificate has been requested from {{caName}} for {{domain}}.
Before it can be issued, the certificate authority {{caName}} must confirm
that the request is approved by someone who controls {{adn}}. You are
receiving this email because your address is a contact for {{adn}}.

  Certificate authority: {{caName}}
  Order number:          {{orderNumber}}
  Domain:                {{domain}}
  Authorization domain:  {{adn}}
  Validation code:       {{validationCode}}

To review the request, open this link:

  {{confirmationUrl}}

The page shows the order and asks you to approve or decline it. Opening
the link does not approve anything; nothing changes until you choose.
If the page asks for a validation code, enter the code above.

The link and the code expire on {{expiresAt}}.

If you did not expect this request, ignore this email or decline the
request on the page. No certificate is issued without approval.
`;

const DEFAULT_HTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Domain control validation for {{domain}}</title>
</head>
<body style="margin:0;padding:0;background-color:#f4f4f5;">
<div style="max-width:600px;margin:0 auto;padding:24px;font-family:Arial,Helvetica,sans-serif;font-size:15px;line-height:1.5;color:#1f2937;background-color:#ffffff;">
<p style="margin:0 0 16px 0;">Hello,</p>
<p style="margin:0 0 16px 0;">A TLS certificate has been requested from {{caName}} for <strong>{{domain}}</strong>. Before it can be issued, the certificate authority {{caName}} must confirm that the request is approved by someone who controls <strong>{{adn}}</strong>. You are receiving this email because your address is a contact for {{adn}}.</p>
<table role="presentation" cellpadding="0" cellspacing="0" style="border-collapse:collapse;margin:0 0 16px 0;">
<tr><td style="padding:4px 16px 4px 0;color:#6b7280;">Certificate authority</td><td style="padding:4px 0;">{{caName}}</td></tr>
<tr><td style="padding:4px 16px 4px 0;color:#6b7280;">Order number</td><td style="padding:4px 0;">{{orderNumber}}</td></tr>
<tr><td style="padding:4px 16px 4px 0;color:#6b7280;">Domain</td><td style="padding:4px 0;">{{domain}}</td></tr>
<tr><td style="padding:4px 16px 4px 0;color:#6b7280;">Authorization domain</td><td style="padding:4px 0;">{{adn}}</td></tr>
<tr><td style="padding:4px 16px 4px 0;color:#6b7280;">Validation code</td><td style="padding:4px 0;font-family:Consolas,Menlo,monospace;font-size:16px;">{{validationCode}}</td></tr>
</table>
<p style="margin:0 0 16px 0;"><a href="{{confirmationUrl}}" style="display:inline-block;padding:10px 18px;background-color:#1d4ed8;color:#ffffff;text-decoration:none;border-radius:4px;">Review the request</a></p>
<p style="margin:0 0 16px 0;">If the button does not work, copy this link into your browser:<br><span style="word-break:break-all;">{{confirmationUrl}}</span></p>
<p style="margin:0 0 16px 0;">The page shows the order and asks you to approve or decline it. Opening the link does not approve anything; nothing changes until you choose. If the page asks for a validation code, enter the code above.</p>
<p style="margin:0 0 16px 0;">The link and the code expire on <strong>{{expiresAt}}</strong>.</p>
<p style="margin:0;color:#6b7280;">If you did not expect this request, ignore this email or decline the request on the page. No certificate is issued without approval.</p>
</div>
</body>
</html>
`;

/** The built-in DCV email: plain, complete, no external assets (inline styles only). */
export const DEFAULT_TEMPLATE: Readonly<EmailTemplate> = Object.freeze({
  subject: '{{caName}}: domain control validation for {{domain}} (order {{orderNumber}})',
  text: DEFAULT_TEXT,
  html: DEFAULT_HTML,
});

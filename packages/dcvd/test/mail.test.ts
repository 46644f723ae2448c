// Mail layer: message safety, SMTP and file transports, templates (CONTRACT §5, §6).
// The SMTP tests talk to a real SMTP server on loopback (test/support/smtp-sink.ts).

import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { simpleParser } from 'mailparser';

import { InvalidEmailError, MailDeliveryError, TemplateError } from '../src/mail/errors.ts';
import { assertSafeEmail, type OutgoingEmail } from '../src/mail/message.ts';
import {
  DEFAULT_TEMPLATE,
  renderTemplate,
  validateTemplate,
  type EmailTemplate,
  type TemplateView,
} from '../src/mail/templates.ts';
import { createFileTransport, createSmtpTransport, type MailTransport } from '../src/mail/transport.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';

let seq = 0;
function email(overrides: Partial<OutgoingEmail> = {}): OutgoingEmail {
  seq += 1;
  return {
    messageId: `<test-${process.pid}-${seq}@dcvd>`,
    from: 'dcv@ca.example',
    to: 'admin@example.com',
    subject: `DCV test ${seq}`,
    text: `Your validation code is CODE-${seq}.`,
    html: `<p>Your validation code is <b>CODE-${seq}</b>.</p>`,
    ...overrides,
  };
}

const view: TemplateView = {
  orderNumber: '1234567',
  domain: 'www.example.com',
  adn: 'example.com',
  validationCode: 'k3J9xQ2mP7vL1nR8tY4wZ6',
  confirmationUrl: 'https://dcvd.test:8443/dcv/c/k3J9xQ2mP7vL1nR8tY4wZ6?o=1234567&lang=en',
  expiresAt: '2030-01-31T12:00:00Z',
};

async function expectDeliveryError(p: Promise<unknown>, permanent: boolean): Promise<MailDeliveryError> {
  let caught: unknown;
  await assert.rejects(p, (err) => {
    caught = err;
    return true;
  });
  assert.ok(caught instanceof MailDeliveryError, `expected MailDeliveryError, got ${String(caught)}`);
  assert.equal(caught.permanent, permanent, `permanent should be ${permanent}: ${caught.reason}`);
  return caught;
}

// Header-injection and address tricks; each must be refused by assertSafeEmail.
const unsafe: [string, Partial<OutgoingEmail>][] = [
  ['CRLF in to', { to: 'admin@example.com\r\nBcc: victim@evil.test' }],
  ['LF in to', { to: 'admin@example.com\nBcc: victim@evil.test' }],
  ['CRLF in subject', { subject: 'Hello\r\nBcc: victim@evil.test' }],
  ['bare CR in subject', { subject: 'Hello\rX-Evil: 1' }],
  ['NUL in subject', { subject: 'Hello\u0000' }],
  ['unicode line separator in subject', { subject: 'Hello\u2028Bcc: victim@evil.test' }],
  ['CRLF in from', { from: 'dcv@ca.example\r\nReply-To: x@evil.test' }],
  ['CRLF in messageId', { messageId: '<a@dcvd>\r\nBcc: victim@evil.test' }],
  ['two addresses (comma)', { to: 'admin@example.com, victim@evil.test' }],
  ['two addresses (semicolon)', { to: 'admin@example.com;victim@evil.test' }],
  ['display name', { to: 'Admin <admin@example.com>' }],
  ['quoted display-name trick', { to: '"admin@example.com" <victim@evil.test>' }],
  ['display name in from', { from: 'Bank <dcv@ca.example>' }],
  ['group syntax', { to: 'list: admin@example.com;' }],
  ['comment', { to: 'admin(comment)@example.com' }],
  ['address literal', { to: 'admin@[127.0.0.1]' }],
  ['no domain', { to: 'admin@' }],
  ['address over 254 chars', { to: `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}` }],
  ['local part over 64 chars', { to: `${'a'.repeat(65)}@example.com` }],
  ['messageId without brackets', { messageId: 'abc@dcvd' }],
  ['messageId with path', { messageId: '<../../etc/passwd@dcvd>' }],
  ['empty subject', { subject: '  ' }],
];

describe('assertSafeEmail', () => {
  it('accepts a plain email', () => {
    assert.doesNotThrow(() => assertSafeEmail(email()));
    assert.doesNotThrow(() => assertSafeEmail(email({ to: "o'brien+dcv@sub.example-domain.co.uk", html: undefined })));
    // 254 characters is the limit itself (the over-long case is in `unsafe`).
    const longest = `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    assert.equal(longest.length, 254);
    assert.doesNotThrow(() => assertSafeEmail(email({ to: longest })));
  });

  for (const [name, bad] of unsafe) {
    it(`rejects ${name}`, () => {
      assert.throws(
        () => assertSafeEmail(email(bad)),
        (err: unknown) => err instanceof InvalidEmailError && err.permanent && !err.message.includes('evil'),
      );
    });
  }
});

describe('SMTP transport', () => {
  let sink: SmtpSink;
  const transports: MailTransport[] = [];
  function smtp(opts?: Parameters<typeof createSmtpTransport>[1], url = sink.url): MailTransport {
    const t = createSmtpTransport(url, opts);
    transports.push(t);
    return t;
  }

  before(async () => {
    sink = await startSmtpSink();
  });
  after(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await sink.close();
  });

  it('delivers to the server with the idempotency key as Message-ID', async () => {
    const t = smtp();
    const rendered = renderTemplate(DEFAULT_TEMPLATE, view);
    const e = email({ ...rendered, to: 'hostmaster@example.com' });
    const before = sink.messages.length;
    const result = await t.send(e);
    assert.equal(result.accepted, true);
    assert.match(result.response, /^250 /);

    const [m] = (await sink.waitFor(before + 1)).slice(before);
    assert.ok(m);
    assert.deepEqual(m.envelope.rcptTo, ['hostmaster@example.com']);
    assert.equal(m.envelope.mailFrom, 'dcv@ca.example');
    assert.deepEqual(m.parsed.to, ['hostmaster@example.com']);
    assert.deepEqual(m.parsed.from, ['dcv@ca.example']);
    assert.equal(m.parsed.subject, rendered.subject);
    assert.equal(m.parsed.messageId, e.messageId);
    assert.ok(m.parsed.text?.includes(view.validationCode));
    assert.ok(m.parsed.text?.includes(view.confirmationUrl));
    assert.ok(m.parsed.html?.includes(view.validationCode));
    assert.equal(m.parsed.html?.trim(), rendered.html?.trim());
  });

  it('keeps connections pooled (maxConnections)', async () => {
    const t = smtp({ maxConnections: 2 });
    const connectionsBefore = sink.connections;
    const before = sink.messages.length;
    const batch = Array.from({ length: 6 }, () => email());
    const results = await Promise.all(batch.map((e) => t.send(e)));
    assert.ok(results.every((r) => r.accepted));
    const ids = sink.messages.slice(before).map((m) => m.parsed.messageId);
    assert.deepEqual(new Set(ids), new Set(batch.map((e) => e.messageId)));
    const opened = sink.connections - connectionsBefore;
    assert.ok(opened >= 1 && opened <= 2, `opened ${opened} connections for 6 messages`);
  });

  it('5xx at DATA is a permanent error, 4xx a temporary one', async () => {
    const t = smtp();
    const before = sink.messages.length;

    sink.refuseNext(1, 550);
    const perm = await expectDeliveryError(t.send(email()), true);
    assert.equal(perm.responseCode, 550);
    assert.match(perm.reason, /550/);

    sink.refuseNext(1, 451);
    const temp = await expectDeliveryError(t.send(email()), false);
    assert.equal(temp.responseCode, 451);

    assert.equal(sink.messages.length, before, 'refused messages must not be recorded as delivered');
    // The pool recovers: the next email goes through.
    const ok = email();
    await t.send(ok);
    assert.equal(sink.messages.at(-1)?.parsed.messageId, ok.messageId);
  });

  it('server down is a temporary error; once it is back the email is delivered', async () => {
    const t = smtp({ connectionTimeoutMs: 2_000 });
    await t.send(email()); // warm the pool: a kept-alive connection now exists

    await sink.stop();
    try {
      const e = email();
      const err = await expectDeliveryError(t.send(e), false);
      assert.ok(err.reason.length > 0);
    } finally {
      await sink.start();
    }
    const again = email();
    const result = await t.send(again);
    assert.equal(result.accepted, true);
    assert.equal(sink.messages.at(-1)?.parsed.messageId, again.messageId);
  });

  it('a server that never answers DATA fails the send within the socket timeout', async () => {
    const t = smtp({ socketTimeoutMs: 300 });
    sink.hang(true);
    const started = Date.now();
    try {
      const err = await expectDeliveryError(t.send(email()), false);
      assert.match(err.reason, /ETIMEDOUT|timeout/i);
    } finally {
      sink.hang(false);
    }
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 3_000, `send took ${elapsed} ms despite a 300 ms socket timeout`);

    const ok = email();
    await t.send(ok);
    assert.equal(sink.messages.at(-1)?.parsed.messageId, ok.messageId);
  });

  it('refuses unsafe emails before connecting to anything', async () => {
    const t = smtp();
    const connectionsBefore = sink.connections;
    const messagesBefore = sink.messages.length;
    for (const [name, bad] of unsafe) {
      await assert.rejects(t.send(email(bad)), (err: unknown) => err instanceof InvalidEmailError && err.permanent, name);
    }
    assert.equal(sink.connections, connectionsBefore, 'no SMTP session may be opened for an unsafe email');
    assert.equal(sink.messages.length, messagesBefore);
  });

  it('a closed transport refuses to send (temporary)', async () => {
    const t = smtp();
    await t.close();
    await expectDeliveryError(t.send(email()), false);
  });
});

describe('SMTP transport with credentials', () => {
  const user = 'relay-user';
  const pass = 'p@ss:w/rd%S3cret';
  let sink: SmtpSink;
  const transports: MailTransport[] = [];
  const withCreds = (p: string): string =>
    `smtp://${encodeURIComponent(user)}:${encodeURIComponent(p)}@127.0.0.1:${sink.port}`;

  before(async () => {
    sink = await startSmtpSink({ auth: { user, pass } });
  });
  after(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await sink.close();
  });

  it('authenticates with the user and password of the URL', async () => {
    const t = createSmtpTransport(withCreds(pass));
    transports.push(t);
    const e = email();
    await t.send(e);
    const m = sink.messages.at(-1);
    assert.equal(m?.parsed.messageId, e.messageId);
    assert.equal(m?.envelope.user, user);
  });

  it('a rejected login is temporary and the reason carries no credentials', async () => {
    const wrong = 'Wr0ng-Secret-Value';
    const t = createSmtpTransport(withCreds(wrong));
    transports.push(t);
    const err = await expectDeliveryError(t.send(email()), false);
    assert.match(err.reason, /EAUTH/);
    for (const secret of [wrong, user, encodeURIComponent(wrong)]) {
      assert.ok(!err.reason.includes(secret), `reason leaks ${secret}: ${err.reason}`);
      assert.ok(!err.message.includes(secret));
    }
  });

  it('without credentials the server refuses: not a permanent failure of the email', async () => {
    const t = createSmtpTransport(sink.url);
    transports.push(t);
    const err = await expectDeliveryError(t.send(email()), false);
    assert.equal(err.responseCode, 530);
  });
});

describe('SMTP URL handling', () => {
  it('smtps:// uses implicit TLS (fails fast against a plaintext server)', async () => {
    const sink = await startSmtpSink();
    const t = createSmtpTransport(`smtps://127.0.0.1:${sink.port}`, { connectionTimeoutMs: 2_000, greetingTimeoutMs: 2_000 });
    try {
      await expectDeliveryError(t.send(email()), false);
      assert.equal(sink.messages.length, 0);
    } finally {
      await t.close();
      await sink.close();
    }
  });

  it('rejects other schemes and malformed URLs without echoing the password', () => {
    assert.throws(() => createSmtpTransport('http://u:hunter2@mail.example:25'), (e: unknown) => e instanceof TypeError && !e.message.includes('hunter2'));
    assert.throws(() => createSmtpTransport('smtp://u:hunter2@'), (e: unknown) => e instanceof TypeError && !e.message.includes('hunter2'));
    assert.throws(() => createSmtpTransport('not a url hunter2'), (e: unknown) => e instanceof TypeError && !e.message.includes('hunter2'));
  });
});

describe('file transport', () => {
  let dir: string;
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  const log = { info: (obj: Record<string, unknown>, msg: string) => void lines.push({ obj, msg }) };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dcvd-mail-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a parseable RFC 5322 .eml named after the Message-ID, and logs one line without the body', async () => {
    const out = join(dir, 'outbox'); // created on demand
    const t = createFileTransport(out, log);
    const rendered = renderTemplate(DEFAULT_TEMPLATE, view);
    const e = email({ ...rendered, messageId: '<0b7e6c1a-5f2d-4c38-9f0e-2a1d3c4b5e6f@dcvd>' });
    lines.length = 0;

    const result = await t.send(e);
    assert.equal(result.accepted, true);

    const files = await readdir(out);
    assert.deepEqual(files, ['0b7e6c1a-5f2d-4c38-9f0e-2a1d3c4b5e6f@dcvd.eml'], 'one file, no temp files left');
    const file = join(out, files[0]!);
    assert.equal((await stat(file)).mode & 0o777, 0o600, 'the file holds a validation code: owner-only');

    const raw = await readFile(file);
    assert.ok(raw.includes('\r\n'), 'RFC 5322 line endings');
    const parsed = await simpleParser(raw);
    assert.equal(parsed.messageId, e.messageId);
    assert.equal(parsed.subject, rendered.subject);
    assert.deepEqual(parsed.from?.value.map((a) => a.address), ['dcv@ca.example']);
    const to = Array.isArray(parsed.to) ? parsed.to : [parsed.to];
    assert.deepEqual(to.flatMap((a) => a?.value.map((v) => v.address)), ['admin@example.com']);
    assert.ok(parsed.date instanceof Date);
    assert.equal(parsed.text?.trim(), rendered.text.trim());
    assert.equal(typeof parsed.html === 'string' && parsed.html.trim(), rendered.html?.trim());

    assert.equal(lines.length, 1);
    const [line] = lines;
    assert.equal(line?.obj.to, e.to);
    assert.equal(line?.obj.subject, e.subject);
    assert.equal(line?.obj.file, file);
    const logged = JSON.stringify(line);
    assert.ok(!logged.includes(view.validationCode), 'the log line must not carry the validation code');
  });

  it('a second send of the same Message-ID writes nothing new', async () => {
    const out = join(dir, 'idempotent');
    const t = createFileTransport(out, log);
    const e = email();
    await t.send(e);
    const [name] = await readdir(out);
    assert.ok(name);
    const first = await readFile(join(out, name));
    const firstMtime = (await stat(join(out, name))).mtimeMs;

    await new Promise((r) => setTimeout(r, 20));
    const again = await t.send({ ...e, subject: 'changed', text: 'changed' });
    assert.equal(again.accepted, true);
    assert.match(again.response, /already/);
    assert.deepEqual(await readdir(out), [name]);
    assert.deepEqual(await readFile(join(out, name)), first);
    assert.equal((await stat(join(out, name))).mtimeMs, firstMtime);

    // A different Message-ID is a different email.
    await t.send(email());
    assert.equal((await readdir(out)).length, 2);
  });

  it('a directory that cannot be written gives a temporary MailDeliveryError', async () => {
    const notADir = join(dir, 'plain-file');
    await writeFile(notADir, 'x');
    const t = createFileTransport(notADir, log);
    const err = await expectDeliveryError(t.send(email()), false);
    assert.match(err.reason, /^file E[A-Z]+/);

    const nested = createFileTransport(join(notADir, 'sub'), log);
    await expectDeliveryError(nested.send(email()), false);
  });

  it('refuses unsafe emails without writing', async () => {
    const out = join(dir, 'unsafe');
    const t = createFileTransport(out, log);
    for (const [name, bad] of unsafe) {
      await assert.rejects(t.send(email(bad)), (err: unknown) => err instanceof InvalidEmailError, name);
    }
    await assert.rejects(readdir(out), { code: 'ENOENT' });
  });
});

describe('templates', () => {
  it('escapes HTML in the HTML part only', () => {
    const t: EmailTemplate = {
      subject: 'Validate {{domain}}',
      text: 'Domain: {{domain}} Code: {{validationCode}}',
      html: '<p>Domain: {{domain}} Code: {{validationCode}}</p>',
    };
    const r = renderTemplate(t, { ...view, domain: '<script>alert("x")</script>&co', validationCode: 'a&b' });
    assert.equal(r.text, 'Domain: <script>alert("x")</script>&co Code: a&b');
    assert.equal(r.subject, 'Validate <script>alert("x")</script>&co');
    assert.ok(r.html);
    assert.ok(!r.html.includes('<script>'));
    assert.ok(r.html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;&#x2F;script&gt;&amp;co'));
    assert.ok(r.html.includes('Code: a&amp;b'));
  });

  it('the default template states everything the recipient needs', () => {
    assert.doesNotThrow(() => validateTemplate(DEFAULT_TEMPLATE));
    const r = renderTemplate(DEFAULT_TEMPLATE, view);
    assert.ok(r.html);
    for (const value of [view.orderNumber, view.domain, view.adn, view.validationCode, view.expiresAt]) {
      assert.ok(r.text.includes(value), `text lacks ${value}`);
      assert.ok(r.html.includes(value), `html lacks ${value}`);
    }
    assert.ok(r.text.includes(view.confirmationUrl));
    // In HTML the link is entity-escaped; decoded it must be the same URL.
    const href = /href="([^"]*)"/.exec(r.html)?.[1];
    assert.equal(href?.replace(/&amp;/g, '&').replace(/&#x2F;/g, '/').replace(/&#x3D;/g, '='), view.confirmationUrl);

    for (const body of [r.text, r.html]) {
      assert.match(body, /approve or decline/);
      assert.match(body, /does not approve anything/);
      assert.match(body, /did not expect this request/);
      assert.match(body, /No certificate is issued without approval/);
    }
    assert.ok(r.subject.includes(view.domain) && r.subject.includes(view.orderNumber));
    assert.ok(!r.subject.includes(view.validationCode));
    // Inline styles only, nothing fetched from elsewhere.
    assert.doesNotMatch(r.html, /<(img|link|script|style|iframe)\b|\bsrc=|url\(|@import/i);
  });

  it('rejects mustache syntax errors with a clear TemplateError', () => {
    const cases: [EmailTemplate, string][] = [
      [{ subject: 'x', text: '{{#domain}}{{validationCode}}' }, 'text'],
      [{ subject: 'x', text: '{{validationCode}} {{domain' }, 'text'],
      [{ subject: 'x', text: '{{validationCode}} {{/adn}}' }, 'text'],
      [{ subject: '{{#adn}}x', text: '{{validationCode}}' }, 'subject'],
      [{ subject: 'x', text: '{{validationCode}}', html: '{{{validationCode}}' }, 'html'],
    ];
    for (const [t, part] of cases) {
      assert.throws(
        () => validateTemplate(t),
        (err: unknown) => err instanceof TemplateError && err.part === part && /syntax error: \S/.test(err.message),
        JSON.stringify(t),
      );
    }
  });

  it('rejects templates that would render a broken or unsafe email', () => {
    const bad: [EmailTemplate, string, RegExp][] = [
      [{ subject: 'x', text: 'code {{validationcode}}' }, 'text', /unknown variable "validationcode"/],
      [{ subject: 'x', text: '{{validationCode}} {{constructor}}' }, 'text', /unknown variable/],
      [{ subject: 'x', text: '{{validationCode}} {{domain.length}}' }, 'text', /unknown variable/],
      [{ subject: 'x', text: '{{validationCode}} {{> footer}}' }, 'text', /partials/],
      [{ subject: 'x', text: 'no code here {{domain}}' }, 'text', /validationCode/],
      [{ subject: 'x', text: '{{#adn}}{{validationCode}}{{/adn}}' }, 'text', /outside any section/],
      [{ subject: 'x', text: '{{validationCode}}', html: '<p>{{domain}}</p>' }, 'html', /validationCode/],
      [{ subject: 'x', text: '{{validationCode}}', html: '<p>{{{domain}}} {{validationCode}}</p>' }, 'html', /unescaped/],
      [{ subject: 'x', text: '{{validationCode}}', html: '<p>{{&domain}} {{validationCode}}</p>' }, 'html', /unescaped/],
      [{ subject: 'Code {{validationCode}}', text: '{{validationCode}}' }, 'subject', /validationCode/],
      [{ subject: 'Link {{confirmationUrl}}', text: '{{validationCode}}' }, 'subject', /confirmationUrl/],
      [{ subject: 'Line one\r\nBcc: victim@evil.test', text: '{{validationCode}}' }, 'subject', /single line/],
      [{ subject: '', text: '{{validationCode}}' }, 'subject', /empty/],
      // The email refuses a subject over 998 characters: such a template could never send one.
      [{ subject: 'x'.repeat(999), text: '{{validationCode}}' }, 'subject', /longer than 998/],
    ];
    for (const [t, part, message] of bad) {
      assert.throws(
        () => validateTemplate(t),
        (err: unknown) => err instanceof TemplateError && err.part === part && message.test(err.message),
        JSON.stringify(t),
      );
      assert.throws(() => renderTemplate(t, view), TemplateError, 'render validates too');
    }
    // Triple mustache is fine in the text part: nothing there is HTML.
    assert.doesNotThrow(() => validateTemplate({ subject: '{{domain}}', text: '{{{validationCode}}}' }));
  });

  it('a subject the variables make longer than 998 characters ends in an ellipsis at the limit, and the email is sent', () => {
    const domain = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(53)}.example`;
    assert.equal(domain.length, 253); // the longest name there can be
    const t: EmailTemplate = { subject: 'Validate {{domain}} {{domain}} {{domain}} {{domain}} {{domain}}', text: '{{validationCode}}' };
    assert.doesNotThrow(() => validateTemplate(t));
    const r = renderTemplate(t, { ...view, domain });
    assert.equal(r.subject.length, 998);
    assert.ok(r.subject.startsWith(`Validate ${domain} ${domain}`));
    assert.ok(r.subject.endsWith('…'));
    assert.doesNotThrow(() => assertSafeEmail(email({ ...r, html: undefined })));
    // Never half a surrogate pair at the cut: an emoji straddling it goes whole.
    for (const pad of [0, 1]) {
      const emoji = renderTemplate({ subject: `${'x'.repeat(986 + pad)}{{domain}}`, text: '{{validationCode}}' }, { ...view, domain: '😀'.repeat(8) }).subject;
      assert.ok(emoji.length <= 998 && emoji.endsWith('…'), `${pad}: ${emoji.length}`);
      assert.doesNotMatch(emoji, /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/, `${pad}: a lone surrogate`);
    }
    // Within the limit, nothing is cut.
    assert.equal(renderTemplate({ subject: 'x'.repeat(998), text: '{{validationCode}}' }, view).subject, 'x'.repeat(998));
  });

  it('the rendered subject never carries CR/LF, whatever the view holds', () => {
    const t: EmailTemplate = { subject: 'Validate {{domain}} for {{adn}}', text: '{{validationCode}}' };
    const r = renderTemplate(t, { ...view, domain: 'a.example\r\nBcc: victim@evil.test', adn: 'b.example\u2028\u0000x' });
    assert.doesNotMatch(r.subject, /[\r\n\u0000\u2028]/);
    assert.equal(r.subject, 'Validate a.example Bcc: victim@evil.test for b.example x');
    assert.doesNotThrow(() => assertSafeEmail(email({ ...r, html: undefined })));
  });

  it('renders text without HTML escaping and leaves out html when the template has none', () => {
    const r = renderTemplate({ subject: 'S', text: 'Go to {{confirmationUrl}}\nCode {{validationCode}}' }, view);
    assert.equal(r.text, `Go to ${view.confirmationUrl}\nCode ${view.validationCode}`);
    assert.equal('html' in r, false);
  });
});

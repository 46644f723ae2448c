// The message dcvd composes for a DCV email (src/mail/compose.ts): whatever
// the subject and bodies hold, a real MIME parser (mailparser) reads back
// exactly what was put in, the message obeys RFC 5322's line rules, and it
// reads the same as nodemailer's general composer would have made it. The
// SMTP round trip (dot-stuffing) is checked against a real SMTP server.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { simpleParser, type ParsedMail } from 'mailparser';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';

import { BOUNDARY, composeMessage } from '../src/mail/compose.ts';
import { InvalidEmailError } from '../src/mail/errors.ts';
import type { OutgoingEmail } from '../src/mail/message.ts';
import { createSmtpTransport } from '../src/mail/transport.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';

// A small deterministic generator: the same cases on every run, many shapes.
function generator(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s % n;
  };
}

const PIECES = [
  'a', 'Z', '9', ' ', '  ', '\t', '.', '..', '=', '=?', '?=', '=?UTF-8?Q?x?=', '--', `--${BOUNDARY}`, '<b>', '&amp;',
  'ü', 'é', '日本語', '🎉', 'Ω', '\u00a0', 'https://dcvd.test/dcv/confirm/abc?x=1&y=2', 'x'.repeat(90), 'y'.repeat(300),
];
const BREAKS = ['\n', '\r\n', '\r', '\n.\n', '\r\n.\r\n', '\n..\n', '\n. \n', '\n\n'];

function body(rand: (n: number) => number, withBreaks: boolean): string {
  let s = '';
  const n = 1 + rand(40);
  for (let i = 0; i < n; i++) s += withBreaks && rand(4) === 0 ? BREAKS[rand(BREAKS.length)] : PIECES[rand(PIECES.length)];
  return s;
}

function subject(rand: (n: number) => number): string {
  // Subjects: no control characters (assertSafeEmail), not blank.
  const s = body(rand, false).replace(/\t/g, ' ').slice(0, 200);
  return s.trim() === '' ? `s${s}` : s;
}

function emailOf(rand: (n: number) => number, i: number): OutgoingEmail {
  const withHtml = rand(3) !== 0;
  return {
    messageId: `<case-${i}@dcvd>`,
    from: 'dcv@ca.example',
    to: 'admin@example.com',
    subject: subject(rand),
    text: body(rand, true),
    ...(withHtml ? { html: `<p>${body(rand, true)}</p>` } : {}),
  };
}

/** What a reader sees: line breaks as LF (a bare CR in a body is a line break on the wire, as SMTP carries it). */
const lines = (s: string) => s.replace(/\r\n|\r/g, '\n');

function checkParsed(parsed: ParsedMail, e: OutgoingEmail, label: string): void {
  assert.equal(parsed.subject, e.subject, `${label}: subject`);
  assert.equal(parsed.messageId, e.messageId, `${label}: Message-ID`);
  assert.deepEqual(parsed.from?.value.map((a) => a.address), [e.from], `${label}: From`);
  const to = Array.isArray(parsed.to) ? parsed.to : [parsed.to];
  assert.deepEqual(to.flatMap((a) => a?.value.map((v) => v.address)), [e.to], `${label}: To`);
  assert.equal(lines(parsed.text ?? ''), lines(e.text), `${label}: text`);
  if (e.html === undefined) assert.equal(parsed.html, false, `${label}: no html part`);
  else assert.equal(lines(typeof parsed.html === 'string' ? parsed.html : ''), lines(e.html), `${label}: html`);
}

describe('composeMessage', () => {
  const rand = generator(20261202);
  const cases = Array.from({ length: 300 }, (_, i) => emailOf(rand, i));

  it('mailparser reads back exactly what was composed, for 300 generated emails', async () => {
    for (const [i, e] of cases.entries()) {
      const raw = composeMessage(e, new Date(Date.UTC(2026, 11, 2, 12, 0, 0)));
      const parsed = await simpleParser(raw);
      checkParsed(parsed, e, `case ${i} ${JSON.stringify(e.subject)}`);
      assert.equal(parsed.date?.toISOString(), '2026-12-02T12:00:00.000Z');
    }
  });

  it('keeps RFC 5322 line rules: CRLF only, no line over 78 characters, 7-bit', () => {
    for (const e of cases) {
      const raw = composeMessage(e);
      assert.ok(!/\r(?!\n)|(?<!\r)\n/.test(raw), 'no bare CR or LF');
      assert.ok(raw.endsWith('\r\n'));
      for (const line of raw.split('\r\n')) assert.ok(line.length <= 78, `line of ${line.length}: ${line.slice(0, 40)}…`);
      assert.ok(/^[\x00-\x7f]*$/.test(raw), '7-bit: every non-ASCII character encoded');
    }
  });

  it('reads the same as nodemailer’s MailComposer output for the same email', async () => {
    // Bare CRs aside: nodemailer's composer leaves them to the SMTP layer, which makes them line breaks as this one does.
    for (const e of cases.slice(0, 100).map((c) => ({ ...c, text: lines(c.text), ...(c.html !== undefined ? { html: lines(c.html) } : {}) }))) {
      const theirs = await new MailComposer({
        messageId: e.messageId,
        from: { name: '', address: e.from },
        to: { name: '', address: e.to },
        subject: e.subject,
        text: e.text,
        ...(e.html !== undefined ? { html: e.html } : {}),
      })
        .compile()
        .build();
      const [a, b] = await Promise.all([simpleParser(composeMessage(e)), simpleParser(theirs)]);
      // Subjects are compared with the input in the first test: nodemailer's encoded words lose runs of spaces, these keep them.
      assert.equal(a.messageId, b.messageId);
      // nodemailer's single part reads with an added last line break when it chose 7bit or quoted-printable (not with base64); these never add one.
      const end = (s: string) => s.replace(/\n$/, '');
      assert.equal(end(lines(a.text ?? '')), end(lines(b.text ?? '')));
      assert.equal(typeof a.html === 'string' ? lines(a.html) : a.html, typeof b.html === 'string' ? lines(b.html) : b.html);
    }
  });

  it('a short printable subject stays readable; others become encoded words', () => {
    const plain = composeMessage({ ...cases[0]!, subject: 'Validate www.example.com' });
    assert.match(plain, /\r\nSubject: Validate www\.example\.com\r\n/);
    const tricky = composeMessage({ ...cases[0]!, subject: 'looks =?UTF-8?Q?encoded?= but is not' });
    assert.doesNotMatch(tricky, /Subject: looks =\?/);
  });

  it('refuses what assertSafeEmail refuses (header injection)', () => {
    assert.throws(() => composeMessage({ ...cases[0]!, subject: 'x\r\nBcc: victim@evil.test' }), InvalidEmailError);
    assert.throws(() => composeMessage({ ...cases[0]!, to: 'a@example.com\r\nBcc: victim@evil.test' }), InvalidEmailError);
  });
});

describe('composed messages over SMTP', () => {
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink();
  });
  after(async () => {
    await sink.close();
  });

  it('arrive as composed, dot-stuffed lines included, through a real SMTP server', async () => {
    const t = createSmtpTransport(sink.url, { maxConnections: 2 });
    const rand = generator(7);
    const emails = Array.from({ length: 40 }, (_, i) => emailOf(rand, 1000 + i));
    emails.push({ ...emails[0]!, messageId: '<dots@dcvd>', text: '.\r\n..\r\n.x\r\nend\r\n.', html: '<p>\n.\n</p>' });
    const before = sink.messages.length;
    try {
      for (const e of emails) assert.equal((await t.send(e)).accepted, true);
    } finally {
      await t.close();
    }
    const got = (await sink.waitFor(before + emails.length)).slice(before);
    for (const e of emails) {
      const m = got.find((x) => x.parsed.messageId === e.messageId);
      assert.ok(m, `${e.messageId} arrived`);
      assert.deepEqual(m.envelope.rcptTo, [e.to]);
      assert.equal(m.parsed.subject, e.subject);
      assert.equal(lines(m.parsed.text ?? ''), lines(e.text));
      if (e.html !== undefined) assert.equal(lines(typeof m.parsed.html === 'string' ? m.parsed.html : ''), lines(e.html));
    }
  });
});

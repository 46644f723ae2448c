// The RFC 5322 message of one DCV email, as both transports carry it.
//
// dcvd's emails have one shape: bare ASCII From and To (assertSafeEmail),
// a subject without control characters, a text part and an optional HTML
// part. nodemailer's MailComposer builds any message (attachments, address
// lists, streams) as a tree of MIME nodes, each with random bytes for its
// boundary, read back through a pipeline of streams: about 40 % of the CPU of
// a delivery (docs/PERFORMANCE.md, "Composing the message"). This builds the
// one shape as a string, with nodemailer's own encoders for the parts that
// need encoding: RFC 2047 encoded words for a subject that is not short
// printable ASCII, quoted-printable for the bodies.

import { encodeWord } from 'nodemailer/lib/mime-funcs/index.js';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp/index.js';

import { assertSafeEmail, type OutgoingEmail } from './message.ts';

/**
 * The boundary of the multipart/alternative body. Both parts are
 * quoted-printable, which writes every '=' as '=3D', so a line starting with
 * '--=_' can never occur inside them: the boundary needs no randomness to be
 * unique (RFC 2045 §6.7, RFC 2046 §5.1.1 suggest exactly this).
 */
export const BOUNDARY = '=_dcvd_alternative';

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const LINE_BREAKS = /\r\n|\r|\n/g;

/** `Subject: …` within 78 characters per line (RFC 5322 §2.1.1). */
function subjectField(subject: string): string {
  const plain = `Subject: ${subject}`;
  // Plain when it is short printable ASCII that no reader could take for an encoded word.
  if (PRINTABLE_ASCII.test(subject) && plain.length <= 78 && subject.trim() === subject && !subject.includes('=?')) return plain;
  // Q keeps mostly-Latin text readable; B is shorter for other scripts.
  let latin = 0;
  for (let i = 0; i < subject.length; i++) if (subject.charCodeAt(i) < 0x80) latin++;
  const words = encodeWord(subject, latin * 2 >= subject.length ? 'Q' : 'B', 52);
  // encodeWord separates its encoded words (each at most 75 characters) with one space: fold there.
  return `Subject: ${words.split(' ').join('\r\n ')}`;
}

/** A text part's body: CRLF line breaks, quoted-printable, lines of at most 76 characters. */
function quotedPrintable(text: string): string {
  return qpWrap(qpEncode(text.replace(LINE_BREAKS, '\r\n')), 76);
}

/**
 * A text part: its header and body, ending in one CRLF. Before a boundary
 * that CRLF belongs to the boundary. At the end of a single-part message it
 * would be read as a last line break of the text, so a text that has none
 * ends with a quoted-printable soft line break ('=' CRLF): the message ends
 * with a line and the text reads back exactly as it was.
 */
function part(type: 'plain' | 'html', body: string, last = false): string {
  const encoded = quotedPrintable(body);
  const end = !last ? '\r\n' : encoded === '' || encoded.endsWith('\r\n') ? '' : '=\r\n';
  return `Content-Type: text/${type}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${encoded}${end}`;
}

/**
 * The whole message, CRLF line endings, ending in CRLF. Throws
 * InvalidEmailError for an email assertSafeEmail refuses. `date` is the Date
 * field (the time of the attempt).
 */
export function composeMessage(email: OutgoingEmail, date: Date = new Date()): string {
  assertSafeEmail(email);
  const head =
    `From: ${email.from}\r\n` +
    `To: ${email.to}\r\n` +
    `${subjectField(email.subject)}\r\n` +
    `Message-ID: ${email.messageId}\r\n` +
    `Date: ${date.toUTCString().replace('GMT', '+0000')}\r\n` +
    'MIME-Version: 1.0\r\n';
  if (email.html === undefined) return head + part('plain', email.text, true);
  return (
    head +
    `Content-Type: multipart/alternative; boundary="${BOUNDARY}"\r\n\r\n` +
    `--${BOUNDARY}\r\n${part('plain', email.text)}` +
    `--${BOUNDARY}\r\n${part('html', email.html)}` +
    `--${BOUNDARY}--\r\n`
  );
}

// Mail transports: how a queued DCV email leaves dcvd (CONTRACT §5: "Delivery
// happens in the background, over SMTP, with retries and backoff; ... each
// email is delivered once"). The outbox owns retries and backoff; a transport
// makes one attempt and reports success, or a MailDeliveryError saying
// whether a retry can help.

import { randomUUID } from 'node:crypto';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';

import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer/index.js';
import type SMTPPool from 'nodemailer/lib/smtp-pool/index.js';

import { MailDeliveryError } from './errors.ts';
import { composeMessage } from './compose.ts';
import type { OutgoingEmail } from './message.ts';

export { InvalidEmailError, MailDeliveryError } from './errors.ts';

export interface SendResult {
  accepted: boolean;
  /** The server's final reply, or what the file transport did. */
  response: string;
}

export interface MailTransport {
  /** One delivery attempt. Rejects with MailDeliveryError only. */
  send(email: OutgoingEmail): Promise<SendResult>;
  close(): Promise<void>;
}

/** The subset of a pino logger the mail layer uses. */
export interface MailLog {
  info(obj: Record<string, unknown>, msg: string): void;
}

/**
 * What nodemailer sends: the message composed by dcvd (`raw`, so the .eml of the
 * file transport is byte for byte what SMTP carries, apart from the Date), and
 * the envelope stated rather than read back from headers.
 */
function toMailOptions(email: OutgoingEmail, raw: string): Mail.Options {
  return {
    raw,
    envelope: { from: email.from, to: [email.to] },
    // nodemailer reports this id; the message carries it as Message-ID: the
    // idempotency key doubles as the id receivers can deduplicate on.
    messageId: email.messageId,
    // Never let a value be read as a path or URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  };
}

function closedError(): MailDeliveryError {
  return new MailDeliveryError(false, 'mail transport is closed');
}

// ---------------------------------------------------------------- SMTP

export interface SmtpTransportOptions {
  /** Simultaneous SMTP connections in the pool (default 5). */
  maxConnections?: number;
  /** TCP connect, and DNS lookup of the host (default 10 s). */
  connectionTimeoutMs?: number;
  /** Wait for the server's 220 greeting (default 10 s). */
  greetingTimeoutMs?: number;
  /**
   * Socket inactivity, e.g. no reply after the message data (default 60 s).
   * This is what turns a server that accepts and then hangs into a failed,
   * retryable send instead of an outbox worker stuck forever.
   */
  socketTimeoutMs?: number;
}

interface SmtpEndpoint {
  host: string;
  port: number | undefined;
  secure: boolean;
  user: string;
  pass: string;
}

function parseSmtpUrl(url: string): SmtpEndpoint {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // The URL may carry a password: do not echo it.
    throw new TypeError('SMTP URL is not a valid URL');
  }
  if (u.protocol !== 'smtp:' && u.protocol !== 'smtps:') {
    throw new TypeError(`SMTP URL must start with smtp:// or smtps://, not ${u.protocol}//`);
  }
  if (u.hostname === '') throw new TypeError('SMTP URL has no host');
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'), // IPv6 literal without brackets
    port: u.port === '' ? undefined : Number(u.port), // nodemailer: 465 for smtps, else 587
    // smtps: implicit TLS. smtp: plain, upgraded with STARTTLS whenever the
    // server offers it (certificate verified; extra CAs via NODE_EXTRA_CA_CERTS).
    secure: u.protocol === 'smtps:',
    user: decodeURIComponent(u.username),
    pass: decodeURIComponent(u.password),
  };
}

// Commands whose 5xx reply is the server refusing this message or envelope.
// A 5xx anywhere else (greeting, EHLO, AUTH) is about the connection or our
// configuration: the same email can go through once that is fixed.
const MESSAGE_COMMANDS = new Set(['MAIL FROM', 'RCPT TO', 'DATA']);

function isPermanent(code: string | undefined, responseCode: number | undefined, command: string | undefined): boolean {
  if (code === 'EAUTH') return false; // wrong credentials: operator fixes config, queue drains
  if (responseCode !== undefined) {
    if (responseCode < 500 || responseCode > 599) return false;
    if (responseCode === 530) return false; // "authentication required": configuration again
    return command !== undefined && MESSAGE_COMMANDS.has(command);
  }
  // Refused by nodemailer before the server saw it (bad envelope, size): the
  // message itself is the problem. Everything else (ECONNECTION, ESOCKET,
  // ETIMEDOUT, ETLS, EDNS, pool closed, ...) may pass next time.
  return code === 'EENVELOPE' || code === 'EMESSAGE';
}

function redactor(secrets: string[]): (s: string) => string {
  const needles = [...new Set(secrets.flatMap((s) => [s, encodeURIComponent(s)]))].filter((s) => s.length > 0);
  return (s) => needles.reduce((acc, n) => acc.split(n).join('***'), s);
}

function toDeliveryError(err: unknown, redact: (s: string) => string): MailDeliveryError {
  if (err instanceof MailDeliveryError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as Record<string, unknown>;
  const code = typeof e.code === 'string' ? e.code : undefined;
  const responseCode = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  const command = typeof e.command === 'string' ? e.command : undefined;
  const message = err instanceof Error ? err.message : String(err);
  const where = command !== undefined ? ` at ${command}` : '';
  const reason = redact(`smtp ${code ?? 'error'}${where}: ${message}`);
  return new MailDeliveryError(isPermanent(code, responseCode, command), reason, responseCode);
}

/**
 * Writes to `socket` within one turn of the event loop leave as one system
 * call. nodemailer writes each command, and each piece of a streamed message
 * (headers, MIME boundaries, encoded lines), separately: about ten writes per
 * email, each a system call and, with Nagle's algorithm off, a packet of its
 * own. Corked until the turn's I/O callbacks have run, they leave together
 * (writev). Nothing waits longer than that turn. Under STARTTLS the TLS layer
 * writes to the connection's handle directly, so this changes nothing there.
 */
function coalesceWrites(socket: Socket): void {
  const write = socket.write;
  const uncork = () => socket.uncork();
  socket.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
    if (this.writableCorked === 0) {
      this.cork();
      setImmediate(uncork);
    }
    return write.apply(this, args);
  } as Socket['write'];
}

/**
 * SMTP over a pool of kept-alive connections. `url` is
 * smtp[s]://[user:pass@]host[:port]; query parameters are ignored (every knob
 * dcvd supports is in `opts`, so a URL cannot silently change pooling or TLS).
 */
export function createSmtpTransport(url: string, opts: SmtpTransportOptions = {}): MailTransport {
  const endpoint = parseSmtpUrl(url);
  const connectionTimeout = opts.connectionTimeoutMs ?? 10_000;
  const options: SMTPPool.Options & { maxRequeues: number } = {
    pool: true,
    host: endpoint.host,
    ...(endpoint.port !== undefined ? { port: endpoint.port } : {}),
    secure: endpoint.secure,
    ...(endpoint.user !== '' || endpoint.pass !== '' ? { auth: { user: endpoint.user, pass: endpoint.pass } } : {}),
    maxConnections: opts.maxConnections ?? 5,
    connectionTimeout,
    dnsTimeout: connectionTimeout,
    greetingTimeout: opts.greetingTimeoutMs ?? 10_000,
    socketTimeout: opts.socketTimeoutMs ?? 60_000,
    // A pooled connection the server dropped while idle is retried once on a
    // fresh one; beyond that the outbox's own backoff is the retry policy
    // (nodemailer's default is to requeue forever).
    maxRequeues: 1,
    disableFileAccess: true,
    disableUrlAccess: true,
    logger: false,
    // Sockets opened here so that Nagle's algorithm is off: with it, each small
    // SMTP command waits for the server's delayed ACK (~40 ms on Linux), which
    // capped a pooled connection at ~17 messages/s. TLS (smtps, STARTTLS) is
    // still nodemailer's, on top of this socket.
    getSocket: (_opts, callback) => {
      const socket = connect({ host: endpoint.host, port: endpoint.port ?? (endpoint.secure ? 465 : 587) });
      socket.setNoDelay(true);
      socket.setKeepAlive(true);
      coalesceWrites(socket);
      callback(null, { connection: socket });
    },
  };
  const transporter = nodemailer.createTransport(options);
  // Failures reach us through sendMail's rejection; an 'error' event with no
  // listener would instead crash the process.
  transporter.on('error', () => {});
  const redact = redactor([endpoint.user, endpoint.pass]);
  let closed = false;

  return {
    async send(email) {
      // Composing checks the email (assertSafeEmail) before any connection: nothing unsafe reaches a server.
      const raw = composeMessage(email);
      if (closed) throw closedError();
      try {
        const info = await transporter.sendMail(toMailOptions(email, raw));
        return { accepted: info.rejected.length === 0 && info.accepted.length > 0, response: redact(info.response) };
      } catch (err) {
        throw toDeliveryError(err, redact);
      }
    },
    async close() {
      closed = true;
      transporter.close();
    },
  };
}

// ---------------------------------------------------------------- file

/**
 * File name for a Message-ID. assertSafeEmail (in composeMessage) already limits ids to
 * [A-Za-z0-9._-]@[A-Za-z0-9.-], so this only drops the angle brackets; the
 * replacement is a second line of defence against path tricks, never reached
 * for a valid id (and so never makes two ids share a file).
 */
function fileNameFor(messageId: string): string {
  return `${messageId.replace(/^<|>$/g, '').replace(/[^A-Za-z0-9.@_-]/g, '_')}.eml`;
}

async function isExistingFile(path: string): Promise<boolean> {
  try {
    const s = await stat(path);
    if (!s.isFile()) throw Object.assign(new Error(`${path} exists and is not a file`), { code: 'EEXIST' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Makes a completed rename durable. Some platforms cannot fsync a directory; the file itself is already synced. */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EACCES') throw err;
  } finally {
    await fh?.close();
  }
}

function fsDeliveryError(err: unknown): MailDeliveryError {
  const e = err as NodeJS.ErrnoException;
  const message = err instanceof Error ? err.message : String(err);
  // Full disk, permissions, a vanished mount: all may be fixed without touching the email.
  return new MailDeliveryError(false, `file ${e?.code ?? 'error'}: ${message}`);
}

/**
 * The embedded default: each email becomes `<dir>/<message-id>.eml`, a real
 * RFC 5322 message an integrator can open. The write is atomic (temp file in
 * the same directory, fsync, rename) so a crash never leaves half an email,
 * and idempotent on the Message-ID (CONTRACT §5: delivered once): a file that
 * already exists means an earlier attempt succeeded. Files are private (0600)
 * because they contain the validation code.
 */
export function createFileTransport(dir: string, log: MailLog): MailTransport {
  let closed = false;

  return {
    async send(email) {
      // Composing checks the email (assertSafeEmail) before anything is written.
      const raw = Buffer.from(composeMessage(email));
      if (closed) throw closedError();
      const file = join(dir, fileNameFor(email.messageId));

      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        if (await isExistingFile(file)) {
          log.info({ to: email.to, subject: email.subject, file, duplicate: true }, 'dcv email already written, not rewritten');
          return { accepted: true, response: `already written ${file}` };
        }
        // Two concurrent attempts for one id (not expected: the outbox leases
        // each email) could both get here; rename then leaves one complete
        // file, never two and never a torn one.
        // Dot-prefixed so directory watchers looking for *.eml never see a partial file.
        const tmp = join(dir, `.${fileNameFor(email.messageId)}.${randomUUID()}.tmp`);
        try {
          const fh = await open(tmp, 'wx', 0o600);
          try {
            await fh.writeFile(raw);
            await fh.sync();
          } finally {
            await fh.close();
          }
          await rename(tmp, file);
        } catch (err) {
          await rm(tmp, { force: true }).catch(() => {});
          throw err;
        }
        await syncDir(dir);
      } catch (err) {
        if (err instanceof MailDeliveryError) throw err;
        throw fsDeliveryError(err);
      }
      // One line, never the body: it carries the validation code (CONTRACT §7).
      log.info({ to: email.to, subject: email.subject, file }, 'dcv email written');
      return { accepted: true, response: `written ${file}` };
    },
    async close() {
      closed = true;
    },
  };
}

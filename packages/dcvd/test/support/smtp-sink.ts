// A real SMTP server on loopback for tests (smtp-server + mailparser), with
// switches to make it misbehave the ways production relays do: refuse, hang,
// go away and come back on the same port.

import type { Socket } from 'node:net';

import { simpleParser, type AddressObject, type Headers } from 'mailparser';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';

export interface SinkMessage {
  envelope: { mailFrom: string | undefined; rcptTo: string[]; user: string | undefined };
  parsed: {
    /** Addresses of the From header. */
    from: string[];
    /** Addresses of the To header(s). */
    to: string[];
    subject: string | undefined;
    text: string | undefined;
    html: string | undefined;
    messageId: string | undefined;
    headers: Headers;
  };
  raw: Buffer;
}

export interface SmtpSinkOptions {
  /** Require AUTH with these credentials (default: no auth needed, any AUTH accepted). */
  auth?: { user: string; pass: string };
  /** Offer STARTTLS with smtp-server's built-in test certificate (default: off). */
  starttls?: boolean;
}

export interface SmtpSink {
  /** 'smtp://127.0.0.1:<port>', without credentials. */
  readonly url: string;
  readonly port: number;
  /** Every message accepted, in order; kept across stop()/start(). */
  readonly messages: SinkMessage[];
  /** SMTP sessions opened so far (to prove that nothing was even attempted). */
  readonly connections: number;
  /** Resolves with the messages once at least `count` were accepted. */
  waitFor(count: number, timeoutMs?: number): Promise<SinkMessage[]>;
  /** Reject the next `n` messages at the end of DATA with `code` (4xx or 5xx). */
  refuseNext(n: number, code: number): void;
  /** While on, messages are read but the reply to DATA never comes. */
  hang(on: boolean): void;
  /** Close the listener and drop every connection, keeping the port for start(). */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

function addresses(header: AddressObject | AddressObject[] | undefined): string[] {
  if (header === undefined) return [];
  return (Array.isArray(header) ? header : [header]).flatMap((h) => h.value.map((a) => a.address ?? ''));
}

export async function startSmtpSink(opts: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const messages: SinkMessage[] = [];
  const waiters = new Set<() => void>();
  const sockets = new Set<Socket>();
  let server: SMTPServer | undefined;
  let port = 0;
  let connections = 0;
  let refuse = { remaining: 0, code: 0 };
  let hanging = false;
  let closed = false;

  const options: SMTPServerOptions = {
    secure: false,
    disabledCommands: opts.starttls ? [] : ['STARTTLS'],
    authOptional: opts.auth === undefined,
    allowInsecureAuth: true, // AUTH over plain TCP: loopback only
    logger: false,
    closeTimeout: 100,
    onConnect(_session, callback) {
      connections += 1;
      callback();
    },
    onAuth(auth, _session, callback) {
      if (opts.auth !== undefined && (auth.username !== opts.auth.user || auth.password !== opts.auth.pass)) {
        // Echoes the user name, as many real relays do: the client must not pass it on.
        callback(Object.assign(new Error(`Authentication failed for ${auth.username}`), { responseCode: 535 }));
        return;
      }
      callback(null, { user: auth.username });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (hanging) return; // never answer: the client has to time out
        if (refuse.remaining > 0) {
          refuse.remaining -= 1;
          const text = refuse.code >= 500 ? 'Message rejected by test sink' : 'Try again later (test sink)';
          callback(Object.assign(new Error(text), { responseCode: refuse.code }));
          return;
        }
        const raw = Buffer.concat(chunks);
        simpleParser(raw).then(
          (parsed) => {
            const mailFrom = session.envelope.mailFrom;
            messages.push({
              envelope: {
                mailFrom: mailFrom === false ? undefined : mailFrom.address,
                rcptTo: session.envelope.rcptTo.map((r) => r.address),
                user: typeof session.user === 'string' ? session.user : undefined,
              },
              parsed: {
                from: addresses(parsed.from),
                to: addresses(parsed.to),
                subject: parsed.subject,
                text: parsed.text,
                html: typeof parsed.html === 'string' ? parsed.html : undefined,
                messageId: parsed.messageId,
                headers: parsed.headers,
              },
              raw,
            });
            // Recorded before the 250 goes out, so an awaited send sees it.
            for (const w of waiters) w();
            callback(null, 'Queued by test sink');
          },
          (err: unknown) => callback(Object.assign(new Error(`Unparseable message: ${String(err)}`), { responseCode: 554 })),
        );
      });
    },
  };

  async function start(): Promise<void> {
    if (closed) throw new Error('sink is closed');
    if (server !== undefined) return;
    const s = new SMTPServer(options);
    // Clients vanishing mid-session (timeouts, stop()) are expected here; an
    // unhandled 'error' event would crash the test process.
    s.on('error', () => {});
    s.server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        s.server.off('error', reject);
        resolve();
      });
    });
    const address = s.server.address();
    if (address === null || typeof address === 'string') throw new Error('sink did not get a TCP port');
    port = address.port;
    server = s;
  }

  async function stop(): Promise<void> {
    const s = server;
    if (s === undefined) return;
    server = undefined;
    const done = new Promise<void>((resolve) => s.close(() => resolve()));
    // Abrupt, like a crashed relay: no 421, the sockets just go away.
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await done;
  }

  await start();

  return {
    get url() {
      return `smtp://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    messages,
    get connections() {
      return connections;
    },
    waitFor(count, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (messages.length < count) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(messages.slice());
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`smtp sink: ${messages.length} of ${count} messages after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    refuseNext(n, code) {
      if (!Number.isInteger(n) || n < 0) throw new RangeError('refusal count must be a non-negative integer');
      if (!Number.isInteger(code) || code < 400 || code > 599) throw new RangeError('refusal code must be 4xx or 5xx');
      refuse = { remaining: n, code };
    },
    hang(on) {
      hanging = on;
    },
    stop,
    start,
    async close() {
      await stop();
      closed = true;
    },
  };
}

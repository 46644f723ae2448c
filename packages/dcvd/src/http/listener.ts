/**
 * What every dcvd listener shares — the API's (app.ts) and the internal API's (admin/http.ts): fastify's
 * options (TLS, timeouts, limits, request ids) and the paths as logged. Apart from app.ts so that a process
 * serving only the internal API (a cluster's primary, issue 20) does not load the API's routes and pages.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { LogController, type FastifyReply } from 'fastify';
import type { Logger } from '../log.ts';

/**
 * Paths as logged: a validation code is never written down (CONTRACT §7), in
 * whatever form a URL carries it (issue 14): what follows `/dcv/confirm/` at
 * any depth (a --public-url prefix), every query-string value (`?code=…`,
 * and anything else a client may put there, a password included), and
 * anywhere else, every run of characters that could hold a code (see
 * redactCodeRuns): `/CODE`, `/dcv/confirm%2FCODE`, `/dcv//confirm/CODE` and
 * `/dcv/confirm;CODE` answer 404, but their paths must not keep the code either.
 */
export function loggedPath(url: string): string {
  const q = url.search(/[?#]/);
  const path = (q < 0 ? url : url.slice(0, q)).replace(/(\/dcv\/confirm\/).+$/i, '$1[redacted]');
  const query = q < 0 ? '' : url.slice(q).replace(/=[^&#]*/g, '=[redacted]').replace(/([?&])([^=&#]{40,})/g, '$1[redacted]');
  return redactCodeRuns(path + query).slice(0, 200);
}

/** A validation code's length (orders/random-values.ts: 26 Crockford base32 characters). */
const CODE_LENGTH = 26;

/**
 * One character of a URL as the server reads it: a percent-encoded UTF-8 sequence of one code point, a lone
 * percent escape (a byte that is not UTF-8 on its own), or one character as sent.
 */
const URL_UNIT = /%[0-7][0-9a-f]|%[c-d][0-9a-f]%[89ab][0-9a-f]|%e[0-9a-f](?:%[89ab][0-9a-f]){2}|%f[0-7](?:%[89ab][0-9a-f]){3}|%[0-9a-f]{2}|[^]/giu;
/** What canonicalCode skips: white space and hyphens (and `+`, a space in a query string). */
const CODE_SEPARATOR = /^[\s+-]$/u;
const LETTERS_AND_DIGITS = /^[\p{L}\p{N}]+$/u;

/**
 * Replaces with `[redacted]` every run of characters that could hold a validation code: letters and digits
 * (any script: canonicalCode upper-cases, and `ſ`, `ı` or `ﬀ` become S, I and FF), percent-encoded or not,
 * together with the spaces and hyphens canonicalCode ignores between them, holding at least a code's length of
 * letters and digits. Shorter runs (`/healthz`, `/v1/orders/3000001`, an endpoint's name) are kept.
 */
function redactCodeRuns(text: string): string {
  let out = '';
  let run = '';
  let letters = 0;
  const end = () => {
    out += letters >= CODE_LENGTH ? '[redacted]' : run;
    run = '';
    letters = 0;
  };
  for (const unit of text.match(URL_UNIT) ?? []) {
    let char = unit;
    if (unit.length > 1 && unit.startsWith('%')) {
      try {
        char = decodeURIComponent(unit);
      } catch {
        char = '\ufffd';
      }
    }
    const upper = char.toUpperCase();
    if (LETTERS_AND_DIGITS.test(upper)) {
      run += unit;
      letters += upper.length;
    } else if (CODE_SEPARATOR.test(char)) {
      run += unit;
    } else {
      end();
      out += unit;
    }
  }
  end();
  return out;
}

/**
 * The accept queue of every listener: connections the kernel has completed and the event loop has not
 * accepted yet. Node's default is 511: 1,024 clients connecting at once to a busy server (`npm run bench`)
 * overflowed it (the kernel's ListenOverflows counter: 1,978 and 7,440 in two runs), and the clients whose
 * SYNs were dropped waited for TCP's retransmission (1 s, then 3 s, ...). With 4096: none (docs/PERFORMANCE.md,
 * third round). The kernel caps it at net.core.somaxconn (4096 on current Linux).
 */
export const LISTEN_BACKLOG = 4096;

/**
 * TLS 1.2 and 1.3 only; for 1.2, forward-secret AEAD suites only (Mozilla's
 * "intermediate" list without DHE). TLS 1.3 suites are OpenSSL's defaults.
 */
export const TLS_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * Bounds on slow or idle clients (slowloris), per listener. Production uses
 * SERVER_TIMEOUTS; tests pass short ones (ServerDeps.timeouts).
 */
export interface ServerTimeouts {
  /** The whole request, headers and body; then 408 and the connection is closed. */
  requestMs: number;
  /** The request headers, from the first byte of the request (or from the connection); then 408. */
  headersMs: number;
  /** An idle keep-alive connection after a response (node adds 1 s to what it announces). */
  keepAliveMs: number;
  /** A connection without any traffic, at any point after the TLS handshake. */
  idleSocketMs: number;
  /** The TLS handshake, in total (a ClientHello trickled byte by byte does not extend it). */
  handshakeMs: number;
  /** How often node checks headersMs and requestMs: they are enforced to within this. */
  checkIntervalMs: number;
}

export const SERVER_TIMEOUTS: Readonly<ServerTimeouts> = {
  requestMs: 15_000,
  headersMs: 10_000,
  keepAliveMs: 10_000,
  idleSocketMs: 30_000,
  // Not node's defaults (120 s, 30 s): with those an unfinished handshake holds a connection for
  // two minutes, and the 10 s headers timeout fires anywhere between 10 and 40 s. Not shorter than
  // 30 s either: at 1,024 new connections on a saturated server, honest handshakes wait over 10 s
  // (`npm run bench` lost 5 of them to a 10 s bound).
  handshakeMs: 30_000,
  checkIntervalMs: 1_000,
};

/** Request line and headers above this many bytes answer 431 (node's default, pinned here). */
export const MAX_HEADER_BYTES = 16 * 1024;

/** The headers every answer of dcvd carries besides its `X-Request-Id` (docs/PROTOCOL.md): set by each listener's first hook, and here. */
export const GUARD_HEADERS = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' } as const;

/**
 * Sets the headers every answer carries: the request's id and GUARD_HEADERS. Each listener's first hook calls
 * it, and so do its `frameworkErrors` (a malformed or over-long URL, answered before any hook runs).
 */
export function guardReply(reply: FastifyReply, requestId: string): FastifyReply {
  return reply.header('x-request-id', requestId).headers(GUARD_HEADERS);
}

/**
 * An HTTP/1.1 request without a Host header, which a server must answer 400 (RFC 9112 §3.2). Node's own
 * check (`requireHostHeader`) answers it bare, before any hook and past `clientErrorHandler`, so
 * baseServerOptions turns it off and each listener's first hook answers it instead, with the headers every
 * answer carries (found by fuzzing, 2026-12-04). HTTP/1.0 needs no Host.
 */
export function lacksHost(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && req.headers.host === undefined;
}

/** GUARD_HEADERS and a new request id as header lines, for the answers written before any route. */
const guardHeaderLines = () => `x-request-id: ${randomUUID()}\r\n${Object.entries(GUARD_HEADERS).map(([name, value]) => `${name}: ${value}\r\n`).join('')}`;

/**
 * A request node's HTTP parser refuses before any route (a malformed request, headers too slow or too big):
 * fastify's statuses and short JSON bodies, with the headers every answer carries, then the connection closed.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  // A reset connection has nothing to answer to.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Client Timeout'] : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Exceeded maximum allowed HTTP header size'] : [400, 'Client Error'];
  const body = JSON.stringify({ error: STATUS_CODES[status], message, statusCode: status });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${guardHeaderLines()}Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(err);
}

/**
 * An `Expect` header other than `100-continue`: node answers 417 itself, bare; this answers it with the headers
 * every answer carries (and a one-line body). A request with an `Expect` header and without Host (lacksHost)
 * gets the 400 of a missing Host here, before any hook: 417 for another expectation, and for `100-continue` no
 * interim `100 Continue` before the 400 (found by a review). Call on each listener's app before it listens.
 */
export function answerUnmetExpectations(app: { server: unknown }): void {
  type Listener = (req: IncomingMessage, res: ServerResponse) => void;
  const server = app.server as { on(event: 'checkExpectation' | 'checkContinue', listener: Listener): void; emit(event: 'request', req: IncomingMessage, res: ServerResponse): boolean };
  const answer = (res: ServerResponse, status: 400 | 417) => {
    const body = `${STATUS_CODES[status]}\n`;
    res.writeHead(status, { 'x-request-id': randomUUID(), ...GUARD_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length, connection: 'close' });
    res.end(body);
  };
  server.on('checkExpectation', (req, res) => answer(res, lacksHost(req) ? 400 : 417));
  // What node does without this listener (the interim 100, then the request), unless Host is missing.
  server.on('checkContinue', (req, res) => {
    if (lacksHost(req)) return answer(res, 400);
    res.writeContinue();
    server.emit('request', req, res);
  });
}

/**
 * Fastify options every dcvd listener shares: our logger and request ids,
 * the body limit, the timeouts and header limit, answering while shutting down, and TLS.
 */
export function baseServerOptions(opts: {
  logger: Logger;
  bodyLimit: number;
  tls?: { key: string; cert: string } | undefined;
  timeouts?: ServerTimeouts | undefined;
}) {
  const t = opts.timeouts ?? SERVER_TIMEOUTS;
  // What node's http(s).createServer takes; fastify sets the other three itself. A missing Host is
  // answered by each listener's first hook (lacksHost), with the headers node's own 400 lacks.
  const node = { headersTimeout: t.headersMs, connectionsCheckingInterval: t.checkIntervalMs, maxHeaderSize: MAX_HEADER_BYTES, requireHostHeader: false };
  return {
    loggerInstance: opts.logger,
    // Our own one line per request replaces fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // Request ids are ours; a client's x-request-id is not trusted.
    genReqId: () => randomUUID(),
    requestIdHeader: false as const,
    bodyLimit: opts.bodyLimit,
    connectionTimeout: t.idleSocketMs,
    requestTimeout: t.requestMs,
    keepAliveTimeout: t.keepAliveMs,
    // In-flight and keep-alive requests are still answered while shutting down.
    return503OnClosing: false,
    clientErrorHandler: answerClientError,
    ...(opts.tls
      ? {
          https: {
            ...node,
            handshakeTimeout: t.handshakeMs,
            key: opts.tls.key,
            cert: opts.tls.cert,
            minVersion: 'TLSv1.2' as const,
            ciphers: TLS_CIPHERS,
            honorCipherOrder: true,
          },
        }
      : { http: node }),
  };
}

/** One fastify app per listener (HTTPS, optional plain HTTP), built the same way (CONTRACT §8). */
import { randomUUID } from 'node:crypto';
import { METHODS, STATUS_CODES } from 'node:http';
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import { ErrorCode } from '@dcvd/client';
import type { Logger } from '../log.ts';
import { legacyApi, type LegacyApiOptions } from './legacy-api.ts';
import type { Metrics } from '../metrics.ts';
import { confirmPages, type ConfirmPagesOptions } from './confirm.ts';

export interface AppOptions extends Omit<LegacyApiOptions, 'secure' | 'requestDeadlineMs'> {
  logger: Logger;
  trustProxy: string[];
  /** Present on the HTTPS listener. */
  tls?: { key: string; cert: string } | undefined;
  /** Readiness for /readyz: the database answers and its schema is current; a reason when not. */
  readiness: () => Promise<string | undefined>;
  /** The confirmation pages (CONTRACT §6). */
  confirm: ConfirmPagesOptions;
  /** Counts each API call (endpoint, code, latency, -16 cause). */
  metrics?: Metrics;
  /** Slow-client bounds; SERVER_TIMEOUTS when absent. */
  timeouts?: ServerTimeouts | undefined;
  /** Called first, before the API and the pages register (sandbox mode's hooks and pages, issue 17). */
  extend?: ((app: FastifyInstance) => Promise<void>) | undefined;
}

/**
 * Paths as logged: a validation code is never written down (CONTRACT §7), in
 * whatever form a URL carries it (issue 14): what follows `/dcv/confirm/` at
 * any depth (a --public-url prefix), and every query-string value (`?code=…`,
 * and anything else a client may put there, a password included).
 */
export function loggedPath(url: string): string {
  const q = url.search(/[?#]/);
  const path = (q < 0 ? url : url.slice(0, q)).replace(/(\/dcv\/confirm\/).+$/i, '$1[redacted]');
  const query = q < 0 ? '' : url.slice(q).replace(/=[^&#]*/g, '=[redacted]').replace(/([?&])([^=&#]{40,})/g, '$1[redacted]');
  return (path + query).slice(0, 200);
}

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
  // What node's http(s).createServer takes; fastify sets the other three itself.
  const node = { headersTimeout: t.headersMs, connectionsCheckingInterval: t.checkIntervalMs, maxHeaderSize: MAX_HEADER_BYTES };
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

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...baseServerOptions(options),
    trustProxy: options.trustProxy.length > 0 ? options.trustProxy : false,
    // Malformed or over-long URLs: fastify's own answer is JSON that echoes the URL (a confirmation
    // path holds a code). Answer plainly, echo nothing, keep the security headers.
    frameworkErrors: (error, _request, reply) => {
      const status: 400 | 414 = error.statusCode === 414 ? 414 : 400;
      void (reply as FastifyReply)
        .code(status)
        .header('cache-control', 'no-store')
        .header('x-content-type-options', 'nosniff')
        .type('text/plain; charset=utf-8')
        .send(`${STATUS_CODES[status]}\n`);
    },
    // CONTRACT §1: "The `!` may arrive percent-encoded (`%21`)".
    // Also under /products/download/, where some of the real host's documentation puts them.
    rewriteUrl: (req) => (req.url ?? '/').replace(/^\/products\/(download\/)?%21/i, '/products/$1!'),
  });
  // Every method Node's parser knows reaches the router, so the API paths answer it -17
  // (CONTRACT §1 step 2) instead of a 404; CONNECT never reaches a route.
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method, { hasBody: true });
  }
  app.decorateRequest('apiOutcome', null);
  await options.extend?.(app as unknown as FastifyInstance);
  // Both hooks in callback style: an async hook costs fastify a promise per request (issue 20).
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
    done();
  });
  // One line per request: id (as reqId), endpoint, outcome code, latency. Never the body.
  app.addHook('onResponse', (request, reply, done) => {
    const outcome = request.apiOutcome;
    if (outcome && options.metrics) {
      options.metrics.observeRequest(outcome.endpoint, outcome.code, reply.elapsedTime / 1000, outcome.code === ErrorCode.IncorrectLogin ? outcome.reason : undefined);
    }
    request.log.info(
      {
        endpoint: outcome?.endpoint ?? null,
        code: outcome?.code ?? null,
        reason: outcome?.reason,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
        ip: request.ip,
        method: request.method,
        path: outcome ? undefined : loggedPath(request.url),
      },
      'request',
    );
    done();
  });

  // For load balancers: /healthz says the process is up; /readyz that it can serve (database and schema).
  app.get('/healthz', async (_request, reply) => reply.type('text/plain; charset=utf-8').send('ok\n'));
  app.get('/readyz', async (request, reply) => {
    let problem: string | undefined;
    try {
      problem = await options.readiness();
    } catch (err) {
      request.log.warn({ err }, 'readiness check failed');
      problem = 'database unavailable';
    }
    return reply
      .code(problem ? 503 : 200)
      .type('text/plain; charset=utf-8')
      .send(problem ? `not ready: ${problem}\n` : 'ready\n');
  });

  app.setNotFoundHandler((_request, reply) => reply.code(404).type('text/plain; charset=utf-8').send('Not Found\n'));
  app.setErrorHandler((error: { statusCode?: number }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: error }, 'unexpected error');
    return reply.code(status).type('text/plain; charset=utf-8').send(`${STATUS_CODES[status] ?? 'Error'}\n`);
  });

  await app.register(async (api) => legacyApi(api as unknown as FastifyInstance, { ...options, secure: options.tls !== undefined, requestDeadlineMs: (options.timeouts ?? SERVER_TIMEOUTS).requestMs }));
  // Its own context: its body parser (small forms), security headers and error pages stay there.
  await app.register(async (pages) => confirmPages(pages as unknown as FastifyInstance, options.confirm));
  return app as unknown as FastifyInstance;
}

/** One fastify app per listener (HTTPS, optional plain HTTP), built the same way (CONTRACT §8). */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from '../log.ts';
import { legacyApi, type LegacyApiOptions } from './legacy-api.ts';
import type { Metrics } from '../metrics.ts';
import { confirmPages, type ConfirmPagesOptions } from './confirm.ts';

export interface AppOptions extends Omit<LegacyApiOptions, 'secure'> {
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
}

/** Paths as logged: a validation code in a confirmation link is never written down (CONTRACT §7). */
export function loggedPath(url: string): string {
  return url.replace(/^(\/dcv\/confirm\/)[^?#]*/, '$1[redacted]').slice(0, 200);
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
 * Fastify options every dcvd listener shares: our logger and request ids,
 * the body limit, the timeouts, answering while shutting down, and TLS.
 */
export function baseServerOptions(opts: { logger: Logger; bodyLimit: number; tls?: { key: string; cert: string } | undefined }) {
  return {
    loggerInstance: opts.logger,
    // Our own one line per request replaces fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // Request ids are ours; a client's x-request-id is not trusted.
    genReqId: () => randomUUID(),
    requestIdHeader: false as const,
    bodyLimit: opts.bodyLimit,
    connectionTimeout: SERVER_TIMEOUTS.idleSocketMs,
    requestTimeout: SERVER_TIMEOUTS.requestMs,
    keepAliveTimeout: SERVER_TIMEOUTS.keepAliveMs,
    // In-flight and keep-alive requests are still answered while shutting down.
    return503OnClosing: false,
    ...(opts.tls
      ? { https: { key: opts.tls.key, cert: opts.tls.cert, minVersion: 'TLSv1.2' as const, ciphers: TLS_CIPHERS, honorCipherOrder: true } }
      : {}),
  };
}

/** Bounds on slow or idle clients (slowloris): whole request, headers, idle keep-alive. */
export const SERVER_TIMEOUTS = {
  requestMs: 15_000,
  headersMs: 10_000,
  keepAliveMs: 10_000,
  idleSocketMs: 30_000,
} as const;

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
    rewriteUrl: (req) => (req.url ?? '/').replace(/^\/products\/%21/i, '/products/!'),
  });
  app.server.headersTimeout = SERVER_TIMEOUTS.headersMs;

  app.decorateRequest('apiOutcome', null);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
  });
  // One line per request: id (as reqId), endpoint, outcome code, latency. Never the body.
  app.addHook('onResponse', async (request, reply) => {
    const outcome = request.apiOutcome;
    if (outcome && options.metrics) {
      options.metrics.observeRequest(outcome.endpoint, outcome.code, reply.elapsedTime / 1000, outcome.code === -16 ? outcome.reason : undefined);
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

  await app.register(async (api) => legacyApi(api as unknown as FastifyInstance, { ...options, secure: options.tls !== undefined }));
  // Its own context: its body parser (small forms), security headers and error pages stay there.
  await app.register(async (pages) => confirmPages(pages as unknown as FastifyInstance, options.confirm));
  return app as unknown as FastifyInstance;
}

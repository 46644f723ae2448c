/** One fastify app per listener (HTTPS, optional plain HTTP), built the same way (CONTRACT §8). */
import { METHODS, STATUS_CODES } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { ErrorCode } from '@dcvd/client';
import type { Logger } from '../log.ts';
import { legacyApi, type LegacyApiOptions } from './legacy-api.ts';
import type { Metrics } from '../metrics.ts';
import { confirmPages, type ConfirmPagesOptions } from './confirm.ts';
import { answerUnmetExpectations, baseServerOptions, guardReply, lacksHost, loggedPath, SERVER_TIMEOUTS, type ServerTimeouts } from './listener.ts';

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

/** A plain answer of a status alone (`Bad Request\n`): the URL or request it refuses is not echoed. */
function plainError(reply: FastifyReply, status: 400 | 414): FastifyReply {
  return reply.code(status).type('text/plain; charset=utf-8').send(`${STATUS_CODES[status]}\n`);
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...baseServerOptions(options),
    trustProxy: options.trustProxy.length > 0 ? options.trustProxy : false,
    // Malformed or over-long URLs: fastify's own answer is JSON that echoes the URL (a confirmation
    // path holds a code). Answer plainly, echo nothing, keep the security headers.
    // No hook runs for these: the headers every answer carries are set here.
    frameworkErrors: (error, request, reply) => {
      const status: 400 | 414 = error.statusCode === 414 ? 414 : 400;
      void plainError(guardReply(reply as FastifyReply, request.id), status);
    },
    // CONTRACT §1: "The `!` may arrive percent-encoded (`%21`)".
    // Also under /products/download/, where some of the real host's documentation puts them.
    // Only `%21` itself is an alternative spelling: the rest of the path is matched exactly, as for `!`
    // (until 2026-12-04 this was case-insensitive, so `/PRODUCTS/%21…` reached an endpoint; found by fuzzing).
    rewriteUrl: (req) => (req.url ?? '/').replace(/^\/products\/(download\/)?%21/, '/products/$1!'),
  });
  answerUnmetExpectations(app);
  // Every method Node's parser knows reaches the router, so the API paths answer it -17
  // (CONTRACT §1 step 2) instead of a 404; CONNECT never reaches a route.
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method, { hasBody: true });
  }
  app.decorateRequest('apiOutcome', null);
  await options.extend?.(app as unknown as FastifyInstance);
  // Both hooks in callback style: an async hook costs fastify a promise per request (issue 20).
  app.addHook('onRequest', (request, reply, done) => {
    guardReply(reply, request.id);
    // An HTTP/1.1 request without Host: 400 as node would answer it, with the headers it would lack.
    if (lacksHost(request.raw)) {
      void plainError(reply.header('connection', 'close'), 400);
      return;
    }
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

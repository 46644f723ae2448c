/**
 * The internal JSON API (CONTRACT §9) on its own listener (`--admin-listen`):
 * the operator's operations for the CA's ordering system, behind a bearer
 * token, plus GET /metrics and GET /openapi.json. HTTPS with the server's
 * certificate: the token must not cross a network in clear text.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { Type, type Static, type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import Value from 'typebox/value';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Clock } from '../deps.ts';
import type { AccountInput } from '../accounts/repository.ts';
import { OperatorError } from '../errors.ts';
import { TemplateStoreError } from '../orders/templates.ts';
import { TemplateError } from '../mail/errors.ts';
import { DEFAULT_OUTBOX_LIST_LIMIT, DEFAULT_WEBHOOK_SECRET_OVERLAP_MS, parseIsoDate } from '../config.ts';
import { answerUnmetExpectations, baseServerOptions, guardReply, lacksHost, loggedPath, type ServerTimeouts } from '../http/listener.ts';
import { DEFAULT_IPV6_PREFIX, limitKey } from '../accounts/networks.ts';
import type { AdminService } from './service.ts';
import {
  AccountCreateBody,
  AccountQuery,
  AccountSchema,
  AccountWithSecretSchema,
  WebhookSecretRotateBody,
  AccountUpdateBody,
  CreatedOrderSchema,
  EmailSchema,
  ErrorSchema,
  EvidenceSchema,
  LoginParams,
  NAMED_SCHEMAS,
  OrderCreateBody,
  OrderDetailSchema,
  OrderNumberParams,
  OrderSchema,
  OutboxQuery,
  ProductCodeParams,
  ProductCreateBody,
  ProductSchema,
  TemplateCreateBody,
  TemplateSchema,
} from './schemas.ts';

export const MIN_ADMIN_TOKEN_LENGTH = 32;

/** Failed bearer tokens per source IP: this many in the window block the IP for `blockMs` (in memory, per process). */
export interface AdminTokenPolicy {
  failures: number;
  windowMs: number;
  blockMs: number;
}
export const DEFAULT_ADMIN_TOKEN_POLICY: AdminTokenPolicy = { failures: 10, windowMs: 15 * 60_000, blockMs: 15 * 60_000 };

export function checkAdminToken(token: string | undefined): string {
  if (token === undefined || token === '') throw new Error('--admin-listen needs --admin-token (better: DCVD_ADMIN_TOKEN)');
  if (token.length < MIN_ADMIN_TOKEN_LENGTH) throw new Error(`the admin token must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters`);
  return token;
}

export interface AdminAppOptions {
  admin: AdminService;
  token: string;
  logger: Logger;
  metrics: Metrics;
  clock: Clock;
  tls: { key: string; cert: string };
  bodyLimit: number;
  tokenPolicy?: AdminTokenPolicy;
  /** Wrong tokens from IPv6 sources count by their network of this many bits. */
  ipv6Prefix?: number;
  /** Slow-client bounds; SERVER_TIMEOUTS when absent. */
  timeouts?: ServerTimeouts | undefined;
  /** Routes beyond the operator's (sandbox mode's, issue 17), in the served OpenAPI document too. */
  extraRoutes?: AdminRoute[] | undefined;
}

// ---------------------------------------------------------------- routes

interface RouteInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
}

export interface AdminRoute {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** fastify syntax (`:name`); OpenAPI's `{name}` is derived. */
  url: string;
  summary: string;
  status: number;
  params?: TSchema | undefined;
  query?: TSchema | undefined;
  body?: TSchema | undefined;
  /** The response's JSON schema; a string: a non-JSON media type. */
  response: TSchema | string;
  /** What a 404 means where the query or the body names an object (OpenAPI); routes with path parameters have one anyway. */
  notFound?: string | undefined;
  handler(input: RouteInput<unknown, unknown, unknown>, reply: FastifyReply): Promise<unknown>;
}

type Maybe<S> = S extends TSchema ? Static<S> : undefined;

export function route<P extends TSchema | undefined = undefined, Q extends TSchema | undefined = undefined, B extends TSchema | undefined = undefined>(def: {
  method: AdminRoute['method'];
  url: string;
  summary: string;
  status?: number;
  params?: P;
  query?: Q;
  body?: B;
  response: TSchema | string;
  notFound?: string;
  handler(input: RouteInput<Maybe<P>, Maybe<Q>, Maybe<B>>, reply: FastifyReply): Promise<unknown>;
}): AdminRoute {
  return { status: 200, ...def, handler: def.handler as AdminRoute['handler'] };
}

/** An expiry of a request body; a date that does not exist is the request's error (400), not the server's. */
function expiry(text: string | null | undefined): number | null | undefined {
  if (text === null || text === undefined) return text;
  try {
    return parseIsoDate(text);
  } catch (err) {
    throw new OperatorError(`passwordExpiresAt: ${(err as Error).message}`);
  }
}

/** Account fields of a create/update body, as the service takes them. */
function accountInput(body: Static<typeof AccountUpdateBody>): AccountInput {
  const input: AccountInput = {};
  if (body.password !== undefined) input.password = body.password;
  if (body.permissions !== undefined) input.permissions = body.permissions;
  if (body.allowedNetworks !== undefined) input.allowedNetworks = body.allowedNetworks;
  const expires = expiry(body.passwordExpiresAt);
  if (expires !== undefined) input.passwordExpiresAt = expires;
  if (body.webhookUrl !== undefined) input.webhookUrl = body.webhookUrl;
  return input;
}

export function adminRoutes(admin: AdminService, extra: { metrics: Metrics; openApi: () => unknown }): AdminRoute[] {
  return [
    route({ method: 'GET', url: '/v1/accounts', summary: 'List the accounts', response: Type.Array(AccountSchema), handler: () => admin.listAccounts() }),
    route({
      method: 'POST',
      url: '/v1/accounts',
      summary: 'Create an account',
      status: 201,
      body: AccountCreateBody,
      response: AccountWithSecretSchema,
      handler: ({ body }) => admin.createAccount(body.login, { allowedNetworks: [], ...accountInput(body), password: body.password }),
    }),
    route({ method: 'GET', url: '/v1/accounts/:login', summary: 'Show an account', params: LoginParams, response: AccountSchema, handler: ({ params }) => admin.showAccount(params.login) }),
    route({
      method: 'PATCH',
      url: '/v1/accounts/:login',
      summary: 'Change an account; what is not given stays as it is (any change voids remembered credentials)',
      params: LoginParams,
      body: AccountUpdateBody,
      response: AccountWithSecretSchema,
      handler: ({ params, body }) => admin.updateAccount(params.login, accountInput(body)),
    }),
    route({
      method: 'POST',
      url: '/v1/accounts/:login/webhook-secret/rotate',
      summary: 'Make a new signing secret for the account\u2019s webhook URL, returned only in this response; the previous one keeps signing during the overlap',
      params: LoginParams,
      body: WebhookSecretRotateBody,
      response: AccountWithSecretSchema,
      handler: ({ params, body }) => admin.rotateWebhookSecret(params.login, body.overlapSeconds === undefined ? DEFAULT_WEBHOOK_SECRET_OVERLAP_MS : body.overlapSeconds * 1000),
    }),
    route({
      method: 'POST',
      url: '/v1/accounts/:login/lock',
      summary: 'Lock an account until it is unlocked (its calls answer -16)',
      params: LoginParams,
      response: AccountSchema,
      handler: ({ params }) => admin.lockAccount(params.login),
    }),
    route({
      method: 'POST',
      url: '/v1/accounts/:login/unlock',
      summary: 'Unlock an account, also from a lockout, and reset its failure count',
      params: LoginParams,
      response: AccountSchema,
      handler: ({ params }) => admin.unlockAccount(params.login),
    }),
    route({ method: 'GET', url: '/v1/orders', summary: 'List orders, oldest first', query: AccountQuery, notFound: 'no such account', response: Type.Array(OrderSchema), handler: ({ query }) => admin.listOrders(query.account) }),
    route({
      method: 'POST',
      url: '/v1/orders',
      summary: 'Create an order; with dcvEmailAddress the 24-hour rule applies and the first DCV email is queued',
      status: 201,
      body: OrderCreateBody,
      notFound: 'no such account, template or product',
      response: CreatedOrderSchema,
      handler: ({ body }) =>
        admin.createOrder({
          account: body.account,
          domain: body.domain,
          orderNumber: body.orderNumber,
          baseOrderNumber: body.baseOrderNumber,
          product: body.product,
          voucher: body.voucher,
          dcvMethod: body.dcvMethod ?? 'email',
          templateId: body.templateId,
          dcvEmail: body.dcvEmailAddress,
        }),
    }),
    route({
      method: 'GET',
      url: '/v1/orders/:orderNumber',
      summary: 'Show an order with its DCV emails, evidence and webhook events',
      params: OrderNumberParams,
      response: OrderDetailSchema,
      handler: ({ params }) => admin.showOrder(params.orderNumber),
    }),
    route({
      method: 'POST',
      url: '/v1/orders/:orderNumber/cancel',
      summary: 'Cancel an order: its codes stop working, unsent DCV emails are not sent',
      params: OrderNumberParams,
      response: OrderSchema,
      handler: ({ params }) => admin.cancelOrder(params.orderNumber),
    }),
    route({
      method: 'GET',
      url: '/v1/orders/:orderNumber/evidence',
      summary: 'The evidence of an order\u2019s validations, newest first',
      params: OrderNumberParams,
      response: Type.Array(EvidenceSchema),
      handler: ({ params }) => admin.orderEvidence(params.orderNumber),
    }),
    route({ method: 'GET', url: '/v1/products', summary: 'List the product codes AutoApplyOrder accepts, by code', response: Type.Array(ProductSchema), handler: () => admin.listProducts() }),
    route({ method: 'GET', url: '/v1/products/:code', summary: 'Show a product', params: ProductCodeParams, response: ProductSchema, handler: ({ params }) => admin.showProduct(params.code) }),
    route({
      method: 'POST',
      url: '/v1/products',
      summary: 'Add a product code (as `dcvd product create`); an existing code answers 409',
      status: 201,
      body: ProductCreateBody,
      response: ProductSchema,
      handler: ({ body }) =>
        admin.createProduct({
          code: body.code,
          name: body.name,
          multiDomain: body.multiDomain ?? false,
          maxDomains: body.maxDomains ?? 1,
          wildcard: body.wildcard ?? false,
          allowedDays: body.allowedDays,
        }),
    }),
    route({ method: 'GET', url: '/v1/templates', summary: 'List DCV email templates', query: AccountQuery, notFound: 'no such account', response: Type.Array(TemplateSchema), handler: ({ query }) => admin.listTemplates(query.account) }),
    route({
      method: 'POST',
      url: '/v1/templates',
      summary: 'Create a template for one account (account) or every account (global: true)',
      status: 201,
      body: TemplateCreateBody,
      notFound: 'no such account',
      response: TemplateSchema,
      handler: ({ body }) => {
        if ((body.account === undefined) === (body.global !== true)) throw new TemplateStoreError('give exactly one of account and global: true');
        return admin.createTemplate(body.account ?? null, body.id, { subject: body.subject, text: body.text, ...(body.html === undefined ? {} : { html: body.html }) });
      },
    }),
    route({
      method: 'GET',
      url: '/v1/outbox',
      summary: 'DCV emails and their delivery state, newest first',
      query: OutboxQuery,
      notFound: 'no such order',
      response: Type.Array(EmailSchema),
      handler: ({ query }) => admin.listOutbox({ state: query.state, orderNumber: query.order, limit: query.limit ?? DEFAULT_OUTBOX_LIST_LIMIT }),
    }),
    route({
      method: 'GET',
      url: '/metrics',
      summary: 'Prometheus metrics (text exposition format); docs/OPERATIONS.md explains each',
      response: 'text/plain',
      handler: async (_input, reply) => reply.type(extra.metrics.contentType).send(await extra.metrics.render()),
    }),
    route({ method: 'GET', url: '/openapi.json', summary: 'This document', response: Type.Object({}, { additionalProperties: true }), handler: async () => extra.openApi() }),
  ];
}

// ---------------------------------------------------------------- OpenAPI

const openApiPath = (url: string) => url.replace(/:([A-Za-z]+)/g, '{$1}');

function named(schema: TSchema): unknown {
  const name = NAMED_SCHEMAS.get(schema);
  if (name) return { $ref: `#/components/schemas/${name}` };
  const s = schema as { type?: string; items?: TSchema };
  if (s.type === 'array' && s.items && NAMED_SCHEMAS.has(s.items)) return { ...s, items: named(s.items) };
  return schema;
}

function parametersOf(schema: TSchema | undefined, where: 'path' | 'query'): unknown[] {
  if (!schema) return [];
  const s = schema as unknown as { properties: Record<string, TSchema>; required?: string[] };
  return Object.entries(s.properties).map(([name, p]) => ({ name, in: where, required: where === 'path' || (s.required ?? []).includes(name), schema: p }));
}

/** The OpenAPI 3.1 document of these routes (served at /openapi.json, kept in docs/openapi.json). */
export function openApiDocument(routes: AdminRoute[]): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  const error = (description: string) => ({ description, content: { 'application/json': { schema: named(ErrorSchema) } } });
  for (const r of routes) {
    const parameters = [...parametersOf(r.params, 'path'), ...parametersOf(r.query, 'query')];
    const content = typeof r.response === 'string' ? { [r.response]: { schema: { type: 'string' } } } : { 'application/json': { schema: named(r.response) } };
    (paths[openApiPath(r.url)] ??= {})[r.method.toLowerCase()] = {
      summary: r.summary,
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: r.body } } } } : {}),
      responses: {
        [String(r.status)]: { description: 'success', content },
        '400': error('invalid request (body, parameters or a rule of the operation)'),
        '401': error('missing or wrong bearer token'),
        ...(r.params || r.notFound ? { '404': error(r.notFound ?? 'no such object') } : {}),
        ...(r.method !== 'GET' ? { '409': error('clashes with an existing object or state') } : {}),
        '429': error('too many wrong tokens from this source IP'),
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'dcvd internal API',
      version: '1',
      description:
        'The operator interface of dcvd (CONTRACT §9) for the CA\u2019s ordering system: the same operations and JSON views as the dcvd command. Every request needs Authorization: Bearer <admin token>.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: Object.fromEntries([...NAMED_SCHEMAS].map(([schema, name]) => [name, schema])),
    },
    security: [{ bearer: [] }],
    paths,
  };
}

// ---------------------------------------------------------------- errors, auth

function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send({ error: { code, message } });
}

const STATUS_CODES: Record<number, string> = {
  400: 'invalid_request',
  401: 'unauthorized',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
};

/** Wrong tokens per source IP: a fixed window of `windowMs` from the first failure, then a block. */
export class TokenFailures {
  private readonly byIp = new Map<string, { count: number; since: number; blockedUntil: number }>();
  constructor(
    private readonly policy: AdminTokenPolicy,
    private readonly clock: Clock,
    private readonly ipv6Prefix: number = DEFAULT_IPV6_PREFIX,
  ) {}

  /** Seconds the IP (its IPv6 network) stays blocked, or 0. */
  blocked(ip: string): number {
    const entry = this.byIp.get(limitKey(ip, this.ipv6Prefix));
    const now = this.clock.now();
    return entry && entry.blockedUntil > now ? Math.ceil((entry.blockedUntil - now) / 1000) : 0;
  }

  fail(source: string): void {
    const now = this.clock.now();
    if (this.byIp.size >= 10_000) this.prune(now);
    const ip = limitKey(source, this.ipv6Prefix);
    let entry = this.byIp.get(ip);
    if (!entry || now - entry.since >= this.policy.windowMs) {
      entry = { count: 0, since: now, blockedUntil: 0 };
      this.byIp.set(ip, entry);
    }
    entry.count += 1;
    if (entry.count >= this.policy.failures) {
      entry.blockedUntil = now + this.policy.blockMs;
      entry.count = 0;
      entry.since = now;
    }
  }

  private prune(now: number): void {
    for (const [ip, e] of this.byIp) if (e.blockedUntil <= now && now - e.since >= this.policy.windowMs) this.byIp.delete(ip);
  }
}

/** True when a JSON value holds a NUL in any string (keys included). */
function hasNul(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (value === null || typeof value !== 'object' || depth > 32) return false;
  return Object.entries(value).some(([k, v]) => k.includes('\0') || hasNul(v, depth + 1));
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

// ---------------------------------------------------------------- the app

/** The first property of a path or query string that its schema wants as an integer and that is not one in plain decimal digits. */
function looseInteger(schema: TSchema, data: unknown): string | undefined {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties;
  if (!properties || typeof data !== 'object' || data === null) return undefined;
  for (const [name, value] of Object.entries(data as Record<string, unknown>)) {
    if (properties[name]?.type === 'integer' && typeof value === 'string' && !/^-?[0-9]+$/.test(value)) return name;
  }
  return undefined;
}

const registered = new WeakMap<FastifyInstance, string[]>();

/** `METHOD url` of every route the app registered (the OpenAPI test compares them with the document). */
export function registeredRoutes(app: FastifyInstance): string[] {
  return registered.get(app) ?? [];
}

export async function buildAdminApp(options: AdminAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...baseServerOptions(options),
    // Malformed or over-long URLs get this API's error shape too, without echoing the URL.
    // No hook runs for these: the headers every answer carries are set here.
    frameworkErrors: (error, request, reply) => {
      const status = error.statusCode === 414 ? 414 : 400;
      const guarded = guardReply(reply as FastifyReply, request.id);
      void sendError(guarded, status, status === 414 ? 'uri_too_long' : 'invalid_request', status === 414 ? 'the URL is too long' : 'malformed URL');
    },
  }) as unknown as FastifyInstance;
  // Bodies are JSON only: fastify's text/plain parser would hand a JSON body sent as text to the schema (a 400
  // "body must be object") where the API promises 415.
  app.removeContentTypeParser('text/plain');
  answerUnmetExpectations(app);
  const names: string[] = [];
  registered.set(app, names);
  app.addHook('onRoute', (r) => {
    for (const m of [r.method].flat()) if (m !== 'HEAD') names.push(`${m} ${r.url}`);
  });

  // One validator for every route: typebox, with path and query strings converted to the schema's types first
  // (an integer only from its plain decimal digits: typebox would also read `0x10`, `1e3`, ` 12` or an empty string).
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const check = Compile(schema as TSchema);
    return (data: unknown) => {
      if (httpPart !== 'body') {
        const loose = looseInteger(schema as TSchema, data);
        if (loose !== undefined) return { error: new Error(`${httpPart === 'querystring' ? 'query' : httpPart}/${loose} must be a whole number in decimal digits`) };
      }
      const value = httpPart === 'body' ? data : Value.Convert(schema as TSchema, data);
      if (check.Check(value)) return { value: Value.Default(schema as TSchema, value) };
      const first = [...check.Errors(value)].find((e) => e.keyword !== 'boolean') ?? [...check.Errors(value)][0];
      const where = `${httpPart === 'querystring' ? 'query' : httpPart}${first?.instancePath ?? ''}`;
      return { error: new Error(`${where} ${first?.message ?? 'is not valid'}`) };
    };
  });

  const expected = digest(options.token);
  const failures = new TokenFailures(options.tokenPolicy ?? DEFAULT_ADMIN_TOKEN_POLICY, options.clock, options.ipv6Prefix);
  app.addHook('onRequest', async (request, reply) => {
    guardReply(reply, request.id);
    // An HTTP/1.1 request without Host: 400 as node would answer it, in this API's shape, before the token.
    if (lacksHost(request.raw)) return sendError(reply.header('connection', 'close'), 400, 'invalid_request', 'a Host header is required');
    const blocked = failures.blocked(request.ip);
    if (blocked > 0) {
      reply.header('retry-after', String(blocked));
      return sendError(reply, 429, 'rate_limited', 'too many wrong tokens from this address; try again later');
    }
    const m = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '');
    if (!m) {
      reply.header('www-authenticate', 'Bearer');
      return sendError(reply, 401, 'unauthorized', 'an Authorization: Bearer token is required');
    }
    if (!timingSafeEqual(digest(m[1]!), expected)) {
      failures.fail(request.ip);
      reply.header('www-authenticate', 'Bearer error="invalid_token"');
      return sendError(reply, 401, 'unauthorized', 'wrong token');
    }
  });
  // A NUL in the path, the query string or a JSON string: text no database column can hold
  // (PostgreSQL refuses it), refused alike on both databases before any handler runs.
  app.addHook('preValidation', async (request, reply) => {
    if (/%00|\0/i.test(request.url) || hasNul(request.body)) return sendError(reply, 400, 'invalid_request', 'NUL characters are not allowed');
  });
  // One line per request; never a body or the Authorization header.
  app.addHook('onResponse', async (request, reply) => {
    request.log.info({ admin: true, method: request.method, path: loggedPath(request.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100, ip: request.ip }, 'request');
  });

  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'not_found', `no route ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}`));
  app.setErrorHandler((error: Error & { statusCode?: number; validation?: unknown }, request, reply) => {
    if (error instanceof OperatorError) {
      const status = error.kind === 'not-found' ? 404 : error.kind === 'conflict' ? 409 : 400;
      return sendError(reply, status, STATUS_CODES[status]!, error.message);
    }
    if (error instanceof TemplateError) return sendError(reply, 400, 'invalid_request', error.message);
    const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) {
      request.log.error({ err: error }, 'unexpected error');
      return sendError(reply, 500, 'internal', 'internal error; see the server log');
    }
    return sendError(reply, status, STATUS_CODES[status] ?? 'invalid_request', error.message);
  });

  let document: unknown;
  const routes = [...adminRoutes(options.admin, { metrics: options.metrics, openApi: () => document }), ...(options.extraRoutes ?? [])];
  document = openApiDocument(routes);
  for (const r of routes) {
    app.route({
      method: r.method,
      url: r.url,
      schema: { ...(r.params ? { params: r.params } : {}), ...(r.query ? { querystring: r.query } : {}), ...(r.body ? { body: r.body } : {}) },
      handler: async (request, reply) => {
        const result = await r.handler({ params: request.params, query: request.query, body: request.body }, reply);
        // A handler that sent the reply itself (/metrics) returns it; an async function returning the thenable
        // reply hands back what it resolved to, so ask the reply whether it went out.
        if (result === reply || reply.sent) return reply;
        return reply.code(r.status).send(result);
      },
    });
  }
  return app;
}

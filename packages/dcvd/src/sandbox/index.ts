/**
 * Sandbox mode (issue 17, CONTRACT §12): the hooks `dcvd sandbox` gives the
 * server — a movable clock, DNS overrides in front of the configured
 * resolvers, a captured mailbox with its viewer, fault switches on the API,
 * auto-approval — and the internal API routes that drive them. A normal
 * `dcvd serve` has none of this: without `ServerDeps.sandbox` no route below
 * exists.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { singleParamValue, type EndpointSpec } from '@dcvd/client';
import { systemClock, type Clock } from '../deps.ts';
import type { DnsClient } from '../dns/client.ts';
import type { MailTransport } from '../mail/transport.ts';
import { route, type AdminRoute } from '../admin/http.ts';
import { renderError } from '../http/legacy-api.ts';
import { parseDuration } from '../config.ts';
import { OperatorError } from '../errors.ts';
import { SandboxClock } from './clock.ts';
import { DnsOverrides } from './dns.ts';
import { MailCapture } from './mail.ts';
import { FaultSwitches } from './switches.ts';
import { mailViewer, SANDBOX_NOTICE, VIEWER_PATH } from './viewer.ts';
import {
  AutoApproveSchema,
  ClockAdvanceBody,
  ClockSchema,
  CountSchema,
  DnsClearQuery,
  DnsOverrideBody,
  DnsOverrideSchema,
  MailDetailSchema,
  MailIdParams,
  MailQuery,
  MailSchema,
  StatusSchema,
  SwitchBody,
  SwitchSchema,
} from './schemas.ts';

import type { SandboxContext, SandboxHooks } from '../server.ts';

export { SandboxClock } from './clock.ts';
export { VIEWER_PATH } from './viewer.ts';

const AUTO_APPROVE_POLL_MS = 250;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Sandbox implements SandboxHooks {
  readonly clock: SandboxClock;
  readonly dns = new DnsOverrides();
  readonly mail: MailCapture;
  readonly switches: FaultSwitches;
  private readonly endpoints = new Set<string>();
  private ctx: SandboxContext | undefined;
  private autoApproveAfterS: number | null = null;
  private readonly autoTried = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;

  constructor(opts: { dataDir: string; baseClock?: Clock }) {
    this.clock = new SandboxClock(opts.baseClock ?? systemClock);
    this.mail = new MailCapture(opts.dataDir, this.clock);
    this.switches = new FaultSwitches(() => [...this.endpoints].sort());
  }

  private get context(): SandboxContext {
    if (!this.ctx) throw new Error('sandbox not attached to a server');
    return this.ctx;
  }

  attach(ctx: SandboxContext): void {
    this.ctx = ctx;
  }

  wrapDnsClient(client: DnsClient): DnsClient {
    return this.dns.wrap(client);
  }

  wrapMailTransport(transport: MailTransport): MailTransport {
    return this.mail.wrap(transport, () => this.context.publicUrl());
  }

  async extendApp(app: FastifyInstance): Promise<void> {
    // The API's endpoints, as they register: switches may name any of them.
    app.addHook('onRoute', (r) => {
      const binding = (r.config as { binding?: { spec: EndpointSpec } } | undefined)?.binding;
      if (binding) this.endpoints.add(binding.spec.endpoint);
    });
    // Switches act after the body is parsed, before the endpoint runs.
    app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
      const binding = request.routeOptions.config.binding as { spec: EndpointSpec; format(entries: [string, string][]): 'urlencoded' | 'text' | 'json' } | undefined;
      if (!binding) return;
      const entries = (request.body as { entries?: [string, string][] } | undefined)?.entries ?? [];
      // The loginName the API reads: its name in any case (CONTRACT §1), once; a repeat (-4) has none.
      const login = singleParamValue(entries, 'loginName');
      const { latencyMs, error } = this.switches.take(binding.spec.endpoint, login);
      if (latencyMs > 0) await sleep(latencyMs);
      if (!error) return;
      const rendered = renderError(binding.spec, binding.format(entries), error);
      request.apiOutcome = { endpoint: binding.spec.endpoint, code: error.code, reason: 'sandbox-switch' };
      return reply.code(200).header('content-type', rendered.contentType).send(rendered.body);
    });
    // Every page says "sandbox" (the email's own HTML, shown in the viewer's frame, is left as sent).
    const notice = `<p class="sandbox" role="note">${SANDBOX_NOTICE}</p>`;
    app.addHook('onSend', async (request, reply, payload) => {
      const type = String(reply.getHeader('content-type') ?? '');
      if (typeof payload !== 'string' || !type.startsWith('text/html') || /\/html(\?|$)/.test(request.url)) return payload;
      return payload.replace(/<main>/, `<main>\n${notice}`);
    });
    await app.register(async (viewer) => mailViewer(viewer as unknown as FastifyInstance, { mail: this.mail, db: () => this.context.db }));
  }

  start(): void {
    this.timer = setInterval(() => {
      this.sweeping ??= this.autoApprove()
        .catch((err: unknown) => this.ctx?.logger.error({ err }, 'sandbox auto-approve failed'))
        .finally(() => (this.sweeping = undefined));
    }, AUTO_APPROVE_POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sweeping;
  }

  /** Approves each captured email's code once it is `afterSeconds` old on the sandbox clock, as its recipient would. */
  private async autoApprove(): Promise<void> {
    const after = this.autoApproveAfterS;
    if (after === null) return;
    const now = this.clock.now();
    for (const m of this.mail.all()) {
      if (m.code === null || this.autoTried.has(m.id) || m.sentAt + after * 1000 > now) continue;
      this.autoTried.add(m.id);
      // Not a guess: a block of loopback by the guessing limit (a client's own tests of unknown codes) does not stop it.
      const { outcome, lookup } = await this.context.confirmation.decide(m.code, 'approve', { ip: '127.0.0.1', userAgent: 'dcvd-sandbox-auto-approve' }, { guess: false });
      this.context.logger.info({ sandbox: true, outcome, orderNumber: lookup.state === 'active' ? lookup.orderNumber : undefined, messageId: m.messageId }, 'sandbox auto-approve');
    }
  }

  /** Approve emailed codes this many seconds (sandbox clock) after sending; null: never (the default). */
  setAutoApprove(afterSeconds: number | null): void {
    if (afterSeconds !== null && (!Number.isInteger(afterSeconds) || afterSeconds < 0 || afterSeconds > 86_400)) {
      throw new OperatorError('afterSeconds must be a whole number from 0 to 86400, or null');
    }
    this.autoApproveAfterS = afterSeconds;
  }

  private clockView() {
    return { now: new Date(this.clock.now()).toISOString(), offsetMs: this.clock.offsetMs };
  }

  adminRoutes(): AdminRoute[] {
    const db = () => this.context.db;
    return [
      route({
        method: 'GET',
        url: '/v1/sandbox',
        summary: 'Sandbox only: the sandbox\u2019s state (clock, auto-approval, overrides, switches, emails, endpoints)',
        response: StatusSchema,
        handler: async () => ({
          sandbox: true as const,
          clock: this.clockView(),
          autoApproveAfterSeconds: this.autoApproveAfterS,
          dnsOverrides: this.dns.list().length,
          switches: this.switches.list().length,
          emails: this.mail.all().length,
          endpoints: [...this.endpoints].sort(),
        }),
      }),
      route({ method: 'GET', url: '/v1/sandbox/clock', summary: 'Sandbox only: the sandbox clock', response: ClockSchema, handler: async () => this.clockView() }),
      route({
        method: 'POST',
        url: '/v1/sandbox/clock/advance',
        summary: 'Sandbox only: move the sandbox clock forward (24-hour rule, code expiry, resend interval, lockouts)',
        body: ClockAdvanceBody,
        response: ClockSchema,
        handler: async ({ body }) => {
          let ms: number;
          try {
            ms = parseDuration(body.by);
            this.clock.advance(ms);
          } catch (err) {
            throw new OperatorError(`by: ${(err as Error).message}`);
          }
          this.ctx?.logger.info({ sandbox: true, advancedMs: ms, offsetMs: this.clock.offsetMs }, 'sandbox clock advanced');
          // Emails whose retry time the clock passed are due now: deliver them without waiting for the next poll.
          this.ctx?.wakeOutbox();
          return this.clockView();
        },
      }),
      route({ method: 'GET', url: '/v1/sandbox/dns', summary: 'Sandbox only: the DNS overrides', response: Type.Array(DnsOverrideSchema), handler: async () => this.dns.list() }),
      route({
        method: 'POST',
        url: '/v1/sandbox/dns',
        summary: 'Sandbox only: answer TXT or CAA lookups of a name with these records, or fail them (servfail, timeout, nxdomain); replaces that name\u2019s override of that type',
        status: 201,
        body: DnsOverrideBody,
        response: DnsOverrideSchema,
        handler: async ({ body }) => this.dns.set(body),
      }),
      route({
        method: 'DELETE',
        url: '/v1/sandbox/dns',
        summary: 'Sandbox only: clear the overrides of a name, or of every name without one; of one type with type, else of both',
        query: DnsClearQuery,
        response: CountSchema,
        handler: async ({ query }) => ({ count: this.dns.clear(query.name, query.type) }),
      }),
      route({
        method: 'GET',
        url: '/v1/sandbox/mail',
        summary: 'Sandbox only: the captured DCV emails, newest first, with their confirmation links and codes',
        query: MailQuery,
        response: Type.Array(MailSchema),
        handler: async ({ query }) => this.mail.views(db(), { to: query.to, order: query.order, limit: query.limit ?? 100 }),
      }),
      route({ method: 'GET', url: '/v1/sandbox/mail/:id', summary: 'Sandbox only: one captured email with its bodies', params: MailIdParams, response: MailDetailSchema, handler: async ({ params }) => this.mail.detail(db(), params.id) }),
      route({
        method: 'DELETE',
        url: '/v1/sandbox/mail/:id',
        summary: 'Sandbox only: delete one captured email',
        params: MailIdParams,
        response: CountSchema,
        handler: async ({ params }) => {
          await this.mail.delete(params.id);
          return { count: 1 };
        },
      }),
      route({ method: 'DELETE', url: '/v1/sandbox/mail', summary: 'Sandbox only: delete every captured email', response: CountSchema, handler: async () => ({ count: await this.mail.clear() }) }),
      route({ method: 'GET', url: '/v1/sandbox/switches', summary: 'Sandbox only: the fault switches still armed', response: Type.Array(SwitchSchema), handler: async () => this.switches.list() }),
      route({
        method: 'POST',
        url: '/v1/sandbox/switches',
        summary: 'Sandbox only: make the next count calls of an endpoint (of one login) answer errorCode, or wait latencyMs first',
        status: 201,
        body: SwitchBody,
        response: SwitchSchema,
        handler: async ({ body }) => this.switches.add(body),
      }),
      route({ method: 'DELETE', url: '/v1/sandbox/switches', summary: 'Sandbox only: disarm every switch', response: CountSchema, handler: async () => ({ count: this.switches.clear() }) }),
      route({ method: 'GET', url: '/v1/sandbox/auto-approve', summary: 'Sandbox only: the auto-approval delay (null: off)', response: AutoApproveSchema, handler: async () => ({ afterSeconds: this.autoApproveAfterS }) }),
      route({
        method: 'POST',
        url: '/v1/sandbox/auto-approve',
        summary: 'Sandbox only: approve every emailed code afterSeconds after it was sent (sandbox clock); null turns it off',
        body: AutoApproveSchema,
        response: AutoApproveSchema,
        handler: async ({ body }) => {
          this.setAutoApprove(body.afterSeconds);
          return { afterSeconds: this.autoApproveAfterS };
        },
      }),
    ];
  }
}


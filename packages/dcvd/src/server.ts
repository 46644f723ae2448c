/**
 * `dcvd serve`, in named phases: check the config (nothing opened yet) → build the services (store,
 * migrations, certificate, DNS, the use cases, the webhook worker) → listen (the API listeners, then
 * the outbox worker, whose links need the HTTPS address, then the internal API) → housekeeping
 * (timers). Each phase pushes what undoes it on one stack of closers; close() runs them newest
 * first, every one even when an earlier one failed, so a failed start closes exactly what it opened.
 *
 * The role (`--role`, issue 20) picks what the listen and housekeeping phases start: `all` everything;
 * `api` the API listeners only — the emails and webhooks its requests queue wait in the database for a
 * worker (woken through `ServerDeps.remoteWake` in a cluster, by NOTIFY on PostgreSQL, else found by the
 * worker's poll); `worker` (startWorker) delivery and the purges, with no API listener. The internal API
 * may run in any role.
 *
 * What only some roles use is imported where it is used (issue 20: memory of --processes, where every
 * process is a whole dcvd): the use cases and the API app only with an API listener, the internal API's
 * service and app (typebox and its schemas) only with --admin-listen, the database driver of the
 * configured database only (pg is loaded on PostgreSQL only, also by the wake-ups of src/store/wake.ts).
 */
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import type { HostPort, ServeConfig, ServeRole } from './config.ts';
import { DEFAULT_WEBHOOK_TIMEOUT_MS, mailDomain } from './config.ts';
import { cryptoRandom, systemClock, type Clock, type RandomSource } from './deps.ts';
import { createLogger, type Logger } from './log.ts';
import { openStore, temporaryStorageInMemory, unreadableTable, type Store } from './store/database.ts';
import { migrateToLatest, pendingMigrations } from './store/migrations.ts';
import { sql } from 'kysely';
import { Authenticator } from './accounts/auth.ts';
import { loadOrCreateCertificate } from './http/tls.ts';
import { LISTEN_BACKLOG, type ServerTimeouts } from './http/listener.ts';
import { listenForWakes, notifier } from './store/wake.ts';
import { systemResolvers, type DnsClient } from './dns/client.ts';
import { createUdpPool } from './dns/transport.ts';
import { DnssecGuard } from './dns/dnssec.ts';
import { DnsCache } from './dns/cache.ts';
import { DnsLookupStats } from './contacts/dns.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { OfferedAddressRegistry } from './registry/offered.ts';
import type { ResendDeps } from './api/resend-dcv-email.ts';
import type { OrderFlowDeps } from './api/order-flow.ts';
import { ProductRepository } from './orders/products.ts';
import { OrderRepository } from './orders/orders.ts';
import { TemplateRepository } from './orders/templates.ts';
import { loadValueKeys } from './orders/random-values.ts';
import { OutboxWorker, purgeSealedCodes } from './outbox/outbox.ts';
import { OutboxFlow } from './outbox/flow.ts';
import { ConfirmationService } from './orders/confirmation.ts';
import { queueDecisionWebhook, UnusableWebhookScan, WebhookWorker } from './webhooks/webhooks.ts';
import { daysUntilCutoff, emailMethodsPhase } from './orders/email-dcv-policy.ts';
import { checkDcvEmailConfig, defaultPublicUrl } from './outbox/settings.ts';
import { createContactGate, describeGate } from './mpic/corroborate.ts';
import type { Kysely } from 'kysely';
import type { Database } from './store/schema.ts';
import type { MailTransport } from './mail/transport.ts';
import type { AdminRoute } from './admin/http.ts';

/** What the server hands the sandbox once its parts exist. */
export interface SandboxContext {
  db: Kysely<Database>;
  logger: Logger;
  confirmation: ConfirmationService;
  /** The confirmation links' base (known once the HTTPS listener is up). */
  publicUrl(): string;
  /** Wakes the outbox worker (after the clock moved: emails whose retry time it passed are due now). */
  wakeOutbox(): void;
}

/** The hook points of `startServer` (ServerDeps.sandbox), which sandbox/ implements: the server names what it lets a mode change. */
export interface SandboxHooks {
  attach(ctx: SandboxContext): void;
  /** Every DNS client the server builds goes through this. */
  wrapDnsClient(client: DnsClient): DnsClient;
  wrapMailTransport(transport: MailTransport): MailTransport;
  /** Called first on each API listener's app, before the API and the pages. */
  extendApp(app: FastifyInstance): Promise<void>;
  /** Extra routes of the internal API. */
  adminRoutes(): AdminRoute[];
  /** After the listeners are up; stop() before the store closes. */
  start(): void;
  stop(): Promise<void>;
}

export interface RunningServer {
  https: AddressInfo;
  /** Prometheus metrics of this server (served on the admin listener). */
  metrics: Metrics;
  http?: AddressInfo;
  /** The internal JSON API's listener (with --admin-listen). */
  admin?: AddressInfo;
  /** The certificate's path (generated or the operator's). */
  certPath: string;
  /** The certificate, PEM (tests trust it). */
  cert: string;
  store: Store;
  logger: Logger;
  /** The DCV email outbox worker of this process; undefined with --role api (a worker elsewhere delivers). */
  outbox: OutboxWorker | undefined;
  /** The webhook worker (started in roles all and worker: accounts' own URLs have their own secrets); undefined with --role api. */
  webhooks: WebhookWorker | undefined;
  /** What `gate` said at start about MPIC (the CLI prints a non-compliance warning). */
  mpicWarning: string | undefined;
  /** Stops accepting connections, lets in-flight requests finish, closes the store. */
  close(): Promise<void>;
}

/** A `--role worker` process: delivery and the timers, no API listener (the internal API if configured). */
export interface RunningWorker extends Omit<RunningServer, 'https' | 'http' | 'outbox' | 'webhooks'> {
  outbox: OutboxWorker;
  webhooks: WebhookWorker;
  /** The base of the confirmation links the emails carry. */
  publicUrl: string;
}

export interface ServerDeps {
  clock?: Clock;
  logger?: Logger;
  random?: RandomSource;
  /** Slow-client bounds of every listener (tests use short ones); SERVER_TIMEOUTS when absent. */
  timeouts?: ServerTimeouts;
  /** Sandbox mode (`dcvd sandbox`, issue 17): wraps the DNS client and the mail transport, adds pages and internal API routes. */
  sandbox?: SandboxHooks;
  /**
   * With --role api: tells the worker elsewhere that this process queued an email or a webhook (a cluster's
   * primary, src/cluster.ts). Without it: a NOTIFY on PostgreSQL (src/store/wake.ts), else that worker's poll
   * (--outbox-poll-interval) finds them.
   */
  remoteWake?: { outbox(): void; webhooks(): void };
  /** The metrics of the API processes a cluster's primary serves with its own (MetricSources.peers). */
  metricsPeers?: () => Promise<object[]>;
}

/** What a listener failed to bind: one line naming the option and variable that move it (issue 13), no stack. */
const LISTEN_PROBLEMS: Record<string, string> = {
  EADDRINUSE: 'is already in use (another dcvd, or another server)',
  EACCES: 'needs more privileges (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'is not an address of this machine',
};

async function listen(
  app: FastifyInstance,
  host: string,
  port: number,
  option: '--listen' | '--http-listen' | '--admin-listen',
  onError: (err: Error) => void,
): Promise<AddressInfo> {
  try {
    await app.listen({ host, port, backlog: LISTEN_BACKLOG });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const problem = code === undefined ? undefined : LISTEN_PROBLEMS[code];
    if (problem === undefined) throw err;
    const env = `DCVD_${option.slice(2).toUpperCase().replace(/-/g, '_')}`;
    const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    throw new Error(`cannot listen on ${address}: it ${problem}; choose another address with ${option} <host:port> or ${env}=<host:port>`, { cause: err });
  }
  // After listen() nothing else listens for the server's errors: an accept()
  // failing with EMFILE/ENFILE would be thrown and end the process.
  app.server.on('error', onError);
  return app.server.address() as AddressInfo;
}

/**
 * The base of the confirmation links: --public-url, else the HTTPS listener — this process's (`https`), or
 * for a worker, which has none, the configured one the API processes use.
 */
export function linksBase(config: ServeConfig, https?: AddressInfo): string {
  if (config.dcvEmail.publicUrl !== undefined) return config.dcvEmail.publicUrl;
  if (https) return defaultPublicUrl(https);
  if (config.listen.port === 0) throw new Error('--role worker needs --public-url (or a --listen with a fixed port): its emails link to the API processes\u2019 confirmation pages');
  return defaultPublicUrl(listenAddress(config.listen));
}

function listenAddress({ host, port }: HostPort): AddressInfo {
  return { address: host, port, family: host.includes(':') ? 'IPv6' : 'IPv4' };
}

/** Phase 1: what can be judged without a store, a file or a socket; a bad option leaves nothing behind. */
async function checkConfig(config: ServeConfig, deps: ServerDeps, role: ServeRole): Promise<{ adminToken: string | undefined }> {
  if (deps.sandbox && role !== 'all') throw new Error('the sandbox runs every role in one process');
  if (role === 'worker') linksBase(config);
  const adminToken = config.adminListen ? (await import('./admin/http.ts')).checkAdminToken(config.adminToken) : undefined;
  checkDcvEmailConfig(config.dcvEmail);
  if (config.webhooks.url !== undefined && config.webhooks.secret === undefined) throw new Error('--webhook-url needs --webhook-secret or --webhook-secret-file');
  return { adminToken };
}

/** What each phase pushes to undo itself; close() runs them newest first, every one, and throws what failed. */
class Closers {
  private readonly stack: { what: string; close: () => unknown }[] = [];

  push(what: string, close: () => unknown): void {
    this.stack.push({ what, close });
  }

  async close(): Promise<void> {
    const failed: { what: string; err: unknown }[] = [];
    for (let closer = this.stack.pop(); closer !== undefined; closer = this.stack.pop()) {
      try {
        await closer.close();
      } catch (err) {
        failed.push({ what: closer.what, err });
      }
    }
    if (failed.length === 1) throw failed[0]!.err;
    if (failed.length > 1) throw new AggregateError(failed.map((f) => f.err), `closing failed: ${failed.map((f) => f.what).join(', ')}`);
  }
}

/**
 * The wake-up of a worker built after the services that call it: the DCV email outbox needs the HTTPS
 * listener's address for its links, so the use cases that queue emails exist first. Bound once, when
 * the worker exists; a wake before that has nothing to wake, and the worker's first look at start()
 * finds what was queued.
 */
class LateWake {
  private worker: { wake(): void } | undefined;

  bind(worker: { wake(): void }): void {
    if (this.worker !== undefined) throw new Error('a late wake is bound once');
    this.worker = worker;
  }

  readonly wake = (): void => this.worker?.wake();
}

interface Context {
  role: ServeRole;
  config: ServeConfig;
  deps: ServerDeps;
  clock: Clock;
  logger: Logger;
  closers: Closers;
}

/** The schema up to date and the certificate there (generated if need be): what every process of one server shares. */
async function migrateAndCertificate(config: ServeConfig, store: Store, logger: Logger) {
  const applied = await migrateToLatest(store.db, store.dialect);
  for (const m of applied) logger.info({ migration: m.migrationName, status: m.status }, 'migration');
  const tls = await loadOrCreateCertificate(config);
  if (tls.generated) logger.warn({ certPath: tls.certPath }, 'generated a self-signed certificate for localhost');
  return tls;
}

/** Migrations and the certificate once, before several processes open the store (src/cluster.ts): none of them then races to do it. */
export async function prepareShared(config: ServeConfig, logger: Logger): Promise<void> {
  const store = openStore({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, poolSize: 1 });
  try {
    await migrateAndCertificate(config, store, logger);
  } finally {
    await store.close();
  }
}

/** Phase 2: every service in dependency order, before any listener. */
async function buildServices({ role, config, deps, clock, logger, closers }: Context) {
  const store = openStore({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    poolSize: config.dbPoolSize,
    // SQLite's checkpoint thread runs in the process that delivers; a role api process has one beside it.
    backgroundCheckpoints: { onError: (message) => logger.warn({ err: message }, 'background WAL checkpoint failed; commits checkpoint by themselves'), elsewhere: role === 'api' },
  });
  closers.push('store', () => store.close());
  const tls = await migrateAndCertificate(config, store, logger);
  await temporaryStorageInMemory(store);

  const metrics = createMetrics(store.db, {
    clock,
    emailDcvDaysLeft: () => daysUntilCutoff(config.emailDcv, clock.now()),
    dnssec: () => ({ mode: dnssec.mode, resolvers: dnssec.probeStates() }),
    ...(deps.metricsPeers ? { peers: deps.metricsPeers } : {}),
  });
  const auth = new Authenticator(store.db, clock, config.auth, {
    onLockout: () => metrics.lockout(),
    onVerify: (kind) => metrics.passwordVerification(kind),
    ipv6Prefix: config.ipv6Prefix,
  });
  const registry = new OfferedAddressRegistry(store.db);
  // Shared, long-lived UDP sockets and a global cap on DNS queries in flight (issue 14).
  const dnsPool = createUdpPool({
    maxInFlight: config.dnsMaxInFlight,
    maxQueued: config.dnsMaxQueued,
    onEvent(event, detail) {
      metrics.dnsTransport(event);
      if (event === 'socket-error') logger.error({ dns: { event, detail } }, 'DNS socket failed; its queries fail, a new socket replaces it');
      else if (event === 'overloaded') logger.warn({ dns: { event, detail } }, 'DNS query not sent: too many in flight');
    },
  });
  closers.push('DNS sockets', () => dnsPool.close());
  // The DNSSEC policy (CONTRACT §3): in `require`, only resolvers that pass its probes are asked, and none passing stops the start.
  const dnssec = new DnssecGuard({
    config: config.dnssec,
    resolvers: config.dnsServers ?? systemResolvers(),
    timeoutMs: config.dnsTimeoutMs,
    attempts: config.dnsAttempts,
    pool: dnsPool,
    // Answers kept within their TTL, at most --dns-cache-max-ttl (issue 20); the sandbox's overrides sit in front of it.
    cache: new DnsCache({ maxTtlMs: config.dnsCacheMaxTtlMs, now: () => clock.now(), onEvent: (event) => metrics.dnsCache(event) }),
    log: logger,
    now: () => clock.now(),
  });
  closers.push('DNSSEC probes', () => dnssec.stop());
  await dnssec.start();
  // The sandbox's DNS overrides sit in front of every lookup (issue 17).
  const sandbox = deps.sandbox;
  const dns = sandbox?.wrapDnsClient(dnssec.client) ?? dnssec.client;
  const dnsStats = new DnsLookupStats((type, outcome) => metrics.dnsLookup(type, outcome));
  // DCV emails (CONTRACT §5): the resend use case queues, the outbox worker (started once the HTTPS address is known) delivers.
  const random = deps.random ?? cryptoRandom;
  const valueKeys = loadValueKeys(config.dataDir, config.dcvEmail.secretKeyFile);
  const outboxWake = new LateWake();
  const webhookWake = new LateWake();
  // MPIC of DNS-found contacts (issue 19): said at start whether it is on, off or missing.
  const contactGate = createContactGate(store.db, config.mpic, (outcome) => metrics.mpicCorroboration(outcome));
  const gateState = describeGate(contactGate);
  logger[gateState.level]({ mpic: { mode: config.mpic.mode, url: config.mpic.url ?? null, perspectives: config.mpic.perspectives } }, gateState.message);
  const resend: ResendDeps = {
    db: store.db,
    clock,
    orders: new OrderRepository(store.db, clock, random),
    templates: new TemplateRepository(store.db, clock),
    registry,
    settings: { keys: valueKeys, random, randomValueTtlMs: config.dcvEmail.randomValueTtlMs, resendIntervalMs: config.dcvEmail.resendIntervalMs, messageIdDomain: mailDomain(config.dcvEmail.mailFrom) },
    policy: config.emailDcv,
    contactGate,
    onQueued: outboxWake.wake,
  };
  // AutoApplyOrder, AutoUpdateDCV, GetMDCDomainDetails (CONTRACT §12): the resend's services, the products, the policy.
  const flow: OrderFlowDeps = { ...resend, products: new ProductRepository(store.db, clock), policy: config.emailDcv };
  // The use cases and their HTTP app only where there is an API listener (not in a cluster's primary, role worker).
  // Calls that may queue DCV emails wait while delivery is behind (issue 20, src/outbox/flow.ts).
  const useCases =
    role === 'worker'
      ? undefined
      : (await import('./api/index.ts')).createUseCases({
          getList: { clock, dns, dnsStats, registry, policy: config.emailDcv, dnssec },
          resend,
          flow,
          outboxFlow: new OutboxFlow({ db: store.db, clock, config: config.dcvEmail.outboxFlow, log: logger, onWait: (outcome, seconds) => metrics.outboxFlowWait(outcome, seconds) }),
        });
  // Bounded: a load balancer needs an answer, not a hanging probe.
  const readiness = async () => {
    let timer: NodeJS.Timeout | undefined;
    const check = (async () => {
      await sql`select 1`.execute(store.db);
      const dnssecProblem = dnssec.notReady();
      if (dnssecProblem) return dnssecProblem;
      const pending = await pendingMigrations(store.db, store.dialect);
      if (pending.length > 0) return `pending migrations: ${pending.join(', ')}`;
      // One cheap read of each hot table: a dropped or corrupt table makes the instance not ready (issue 14).
      return await unreadableTable(store.db, (table, err) => logger.warn({ err, table }, 'readiness: table unreadable'));
    })();
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('database did not answer within 2 s'), 2000);
    });
    try {
      return await Promise.race([check, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
  // Signed webhooks of the decisions: queued in the deciding transaction, delivered by their own worker
  // (always: accounts' own URLs are signed with their own secrets, even without a global one).
  const hooks = config.webhooks;
  const outboxPolicy = config.dcvEmail.outbox;
  const webhooks = new WebhookWorker({
    db: store.db, dialect: store.dialect, clock, policy: outboxPolicy, log: logger, secret: hooks.secret, previousSecret: hooks.previousSecret, keys: valueKeys,
    egress: {
      allowNetworks: hooks.allowNetworks ?? '',
      resolvers: config.dnsServers ?? systemResolvers(),
      dnsTimeoutMs: config.dnsTimeoutMs,
      dnsAttempts: config.dnsAttempts,
      // Within a third of the lease, so that a live worker always records its outcome before another may take the event.
      timeoutMs: Math.max(1000, Math.min(hooks.timeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS, Math.floor(outboxPolicy.leaseMs / 3))),
    },
    onAttempt: (outcome) => metrics.webhookAttempt(outcome),
    globalUrl: hooks.url,
    receiverConcurrency: hooks.receiverConcurrency,
    globalConcurrency: hooks.globalConcurrency,
  });
  closers.push('webhook worker', () => webhooks.stop());
  // Confirmation (CONTRACT §6): the pages on both listeners, one guessing counter in the database.
  const confirmation = new ConfirmationService({
    db: store.db,
    clock,
    keys: valueKeys,
    policy: config.codeGuessing,
    ipv6Prefix: config.ipv6Prefix,
    emailPolicy: config.emailDcv,
    brVersion: config.brVersion,
    async onDecided(trx, event) {
      // Nothing is queued when neither the account nor the server has a URL (the global URL needs its secret at start).
      await queueDecisionWebhook(trx, hooks, event, config.emailDcv);
    },
    afterDecided: webhookWake.wake,
  });
  const confirm = { confirmation, clock, formKey: valueKeys.form, publicUrl: config.dcvEmail.publicUrl, caName: config.dcvEmail.caName };
  // The confirmation links' base: --public-url, or the HTTPS listener once it is up.
  const links: { base?: string } = {};
  sandbox?.attach({ db: store.db, logger, confirmation, publicUrl: () => links.base ?? 'https://localhost', wakeOutbox: outboxWake.wake });
  // The internal JSON API's operations (CONTRACT §9), with --admin-listen only.
  const admin =
    config.adminListen &&
    new (await import('./admin/service.ts')).AdminService({
      db: store.db,
      clock,
      random,
      dcvEmail: () => ({ keys: valueKeys, random, randomValueTtlMs: config.dcvEmail.randomValueTtlMs, resendIntervalMs: 0, messageIdDomain: mailDomain(config.dcvEmail.mailFrom) }),
      onQueued: outboxWake.wake,
      emailPolicy: config.emailDcv,
      contactGate,
      log: logger,
    });
  const app = useCases && {
    logger,
    trustProxy: config.trustProxy,
    bodyLimit: config.bodyLimit,
    products: config.products,
    textWhoisNone: config.textWhoisNone,
    timeouts: deps.timeouts,
    auth,
    useCases,
    readiness,
    confirm,
    metrics,
    extend: sandbox && ((app: FastifyInstance) => sandbox.extendApp(app)),
  };
  return { store, tls, metrics, auth, registry, confirmation, webhooks, valueKeys, outboxWake, webhookWake, links, admin, app, gateState };
}

type Services = Awaited<ReturnType<typeof buildServices>>;

/**
 * Phase 3: the API listeners (not in role worker), the outbox worker (its links need the HTTPS address)
 * and the webhook worker (not in role api), then the internal API.
 */
async function listenAll({ role, config, deps, clock, logger, closers }: Context, services: Services, adminToken: string | undefined) {
  const { tls, metrics, links, app } = services;
  const apps: FastifyInstance[] = [];
  let outbox: OutboxWorker | undefined;
  // The stack runs newest first: the listeners close together (in-flight requests finish), then the
  // sandbox stops, then the outbox (a request in flight may still queue an email), all before the store.
  closers.push('outbox worker', () => outbox?.stop());
  closers.push('sandbox', () => deps.sandbox?.stop());
  closers.push('listeners', () => Promise.all(apps.map((a) => a.close())));
  const acceptFailed = (err: Error): void => {
    metrics.backgroundError('accept');
    logger.error({ err }, 'accepting a connection failed; the listener carries on');
  };
  let https: AddressInfo | undefined;
  let http: AddressInfo | undefined;
  if (app) {
    const { buildApp } = await import('./http/app.ts');
    const httpsApp = await buildApp({ ...app, tls });
    apps.push(httpsApp);
    https = await listen(httpsApp, config.listen.host, config.listen.port, '--listen', acceptFailed);
    if (config.httpListen) {
      const httpApp = await buildApp(app);
      apps.push(httpApp);
      http = await listen(httpApp, config.httpListen.host, config.httpListen.port, '--http-listen', acceptFailed);
    }
  }

  // The outbox worker: links point at --public-url, or at this listener (a worker: at the configured one).
  links.base = linksBase(config, https);
  if (role === 'api') {
    // Queued here, delivered by a worker elsewhere: woken if there is a way to reach it (a cluster's
    // primary; on PostgreSQL, workers anywhere through NOTIFY), else found by its poll.
    const remote = deps.remoteWake ?? (services.store.dialect === 'postgres' ? postgresNotifier(services.store, logger) : undefined);
    if (remote) {
      services.outboxWake.bind({ wake: () => remote.outbox() });
      services.webhookWake.bind({ wake: () => remote.webhooks() });
    }
  } else {
    outbox = await startOutbox({ config, deps, clock, logger }, services, links.base);
    services.webhooks.start();
    services.webhookWake.bind(services.webhooks);
    if (role === 'worker' && services.store.dialect === 'postgres' && config.databaseUrl) {
      // Woken by `--role api` processes anywhere (NOTIFY); closed before the outbox stops (the stack runs newest first).
      const wakes = listenForWakes(config.databaseUrl, {
        wake: { outbox: () => outbox?.wake(), webhooks: () => services.webhooks.wake() },
        onError: (err) => logger.warn({ err: errorText(err) }, 'PostgreSQL LISTEN connection lost; the worker polls until it is back'),
      });
      closers.push('LISTEN connection', () => wakes.close());
      await wakes.ready;
    }
  }
  const admin = await listenAdmin({ config, deps, clock, logger, apps }, services, adminToken, acceptFailed);
  return { https, http, admin, outbox };
}

/** `--role api` on PostgreSQL: each queued email or webhook wakes the workers listening (src/store/wake.ts). */
function postgresNotifier(store: Store, logger: Logger): { outbox(): void; webhooks(): void } {
  return notifier(
    (channel) => sql`select pg_notify(${channel}, '')`.execute(store.db),
    (err, queue) => logger.warn({ err: errorText(err), queue }, 'PostgreSQL NOTIFY failed; the workers find the work by their poll'),
  );
}

/** A driver error's message only: nothing of the connection (the URL may carry a password). */
function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function startOutbox({ config, deps, clock, logger }: Pick<Context, 'config' | 'deps' | 'clock' | 'logger'>, services: Services, publicUrl: string): Promise<OutboxWorker> {
  const { store, valueKeys } = services;
  // nodemailer is loaded by the processes that deliver only.
  const { createMailTransport } = await import('./outbox/delivery.ts');
  const transport = createMailTransport(config.dcvEmail, config.dataDir, logger);
  const outbox = new OutboxWorker({
    db: store.db,
    dialect: store.dialect,
    clock,
    transport: deps.sandbox?.wrapMailTransport(transport) ?? transport,
    keys: valueKeys,
    mailFrom: config.dcvEmail.mailFrom,
    publicUrl,
    caName: config.dcvEmail.caName,
    policy: config.dcvEmail.outbox,
    emailPolicy: config.emailDcv,
    log: logger,
  });
  outbox.start();
  services.outboxWake.bind(outbox);
  return outbox;
}

/** The internal JSON API (CONTRACT §9), last: the operator's operations, the metrics, the OpenAPI document. */
async function listenAdmin(
  { config, deps, clock, logger, apps }: Pick<Context, 'config' | 'deps' | 'clock' | 'logger'> & { apps: FastifyInstance[] },
  services: Services,
  adminToken: string | undefined,
  acceptFailed: (err: Error) => void,
): Promise<AddressInfo | undefined> {
  const { tls, metrics } = services;
  let admin: AddressInfo | undefined;
  if (config.adminListen && services.admin && adminToken !== undefined) {
    const { buildAdminApp } = await import('./admin/http.ts');
    const adminApp = await buildAdminApp({
      admin: services.admin,
      token: adminToken,
      logger,
      metrics,
      clock,
      tls,
      bodyLimit: config.bodyLimit,
      timeouts: deps.timeouts,
      ipv6Prefix: config.ipv6Prefix,
      extraRoutes: deps.sandbox?.adminRoutes(),
    });
    apps.push(adminApp);
    admin = await listen(adminApp, config.adminListen.host, config.adminListen.port, '--admin-listen', acceptFailed);
  }
  return admin;
}

/** Phase 4: the timers — process stats, then (not in role api) the email-method sunset's webhooks, the purges — and the sandbox's own. */
function housekeeping({ role, config, deps, clock, logger, closers }: Context, services: Services): void {
  const { store, metrics, auth, registry, confirmation, webhooks } = services;
  // Process health for operators and the soak run: memory and event-loop delay, every `statsIntervalMs`.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  // Every timer body runs in guarded(): an error (EMFILE/ENFILE reading /proc, …)
  // is logged and counted, and the timer carries on; it never reaches the process.
  const guarded = (task: string, body: () => void) => () => {
    try {
      body();
    } catch (err) {
      metrics.backgroundError(task);
      try {
        logger.error({ err, task }, 'background task failed; it runs again on its next tick');
      } catch {
        // Even the log can fail (a full disk): nothing else to do.
      }
    }
  };
  const stats = setInterval(guarded('stats', () => {
    const m = process.memoryUsage();
    logger.info(
      {
        rssMiB: Math.round(m.rss / 1048576),
        heapUsedMiB: Math.round(m.heapUsed / 1048576),
        eventLoopDelayMs: { p50: loopDelay.percentile(50) / 1e6, p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
      },
      'process stats',
    );
    loopDelay.reset();
  }), config.statsIntervalMs);
  stats.unref();
  closers.push('stats timer', () => {
    clearInterval(stats);
    loopDelay.disable();
  });
  // The shared work — webhooks of the sunset, the purges — belongs to the processes that deliver.
  if (role === 'api') return;

  // The email-method sunset (BR 3.2.2.4.4, .13, .14): a warning while the methods are discouraged; from the
  // cut-off, every validated order's ordering system is told by webhook that its validation is no longer usable.
  const phase = emailMethodsPhase(config.emailDcv, clock.now());
  if (phase === 'discouraged') {
    logger.warn(
      { emailDcvCutoff: new Date(config.emailDcv.cutoff).toISOString(), daysLeft: daysUntilCutoff(config.emailDcv, clock.now()) },
      'the email DCV methods SHOULD NOT be used since 2026-03-15 (BR 3.2.2.4.4, 3.2.2.4.13, 3.2.2.4.14); they are refused from the cut-off',
    );
  } else if (phase === 'refused') {
    logger.warn({ emailDcvCutoff: new Date(config.emailDcv.cutoff).toISOString() }, 'email DCV cut-off passed: no DCV email is sent or confirmed, prior validations are reported unusable');
  }
  const unusableScan = new UnusableWebhookScan(store.db, store.dialect, config.webhooks, config.emailDcv);
  const unusableHooks = () => {
    unusableScan
      .run(clock.now())
      .then((n) => {
        if (n > 0) {
          logger.info({ queued: n }, 'dcv.unusable webhooks queued (email DCV cut-off passed)');
          webhooks.wake();
        }
      })
      .catch((err: unknown) => logger.error({ err }, 'queueing dcv.unusable webhooks failed'));
  };
  unusableHooks();

  // Background purges: per-IP counters whose window is over, registry rows older than 24 hours.
  const purge = setInterval(guarded('purge', () => {
    auth.purgeIpFailures().catch((err: unknown) => logger.error({ err }, 'purging per-IP failure counters failed'));
    registry
      .purge(clock.now())
      .then((n) => n > 0 && logger.info({ purged: n }, 'expired 24-hour registry rows purged'))
      .catch((err: unknown) => logger.error({ err }, 'purging the 24-hour registry failed'));
    confirmation.purgeFailures().catch((err: unknown) => logger.error({ err }, 'purging validation-code failure counters failed'));
    purgeSealedCodes(store.db, clock.now()).catch((err: unknown) => logger.error({ err }, 'erasing sealed codes of dead values failed'));
    unusableHooks();
  }), 60_000);
  purge.unref();
  closers.push('purge timer', () => clearInterval(purge));
  deps.sandbox?.start();
}

/** The four phases for one role; a failed start closes what it opened and throws the start's error. */
async function start(config: ServeConfig, deps: ServerDeps, role: ServeRole) {
  const { adminToken } = await checkConfig(config, deps, role);
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? createLogger(config.logLevel);
  const context: Context = { role, config, deps, clock, logger, closers: new Closers() };
  try {
    const services = await buildServices(context);
    const listeners = await listenAll(context, services, adminToken);
    housekeeping(context, services);
    const { store, tls, metrics, gateState } = services;
    logger.info(
      { role, https: listeners.https, http: listeners.http, admin: listeners.admin, database: store.location, certPath: tls.certPath },
      role === 'worker' ? 'dcvd worker is delivering' : 'dcvd is listening',
    );
    let closing: Promise<void> | undefined;
    const common = {
      metrics,
      certPath: tls.certPath,
      cert: tls.cert,
      store,
      logger,
      mpicWarning: gateState.level === 'warn' ? gateState.message : undefined,
      close() {
        closing ??= context.closers.close();
        return closing;
      },
      ...(listeners.admin ? { admin: listeners.admin } : {}),
    };
    return { common, listeners, services };
  } catch (err) {
    // A failed start closes what it opened; the start's error is the one the operator needs.
    await context.closers.close().catch((closeErr: unknown) => logger.error({ err: closeErr }, 'closing after a failed start failed'));
    throw err;
  }
}

/** `dcvd serve` in role all (the default) or api: the API listeners, and in role all delivery and the timers too. */
export async function startServer(config: ServeConfig, deps: ServerDeps = {}): Promise<RunningServer> {
  if (config.role === 'worker') throw new Error('role worker has no API listener: use startWorker()');
  const { common, listeners, services } = await start(config, deps, config.role);
  const running: RunningServer = { ...common, https: listeners.https!, outbox: listeners.outbox, webhooks: listeners.outbox ? services.webhooks : undefined };
  if (listeners.http) running.http = listeners.http;
  return running;
}

/** `dcvd serve --role worker`: DCV email and webhook delivery and the purges, beside API processes on the same database. */
export async function startWorker(config: ServeConfig, deps: ServerDeps = {}): Promise<RunningWorker> {
  const { common, listeners, services } = await start(config, deps, 'worker');
  return { ...common, outbox: listeners.outbox!, webhooks: services.webhooks, publicUrl: services.links.base! };
}

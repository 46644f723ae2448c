/** `dcvd serve`: store, migrations, certificate, listeners, background work, graceful shutdown. */
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import type { ServeConfig } from './config.ts';
import { mailDomain } from './config.ts';
import { cryptoRandom, systemClock, type Clock, type RandomSource } from './deps.ts';
import { createLogger, type Logger } from './log.ts';
import { openStore, unreadableTable, type Store } from './store/database.ts';
import { migrateToLatest, pendingMigrations } from './store/migrations.ts';
import { sql } from 'kysely';
import { Authenticator } from './accounts/auth.ts';
import { loadOrCreateCertificate } from './http/tls.ts';
import { buildApp, type ServerTimeouts } from './http/app.ts';
import { createUseCases } from './api/index.ts';
import { createDnsClient, systemResolvers } from './dns/client.ts';
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
import { OutboxWorker, purgeSealedCodes } from './mail/outbox.ts';
import { ConfirmationService } from './orders/confirmation.ts';
import { queueDecisionWebhook, queueUnusableWebhooks, WebhookWorker } from './orders/webhooks.ts';
import { daysUntilCutoff, emailMethodsPhase } from './api/policy.ts';
import { checkDcvEmailConfig, createMailTransport, defaultPublicUrl } from './mail/delivery.ts';
import { AdminService } from './admin/service.ts';
import { buildAdminApp, checkAdminToken } from './admin/http.ts';
import { createContactGate, describeGate } from './mpic/corroborate.ts';
import type { SandboxHooks } from './sandbox/index.ts';

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
  /** The DCV email outbox worker of this process. */
  outbox: OutboxWorker;
  /** The webhook worker (always started: accounts' own URLs have their own secrets). */
  webhooks: WebhookWorker | undefined;
  /** What `gate` said at start about MPIC (the CLI prints a non-compliance warning). */
  mpicWarning: string | undefined;
  /** Stops accepting connections, lets in-flight requests finish, closes the store. */
  close(): Promise<void>;
}

export interface ServerDeps {
  clock?: Clock;
  logger?: Logger;
  random?: RandomSource;
  /** Slow-client bounds of every listener (tests use short ones); SERVER_TIMEOUTS when absent. */
  timeouts?: ServerTimeouts;
  /** Sandbox mode (`dcvd sandbox`, issue 17): wraps the DNS client and the mail transport, adds pages and internal API routes. */
  sandbox?: SandboxHooks;
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
    await app.listen({ host, port });
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

export async function startServer(config: ServeConfig, deps: ServerDeps = {}): Promise<RunningServer> {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? createLogger(config.logLevel);
  const store = openStore({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    poolSize: config.dbPoolSize,
    backgroundCheckpoints: { onError: (message) => logger.warn({ err: message }, 'background WAL checkpoint failed; commits checkpoint by themselves') },
  });
  const apps: FastifyInstance[] = [];
  let outbox: OutboxWorker | undefined;
  let webhooks: WebhookWorker | undefined;
  let stopDnssec = () => {};
  try {
    const adminToken = config.adminListen ? checkAdminToken(config.adminToken) : undefined;
    const applied = await migrateToLatest(store.db, store.dialect);
    for (const m of applied) logger.info({ migration: m.migrationName, status: m.status }, 'migration');
    const tls = await loadOrCreateCertificate(config);
    if (tls.generated) logger.warn({ certPath: tls.certPath }, 'generated a self-signed certificate for localhost');

    const metrics = createMetrics(store.db, {
      emailDcvDaysLeft: () => daysUntilCutoff(config.emailDcv, clock.now()),
      dnssec: () => ({ mode: dnssec.mode, resolvers: dnssec.probeStates() }),
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
    await dnssec.start();
    stopDnssec = () => dnssec.stop();
    // The sandbox's DNS overrides sit in front of every lookup (issue 17).
    const sandbox = deps.sandbox;
    const dns = sandbox?.wrapDnsClient(dnssec.client) ?? dnssec.client;
    const dnsStats = new DnsLookupStats((type, outcome) => metrics.dnsLookup(type, outcome));
    // DCV emails (CONTRACT §5): the resend use case queues, the outbox worker (started below) delivers.
    checkDcvEmailConfig(config.dcvEmail);
    const random = deps.random ?? cryptoRandom;
    const valueKeys = loadValueKeys(config.dataDir, config.dcvEmail.secretKeyFile);
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
      onQueued: () => outbox?.wake(),
    };
    // AutoApplyOrder, AutoUpdateDCV, GetMDCDomainDetails (CONTRACT §12): the resend's services, the products, the policy.
    const flow: OrderFlowDeps = { ...resend, products: new ProductRepository(store.db, clock), policy: config.emailDcv };
    const useCases = createUseCases({ getList: { clock, dns, dnsStats, registry, policy: config.emailDcv, dnssec }, resend, flow });
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
    // Confirmation (CONTRACT §6): the pages on both listeners, one guessing counter in the database.
    // Signed webhooks of the decisions: queued in the deciding transaction, delivered by their own worker.
    const hooks = config.webhooks;
    if (hooks.url !== undefined && hooks.secret === undefined) throw new Error('--webhook-url needs --webhook-secret or --webhook-secret-file');
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
      afterDecided: () => webhooks?.wake(),
    });
    const confirm = { confirmation, formKey: valueKeys.form, publicUrl: config.dcvEmail.publicUrl, caName: config.dcvEmail.caName };
    let linkBase: string | undefined;
    sandbox?.attach({ db: store.db, logger, confirmation, publicUrl: () => linkBase ?? 'https://localhost' });
    const acceptFailed = (err: Error): void => {
      metrics.backgroundError('accept');
      logger.error({ err }, 'accepting a connection failed; the listener carries on');
    };
    const common = {
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

    const httpsApp = await buildApp({ ...common, tls });
    apps.push(httpsApp);
    const httpsAddress = await listen(httpsApp, config.listen.host, config.listen.port, '--listen', acceptFailed);
    let httpAddress: AddressInfo | undefined;
    if (config.httpListen) {
      const httpApp = await buildApp(common);
      apps.push(httpApp);
      httpAddress = await listen(httpApp, config.httpListen.host, config.httpListen.port, '--http-listen', acceptFailed);
    }

    // The outbox worker: links point at --public-url, or at this listener.
    linkBase = config.dcvEmail.publicUrl ?? defaultPublicUrl(httpsAddress);
    const transport = createMailTransport(config.dcvEmail, config.dataDir, logger);
    outbox = new OutboxWorker({
      db: store.db,
      dialect: store.dialect,
      clock,
      transport: sandbox?.wrapMailTransport(transport) ?? transport,
      keys: valueKeys,
      mailFrom: config.dcvEmail.mailFrom,
      publicUrl: linkBase,
      caName: config.dcvEmail.caName,
      policy: config.dcvEmail.outbox,
      emailPolicy: config.emailDcv,
      log: logger,
    });
    outbox.start();
    const worker = outbox;
    // Always: accounts' own URLs are signed with their own secrets, even without a global one.
    webhooks = new WebhookWorker({ db: store.db, dialect: store.dialect, clock, policy: config.dcvEmail.outbox, log: logger, secret: hooks.secret, previousSecret: hooks.previousSecret, keys: valueKeys });
    webhooks.start();
    const hookWorker = webhooks;

    // The internal JSON API (CONTRACT §9), last: the operator's operations, the metrics, the OpenAPI document.
    let adminAddress: AddressInfo | undefined;
    if (config.adminListen && adminToken !== undefined) {
      const admin = new AdminService({
        db: store.db,
        clock,
        random,
        dcvEmail: () => ({ keys: valueKeys, random, randomValueTtlMs: config.dcvEmail.randomValueTtlMs, resendIntervalMs: 0, messageIdDomain: mailDomain(config.dcvEmail.mailFrom) }),
        onQueued: () => worker.wake(),
        emailPolicy: config.emailDcv,
        contactGate,
        log: logger,
      });
      const adminApp = await buildAdminApp({
        admin,
        token: adminToken,
        logger,
        metrics,
        clock,
        tls,
        bodyLimit: config.bodyLimit,
        timeouts: deps.timeouts,
        ipv6Prefix: config.ipv6Prefix,
        extraRoutes: sandbox?.adminRoutes(),
      });
      apps.push(adminApp);
      adminAddress = await listen(adminApp, config.adminListen.host, config.adminListen.port, '--admin-listen', acceptFailed);
    }

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
    const unusableHooks = () => {
      queueUnusableWebhooks(store.db, store.dialect, hooks, config.emailDcv, clock.now())
        .then((n) => {
          if (n > 0) {
            logger.info({ queued: n }, 'dcv.unusable webhooks queued (email DCV cut-off passed)');
            hookWorker?.wake();
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
    sandbox?.start();

    logger.info(
      { https: httpsAddress, http: httpAddress, admin: adminAddress, database: store.location, certPath: tls.certPath },
      'dcvd is listening',
    );
    let closing: Promise<void> | undefined;
    const running: RunningServer = {
      https: httpsAddress,
      metrics,
      certPath: tls.certPath,
      cert: tls.cert,
      store,
      logger,
      outbox: worker,
      webhooks: hookWorker,
      mpicWarning: gateState.level === 'warn' ? gateState.message : undefined,
      close() {
        closing ??= (async () => {
          stopDnssec();
          clearInterval(purge);
          clearInterval(stats);
          loopDelay.disable();
          await Promise.all(apps.map((a) => a.close()));
          await sandbox?.stop();
          // After the listeners (a request in flight may still queue an email), before the store.
          await worker.stop();
          await hookWorker?.stop();
          dnsPool.close();
          await store.close();
        })();
        return closing;
      },
    };
    if (httpAddress) running.http = httpAddress;
    if (adminAddress) running.admin = adminAddress;
    return running;
  } catch (err) {
    stopDnssec();
    await Promise.allSettled(apps.map((a) => a.close()));
    await outbox?.stop();
    await webhooks?.stop();
    await store.close();
    throw err;
  }
}

/** `dcvd serve`: the API server (CONTRACT §9). */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { DEFAULT_WEBHOOK_TIMEOUT_MS, defaultServeConfig, formatDuration, formatHostPort, formatSize, parseCount, parseDuration, parseHostPort, parseSize, SERVE_ROLES, splitsDelivery, type ServeConfig, type ServeRole } from '../config.ts';
import { checkWebhookUrl } from '../accounts/webhook-url.ts';
import { normalizeNetworks } from '../accounts/networks.ts';
import { parseResolvers, type Resolver } from '../dns/resolvers.ts';
import { DNSSEC_MODES, type DnssecMode } from '../dns/dnssec-config.ts';
import { emailDcvBlocklistOption, emailDcvCutoffOption, emailPolicyFrom, opt, parseBrVersion, parseProducts, repeatable, withStoreOptions, type StoreFlags } from './options.ts';
import { dcvEmailConfigFrom, withDcvEmailOptions, type DcvEmailFlags } from './orders.ts';
import { mpicConfigFrom, withMpicOptions, type MpicFlags } from './mpic.ts';

interface ServeFlags extends StoreFlags {
  role: ServeRole;
  processes: number;
  deliveryProcess?: boolean;
  apiNice: number;
  listen: string;
  httpListen?: string;
  adminListen?: string;
  adminToken?: string;
  trustProxy?: string[];
  tlsCert?: string;
  tlsKey?: string;
  bodyLimit: number;
  products: number[];
  textWhoisNone?: boolean;
  dbPoolSize: number;
  statsInterval: number;
  lockoutFailures: number;
  lockoutDuration: number;
  ipFailureLimit: number;
  ipFailureWindow: number;
  ipBlockDuration: number;
  credentialCacheTtl: number;
  dnsServers?: Resolver[];
  dnsTimeout: number;
  dnsAttempts: number;
  dnsMaxInFlight: number;
  dnsMaxQueued: number;
  dnsCacheMaxTtl: number;
  emailDcvBlocklist?: string[];
  emailDcvCutoff: number;
  brVersion: string;
  dnssec: DnssecMode;
  dnssecProbeSecure: string;
  dnssecProbeBogus: string;
  dnssecProbeInterval: number;
  codeFailureLimit: number;
  codeFailureWindow: number;
  ipv6Prefix: number;
  webhookUrl?: string;
  webhookSecret?: string;
  webhookSecretFile?: string;
  webhookAllowNetworks?: string[];
  webhookTimeout: number;
  webhookReceiverConcurrency?: number;
  webhookGlobalConcurrency?: number;
  logLevel: string;
}

/** The global URL's signing key: --webhook-secret (DCVD_WEBHOOK_SECRET) or the file's (with the previous key on a second line while rotating), at least 16 characters. */
async function webhookSecrets(flags: ServeFlags): Promise<{ secret?: string; previousSecret?: string }> {
  if (flags.webhookSecret !== undefined && flags.webhookSecretFile !== undefined) throw new Error('give --webhook-secret or --webhook-secret-file, not both');
  if (flags.webhookSecretFile !== undefined) {
    const { parseWebhookSecretFile } = await import('../webhooks/webhooks.ts');
    return parseWebhookSecretFile(readFileSync(flags.webhookSecretFile, 'utf8'));
  }
  const secret = flags.webhookSecret;
  if (secret !== undefined && secret.length < 16) throw new Error('the webhook secret must be at least 16 characters');
  return secret === undefined ? {} : { secret };
}

export function serveCommand(): Command {
  return withMpicOptions(withDcvEmailOptions(serveOptions()));
}

function serveOptions(): Command {
  const defaults = defaultServeConfig();
  const d = defaults.auth;
  const duration = (ms: number) => [ms, formatDuration(ms)] as const;
  return withStoreOptions(
    new Command('serve')
      .addOption(
        opt('--role <role>', 'all (API and delivery), api (listeners only; a worker elsewhere delivers) or worker (DCV email and webhook delivery and the purges, no API listener)')
          .choices([...SERVE_ROLES])
          .default(defaults.role),
      )
      .addOption(opt('--processes <n>', 'API processes sharing --listen (node:cluster); above 1 this process delivers and serves --admin-listen (role all only)', (v) => parseCount(v, 1)).default(defaults.processes))
      .addOption(opt('--delivery-process', 'deliver in a process of its own with any --processes, 1 included: the API runs in child processes, this one delivers and serves --admin-listen (role all only)'))
      .addOption(opt('--api-nice <n>', 'with --processes or --delivery-process: niceness added to the API processes so delivery keeps up under load (0-19; 0 = none)', (v) => {
          const n = parseCount(v, 0);
          if (n > 19) throw new Error('--api-nice is at most 19');
          return n;
        }).default(defaults.apiNice))
      .addOption(opt('--listen <host:port>', 'HTTPS listener').default(formatHostPort(defaults.listen)))
      .addOption(opt('--http-listen <host:port>', 'plain-HTTP listener (API calls answer -1 unless from a trusted proxy); off by default'))
      .addOption(opt('--admin-listen <host:port>', 'internal JSON API and /metrics (HTTPS, same certificate, bearer token); off by default'))
      .addOption(opt('--admin-token <token>', 'bearer token of --admin-listen, at least 32 characters (better: DCVD_ADMIN_TOKEN)'))
      .addOption(repeatable('--trust-proxy <cidr>', 'proxies whose X-Forwarded-For/-Proto are believed; comma-separated or repeated'))
      .addOption(opt('--tls-cert <file>', 'certificate (PEM); default: a self-signed one for localhost in the data directory'))
      .addOption(opt('--tls-key <file>', 'private key (PEM) of --tls-cert')),
  )
    .addOption(opt('--stats-interval <duration>', 'how often to log memory and event-loop delay (at least 1s)', (v) => {
        const ms = parseDuration(v);
        if (ms < 1000) throw new Error('the stats interval must be at least 1s');
        return ms;
      }).default(...duration(defaults.statsIntervalMs)))
    .addOption(opt('--db-pool-size <n>', 'PostgreSQL connections of this instance', (v) => parseCount(v, 1)).default(defaults.dbPoolSize))
    .addOption(opt('--body-limit <size>', 'largest request body; larger ones get -14 (HTTP 200, connection closed)', parseSize).default(defaults.bodyLimit, formatSize(defaults.bodyLimit)))
    .addOption(
      opt('--products <code,…>', 'product codes GetDCVEmailAddressList accepts in its optional product parameter (others: -4)', parseProducts).default(
        defaults.products,
        defaults.products.join(','),
      ),
    )
    .addOption(opt('--text-whois-none', 'text format: add the line "whois_email<TAB>none" after domain_name, for clients of the historic format')) 
    .addOption(opt('--lockout-failures <n>', 'consecutive failures that lock an account', (v) => parseCount(v, 1)).default(d.lockoutFailures))
    .addOption(opt('--lockout-duration <duration>', 'how long a lockout lasts', parseDuration).default(...duration(d.lockoutMs)))
    .addOption(opt('--ip-failure-limit <n>', 'failures from one source IP that block it', (v) => parseCount(v, 1)).default(d.ipFailures))
    .addOption(opt('--ip-failure-window <duration>', 'window in which those failures count', parseDuration).default(...duration(d.ipWindowMs)))
    .addOption(opt('--ip-block-duration <duration>', 'how long a source IP stays blocked', parseDuration).default(...duration(d.ipBlockMs)))
    .addOption(
      opt('--ipv6-prefix <bits>', 'per-IP limits (API logins, validation codes, admin tokens) count an IPv6 source by its network of this many bits', (v) => {
        const bits = parseCount(v, 1);
        if (bits > 128) throw new Error('the IPv6 prefix is at most 128 bits');
        return bits;
      }).default(defaults.ipv6Prefix),
    )
    .addOption(opt('--credential-cache-ttl <duration>', 'how long a verified password is remembered in memory (0 = never)', parseDuration).default(...duration(d.credentialCacheMs)))
    .addOption(opt('--dns-servers <host:port,…>', 'resolvers for contact lookups (default: the system\u2019s)', (v) => parseResolvers(v)))
    .addOption(opt('--dns-timeout <duration>', 'per-attempt DNS timeout', parseDuration).default(...duration(defaults.dnsTimeoutMs)))
    .addOption(opt('--dns-attempts <n>', 'attempts per DNS lookup (only timeouts are retried)', (v) => parseCount(v, 1)).default(defaults.dnsAttempts))
    .addOption(opt('--dns-max-in-flight <n>', 'DNS queries in flight at once, over all requests', (v) => parseCount(v, 1)).default(defaults.dnsMaxInFlight))
    .addOption(opt('--dns-max-queued <n>', 'DNS queries that may wait for a slot; beyond that a lookup fails', (v) => parseCount(v, 0)).default(defaults.dnsMaxQueued))
    .addOption(opt('--dns-cache-max-ttl <duration>', 'longest a DNS answer is cached, within its own TTL (0 = no cache)', parseDuration).default(...duration(defaults.dnsCacheMaxTtlMs)))
    .addOption(emailDcvBlocklistOption())
    .addOption(emailDcvCutoffOption())
    .addOption(opt('--dnssec <mode>', 'DNSSEC policy of contact lookups: require (a CA: only resolvers proven to validate), log (warn; works offline) or off').choices([...DNSSEC_MODES]).default(defaults.dnssec.mode))
    .addOption(opt('--dnssec-probe-secure <name>', 'a name in a signed zone that a validating resolver answers with the AD bit').default(defaults.dnssec.probeSecure))
    .addOption(opt('--dnssec-probe-bogus <name>', 'a name in a zone with broken signatures that a validating resolver answers SERVFAIL').default(defaults.dnssec.probeBogus))
    .addOption(opt('--dnssec-probe-interval <duration>', 'how often --dnssec require probes the resolvers again (at least 1s)', (v) => {
        const ms = parseDuration(v);
        if (ms < 1000) throw new Error('the DNSSEC probe interval must be at least 1s');
        return ms;
      }).default(...duration(defaults.dnssec.probeIntervalMs)))
    .addOption(opt('--br-version <version>', 'Baseline Requirements version the evidence names (as your CPS says)', parseBrVersion).default(defaults.brVersion))
    .addOption(
      opt('--code-failure-limit <n>', 'unknown validation codes from one source IP that block it on the confirmation pages', (v) => parseCount(v, 1)).default(
        defaults.codeGuessing.failureLimit,
      ),
    )
    .addOption(
      opt('--code-failure-window <duration>', 'window those codes count in, and how long the block lasts', parseDuration).default(...duration(defaults.codeGuessing.windowMs)),
    )
    .addOption(opt('--webhook-url <url>', 'POST validated/declined events here (accounts may have their own); off by default', (v) => checkWebhookUrl(v)))
    .addOption(opt('--webhook-secret <secret>', 'HMAC-SHA256 key of the global --webhook-url\u2019s signatures only; accounts\u2019 own URLs have their own secrets (better: DCVD_WEBHOOK_SECRET or --webhook-secret-file)'))
    .addOption(opt('--webhook-secret-file <file>', 'read the global webhook signing key from this file; while rotating, the previous key on a second line signs too'))
    .addOption(
      repeatable('--webhook-allow-networks <cidr>', 'networks accounts\u2019 own webhook URLs may reach besides Internet addresses, over http:// too; repeat or comma-separate (default: none, so no loopback, private or link-local target)', { keepEmpty: true }),
    )
    .addOption(opt('--webhook-timeout <duration>', 'how long one webhook POST may take, from its lookup to the answer\u2019s status (at most a third of --outbox-lease)', parseDuration).default(...duration(DEFAULT_WEBHOOK_TIMEOUT_MS)))
    .addOption(
      opt('--webhook-receiver-concurrency <n>', 'webhook POSTs one account\u2019s own URL may have in flight at once (the global URL: --webhook-global-concurrency), over every instance sharing the database; its further events wait unclaimed (default: a quarter of --outbox-concurrency, at least 1)', (v) => parseCount(v, 1)),
    )
    .addOption(
      opt('--webhook-global-concurrency <n>', 'webhook POSTs the global --webhook-url may have in flight at once, over every instance sharing the database; those beyond --webhook-receiver-concurrency get slots only after every account\u2019s due events (default: --outbox-concurrency less --webhook-receiver-concurrency, at least the latter)', (v) => parseCount(v, 1)),
    )
    .addOption(opt('--log-level <level>', 'fatal, error, warn, info, debug or trace').default(defaults.logLevel))
    .action(async (flags: ServeFlags) => {
      const config: ServeConfig = defaultServeConfig({
        role: flags.role,
        processes: flags.processes,
        deliveryProcess: flags.deliveryProcess === true,
        apiNice: flags.apiNice,
        listen: parseHostPort(flags.listen),
        httpListen: flags.httpListen ? parseHostPort(flags.httpListen) : undefined,
        adminListen: flags.adminListen ? parseHostPort(flags.adminListen) : undefined,
        adminToken: flags.adminToken,
        trustProxy: flags.trustProxy ?? [],
        tlsCert: flags.tlsCert,
        tlsKey: flags.tlsKey,
        dataDir: resolve(flags.dataDir),
        databaseUrl: flags.databaseUrl,
        bodyLimit: flags.bodyLimit,
        products: flags.products,
        textWhoisNone: flags.textWhoisNone === true,
        dbPoolSize: flags.dbPoolSize,
        statsIntervalMs: flags.statsInterval,
        auth: {
          ...d,
          lockoutFailures: flags.lockoutFailures,
          lockoutMs: flags.lockoutDuration,
          ipFailures: flags.ipFailureLimit,
          ipWindowMs: flags.ipFailureWindow,
          ipBlockMs: flags.ipBlockDuration,
          credentialCacheMs: flags.credentialCacheTtl,
        },
        dnsServers: flags.dnsServers,
        dnsTimeoutMs: flags.dnsTimeout,
        dnsAttempts: flags.dnsAttempts,
        dnsMaxInFlight: flags.dnsMaxInFlight,
        dnsMaxQueued: flags.dnsMaxQueued,
        dnsCacheMaxTtlMs: flags.dnsCacheMaxTtl,
        emailDcv: emailPolicyFrom(flags),
        brVersion: flags.brVersion,
        dnssec: { mode: flags.dnssec, probeSecure: flags.dnssecProbeSecure, probeBogus: flags.dnssecProbeBogus, probeIntervalMs: flags.dnssecProbeInterval },
        dcvEmail: dcvEmailConfigFrom(flags as ServeFlags & DcvEmailFlags),
        codeGuessing: { failureLimit: flags.codeFailureLimit, windowMs: flags.codeFailureWindow },
        webhooks: {
          url: flags.webhookUrl,
          ...(await webhookSecrets(flags)),
          allowNetworks: normalizeNetworks(flags.webhookAllowNetworks ?? []),
          timeoutMs: flags.webhookTimeout,
          receiverConcurrency: flags.webhookReceiverConcurrency,
          globalConcurrency: flags.webhookGlobalConcurrency,
        },
        mpic: mpicConfigFrom(flags as ServeFlags & MpicFlags),
        logLevel: flags.logLevel,
        ipv6Prefix: flags.ipv6Prefix,
      });
      // Loaded here, not at the top: the HTTP stack is most of dcvd's code, and no other command needs it.
      const server = await startRole(config);
      if (server === undefined) return; // an API process of a cluster: the primary speaks for it
      const host = (a: { address: string; port: number }) => (a.address.includes(':') ? `[${a.address}]` : a.address) + `:${a.port}`;
      if (server.https) process.stderr.write(`dcvd: HTTPS on https://${host(server.https)}/  (certificate: ${server.certPath})\n`);
      if (server.http) process.stderr.write(`dcvd: plain HTTP on http://${host(server.http)}/\n`);
      if (server.admin) process.stderr.write(`dcvd: internal API on https://${host(server.admin)}/v1/ (bearer token)\n`);
      process.stderr.write(`dcvd: database ${server.store.location}\n`);
      process.stderr.write(`dcvd: ${server.roleLine}\n`);
      if (config.role !== 'api') process.stderr.write(`dcvd: DCV emails ${deliveredTo(config)}\n`);
      if (server.mpicWarning) process.stderr.write(`dcvd: WARNING: ${server.mpicWarning}\n`);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) process.exit(130); // a second signal: stop now
        stopping = true;
        process.stderr.write(`dcvd: ${signal}, finishing in-flight requests\n`);
        server.close().then(
          () => process.exit(0),
          (err: unknown) => {
            server.logger.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}


interface Started {
  https?: { address: string; port: number } | undefined;
  http?: { address: string; port: number } | undefined;
  admin?: { address: string; port: number } | undefined;
  certPath: string;
  store: { location: string };
  logger: { error(obj: object, msg: string): void };
  mpicWarning: string | undefined;
  /** What this process does, for the start-up lines. */
  roleLine: string;
  close(): Promise<void>;
}

/** Where this process's DCV emails go, for the start-up lines: the SMTP server's host (never the URL's credentials), or the folder. */
function deliveredTo(config: ServeConfig): string {
  const smtp = config.dcvEmail.smtpUrl;
  if (smtp !== undefined) return `go over SMTP to ${new URL(smtp).host}`;
  return `are written as .eml files to ${join(resolve(config.dataDir), 'outbox')}/ (no --smtp-url)`;
}

/** The server of the configured role, the primary of --processes (or --delivery-process), or (undefined) an API process of one. */
async function startRole(config: ServeConfig): Promise<Started | undefined> {
  if (splitsDelivery(config)) {
    const { default: cluster } = await import('node:cluster');
    const { runApiProcess, startCluster } = await import('../cluster.ts');
    if (cluster.isWorker) {
      await runApiProcess(config);
      return undefined;
    }
    const running = await startCluster(config);
    const { worker } = running;
    const pids = running.pids().join(', ');
    const api = config.processes === 1 ? `1 API process (pid ${pids}) serves` : `${config.processes} API processes (pids ${pids}) share`;
    return {
      ...worker,
      https: running.https,
      http: running.http,
      close: () => running.close(),
      roleLine: `${api} the HTTPS port; this process (pid ${process.pid}) delivers, purges and serves the internal API`,
    };
  }
  const { startServer, startWorker } = await import('../server.ts');
  if (config.role === 'worker') {
    const worker = await startWorker(config);
    return { ...worker, close: () => worker.close(), roleLine: `role worker: delivering DCV emails (links to ${worker.publicUrl}) and webhooks; no API listener` };
  }
  const server = await startServer(config);
  const roleLine =
    config.role === 'api'
      ? 'role api: emails and webhooks are queued in the database for a `--role worker` process to deliver'
      : 'role all: API, DCV email and webhook delivery in this process';
  return { ...server, close: () => server.close(), roleLine };
}

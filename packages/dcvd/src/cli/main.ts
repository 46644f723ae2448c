/** The `dcvd` command (CONTRACT §9). */
import { productCommands } from './products.ts';
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { DEFAULT_DNS_CACHE_MAX_TTL_MS, DEFAULT_PRODUCTS, defaultServeConfig, parseCount, parseDuration, parseHostPort, parseSize, type ServeConfig } from '../config.ts';
import { DEFAULT_AUTH_POLICY } from '../accounts/auth.ts';
import { DEFAULT_IPV6_PREFIX } from '../accounts/networks.ts';
import type { AccountInput, AccountView, Permission } from '../accounts/repository.ts';
import { openStore } from '../store/database.ts';
import { migrateToLatest } from '../store/migrations.ts';
import { parseResolvers, type Resolver } from '../dns/client.ts';
import { BR_VERSION, DEFAULT_CODE_GUESS_POLICY } from '../orders/confirmation.ts';
import { checkWebhookUrl, parseWebhookSecretFile } from '../orders/webhooks.ts';
import { readFileSync } from 'node:fs';
import { opt, parseIsoDate, parseProducts, print, readStdin, repeatable, withAdmin, withJson, withStoreOptions, type StoreFlags } from './options.ts';
import { DEFAULT_DNSSEC, DNSSEC_MODES, type DnssecMode } from '../dns/dnssec.ts';
import { emailDcvBlocklistOption, emailDcvCutoffOption, emailPolicyFrom, parseBrVersion } from './options.ts';
import { dcvEmailConfigFrom, orderCommands, outboxCommands, templateCommands, withDcvEmailOptions, type DcvEmailFlags } from './orders.ts';
import { clientCommands } from './client.ts';
import { mpicConfigFrom, withMpicOptions, type MpicFlags } from './mpic.ts';
import { sandboxCommand } from './sandbox.ts';

function describeAccount(a: AccountView): string {
  const state = a.locked ? 'locked' : a.lockedUntil ? `locked out until ${a.lockedUntil}` : 'active';
  return [
    `${a.login}  (${state})`,
    `  permissions: ${a.permissions.join(', ') || 'none'}`,
    `  allowed networks: ${a.allowedNetworks.join(', ') || 'any'}`,
    `  password expires: ${a.passwordExpiresAt ?? 'never'}`,
    `  webhook: ${a.webhookUrl ?? 'the server\u2019s --webhook-url'}`,
  ].join('\n');
}

/** The webhook signing secret made by create/update/rotate: printed this once (stdout, never the log). */
function describeSecret(a: { webhookSecret?: string; previousWebhookSecretExpiresAt?: string | null }): string {
  if (a.webhookSecret === undefined) return '';
  const previous = a.previousWebhookSecretExpiresAt ? `\n  the previous secret keeps signing until ${a.previousWebhookSecretExpiresAt}` : '';
  return `\n  webhook signing secret (shown only now; give it to the receiver): ${a.webhookSecret}${previous}`;
}

/** Accounts' webhook secrets are sealed under the secret key: the commands that make one need the server's file. */
const secretKeyOption = () => opt('--secret-key-file <file>', 'the server\u2019s secret key file, which seals webhook signing secrets (default: DATA_DIR/secret.key)');

interface AccountFlags extends StoreFlags {
  login: string;
  secretKeyFile?: string;
  overlap?: number;
  passwordStdin?: boolean;
  allowIp?: string[];
  clearAllowIp?: boolean;
  permission?: string[];
  clearPermissions?: boolean;
  passwordExpires?: number | false;
  webhookUrl?: string | false;
  json?: boolean;
}

function accountCommands(): Command {
  const account = new Command('account').description('manage API accounts (loginName / loginPassword)');
  const login = () => opt('--login <name>', 'the account\u2019s loginName (case-sensitive)').makeOptionMandatory();
  const common = (cmd: Command) => withJson(withStoreOptions(cmd));

  common(
    account
      .command('create')
      .description('create an account; the password is read from standard input')
      .addOption(login())
      .addOption(opt('--password-stdin', 'read the password from standard input (required)').makeOptionMandatory())
      .addOption(repeatable('--allow-ip <cidr>', 'allowed source network; repeat for several (default: any)'))
      .addOption(repeatable('--permission <name>', 'auto-apply or voucher; repeat for both'))
      .addOption(opt('--password-expires <iso-date>', 'the password stops working at this date', parseIsoDate))
      .addOption(
      opt('--ipv6-prefix <bits>', 'per-IP limits (API logins, validation codes, admin tokens) count an IPv6 source by its network of this many bits', (v) => {
        const bits = parseCount(v, 1);
        if (bits > 128) throw new Error('the IPv6 prefix is at most 128 bits');
        return bits;
      }).default(DEFAULT_IPV6_PREFIX),
    )
    .addOption(opt('--webhook-url <url>', 'POST this account\u2019s DCV decisions here (default: the server\u2019s --webhook-url); prints the URL\u2019s own signing secret once'))
    .addOption(secretKeyOption()),
  ).action(async (flags: AccountFlags) => {
    const password = await readStdin();
    const input: AccountInput & { password: string } = { password, allowedNetworks: flags.allowIp ?? [] };
    if (flags.permission) input.permissions = flags.permission as Permission[];
    if (typeof flags.passwordExpires === 'number') input.passwordExpiresAt = flags.passwordExpires;
    if (typeof flags.webhookUrl === 'string') input.webhookUrl = flags.webhookUrl;
    const view = await withAdmin(flags, (a) => a.createAccount(flags.login, input));
    print(flags.json, view, () => `created account\n${describeAccount(view)}${describeSecret(view)}`);
  });

  common(
    account
      .command('update')
      .description('change an account; what is not given stays as it is')
      .addOption(login())
      .addOption(opt('--password-stdin', 'set a new password, read from standard input'))
      .addOption(repeatable('--allow-ip <cidr>', 'replace the allowed source networks; repeat for several'))
      .addOption(opt('--clear-allow-ip', 'allow every source network'))
      .addOption(repeatable('--permission <name>', 'replace the permissions: auto-apply, voucher; repeat for both'))
      .addOption(opt('--clear-permissions', 'remove every permission'))
      .addOption(opt('--password-expires <iso-date>', 'the password stops working at this date', parseIsoDate))
      .addOption(opt('--no-password-expires', 'the password never expires'))
      .addOption(opt('--webhook-url <url>', 'POST this account\u2019s DCV decisions here (prints a signing secret once if the account has none)'))
      .addOption(opt('--no-webhook-url', 'use the server\u2019s --webhook-url again'))
      .addOption(secretKeyOption()),
  ).action(async (flags: AccountFlags) => {
    const input: AccountInput = {};
    if (flags.passwordStdin) input.password = await readStdin();
    if (flags.clearAllowIp) input.allowedNetworks = [];
    else if (flags.allowIp) input.allowedNetworks = flags.allowIp;
    if (flags.clearPermissions) input.permissions = [];
    else if (flags.permission) input.permissions = flags.permission as Permission[];
    if (flags.passwordExpires === false) input.passwordExpiresAt = null;
    else if (typeof flags.passwordExpires === 'number') input.passwordExpiresAt = flags.passwordExpires;
    if (flags.webhookUrl === false) input.webhookUrl = null;
    else if (typeof flags.webhookUrl === 'string') input.webhookUrl = flags.webhookUrl;
    const view = await withAdmin(flags, (a) => a.updateAccount(flags.login, input));
    print(flags.json, view, () => `updated account\n${describeAccount(view)}${describeSecret(view)}`);
  });

  common(
    account
      .command('rotate-webhook-secret')
      .description('make a new signing secret for the account\u2019s webhook URL and print it once; the previous one keeps signing during the overlap')
      .addOption(login())
      .addOption(opt('--overlap <duration>', 'how long the previous secret keeps signing too (e.g. 24h; 0: it stops at once)', parseDuration).default(24 * 3600 * 1000, '24h'))
      .addOption(secretKeyOption()),
  ).action(async (flags: AccountFlags) => {
    const view = await withAdmin(flags, (a) => a.rotateWebhookSecret(flags.login, flags.overlap ?? 0));
    print(flags.json, view, () => `rotated the webhook signing secret\n${describeAccount(view)}${describeSecret(view)}`);
  });

  for (const [name, description] of [
    ['lock', 'lock an account until it is unlocked (its calls answer -16)'],
    ['unlock', 'unlock an account, also from a lockout, and reset its failure count'],
  ] as const) {
    common(account.command(name).description(description).addOption(login())).action(async (flags: AccountFlags) => {
      const view = await withAdmin(flags, (a) => (name === 'lock' ? a.lockAccount(flags.login) : a.unlockAccount(flags.login)));
      print(flags.json, view, () => `${name}ed account\n${describeAccount(view)}`);
    });
  }

  common(account.command('list').description('list the accounts')).action(async (flags: AccountFlags) => {
    const views = await withAdmin(flags, (a) => a.listAccounts());
    print(flags.json, views, () => (views.length === 0 ? 'no accounts' : views.map(describeAccount).join('\n')));
  });
  return account;
}

interface ServeFlags extends StoreFlags {
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
  logLevel: string;
}

/** The global URL's signing key: --webhook-secret (DCVD_WEBHOOK_SECRET) or the file's (with the previous key on a second line while rotating), at least 16 characters. */
function webhookSecrets(flags: ServeFlags): { secret?: string; previousSecret?: string } {
  if (flags.webhookSecret !== undefined && flags.webhookSecretFile !== undefined) throw new Error('give --webhook-secret or --webhook-secret-file, not both');
  if (flags.webhookSecretFile !== undefined) return parseWebhookSecretFile(readFileSync(flags.webhookSecretFile, 'utf8'));
  const secret = flags.webhookSecret;
  if (secret !== undefined && secret.length < 16) throw new Error('the webhook secret must be at least 16 characters');
  return secret === undefined ? {} : { secret };
}

function serveCommand(): Command {
  const d = DEFAULT_AUTH_POLICY;
  return withStoreOptions(
    new Command('serve')
      .description('run the API server (applies pending migrations first)')
      .addOption(opt('--listen <host:port>', 'HTTPS listener').default('127.0.0.1:8443'))
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
      }).default(60_000, '60s'))
    .addOption(opt('--db-pool-size <n>', 'PostgreSQL connections of this instance', (v) => parseCount(v, 1)).default(10))
    .addOption(opt('--body-limit <size>', 'largest request body; larger ones get -14 (HTTP 200, connection closed)', parseSize).default(64 * 1024, '64k'))
    .addOption(
      opt('--products <code,…>', 'product codes GetDCVEmailAddressList accepts in its optional product parameter (others: -4)', parseProducts).default(
        [...DEFAULT_PRODUCTS],
        DEFAULT_PRODUCTS.join(','),
      ),
    )
    .addOption(opt('--text-whois-none', 'text format: add the line "whois_email<TAB>none" after domain_name, for clients of the historic format')) 
    .addOption(opt('--lockout-failures <n>', 'consecutive failures that lock an account', (v) => parseCount(v, 1)).default(d.lockoutFailures))
    .addOption(opt('--lockout-duration <duration>', 'how long a lockout lasts', parseDuration).default(d.lockoutMs, '15m'))
    .addOption(opt('--ip-failure-limit <n>', 'failures from one source IP that block it', (v) => parseCount(v, 1)).default(d.ipFailures))
    .addOption(opt('--ip-failure-window <duration>', 'window in which those failures count', parseDuration).default(d.ipWindowMs, '15m'))
    .addOption(opt('--ip-block-duration <duration>', 'how long a source IP stays blocked', parseDuration).default(d.ipBlockMs, '15m'))
    .addOption(opt('--credential-cache-ttl <duration>', 'how long a verified password is remembered in memory (0 = never)', parseDuration).default(d.credentialCacheMs, '60s'))
    .addOption(opt('--dns-servers <host:port,…>', 'resolvers for contact lookups (default: the system\u2019s)', (v) => parseResolvers(v)))
    .addOption(opt('--dns-timeout <duration>', 'per-attempt DNS timeout', parseDuration).default(2000, '2s'))
    .addOption(opt('--dns-attempts <n>', 'attempts per DNS lookup (only timeouts are retried)', (v) => parseCount(v, 1)).default(2))
    .addOption(opt('--dns-max-in-flight <n>', 'DNS queries in flight at once, over all requests', (v) => parseCount(v, 1)).default(256))
    .addOption(opt('--dns-max-queued <n>', 'DNS queries that may wait for a slot; beyond that a lookup fails', (v) => parseCount(v, 0)).default(1024))
    .addOption(opt('--dns-cache-max-ttl <duration>', 'longest a DNS answer is cached, within its own TTL (0 = no cache)', parseDuration).default(DEFAULT_DNS_CACHE_MAX_TTL_MS, '60s'))
    .addOption(emailDcvBlocklistOption())
    .addOption(emailDcvCutoffOption())
    .addOption(opt('--dnssec <mode>', 'DNSSEC policy of contact lookups: require (a CA: only resolvers proven to validate), log (warn; works offline) or off').choices([...DNSSEC_MODES]).default(DEFAULT_DNSSEC.mode))
    .addOption(opt('--dnssec-probe-secure <name>', 'a name in a signed zone that a validating resolver answers with the AD bit').default(DEFAULT_DNSSEC.probeSecure))
    .addOption(opt('--dnssec-probe-bogus <name>', 'a name in a zone with broken signatures that a validating resolver answers SERVFAIL').default(DEFAULT_DNSSEC.probeBogus))
    .addOption(opt('--dnssec-probe-interval <duration>', 'how often --dnssec require probes the resolvers again (at least 1s)', (v) => {
        const ms = parseDuration(v);
        if (ms < 1000) throw new Error('the DNSSEC probe interval must be at least 1s');
        return ms;
      }).default(DEFAULT_DNSSEC.probeIntervalMs, '5m'))
    .addOption(opt('--br-version <version>', 'Baseline Requirements version the evidence names (as your CPS says)', parseBrVersion).default(BR_VERSION))
    .addOption(
      opt('--code-failure-limit <n>', 'unknown validation codes from one source IP that block it on the confirmation pages', (v) => parseCount(v, 1)).default(
        DEFAULT_CODE_GUESS_POLICY.failureLimit,
      ),
    )
    .addOption(
      opt('--code-failure-window <duration>', 'window those codes count in, and how long the block lasts', parseDuration).default(DEFAULT_CODE_GUESS_POLICY.windowMs, '15m'),
    )
    .addOption(opt('--webhook-url <url>', 'POST validated/declined events here (accounts may have their own); off by default', (v) => checkWebhookUrl(v)))
    .addOption(opt('--webhook-secret <secret>', 'HMAC-SHA256 key of the global --webhook-url\u2019s signatures only; accounts\u2019 own URLs have their own secrets (better: DCVD_WEBHOOK_SECRET or --webhook-secret-file)'))
    .addOption(opt('--webhook-secret-file <file>', 'read the global webhook signing key from this file; while rotating, the previous key on a second line signs too'))
    .addOption(opt('--log-level <level>', 'fatal, error, warn, info, debug or trace').default('info'))
    .action(async (flags: ServeFlags) => {
      const config: ServeConfig = defaultServeConfig({
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
        webhooks: { url: flags.webhookUrl, ...webhookSecrets(flags) },
        mpic: mpicConfigFrom(flags as ServeFlags & MpicFlags),
        logLevel: flags.logLevel,
        ipv6Prefix: flags.ipv6Prefix,
      });
      // Loaded here, not at the top: the HTTP stack is most of dcvd's code, and no other command needs it.
      const { startServer } = await import('../server.ts');
      const server = await startServer(config);
      const host = (a: { address: string; port: number }) => (a.address.includes(':') ? `[${a.address}]` : a.address) + `:${a.port}`;
      process.stderr.write(`dcvd: HTTPS on https://${host(server.https)}/  (certificate: ${server.certPath})\n`);
      if (server.http) process.stderr.write(`dcvd: plain HTTP on http://${host(server.http)}/\n`);
      if (server.admin) process.stderr.write(`dcvd: internal API on https://${host(server.admin)}/v1/ (bearer token)\n`);
      process.stderr.write(`dcvd: database ${server.store.location}\n`);
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

function migrateCommand(): Command {
  return withJson(withStoreOptions(new Command('migrate').description('apply pending database migrations'))).action(
    async (flags: StoreFlags & { json?: boolean }) => {
      const store = openStore({ dataDir: resolve(flags.dataDir), databaseUrl: flags.databaseUrl });
      try {
        const results = await migrateToLatest(store.db, store.dialect);
        const applied = results.map((r) => r.migrationName);
        print(flags.json, { applied, database: store.location }, () =>
          applied.length === 0 ? `schema is current (${store.location})` : `applied ${applied.join(', ')} (${store.location})`,
        );
      } finally {
        await store.close();
      }
    },
  );
}

export function buildProgram(): Command {
  const program = new Command('dcvd')
    .description('Domain Control Validation email service: GetDCVEmailAddressList and ResendDCVEmail, done for real')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride()
    // Options belong to the command they follow (`dcvd sandbox dns list --data-dir D` is the list's, not the sandbox's).
    .enablePositionalOptions();
  program.addCommand(withMpicOptions(withDcvEmailOptions(serveCommand())));
  program.addCommand(accountCommands());
  program.addCommand(migrateCommand());
  program.addCommand(orderCommands());
  program.addCommand(templateCommands());
  program.addCommand(outboxCommands());
  program.addCommand(productCommands());
  program.addCommand(clientCommands());
  program.addCommand(sandboxCommand());
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`dcvd: ${message}\n`);
    return 1;
  }
}

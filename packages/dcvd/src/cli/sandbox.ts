/**
 * `dcvd sandbox` (issue 17): one command that starts dcvd for integrators'
 * tests, and `dcvd sandbox dns|clock|mail …`, which talk to a running
 * sandbox's internal API (found through `<data-dir>/sandbox.json`, or
 * --admin-url / --admin-token / --ca-file).
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { defaultServeConfig, formatDuration, formatHostPort, parseDuration, parseHostPort, SANDBOX_ADMIN_LISTEN, SANDBOX_INFO_FILE, SANDBOX_LISTEN, SANDBOX_LOGIN } from '../config.ts';
import { parseResolvers, type Resolver } from '../dns/resolvers.ts';
import { opt, print, withJson } from './options.ts';

interface StartFlags {
  dataDir?: string;
  databaseUrl?: string;
  listen: string;
  adminListen: string;
  allowRemote?: boolean;
  login: string;
  password?: string;
  adminToken?: string;
  smtpUrl?: string;
  autoApprove?: number;
  dnsServers?: Resolver[];
  dnsTimeout: number;
  logLevel: string;
}

function startCommand(cmd: Command): Command {
  const defaults = defaultServeConfig();
  return cmd
    .addOption(opt('--data-dir <dir>', 'data directory (default: a fresh folder under the system\u2019s temporary directory, removed on exit)'))
    .addOption(opt('--database-url <url>', 'postgres://… for PostgreSQL (default: SQLite in the data directory)'))
    .addOption(opt('--listen <host:port>', 'HTTPS listener of the API, the confirmation pages and the mail viewer').default(formatHostPort(SANDBOX_LISTEN)))
    .addOption(opt('--admin-listen <host:port>', 'the internal JSON API with the sandbox routes').default(formatHostPort(SANDBOX_ADMIN_LISTEN)))
    .addOption(opt('--allow-remote', 'allow listeners beyond loopback (the sandbox warns; its viewer has no login)'))
    .addOption(opt('--login <name>', 'the seeded account\u2019s loginName').default(SANDBOX_LOGIN))
    .addOption(opt('--password <password>', 'the seeded account\u2019s password, 12 to 128 characters (default: generated)'))
    .addOption(opt('--admin-token <token>', 'bearer token of the internal API, at least 32 characters (default: generated)'))
    .addOption(opt('--smtp-url <url>', 'refused: a sandbox never sends email'))
    .addOption(opt('--auto-approve <duration>', 'approve every emailed code this long after sending (sandbox clock); off by default', (v) => Math.round(parseDuration(v) / 1000)))
    .addOption(opt('--dns-servers <host:port,…>', 'resolvers for lookups that are not overridden (default: the system\u2019s)', (v) => parseResolvers(v)))
    .addOption(opt('--dns-timeout <duration>', 'per-attempt DNS timeout', parseDuration).default(defaults.dnsTimeoutMs, formatDuration(defaults.dnsTimeoutMs)))
    .addOption(opt('--log-level <level>', 'fatal, error, warn, info, debug or trace (the log goes to standard error)').default(defaults.logLevel))
    .action(async (flags: StartFlags) => {
      // Loaded here, not at the top: the server is most of dcvd's code, and `sandbox dns|clock|mail` do not need it.
      const [{ createLogger }, { formatSandboxInfo, startSandbox }] = await Promise.all([import('../log.ts'), import('../sandbox/start.ts')]);
      const logger = createLogger(flags.logLevel, 2).child({ mode: 'sandbox' });
      const running = await startSandbox({
        // An empty value (DCVD_DATA_DIR= in a script) is no value: a fresh folder, never the working directory.
        dataDir: flags.dataDir || undefined,
        databaseUrl: flags.databaseUrl || undefined,
        listen: parseHostPort(flags.listen),
        adminListen: parseHostPort(flags.adminListen),
        allowRemote: flags.allowRemote === true,
        login: flags.login,
        password: flags.password || undefined,
        adminToken: flags.adminToken || undefined,
        smtpUrl: flags.smtpUrl,
        autoApproveAfterSeconds: flags.autoApprove,
        serve: { dnsServers: flags.dnsServers, dnsTimeoutMs: flags.dnsTimeout, logLevel: flags.logLevel },
        logger,
      });
      if (flags.allowRemote) process.stderr.write('dcvd sandbox: WARNING: listening beyond loopback as asked (--allow-remote)\n');
      process.stdout.write(`${formatSandboxInfo(running.info)}\n`);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) process.exit(130);
        stopping = true;
        process.stderr.write(`dcvd sandbox: ${signal}, stopping\n`);
        running.close().then(
          () => process.exit(0),
          (err: unknown) => {
            logger.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}

interface ClientFlags {
  dataDir?: string;
  adminUrl?: string;
  adminToken?: string;
  caFile?: string;
  json?: boolean;
}

/** What --data-dir's sandbox.json gives; a flag on the command line overrides each, a DCVD_* variable does not. */
const TARGET_OPTIONS = ['adminUrl', 'adminToken', 'caFile'] as const;

function withClientOptions(cmd: Command): Command {
  return withJson(cmd)
    .addOption(opt('--data-dir <dir>', `the running sandbox\u2019s data directory (its ${SANDBOX_INFO_FILE} names the API, token and certificate)`))
    .addOption(opt('--admin-url <url>', 'the sandbox\u2019s internal API (instead of --data-dir)'))
    .addOption(opt('--admin-token <token>', 'its bearer token (instead of --data-dir)'))
    .addOption(opt('--ca-file <file>', 'its certificate (instead of --data-dir)'))
    .hook('preAction', (command) => {
      // DCVD_ADMIN_TOKEN and DCVD_CA_FILE are also serve's and dcvd client's: exported for those, they must not
      // send a sandbox found by its data directory another server's token or certificate.
      if (command.getOptionValue('dataDir') === undefined) return;
      for (const key of TARGET_OPTIONS) if (command.getOptionValueSource(key) === 'env') command.setOptionValue(key, undefined);
    });
}

/** One call to the running sandbox's internal API; a JSON error becomes the command's error. */
async function call(flags: ClientFlags, method: string, path: string, body?: unknown): Promise<unknown> {
  let target = { adminApi: flags.adminUrl, adminToken: flags.adminToken, caCertificate: flags.caFile };
  if (flags.dataDir) {
    const file = join(resolve(flags.dataDir), SANDBOX_INFO_FILE);
    let saved: typeof target;
    try {
      saved = JSON.parse(readFileSync(file, 'utf8')) as typeof target;
    } catch {
      throw new Error(`no running sandbox found: cannot read ${file}`);
    }
    target = { adminApi: flags.adminUrl ?? saved.adminApi, adminToken: flags.adminToken ?? saved.adminToken, caCertificate: flags.caFile ?? saved.caCertificate };
  }
  if (!target.adminApi || !target.adminToken) throw new Error('give --data-dir of the running sandbox, or --admin-url and --admin-token');
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const ca = target.caCertificate ? readFileSync(target.caCertificate) : undefined;
  const { status, text } = await new Promise<{ status: number; text: string }>((done, fail) => {
    const req = https.request(
      new URL(`${target.adminApi!.replace(/\/+$/, '')}${path}`),
      {
        method,
        ...(ca ? { ca } : {}),
        headers: { authorization: `Bearer ${target.adminToken}`, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => done({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', fail);
    req.end(payload);
  });
  const value = text === '' ? null : (JSON.parse(text) as unknown);
  if (status >= 400) throw new Error((value as { error?: { message?: string } } | null)?.error?.message ?? `HTTP ${status}`);
  return value;
}

interface OverrideLine {
  name: string;
  type: string;
  records: (string | { flags: number; tag: string; value: string })[];
  failure: string | null;
}
const describeOverride = (o: OverrideLine) =>
  `${o.type} ${o.name}: ${o.failure ?? (o.records.length === 0 ? '(no records)' : o.records.map((r) => (typeof r === 'string' ? r : `${r.flags} ${r.tag} "${r.value}"`)).join(', '))}`;

function dnsCommands(): Command {
  const dns = new Command('dns').description('DNS overrides of a running sandbox, consulted before its resolvers');
  withClientOptions(
    dns
      .command('set')
      .description('answer TXT or CAA lookups of NAME with VALUES (TXT: addresses; CAA: "tag value" or "flags tag value"), or fail them with --failure')
      .argument('<name>', 'the name dcvd looks up, e.g. _validation-contactemail.example.com (TXT) or example.com (CAA)')
      .argument('<type>', 'TXT or CAA')
      .argument('[values...]', 'the records (none: an empty answer)')
      .addOption(opt('--failure <kind>', 'servfail, timeout or nxdomain instead of records')),
  ).action(async (name: string, type: string, values: string[], flags: ClientFlags & { failure?: string }) => {
    const caa = type.toUpperCase() === 'CAA';
    const records = values.map((v) => {
      if (!caa) return v;
      const m = /^(?:(\d+)\s+)?(\S+)\s+(.*)$/.exec(v.trim());
      if (!m) throw new Error(`a CAA value is "tag value" or "flags tag value", got ${JSON.stringify(v)}`);
      return { flags: m[1] === undefined ? 0 : Number(m[1]), tag: m[2]!, value: m[3]!.replace(/^"(.*)"$/, '$1') };
    });
    if (flags.failure !== undefined && values.length > 0) throw new Error('give values or --failure, not both');
    const body = { name, type, ...(flags.failure !== undefined ? { failure: flags.failure } : { records }) };
    const view = (await call(flags, 'POST', '/v1/sandbox/dns', body)) as OverrideLine;
    print(flags.json, view, () => `set ${describeOverride(view)}`);
  });
  withClientOptions(
    dns
      .command('clear')
      .description('clear the overrides of NAME, or of every name without NAME; of one type with --type, else of both')
      .argument('[name]')
      .addOption(opt('--type <type>', 'TXT or CAA')),
  ).action(async (name: string | undefined, flags: ClientFlags & { type?: string }) => {
    const query = new URLSearchParams();
    if (name !== undefined) query.set('name', name);
    if (flags.type !== undefined) query.set('type', flags.type);
    const result = (await call(flags, 'DELETE', `/v1/sandbox/dns${query.size > 0 ? `?${query}` : ''}`)) as { count: number };
    print(flags.json, result, () => `cleared ${result.count} override(s)`);
  });
  withClientOptions(dns.command('list').description('list the overrides')).action(async (flags: ClientFlags) => {
    const list = (await call(flags, 'GET', '/v1/sandbox/dns')) as OverrideLine[];
    print(flags.json, list, () => (list.length === 0 ? 'no overrides' : list.map(describeOverride).join('\n')));
  });
  return dns;
}

function clockCommands(): Command {
  const clock = new Command('clock').description('the clock of a running sandbox');
  withClientOptions(clock.command('advance').description('move the sandbox clock forward').argument('<duration>', '90s, 15m, 25h, 31d')).action(
    async (by: string, flags: ClientFlags) => {
      const result = (await call(flags, 'POST', '/v1/sandbox/clock/advance', { by })) as { now: string; offsetMs: number };
      print(flags.json, result, () => `sandbox clock: ${result.now} (offset ${result.offsetMs} ms)`);
    },
  );
  return clock;
}

export function sandboxCommand(): Command {
  const sandbox = startCommand(
    new Command('sandbox'),
  );
  // Options after `dns`/`clock` belong to them (both the start and the client commands have --data-dir).
  sandbox.enablePositionalOptions();
  sandbox.addCommand(dnsCommands());
  sandbox.addCommand(clockCommands());
  return sandbox;
}

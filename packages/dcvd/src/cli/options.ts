/**
 * Option helpers: every option gets its environment variable, `DCVD_` + the
 * long name upper-cased with dashes as underscores (CONTRACT §9).
 */
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseInteger } from '@dcvd/client';
import type { Store } from '../store/database.ts';
import type { AdminService } from '../admin/service.ts';
import { DEFAULT_DATA_DIR, defaultDcvEmailConfig, defaultMailFrom, defaultServeConfig, formatIsoDate, mailDomain, parseIsoDate } from '../config.ts';
import { normalizeBlocklist, type EmailDcvPolicy } from '../orders/email-dcv-policy.ts';
import type { MpicConfig } from '../mpic/corroborate.ts';

export function envName(flags: string): string {
  const long = /--([a-z0-9-]+)/.exec(flags)?.[1];
  if (!long) throw new Error(`option without a long name: ${flags}`);
  return `DCVD_${long.toUpperCase().replace(/-/g, '_')}`;
}

/** An option bound to its DCVD_* variable, with an optional parser whose errors read well. */
export function opt<T>(flags: string, description: string, parse?: (value: string, previous: T) => T): Option {
  const option = new Option(flags, description).env(envName(flags));
  if (parse) {
    option.argParser((value: string, previous: T) => {
      try {
        return parse(value, previous);
      } catch (err) {
        throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
      }
    });
  }
  return option;
}

/** The API's integer rule (CONTRACT §1), from the protocol package. */
export function parseApiInteger(text: string): number {
  const n = parseInteger(text.trim());
  if (n === undefined) throw new Error(`expected a whole number from 1 to 2^53-1, got ${JSON.stringify(text)}`);
  return n;
}

/** `--products`: comma-separated product codes, each an API integer (CONTRACT §1), at least one. */
export function parseProducts(text: string): number[] {
  const codes = text.split(',').map((v) => v.trim()).filter((v) => v !== '');
  if (codes.length === 0) throw new Error('expected at least one product code, such as 801,803');
  return [...new Set(codes.map(parseApiInteger))];
}

/** A repeatable option; a comma-separated value (as from the environment) counts as several. Empty values are dropped, unless `keepEmpty` keeps them for the command to refuse (`--allow-ip`: an empty one must not mean "any"). */
export function repeatable(flags: string, description: string, options: { keepEmpty?: boolean } = {}): Option {
  return opt<string[] | undefined>(flags, description, (value, previous) => [
    ...(previous ?? []),
    ...value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => options.keepEmpty === true || v !== ''),
  ]);
}

/** --data-dir and --database-url: every command that touches the store takes them. */
export function withStoreOptions(cmd: Command): Command {
  return cmd
    .addOption(opt('--data-dir <dir>', 'data directory (SQLite database, certificate, outbox)').default(DEFAULT_DATA_DIR))
    .addOption(opt('--database-url <url>', 'postgres://… for PostgreSQL (default: SQLite in the data directory)'));
}

export function withJson(cmd: Command): Command {
  return cmd.addOption(opt('--json', 'print one JSON value on stdout'));
}

export interface StoreFlags {
  dataDir: string;
  databaseUrl?: string;
}

/** Reads a secret from standard input: the whole input, one trailing newline dropped. */
export async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('Password (end with Ctrl-D): ');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/**
 * --email-dcv-cutoff and --email-dcv-blocklist: `serve`, and the commands that
 * send a first DCV email or judge evidence (`order create`, `order show`).
 */
export function withEmailPolicyOptions(cmd: Command): Command {
  return cmd.addOption(emailDcvBlocklistOption()).addOption(emailDcvCutoffOption());
}

export function emailDcvBlocklistOption(): Option {
  return repeatable('--email-dcv-blocklist <domain>', 'domains (and everything below them) refused email DCV with -160; comma-separated or repeated');
}

export function emailDcvCutoffOption(): Option {
  const { cutoff } = defaultServeConfig().emailDcv;
  return opt('--email-dcv-cutoff <iso-date>', 'from this date no DCV email is offered, sent or confirmed (-160) and email validations are reported unusable', parseIsoDate).default(
    cutoff,
    formatIsoDate(cutoff),
  );
}

export interface EmailPolicyFlags {
  emailDcvBlocklist?: string[];
  emailDcvCutoff?: number;
}

export function emailPolicyFrom(flags: EmailPolicyFlags): EmailDcvPolicy {
  return { blocklist: normalizeBlocklist(flags.emailDcvBlocklist ?? []), cutoff: flags.emailDcvCutoff ?? defaultServeConfig().emailDcv.cutoff };
}

/** A Baseline Requirements version such as 2.2.6. */
export function parseBrVersion(text: string): string {
  if (!/^\d{1,2}\.\d{1,2}\.\d{1,2}$/.test(text.trim())) throw new Error(`expected a BR version such as 2.2.6, got ${JSON.stringify(text)}`);
  return text.trim();
}

/** Output of data commands: JSON with --json, readable lines otherwise. */
export function print(json: boolean | undefined, value: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human()}\n`);
}

/**
 * The operations behind the commands (and the internal API) on the store of --data-dir / --database-url.
 * The store, the admin service and what they use are imported here, when a command runs, not when
 * the program is built (CLI start-up, issue 13).
 */
export async function withAdmin<T>(
  flags: StoreFlags & EmailPolicyFlags & { secretKeyFile?: string; randomValueTtl?: number; mailFrom?: string; publicUrl?: string },
  fn: (admin: AdminService) => Promise<T>,
  mpic?: MpicConfig,
): Promise<T> {
  const [{ AdminService }, { cryptoRandom, systemClock }, { loadValueKeys }, { createContactGate }, { createLogger }] = await Promise.all([
    import('../admin/service.ts'),
    import('../deps.ts'),
    import('../orders/random-values.ts'),
    import('../mpic/corroborate.ts'),
    import('../log.ts'),
  ]);
  return withStore(flags, (s) =>
    fn(
      new AdminService({
        // Commands that select a contact address (order create --dcv-email) corroborate DNS-found ones (issue 19).
        ...(mpic ? { contactGate: createContactGate(s.db, mpic), log: createLogger('info', 2) } : {}),
        db: s.db,
        clock: systemClock,
        random: cryptoRandom,
        dcvEmail: () => ({
          keys: loadValueKeys(resolve(flags.dataDir), flags.secretKeyFile ? resolve(flags.secretKeyFile) : undefined),
          random: cryptoRandom,
          randomValueTtlMs: flags.randomValueTtl ?? defaultDcvEmailConfig().randomValueTtlMs,
          resendIntervalMs: 0,
          messageIdDomain: mailDomain(flags.mailFrom ?? defaultMailFrom(flags.publicUrl)),
        }),
        emailPolicy: emailPolicyFrom(flags),
      }),
    ),
  );
}

/** Opens the store of --data-dir / --database-url, applies pending migrations, runs `fn`, closes it. */
export async function withStore<T>(flags: StoreFlags, fn: (store: Store) => Promise<T>): Promise<T> {
  const [{ openStore }, { migrateToLatest }] = await Promise.all([import('../store/database.ts'), import('../store/migrations.ts')]);
  const store = openStore({ dataDir: resolve(flags.dataDir), databaseUrl: flags.databaseUrl });
  try {
    await migrateToLatest(store.db, store.dialect);
    return await fn(store);
  } finally {
    await store.close();
  }
}

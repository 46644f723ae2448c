/**
 * The one configuration of a dcvd process, and the one home of its defaults: the CLI fills it from
 * options and their DCVD_* environment variables (CONTRACT §9), taking every option's default (and
 * the one its --help shows) from here; tests build it directly.
 */
import { resolve } from 'node:path';
import { DEFAULT_AUTH_POLICY, type AuthPolicy } from './accounts/auth-policy.ts';
import { DEFAULT_IPV6_PREFIX } from './accounts/networks.ts';
import { defaultEmailDcvPolicy, type EmailDcvPolicy } from './orders/email-dcv-policy.ts';
import type { Resolver } from './dns/client.ts';
import { DEFAULT_DNSSEC, type DnssecConfig } from './dns/dnssec-config.ts';
import { DEFAULT_OUTBOX_FLOW, DEFAULT_OUTBOX_POLICY, type OutboxFlowConfig, type OutboxPolicy } from './queue/policy.ts';
import { BR_VERSION, DEFAULT_CODE_GUESS_POLICY, type CodeGuessPolicy } from './orders/confirmation-policy.ts';
import { MAX_RANDOM_VALUE_TTL_MS } from './orders/random-values.ts';
import type { WebhookConfig } from './webhooks/webhooks.ts';
import { defaultMpicConfig, type MpicConfig } from './mpic/config.ts';

export interface HostPort {
  host: string;
  port: number;
}

/** What one `serve` process does (issue 20): everything, only the API listeners, or only delivery and the timers. */
export type ServeRole = 'all' | 'api' | 'worker';
export const SERVE_ROLES: readonly ServeRole[] = ['all', 'api', 'worker'];

export interface ServeConfig {
  /**
   * all: the API listeners, DCV email and webhook delivery, the purges; api: the listeners only (emails and webhooks are
   * queued for a worker); worker: delivery and the purges, no API listener (src/server.ts, docs/OPERATIONS.md).
   */
  role: ServeRole;
  /** With more than one: N API processes on one port (node:cluster), delivery and the timers in the primary (src/cluster.ts). */
  processes: number;
  /**
   * --delivery-process: the same split with any --processes, 1 included: the API in child processes, delivery, the
   * timers and the internal API in this one (implied above one process).
   */
  deliveryProcess: boolean;
  /** With --processes or --delivery-process: niceness added to the API processes, so that delivery (and the write lock's holder) wins the CPU under load; 0 = same as the primary. */
  apiNice: number;
  /** HTTPS listener. */
  listen: HostPort;
  /** Optional plain-HTTP listener (API calls answer -1 unless through a trusted proxy, CONTRACT §8). */
  httpListen?: HostPort | undefined;
  /** The internal JSON API's listener (HTTPS, same certificate); off when undefined (CONTRACT §9). */
  adminListen?: HostPort | undefined;
  /** Its bearer token, at least 32 characters; required with adminListen. */
  adminToken?: string | undefined;
  /** CIDRs of proxies whose X-Forwarded-For / X-Forwarded-Proto are believed. */
  trustProxy: string[];
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  dataDir: string;
  databaseUrl?: string | undefined;
  /** PostgreSQL connections per instance. */
  dbPoolSize: number;
  /** How often `serve` logs memory and event-loop delay. */
  statsIntervalMs: number;
  /** Request bodies above this many bytes answer -14, with HTTP 200 like every API answer (CONTRACT §1). */
  bodyLimit: number;
  /** Product codes GetDCVEmailAddressList accepts in its optional `product` (CONTRACT §1). */
  products: number[];
  /** Text format: `whois_email<TAB>none` after `domain_name`, for clients of the historic format. */
  textWhoisNone: boolean;
  auth: AuthPolicy;
  /** DNS resolvers for contact lookups; undefined = the system's (CONTRACT §3). */
  dnsServers?: Resolver[] | undefined;
  /** Per-attempt DNS timeout. */
  dnsTimeoutMs: number;
  /** Attempts per lookup; only timeouts are retried. */
  dnsAttempts: number;
  /** Global cap on DNS queries in flight, and how many more may wait for a slot (issue 14). */
  dnsMaxInFlight: number;
  dnsMaxQueued: number;
  /** Longest a DNS answer is cached (within its own TTL); 0 = no cache, every lookup asks (src/dns/cache.ts). */
  dnsCacheMaxTtlMs: number;
  /** DNSSEC policy of contact lookups: mode and probes (CONTRACT §3, src/dns/dnssec.ts). */
  dnssec: DnssecConfig;
  /** Blocklist and cut-off date of email DCV (CONTRACT §1 step 10, §6): every path that sends or confirms a DCV email. */
  emailDcv: EmailDcvPolicy;
  /** The Baseline Requirements version the evidence names (CONTRACT §6; the operator's CPS). */
  brVersion: string;
  /** DCV emails: links, sender, random values, delivery (CONTRACT §5). */
  dcvEmail: DcvEmailConfig;
  /** Unknown validation codes per source IP on the confirmation pages (CONTRACT §6). */
  codeGuessing: CodeGuessPolicy;
  /** Signed webhooks of DCV decisions (CONTRACT §6). */
  webhooks: WebhookConfig;
  /** Multi-Perspective Issuance Corroboration of DNS-found contacts (BR 3.2.2.9, issue 19). */
  mpic: MpicConfig;
  logLevel: string;
  /** Per-IP limits count IPv6 sources by their network of this many bits (issue 14). */
  ipv6Prefix: number;
}

export interface DcvEmailConfig {
  /** smtp[s]://[user:pass@]host[:port]; undefined = .eml files under `<dataDir>/outbox/`. */
  smtpUrl?: string | undefined;
  mailFrom: string;
  /** Base of the confirmation links; undefined = derived from the HTTPS listener (`https://localhost:PORT` on loopback). */
  publicUrl?: string | undefined;
  /** Minimum time between two DCV emails of one order (-160 when faster). */
  resendIntervalMs: number;
  /** Validity of a new random value; at most 30 days. */
  randomValueTtlMs: number;
  /** Secret of the keyed hashes and sealed codes; undefined = `<dataDir>/secret.key`. Instances sharing a database share it. */
  secretKeyFile?: string | undefined;
  outbox: OutboxPolicy;
  /** Calls that queue emails wait while delivery is behind (src/outbox/flow.ts). */
  outboxFlow: OutboxFlowConfig;
  /** The CA's name (--ca-name), shown in the DCV email's subject and body and on the confirmation page. */
  caName: string;
}

export const DEFAULT_CA_NAME = 'dcvd';

/**
 * The default sender (issue 13): `dcvd@` the host of --public-url, so From and the Message-IDs
 * name the service's own domain; `dcvd@localhost` only when no public URL is configured.
 */
export function defaultMailFrom(publicUrl?: string): string {
  const host = publicUrl === undefined ? undefined : new URL(publicUrl).hostname.replace(/^\[|\]$/g, '');
  return host && !/^[0-9.]+$|:/.test(host) ? `dcvd@${host}` : 'dcvd@localhost';
}

/** The domain of a sender address: the right side of its last @ (the Message-IDs' domain). */
export function mailDomain(mailFrom: string): string {
  const domain = mailFrom.slice(mailFrom.lastIndexOf('@') + 1);
  // Only what a dcvd Message-ID may hold (mail/message.ts); anything else keeps the old "dcvd".
  return /^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$/.test(domain) ? domain : 'dcvd';
}

export function defaultDcvEmailConfig(overrides: Partial<DcvEmailConfig> = {}): DcvEmailConfig {
  return {
    mailFrom: 'dcvd@localhost',
    resendIntervalMs: 60_000,
    randomValueTtlMs: MAX_RANDOM_VALUE_TTL_MS,
    outbox: { ...DEFAULT_OUTBOX_POLICY },
    outboxFlow: { ...DEFAULT_OUTBOX_FLOW },
    caName: DEFAULT_CA_NAME,
    ...overrides,
  };
}

/** `--dns-cache-max-ttl`: docs/PROTOCOL.md says why a minute is safe for DCV. */
export const DEFAULT_DNS_CACHE_MAX_TTL_MS = 60_000;

/** The seed's product codes: 801 (VMC) and 803 (CMC). */
export const DEFAULT_PRODUCTS: readonly number[] = [801, 803];

export const DEFAULT_LISTEN: HostPort = { host: '127.0.0.1', port: 8443 };

/** --data-dir of every command that opens the store; `serve` resolves it against the working directory. */
export const DEFAULT_DATA_DIR = './dcvd-data';

/** `dcvd sandbox` (issue 17): its listeners and seeded account. */
export const SANDBOX_LISTEN: HostPort = { host: '127.0.0.1', port: 14443 };
export const SANDBOX_ADMIN_LISTEN: HostPort = { host: '127.0.0.1', port: 14444 };
export const SANDBOX_LOGIN = 'sandbox';
/** Where a running sandbox leaves its admin URL, token and certificate for `dcvd sandbox dns …` (0600). */
export const SANDBOX_INFO_FILE = 'sandbox.json';

/**
 * One webhook POST's time limit by default (`--webhook-timeout`): a receiver that does not answer within it holds
 * one of the worker's slots no longer, so one hung receiver delays other accounts' events by seconds, not minutes.
 */
export const DEFAULT_WEBHOOK_TIMEOUT_MS = 15_000;

/** How long a rotated-out webhook signing secret keeps signing too (`account rotate-webhook-secret`, the internal API). */
export const DEFAULT_WEBHOOK_SECRET_OVERLAP_MS = 24 * 3600 * 1000;

/** Emails `outbox list` shows (and the internal API's GET /v1/outbox answers) without a limit. */
export const DEFAULT_OUTBOX_LIST_LIMIT = 100;

/**
 * `--api-nice`: under a saturated API, API processes at the primary's priority left it a few dozen
 * emails/s; at +10 it delivered 3–4× more and the API queued more too (the primary holds the SQLite
 * write lock while it records deliveries: preempting it stalls every process). docs/PERFORMANCE.md.
 */
export const DEFAULT_API_NICE = 10;

/** Whether `dcvd serve` splits: API processes (node:cluster) beside a primary that delivers (src/cluster.ts). */
export function splitsDelivery(config: Pick<ServeConfig, 'processes' | 'deliveryProcess'>): boolean {
  return config.processes > 1 || config.deliveryProcess;
}

export function defaultServeConfig(overrides: Partial<ServeConfig> = {}): ServeConfig {
  return {
    role: 'all',
    processes: 1,
    deliveryProcess: false,
    apiNice: DEFAULT_API_NICE,
    listen: DEFAULT_LISTEN,
    trustProxy: [],
    dataDir: resolve(DEFAULT_DATA_DIR),
    bodyLimit: 64 * 1024,
    products: [...DEFAULT_PRODUCTS],
    textWhoisNone: false,
    dbPoolSize: 10,
    statsIntervalMs: 60_000,
    auth: { ...DEFAULT_AUTH_POLICY },
    dnsTimeoutMs: 2000,
    dnsAttempts: 2,
    dnsMaxInFlight: 256,
    dnsMaxQueued: 1024,
    dnsCacheMaxTtlMs: DEFAULT_DNS_CACHE_MAX_TTL_MS,
    dnssec: { ...DEFAULT_DNSSEC },
    emailDcv: defaultEmailDcvPolicy(),
    brVersion: BR_VERSION,
    dcvEmail: defaultDcvEmailConfig(),
    codeGuessing: { ...DEFAULT_CODE_GUESS_POLICY },
    webhooks: {},
    mpic: defaultMpicConfig(),
    logLevel: 'info',
    ipv6Prefix: DEFAULT_IPV6_PREFIX,
    ...overrides,
  };
}

/** A HostPort as --listen takes it. */
export function formatHostPort({ host, port }: HostPort): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (all interfaces). */
export function parseHostPort(text: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`expected HOST:PORT, got ${JSON.stringify(text)}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration: a number with a unit (`500ms`, `90s`, `15m`, `2h`, `30d`); a bare number is seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new Error(`expected a duration such as 90s, 15m or 2h, got ${JSON.stringify(text)}`);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!);
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * An ISO 8601 date or date-time, as epoch milliseconds. A date, and a time without a zone, are UTC (not the
 * server's local time, which would make the same option mean another instant on another machine). A day or
 * time that does not exist (2027-02-31, 24:30) is refused, not rolled over into the next month or day.
 */
export function parseIsoDate(text: string): number {
  const bad = () => new Error(`expected an ISO date such as 2027-01-31 or 2027-01-31T12:00:00Z, got ${JSON.stringify(text)}`);
  const m = ISO_DATE.exec(text.trim());
  if (!m) throw bad();
  const [year, month, day, hour = 0, minute = 0, second = 0] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((v) => (v === undefined ? undefined : Number(v)));
  const fraction = m[7] === undefined ? 0 : Math.floor(Number(`0${m[7]}`) * 1000);
  const local = Date.UTC(year!, month! - 1, day!, hour, minute, second, fraction);
  const back = new Date(local);
  const exists = back.getUTCFullYear() === year && back.getUTCMonth() === month! - 1 && back.getUTCDate() === day && back.getUTCHours() === hour && back.getUTCMinutes() === minute && back.getUTCSeconds() === second;
  if (!exists) throw bad();
  const zone = m[8];
  if (zone === undefined || zone.toUpperCase() === 'Z') return local;
  const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)!;
  const hours = Number(z[2]);
  const minutes = Number(z[3]);
  if (hours > 23 || minutes > 59) throw bad();
  return local - (z[1] === '-' ? -1 : 1) * (hours * 60 + minutes) * 60_000;
}

/** A duration as parseDuration reads it, in its largest whole unit (2s, 15m, 1h, 30d), but 60s and 24h, not 1m and 1d (defaults in --help). */
export function formatDuration(ms: number): string {
  const [unit, size] = Object.entries(UNITS)
    .reverse()
    .find(([unit, size]) => ms % size === 0 && !(ms === size && (unit === 'm' || unit === 'd')))!;
  return `${ms / size}${unit}`;
}

/** A size as parseSize reads it: 64k for 65536 (defaults in --help). */
export function formatSize(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)}m` : bytes % 1024 === 0 ? `${bytes / 1024}k` : `${bytes}`;
}

/** A date as parseIsoDate reads it: 2028-03-15 at midnight UTC, else the full ISO time. */
export function formatIsoDate(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.endsWith('T00:00:00.000Z') ? iso.slice(0, 10) : iso;
}

/** A whole number of at least `min`. */
export function parseCount(text: string, min = 0): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < min) throw new Error(`expected a whole number ≥ ${min}, got ${JSON.stringify(text)}`);
  return Number(text);
}

/** A size: bytes, or with k/m suffix (KiB, MiB). */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*(k|kb|kib|m|mb|mib)?$/i.exec(text.trim());
  if (!m) throw new Error(`expected a size such as 65536 or 64k, got ${JSON.stringify(text)}`);
  const unit = (m[2] ?? '').toLowerCase();
  return Number(m[1]) * (unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1);
}

/**
 * The DNSSEC policy of contact lookups (CONTRACT §3; BR 3.2.2.4 since
 * 2026-03-15: the CNAME, CAA and TXT queries that find a contact for the
 * email methods are DNSSEC-validated back to the root, and local policy must
 * not turn that off).
 *
 * dcvd does not validate itself: it relies on a validating resolver and proves
 * that each configured resolver validates, at start and every probe interval,
 * with two operator-named probes:
 *  - a name in a signed zone must be answered (NOERROR or NXDOMAIN) with AD;
 *  - a name in a deliberately broken (bogus) zone must fail (SERVFAIL).
 * Modes:
 *  - `require`: only proven resolvers are asked. None proven at start: the
 *    server refuses to start; none proven later: DNS contact lookups fail
 *    (their sources are dropped, the constructed addresses stay) and /readyz
 *    says not ready until a probe round proves one again.
 *  - `log`: no probes (the embedded setup works offline); every configured
 *    resolver is asked as before; a warning at start and a metric say that
 *    lookups are not proven to be validated.
 *  - `off`: as `log`, without the warning (for integrators' test setups).
 * In every mode a SERVFAIL carrying a DNSSEC Extended DNS Error is a bogus
 * answer: its contact source is dropped, logged and counted as such.
 * An answer without AD from a proven resolver is an insecure (unsigned) zone:
 * a validating resolver answers data of a signed zone only when it validated
 * it (then with AD) and SERVFAIL otherwise, so the contact is offered and its
 * evidence says `insecure`.
 */
import type { DnsCache } from './cache.ts';
import { createDnsClient, DnsError, formatResolver, RttEstimator, type CaaResult, type DnsClient, type LookupSignal, type Resolver, type TxtResult } from './client.ts';
import type { ExtendedDnsError } from './message.ts';
import type { UdpPool } from './transport.ts';
import type { DnssecMode, DnssecConfig } from './dnssec-config.ts';

export { DNSSEC_MODES, DEFAULT_DNSSEC, type DnssecMode, type DnssecConfig } from './dnssec-config.ts';

/**
 * RFC 8914 INFO-CODEs that report a DNSSEC validation failure: Unsupported
 * DNSKEY Algorithm (1), Unsupported DS Digest Type (2), DNSSEC Indeterminate
 * (5), DNSSEC Bogus (6), Signature Expired (7), Signature Not Yet Valid (8),
 * DNSKEY Missing (9), RRSIGs Missing (10), No Zone Key Bit Set (11), NSEC
 * Missing (12).
 */
export const DNSSEC_EDE_CODES: ReadonlySet<number> = new Set([1, 2, 5, 6, 7, 8, 9, 10, 11, 12]);

/** A SERVFAIL with a DNSSEC Extended DNS Error: the resolver found the answer bogus. */
export function isBogus(err: unknown): boolean {
  return err instanceof DnsError && err.kind === 'servfail' && err.extendedErrors.some((e) => DNSSEC_EDE_CODES.has(e.infoCode));
}

/** Where one resolver stands with the probes. */
export interface ProbeState {
  /** proven: both probes passed in the last round; failed: one did not; unprobed: no probe ran (modes log and off). */
  state: 'proven' | 'failed' | 'unprobed';
  /** When the last round finished, ISO 8601; null if none ran. */
  checkedAt: string | null;
  /** Why it failed; null otherwise. */
  detail: string | null;
}

/** The DNSSEC part of a DNS-found contact's evidence. */
export interface DnssecEvidence {
  mode: DnssecMode;
  /** secure: the answer came with AD; insecure: without (an unsigned zone, or, in log/off, an unproven resolver). */
  status: 'secure' | 'insecure';
  /** The answering resolver's probe state when the answer came. */
  probe: ProbeState;
}

export interface DnssecLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface DnssecGuardOptions {
  config: DnssecConfig;
  resolvers: Resolver[];
  timeoutMs: number;
  attempts: number;
  /** The shared UDP sockets and cap on queries in flight (dns/transport.ts); every client of the guard uses it. */
  pool?: UdpPool;
  /**
   * The answer cache of the contact lookups (src/dns/cache.ts), never of the probes. It is
   * emptied whenever the set of resolvers the lookups use changes.
   */
  cache?: DnsCache;
  log: DnssecLog;
  now?: () => number;
  /** Called after each probe round with every resolver's state (metrics). */
  onProbed?: (states: ReadonlyMap<string, ProbeState>) => void;
}

const UNPROBED: ProbeState = { state: 'unprobed', checkedAt: null, detail: null };

const edeText = (list: readonly ExtendedDnsError[]) => list.map((e) => ` EDE ${e.infoCode}${e.extraText ? ` (${e.extraText})` : ''}`).join('');

/**
 * Probes one resolver: the signed name must come back with AD, the bogus one
 * must fail with SERVFAIL. Returns undefined when it validates, else why not.
 */
export async function probeResolver(client: DnsClient, config: Pick<DnssecConfig, 'probeSecure' | 'probeBogus'>): Promise<string | undefined> {
  try {
    const secure = await client.txt(config.probeSecure);
    if (!secure.authenticatedData) return `${config.probeSecure} (signed) was answered ${secure.rcode} without the AD bit: the resolver does not validate`;
  } catch (err) {
    if (!(err instanceof DnsError)) throw err;
    return `${config.probeSecure} (signed) could not be looked up: ${err.kind}${err.rcode ? ` ${err.rcode}` : ''}${edeText(err.extendedErrors)}`;
  }
  try {
    const bogus = await client.txt(config.probeBogus);
    return `${config.probeBogus} (bogus) was answered ${bogus.rcode}${bogus.authenticatedData ? ' with AD' : ''}: the resolver does not validate`;
  } catch (err) {
    if (!(err instanceof DnsError)) throw err;
    if (err.kind === 'servfail') return undefined;
    return `${config.probeBogus} (bogus) failed with ${err.kind}${err.rcode ? ` ${err.rcode}` : ''}, not SERVFAIL`;
  }
}

/**
 * The contact lookups' DNS client under the DNSSEC policy: it asks the
 * resolvers the mode allows, probes them (require), and tells the evidence
 * each resolver's probe state.
 */
export class DnssecGuard {
  readonly mode: DnssecMode;
  private readonly states = new Map<string, ProbeState>();
  private readonly probeClients: { address: string; client: DnsClient }[];
  private lookups: DnsClient | undefined;
  private provenKey = '';
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private readonly now: () => number;
  /** Round trips per resolver, kept across the clients a probe round replaces. */
  private readonly rtt = new RttEstimator();

  constructor(private readonly options: DnssecGuardOptions) {
    this.mode = options.config.mode;
    this.now = options.now ?? Date.now;
    if (options.resolvers.length === 0) throw new Error('a DNS client needs at least one resolver');
    const single = (r: Resolver) => createDnsClient({ resolvers: [r], timeoutMs: options.timeoutMs, attempts: options.attempts, rtt: this.rtt, ...(options.pool ? { pool: options.pool } : {}) });
    this.probeClients = options.resolvers.map((r) => ({ address: formatResolver(r), client: single(r) }));
    for (const p of this.probeClients) this.states.set(p.address, { ...UNPROBED });
    // log and off: every resolver, in the configured order, as without a policy.
    if (this.mode !== 'require') this.lookups = this.clientFor(options.resolvers);
  }

  /** The DnsClient contact lookups use. */
  readonly client: DnsClient = {
    txt: (name: string, signal?: LookupSignal): Promise<TxtResult> => this.current(name, 'TXT').txt(name, signal),
    caa: (name: string, signal?: LookupSignal): Promise<CaaResult> => this.current(name, 'CAA').caa(name, signal),
  };

  private current(name: string, type: 'TXT' | 'CAA'): DnsClient {
    if (this.lookups) return this.lookups;
    throw new DnsError(
      { kind: 'no-validating-resolver', resolver: 'none', name, type },
      'no resolver passed the DNSSEC probes (--dnssec require)',
    );
  }

  private clientFor(resolvers: Resolver[]): DnsClient {
    const client = createDnsClient({ resolvers, timeoutMs: this.options.timeoutMs, attempts: this.options.attempts, rtt: this.rtt, ...(this.options.pool ? { pool: this.options.pool } : {}) });
    return this.options.cache?.wrap(client) ?? client;
  }

  /** First probe round (require): throws when no resolver validates; then probes every interval. */
  async start(): Promise<void> {
    const { config, log } = this.options;
    if (this.mode !== 'require') {
      if (this.mode === 'log') {
        log.warn(
          { dnssec: 'log', resolvers: this.probeClients.map((p) => p.address) },
          'DNSSEC mode log: contact lookups are not proven to be DNSSEC-validated, which BR 3.2.2.4 requires since 2026-03-15; a CA runs --dnssec require with a validating resolver',
        );
      }
      return;
    }
    await this.probe();
    if (!this.lookups) {
      const why = [...this.states].map(([address, s]) => `${address}: ${s.detail ?? s.state}`).join('; ');
      throw new Error(`--dnssec require: no DNS resolver passed the DNSSEC probes (${why})`);
    }
    this.timer = setInterval(() => {
      this.probe().catch((err: unknown) => log.error({ err }, 'DNSSEC probe round failed'));
    }, config.probeIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One probe round over every resolver (concurrently); the proven ones become the lookups' resolvers. */
  probe(): Promise<void> {
    this.round ??= this.probeRound().finally(() => {
      this.round = undefined;
    });
    return this.round;
  }

  private async probeRound(): Promise<void> {
    const { config, log, resolvers } = this.options;
    const results = await Promise.all(this.probeClients.map((p) => probeResolver(p.client, config)));
    const checkedAt = new Date(this.now()).toISOString();
    const proven: Resolver[] = [];
    results.forEach((problem, i) => {
      const { address } = this.probeClients[i]!;
      const before = this.states.get(address)!;
      const state: ProbeState = problem === undefined ? { state: 'proven', checkedAt, detail: null } : { state: 'failed', checkedAt, detail: problem };
      this.states.set(address, state);
      if (problem === undefined) proven.push(resolvers[i]!);
      if (before.state !== state.state) {
        if (problem === undefined) log.info({ resolver: address, dnssec: 'proven' }, 'DNS resolver passed the DNSSEC probes; contact lookups use it');
        else log.warn({ resolver: address, dnssec: 'failed', detail: problem }, 'DNS resolver failed the DNSSEC probes; contact lookups do not use it');
      }
    });
    const key = proven.map(formatResolver).join(',');
    if (key !== this.provenKey || (this.lookups === undefined && proven.length > 0)) {
      this.provenKey = key;
      // Answers of a resolver that no longer passes must not be served from the cache either.
      this.options.cache?.clear();
      this.lookups = proven.length > 0 ? this.clientFor(proven) : undefined;
      if (proven.length === 0) log.error({ dnssec: 'require' }, 'no DNS resolver passes the DNSSEC probes: DNS contact lookups fail and /readyz is not ready');
    }
    this.options.onProbed?.(this.states);
  }

  /** The probe state of the resolver that gave an answer. */
  probeState(resolver: string): ProbeState {
    return { ...(this.states.get(resolver) ?? UNPROBED) };
  }

  /** Every resolver's state ("host:port" → state). */
  probeStates(): ReadonlyMap<string, ProbeState> {
    return this.states;
  }

  /** Why the server is not ready under this policy, or undefined. */
  notReady(): string | undefined {
    return this.mode === 'require' && this.lookups === undefined ? 'no DNS resolver passes the DNSSEC probes (--dnssec require)' : undefined;
  }

  /** The DNSSEC part of the evidence of an answer from `resolver`. */
  evidence(resolver: string, authenticatedData: boolean): DnssecEvidence {
    return { mode: this.mode, status: authenticatedData ? 'secure' : 'insecure', probe: this.probeState(resolver) };
  }
}

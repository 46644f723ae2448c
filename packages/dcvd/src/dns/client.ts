// The DNS client behind contact discovery (CONTRACT §3), shaped after
// Boulder's bdns: a small interface, results that carry the resolver that
// answered, the RCODE, the AD bit and RFC 8914 Extended DNS Errors, and a
// typed error. Retries happen on timeouts only, rotating to the next
// resolver; a SERVFAIL or REFUSED is an answer and is not retried. The first
// retry goes out after a shorter, measured timeout while the first query is
// still listened to (below). Every lookup takes an optional AbortSignal
// (Boulder's context). The client caches nothing itself: each result says how
// long it may be cached (`ttl`), and src/dns/cache.ts does the caching.
import { performance } from 'node:perf_hooks';
import {
  CLASS_IN,
  TYPE_CODE,
  checkQueryName,
  encodeQuery,
  readCaa,
  readCnameTarget,
  readSoaMinimum,
  readTxt,
  rcodeName,
  textNameKey,
  type ExtendedDnsError,
  type QueryType,
  type WireMessage,
  type WireRecord,
} from './message.ts';
import { cryptoRandom } from '../deps.ts';
import { canonicalResolver, formatResolver, type Resolver } from './resolvers.ts';
import { createUdpPool, type Expectation, type PoolOutcome, type UdpPool } from './transport.ts';

export { formatResolver, parseResolvers, systemResolvers, type Resolver } from './resolvers.ts';
export type { ExtendedDnsError, QueryType } from './message.ts';

export interface DnsClientOptions {
  /** Tried in order: the first for every query, the next one after a timeout. */
  resolvers: Resolver[];
  /**
   * Limit for each attempt, UDP and a TCP fallback together. Default 2000. The first
   * retry starts earlier (see firstRetryMs) but a lookup still ends within timeoutMs × attempts.
   */
  timeoutMs?: number;
  /** Attempts per lookup, counting the first; only timeouts start another. Default 2. */
  attempts?: number;
  /** Source of query ids; the process's pooled CSPRNG (src/deps.ts) unless a test fixes it. */
  random?: (bytes: number) => Buffer;
  /** The shared UDP sockets and the cap on queries in flight (transport.ts); one of its own by default. */
  pool?: UdpPool;
  /** Round-trip estimates per resolver, shared by clients of the same resolvers; one of its own by default. */
  rtt?: RttEstimator;
}

export interface DnsResult {
  /** The name asked for (without a trailing dot). */
  name: string;
  /** Both are answers: NXDOMAIN and NOERROR without data come with no records. */
  rcode: 'NOERROR' | 'NXDOMAIN';
  /** The resolver's AD bit: it validated the answer with DNSSEC. */
  authenticatedData: boolean;
  extendedErrors: ExtendedDnsError[];
  /** "host:port" of the resolver that answered ("[v6]:port" for IPv6). */
  resolver: string;
  /**
   * Seconds this answer may be cached: the smallest TTL of the records it rests on (CNAMEs
   * included); for NXDOMAIN and NOERROR without data the SOA's per RFC 2308 §5 (the lesser
   * of its TTL and MINIMUM). Absent when it must not be cached (a negative answer without SOA).
   */
  ttl?: number;
}

export interface TxtResult extends DnsResult {
  /** One entry per TXT record, in answer order: its character-strings as UTF-8 (the caller concatenates). */
  records: string[][];
}

export interface CaaRecord {
  flags: number;
  /** As on the wire; RFC 8659 tags compare case-insensitively. */
  tag: string;
  value: string;
}

export interface CaaResult extends DnsResult {
  records: CaaRecord[];
}

/**
 * A lookup's AbortSignal, or a function that makes it: only a lookup that waits (a query sent, or
 * joined in flight) calls it, so a call whose answers all come from the cache (src/dns/cache.ts)
 * never builds one. A request's signal is a controller, a timer and a listener on the response:
 * about 3 % of the server's CPU per JSON-format address list (issue 20, docs/PERFORMANCE.md).
 */
export type LookupSignal = AbortSignal | (() => AbortSignal | undefined);

/** The signal itself (made now, if `signal` is a function). */
export function signalOf(signal: LookupSignal | undefined): AbortSignal | undefined {
  return typeof signal === 'function' ? signal() : signal;
}

/**
 * `signal` (optional) abandons the lookup: it rejects at once with a DnsError of kind
 * `aborted` and its queries stop waiting (the request's client went away, or its deadline).
 */
export interface DnsClient {
  txt(name: string, signal?: LookupSignal): Promise<TxtResult>;
  caa(name: string, signal?: LookupSignal): Promise<CaaResult>;
}

/**
 * `no-validating-resolver`: `--dnssec require` and no resolver passes the DNSSEC probes (src/dns/dnssec.ts).
 * `aborted`: the caller's AbortSignal fired.
 */
export type DnsErrorKind = 'timeout' | 'servfail' | 'refused' | 'rcode' | 'malformed' | 'network' | 'overloaded' | 'aborted' | 'no-validating-resolver';

/** A lookup that produced no usable answer. CONTRACT §3: it drops only that contact source. */
export class DnsError extends Error {
  readonly kind: DnsErrorKind;
  /** The RCODE's mnemonic, for kinds servfail, refused and rcode. */
  readonly rcode: string | undefined;
  readonly extendedErrors: ExtendedDnsError[];
  /** The resolver that answered, or the last one tried for a timeout. */
  readonly resolver: string;
  /** The name that was looked up (like the results' `name`, not the class name). */
  override readonly name: string;
  readonly type: QueryType;

  constructor(
    init: { kind: DnsErrorKind; rcode?: string; extendedErrors?: ExtendedDnsError[]; resolver: string; name: string; type: QueryType },
    detail: string,
    cause?: unknown,
  ) {
    super(`DNS ${init.type} lookup of ${init.name} via ${init.resolver} failed: ${detail}`, cause === undefined ? undefined : { cause });
    this.kind = init.kind;
    this.rcode = init.rcode;
    this.extendedErrors = init.extendedErrors ?? [];
    this.resolver = init.resolver;
    // V8 writes the stack's first line when it is first read, from `name`:
    // read it while `name` still says what the error is.
    this.name = 'DnsError';
    void this.stack;
    this.name = init.name;
    this.type = init.type;
  }
}

const MAX_CNAME_HOPS = 8;

/** The error of a lookup abandoned through its AbortSignal. */
export function abortedLookup(name: string, type: QueryType): DnsError {
  return new DnsError({ kind: 'aborted', resolver: 'none', name, type }, 'abandoned by the caller (request ended)');
}

/**
 * When the first retry goes out: RFC 6298's retransmission timeout from the
 * resolver's measured round trips (SRTT + 4 × RTTVAR), at least
 * FIRST_RETRY_MIN_MS and at most the attempt timeout; INITIAL before any
 * measurement. The floor keeps a recursive resolver that is still resolving a
 * cache miss from being asked twice for everything.
 */
export const FIRST_RETRY_MIN_MS = 250;
export const FIRST_RETRY_INITIAL_MS = 500;

export class RttEstimator {
  private readonly byResolver = new Map<string, { srtt: number; rttvar: number }>();
  /** A round trip of an answered UDP query (never of one that was retried: Karn's rule holds, every try has its own id). */
  sample(resolver: string, ms: number): void {
    const e = this.byResolver.get(resolver);
    if (e === undefined) {
      this.byResolver.set(resolver, { srtt: ms, rttvar: ms / 2 });
      return;
    }
    e.rttvar = 0.75 * e.rttvar + 0.25 * Math.abs(e.srtt - ms);
    e.srtt = 0.875 * e.srtt + 0.125 * ms;
  }
  /** The first retry's timeout for `resolver`, within [FIRST_RETRY_MIN_MS, timeoutMs]. */
  firstRetryMs(resolver: string, timeoutMs: number): number {
    const e = this.byResolver.get(resolver);
    const rto = e === undefined ? FIRST_RETRY_INITIAL_MS : e.srtt + 4 * e.rttvar;
    return Math.min(timeoutMs, Math.max(FIRST_RETRY_MIN_MS, Math.ceil(rto)));
  }
}

/** An accepted NOERROR or NXDOMAIN answer, before its records are read. */
interface Answer {
  message: WireMessage;
  resolver: string;
  name: string;
  type: QueryType;
  expect: Expectation;
}

export function createDnsClient(options: DnsClientOptions): DnsClient {
  if (options.resolvers.length === 0) throw new Error('a DNS client needs at least one resolver');
  const resolvers = options.resolvers.map(canonicalResolver);
  const timeoutMs = options.timeoutMs ?? 2000;
  const attempts = options.attempts ?? 2;
  const random = options.random ?? cryptoRandom.bytes;
  const pool = options.pool ?? createUdpPool({ random });
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`DNS timeoutMs must be a positive number, got ${timeoutMs}`);
  if (!Number.isInteger(attempts) || attempts < 1) throw new RangeError(`DNS attempts must be an integer of at least 1, got ${attempts}`);

  const rtt = options.rtt ?? new RttEstimator();

  /** One try at one resolver: UDP, then TCP to the same resolver if the answer was truncated, within `ms`. */
  async function exchange(resolver: Resolver, query: Buffer, expect: Expectation, ms: number, signal: AbortSignal): Promise<PoolOutcome> {
    const started = performance.now();
    const outcome: PoolOutcome = await pool.udp(resolver, query, expect, ms, signal);
    if (outcome.kind === 'answer' && !outcome.message.truncated) rtt.sample(formatResolver(resolver), performance.now() - started);
    if (outcome.kind !== 'answer' || !outcome.message.truncated) return outcome;
    // The same query again over TCP to the same resolver, within what is left of this try's time.
    const remaining = ms - (performance.now() - started);
    return remaining > 0 ? pool.tcp(resolver, query, expect, remaining, signal) : { kind: 'timeout' };
  }

  /**
   * Tries are staggered: try 0 goes out at once; try 1 after the first-retry
   * timeout (shorter than timeoutMs, from measured round trips); each further
   * try timeoutMs after the one before. Every try keeps listening until the
   * last one has had its full timeoutMs, so an answer that is merely slow
   * still counts and a lookup still ends within timeoutMs × attempts. The
   * first outcome that is not a timeout decides; the other tries are abandoned.
   */
  function lookup(rawName: string, type: QueryType, lookupSignal: LookupSignal | undefined): Promise<Answer> {
    const name = rawName.endsWith('.') ? rawName.slice(0, -1) : rawName;
    checkQueryName(name);
    const signal = signalOf(lookupSignal);
    if (signal?.aborted) return Promise.reject(abortedLookup(name, type));
    // A retry budget: while the query cap is half used or more, an early retry would only add to an
    // overload (measured: it halved the lookups per second of an overloaded resolver), so it waits timeoutMs.
    const busy = pool.limiter.inFlight * 2 >= pool.limiter.maxInFlight || pool.limiter.queued > 0;
    const firstRetry = busy ? timeoutMs : rtt.firstRetryMs(formatResolver(resolvers[0]!), timeoutMs);
    /** When try i goes out, from the start of the lookup; the lookup ends at end. */
    const sendAt = (i: number) => (i === 0 ? 0 : firstRetry + (i - 1) * timeoutMs);
    const end = sendAt(attempts - 1) + timeoutMs;
    const started = performance.now();
    const stop = new AbortController();
    const tried: string[] = [];
    return new Promise<Answer>((resolve, reject) => {
      let settled = false;
      let running = 0;
      let next: NodeJS.Timeout | undefined;
      const onAbort = () => finish(() => reject(abortedLookup(name, type)));
      const finish = (then: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(next);
        signal?.removeEventListener('abort', onAbort);
        // Only tries still out need stopping (an abort() builds a DOMException with its stack: not free).
        if (running > 0) stop.abort();
        then();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const launch = (i: number): void => {
        const resolver = resolvers[i % resolvers.length]!;
        const address = formatResolver(resolver);
        tried.push(address);
        const id = random(2).readUInt16BE(0);
        const query = encodeQuery(id, name, type);
        const expect: Expectation = { id, name: textNameKey(name), type: TYPE_CODE[type] };
        running++;
        if (i + 1 < attempts) next = setTimeout(() => launch(i + 1), Math.max(0, sendAt(i + 1) - (performance.now() - started)));
        exchange(resolver, query, expect, Math.max(1, end - (performance.now() - started)), stop.signal).then(
          (outcome) => {
            running--;
            if (settled || outcome.kind === 'aborted') return;
            if (outcome.kind === 'timeout') {
              // Only the last try to give up ends the lookup.
              if (running === 0 && tried.length === attempts) {
                finish(() =>
                  reject(new DnsError({ kind: 'timeout', resolver: tried.at(-1)!, name, type }, `no answer within ${timeoutMs} ms in ${attempts} attempt(s) (${tried.join(', ')})`)),
                );
              }
              return;
            }
            finish(() => {
              try {
                resolve(accept(outcome, address, name, type, expect));
              } catch (error) {
                reject(error);
              }
            });
          },
          (error: unknown) => finish(() => reject(error)),
        );
      };
      launch(0);
    });
  }

  /** An outcome that is not a timeout: the answer, or the DnsError it amounts to. */
  function accept(outcome: Exclude<PoolOutcome, { kind: 'timeout' | 'aborted' }>, address: string, name: string, type: QueryType, expect: Expectation): Answer {
    const base = { resolver: address, name, type };
    if (outcome.kind !== 'answer') throw new DnsError({ ...base, kind: outcome.kind }, outcome.detail, outcome.cause);
    const { message } = outcome;
    const rcode = rcodeName(message.rcode);
    if (message.rcode !== 0 && message.rcode !== 3) {
      const kind = message.rcode === 2 ? 'servfail' : message.rcode === 5 ? 'refused' : 'rcode';
      const ede = message.extendedErrors.map((e) => ` (EDE ${e.infoCode}${e.extraText === '' ? '' : `: ${e.extraText}`})`).join('');
      throw new DnsError({ ...base, kind, rcode, extendedErrors: message.extendedErrors }, `${rcode}${ede}`);
    }
    return { message, resolver: address, name, type, expect };
  }

  // Record data is read once the answer was accepted; a record that does not
  // parse makes the whole answer malformed. NXDOMAIN has no records by definition.
  function read<T>(found: Answer, readOne: (record: WireRecord) => T): DnsResult & { records: T[] } {
    const { message } = found;
    try {
      const chain = message.rcode === 3 ? { records: [], aliases: [] } : recordsFor(message, found.expect);
      const records = chain.records.map(readOne);
      const result: DnsResult & { records: T[] } = {
        name: found.name,
        rcode: message.rcode === 3 ? 'NXDOMAIN' : 'NOERROR',
        authenticatedData: message.authenticatedData,
        extendedErrors: message.extendedErrors,
        resolver: found.resolver,
        records,
      };
      const ttl = cacheTtl(message, chain);
      if (ttl !== undefined) result.ttl = ttl;
      return result;
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new DnsError({ kind: 'malformed', resolver: found.resolver, name: found.name, type: found.type }, detail);
    }
  }

  return {
    async txt(name, signal) {
      const found = await lookup(name, 'TXT', signal);
      // Invalid UTF-8 turns into U+FFFD here; the §3 address check has to refuse that character.
      return read(found, (record) => readTxt(found.message, record).map((s) => s.toString('utf8')));
    },
    async caa(name, signal) {
      const found = await lookup(name, 'CAA', signal);
      return read(found, (record) => {
        const caa = readCaa(found.message, record);
        return { flags: caa.flags, tag: caa.tag, value: caa.value.toString('utf8') };
      });
    },
  };
}

/**
 * How long an answer may be cached, in seconds. Data: the smallest TTL of the
 * records and of the CNAMEs that led to them. No data (NXDOMAIN, NODATA): RFC
 * 2308 §5, the lesser of the SOA record's TTL and its MINIMUM field, also no
 * more than the CNAMEs'; without an SOA in the authority section it is not
 * cached at all.
 */
function cacheTtl(message: WireMessage, chain: { records: WireRecord[]; aliases: WireRecord[] }): number | undefined {
  let ttl = Infinity;
  for (const record of chain.aliases) ttl = Math.min(ttl, record.ttl);
  if (chain.records.length > 0) {
    for (const record of chain.records) ttl = Math.min(ttl, record.ttl);
    return ttl;
  }
  const soa = message.authorities.find((r) => r.type === TYPE_CODE.SOA && r.klass === CLASS_IN);
  if (soa === undefined) return undefined;
  return Math.min(ttl, soa.ttl, readSoaMinimum(message, soa));
}

/**
 * Records of the queried type at the queried name. A CNAME chain inside the
 * answer section is followed (a recursive resolver puts the whole chain there)
 * and the records at its end count; any other owner name is ignored.
 */
function recordsFor(message: WireMessage, expect: Expectation): { records: WireRecord[]; aliases: WireRecord[] } {
  let owner = expect.name;
  const seen = new Set([owner]);
  const aliases: WireRecord[] = [];
  for (let hop = 0; hop < MAX_CNAME_HOPS; hop++) {
    const alias = message.answers.find((r) => r.type === TYPE_CODE.CNAME && r.klass === CLASS_IN && r.owner === owner);
    if (alias === undefined) break;
    aliases.push(alias);
    owner = readCnameTarget(message, alias);
    if (seen.has(owner)) return { records: [], aliases }; // a CNAME loop has no data
    seen.add(owner);
  }
  return { records: message.answers.filter((r) => r.type === expect.type && r.klass === CLASS_IN && r.owner === owner), aliases };
}

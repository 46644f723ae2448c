// The DNS client behind contact discovery (CONTRACT §3), shaped after
// Boulder's bdns: a small interface, results that carry the resolver that
// answered, the RCODE, the AD bit and RFC 8914 Extended DNS Errors, and a
// typed error. Retries happen on timeouts only, rotating to the next
// resolver; a SERVFAIL or REFUSED is an answer and is not retried. Nothing
// is cached: every call asks the resolver (lookups are promised real-time).
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  CLASS_IN,
  TYPE_CODE,
  checkQueryName,
  encodeQuery,
  readCaa,
  readCnameTarget,
  readTxt,
  rcodeName,
  textNameKey,
  type ExtendedDnsError,
  type QueryType,
  type WireMessage,
  type WireRecord,
} from './message.ts';
import { canonicalResolver, formatResolver, type Resolver } from './resolvers.ts';
import { createUdpPool, type Expectation, type PoolOutcome, type UdpPool } from './transport.ts';

export { formatResolver, parseResolvers, systemResolvers, type Resolver } from './resolvers.ts';
export type { ExtendedDnsError, QueryType } from './message.ts';

export interface DnsClientOptions {
  /** Tried in order: the first for every query, the next one after a timeout. */
  resolvers: Resolver[];
  /** Limit for each attempt, UDP and a TCP fallback together. Default 2000. */
  timeoutMs?: number;
  /** Attempts per lookup, counting the first; only timeouts start another. Default 2. */
  attempts?: number;
  /** Source of query ids; a pooled crypto.randomBytes unless a test fixes it. */
  random?: (bytes: number) => Buffer;
  /** The shared UDP sockets and the cap on queries in flight (transport.ts); one of its own by default. */
  pool?: UdpPool;
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

export interface DnsClient {
  txt(name: string): Promise<TxtResult>;
  caa(name: string): Promise<CaaResult>;
}

/** `no-validating-resolver`: `--dnssec require` and no resolver passes the DNSSEC probes (src/dns/dnssec.ts). */
export type DnsErrorKind = 'timeout' | 'servfail' | 'refused' | 'rcode' | 'malformed' | 'network' | 'overloaded' | 'no-validating-resolver';

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

/** An accepted NOERROR or NXDOMAIN answer, before its records are read. */
interface Answer {
  message: WireMessage;
  resolver: string;
  name: string;
  type: QueryType;
  expect: Expectation;
}

/**
 * CSPRNG bytes drawn from a 4 KiB buffer refilled by randomBytes: one system
 * call per 2,048 query ids instead of one per query. Each byte is used once.
 */
function pooledRandom(): (n: number) => Buffer {
  let pool = randomBytes(4096);
  let offset = 0;
  return (n) => {
    if (offset + n > pool.length) {
      pool = randomBytes(4096);
      offset = 0;
    }
    offset += n;
    return pool.subarray(offset - n, offset);
  };
}

export function createDnsClient(options: DnsClientOptions): DnsClient {
  if (options.resolvers.length === 0) throw new Error('a DNS client needs at least one resolver');
  const resolvers = options.resolvers.map(canonicalResolver);
  const timeoutMs = options.timeoutMs ?? 2000;
  const attempts = options.attempts ?? 2;
  const random = options.random ?? pooledRandom();
  const pool = options.pool ?? createUdpPool({ random });
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`DNS timeoutMs must be a positive number, got ${timeoutMs}`);
  if (!Number.isInteger(attempts) || attempts < 1) throw new RangeError(`DNS attempts must be an integer of at least 1, got ${attempts}`);

  async function lookup(rawName: string, type: QueryType): Promise<Answer> {
    const name = rawName.endsWith('.') ? rawName.slice(0, -1) : rawName;
    checkQueryName(name);
    const tried: string[] = [];
    for (let attempt = 0; attempt < attempts; attempt++) {
      const resolver = resolvers[attempt % resolvers.length]!;
      const address = formatResolver(resolver);
      tried.push(address);
      const id = random(2).readUInt16BE(0);
      const query = encodeQuery(id, name, type);
      const expect: Expectation = { id, name: textNameKey(name), type: TYPE_CODE[type] };
      const started = performance.now();
      let outcome: PoolOutcome = await pool.udp(resolver, query, expect, timeoutMs);
      if (outcome.kind === 'answer' && outcome.message.truncated) {
        // The same query again over TCP to the same resolver, within what is
        // left of this attempt's time, so a lookup never outlasts timeoutMs * attempts.
        const remaining = timeoutMs - (performance.now() - started);
        outcome = remaining > 0 ? await pool.tcp(resolver, query, expect, remaining) : { kind: 'timeout' };
      }
      if (outcome.kind === 'timeout') continue;
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
    throw new DnsError(
      { kind: 'timeout', resolver: tried.at(-1)!, name, type },
      `no answer within ${timeoutMs} ms in ${attempts} attempt(s) (${tried.join(', ')})`,
    );
  }

  function result(found: Answer): DnsResult {
    return {
      name: found.name,
      rcode: found.message.rcode === 3 ? 'NXDOMAIN' : 'NOERROR',
      authenticatedData: found.message.authenticatedData,
      extendedErrors: found.message.extendedErrors,
      resolver: found.resolver,
    };
  }

  // Record data is read once the answer was accepted; a record that does not
  // parse makes the whole answer malformed. NXDOMAIN has no records by definition.
  function readRecords<T>(found: Answer, read: (record: WireRecord) => T): T[] {
    if (found.message.rcode === 3) return [];
    try {
      return recordsFor(found.message, found.expect).map(read);
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new DnsError({ kind: 'malformed', resolver: found.resolver, name: found.name, type: found.type }, detail);
    }
  }

  return {
    async txt(name) {
      const found = await lookup(name, 'TXT');
      // Invalid UTF-8 turns into U+FFFD here; the §3 address check has to refuse that character.
      const records = readRecords(found, (record) => readTxt(found.message, record).map((s) => s.toString('utf8')));
      return { ...result(found), records };
    },
    async caa(name) {
      const found = await lookup(name, 'CAA');
      const records = readRecords(found, (record) => {
        const caa = readCaa(found.message, record);
        return { flags: caa.flags, tag: caa.tag, value: caa.value.toString('utf8') };
      });
      return { ...result(found), records };
    },
  };
}

/**
 * Records of the queried type at the queried name. A CNAME chain inside the
 * answer section is followed (a recursive resolver puts the whole chain there)
 * and the records at its end count; any other owner name is ignored.
 */
function recordsFor(message: WireMessage, expect: Expectation): WireRecord[] {
  let owner = expect.name;
  const seen = new Set([owner]);
  for (let hop = 0; hop < MAX_CNAME_HOPS; hop++) {
    const alias = message.answers.find((r) => r.type === TYPE_CODE.CNAME && r.klass === CLASS_IN && r.owner === owner);
    if (alias === undefined) break;
    owner = readCnameTarget(message, alias);
    if (seen.has(owner)) return []; // a CNAME loop has no data
    seen.add(owner);
  }
  return message.answers.filter((r) => r.type === expect.type && r.klass === CLASS_IN && r.owner === owner);
}

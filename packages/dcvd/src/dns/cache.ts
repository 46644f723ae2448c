/**
 * A cache of contact-lookup answers (issue 20), what any recursive resolver
 * does: an answer is kept for its TTL (a negative one for its SOA's, RFC 2308
 * §5; src/dns/client.ts computes it), never longer than `maxTtlMs`
 * (`--dns-cache-max-ttl`), and served with everything it came with: rcode,
 * the AD bit, Extended DNS Errors and the resolver that answered, so the
 * DNSSEC evidence of a cached answer is that of the answer itself. Failures
 * (SERVFAIL, timeouts, …) are never cached. Concurrent identical lookups share
 * one query. Bounded in entries: the least recently used entry goes first.
 *
 * It sits between the sandbox's overrides and the resolvers (server.ts:
 * overrides → cache → DNSSEC policy's client), so an override set after an
 * answer was cached wins at once. The DNSSEC policy clears it when the set of
 * proven resolvers changes (src/dns/dnssec.ts).
 */
import { abortedLookup, signalOf, type CaaResult, type DnsClient, type DnsResult, type LookupSignal, type QueryType, type TxtResult } from './client.ts';

/** Entries kept at most: about 1 KiB each, so about 10 MiB when full. */
export const DNS_CACHE_MAX_ENTRIES = 10_000;

export type DnsCacheEvent = 'hit' | 'miss' | 'coalesced';

export interface DnsCacheOptions {
  /** Longest an answer is kept, whatever its TTL; 0 turns the cache (and the coalescing) off. */
  maxTtlMs: number;
  maxEntries?: number;
  /** The server's clock (the sandbox's can be moved forward: cached answers then expire). */
  now: () => number;
  /** Told of every lookup that went through the cache (metrics). */
  onEvent?: (event: DnsCacheEvent) => void;
}

interface Entry {
  result: DnsResult;
  storedAt: number;
  expiresAt: number;
}

interface Shared {
  promise: Promise<DnsResult>;
  /** Aborts the query once every caller waiting for it has gone. */
  controller: AbortController;
  waiters: number;
}

export class DnsCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Shared>();
  /** Bumped by clear(): a query that started before does not store its answer. */
  private generation = 0;
  private readonly maxEntries: number;

  constructor(private readonly options: DnsCacheOptions) {
    if (!Number.isFinite(options.maxTtlMs) || options.maxTtlMs < 0) throw new RangeError(`DNS cache max TTL must be ≥ 0 ms, got ${options.maxTtlMs}`);
    this.maxEntries = options.maxEntries ?? DNS_CACHE_MAX_ENTRIES;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) throw new RangeError(`DNS cache entries must be an integer ≥ 1, got ${this.maxEntries}`);
  }

  get enabled(): boolean {
    return this.options.maxTtlMs > 0;
  }

  /** Entries held now (expired ones included until they are looked up or pushed out). */
  get size(): number {
    return this.entries.size;
  }

  /** Forgets every answer; queries in flight still answer their callers but store nothing. */
  clear(): void {
    this.entries.clear();
    this.inFlight.clear();
    this.generation++;
  }

  /** `inner` behind the cache; with max TTL 0, `inner` itself. */
  wrap(inner: DnsClient): DnsClient {
    if (!this.enabled) return inner;
    return {
      ...inner,
      txt: (name, signal) => this.lookup('TXT', name, signal, (s) => inner.txt(name, s)) as Promise<TxtResult>,
      caa: (name, signal) => this.lookup('CAA', name, signal, (s) => inner.caa(name, s)) as Promise<CaaResult>,
    };
  }

  private lookup(type: QueryType, rawName: string, lookupSignal: LookupSignal | undefined, ask: (signal: AbortSignal) => Promise<DnsResult>): Promise<DnsResult> {
    const name = rawName.endsWith('.') ? rawName.slice(0, -1) : rawName;
    const key = `${type} ${name.toLowerCase()}`;
    const now = this.options.now();
    const entry = this.entries.get(key);
    if (entry !== undefined) {
      // A clock moved backwards (the sandbox's cannot, a host's can) also ends an entry.
      if (now >= entry.storedAt && now < entry.expiresAt) {
        // Least recently used goes first: a hit moves to the back.
        this.entries.delete(key);
        this.entries.set(key, entry);
        this.options.onEvent?.('hit');
        return Promise.resolve({ ...entry.result, ttl: Math.ceil((entry.expiresAt - now) / 1000) });
      }
      this.entries.delete(key);
    }
    // A hit needs no signal; from here the lookup may wait.
    const signal = signalOf(lookupSignal);
    if (signal?.aborted) return Promise.reject(abortedLookup(name, type));
    let shared = this.inFlight.get(key);
    if (shared === undefined) {
      this.options.onEvent?.('miss');
      shared = this.ask(key, ask);
    } else {
      this.options.onEvent?.('coalesced');
    }
    return this.wait(shared, key, name, type, signal);
  }

  private ask(key: string, ask: (signal: AbortSignal) => Promise<DnsResult>): Shared {
    const generation = this.generation;
    const controller = new AbortController();
    const shared: Shared = { controller, waiters: 0, promise: undefined as unknown as Promise<DnsResult> };
    shared.promise = ask(controller.signal).then(
      (result) => {
        if (this.inFlight.get(key) === shared) this.inFlight.delete(key);
        if (generation === this.generation && !controller.signal.aborted) this.store(key, result);
        return result;
      },
      (error: unknown) => {
        if (this.inFlight.get(key) === shared) this.inFlight.delete(key);
        throw error;
      },
    );
    // Each caller handles the outcome through wait(); this copy must not count as unhandled.
    shared.promise.catch(() => undefined);
    this.inFlight.set(key, shared);
    return shared;
  }

  /** One caller's share of a query: its own signal abandons only its wait, the last one the query. */
  private wait(shared: Shared, key: string, name: string, type: QueryType, signal: AbortSignal | undefined): Promise<DnsResult> {
    shared.waiters++;
    if (signal === undefined) return shared.promise;
    return new Promise((resolve, reject) => {
      let done = false;
      const onAbort = (): void => {
        if (done) return;
        done = true;
        if (--shared.waiters === 0) {
          // Nobody wants the answer any more: stop the query, and let the next caller start a new one.
          if (this.inFlight.get(key) === shared) this.inFlight.delete(key);
          shared.controller.abort();
        }
        reject(abortedLookup(name, type));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      shared.promise.then(
        (result) => {
          if (done) return;
          done = true;
          signal.removeEventListener('abort', onAbort);
          resolve(result);
        },
        (error: unknown) => {
          if (done) return;
          done = true;
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  }

  private store(key: string, result: DnsResult): void {
    if (result.ttl === undefined || result.ttl <= 0) return;
    const now = this.options.now();
    const lifetime = Math.min(result.ttl * 1000, this.options.maxTtlMs);
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    this.entries.set(key, { result, storedAt: now, expiresAt: now + lifetime });
  }
}

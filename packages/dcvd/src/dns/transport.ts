// One query/answer exchange with one resolver over UDP (a pooled socket) or
// TCP (a connection of its own).
//
// Every exchange resolves with an Outcome and never rejects, and every path
// through it clears its timer: a lookup that has finished leaves nothing
// behind in the event loop but the pool's long-lived, unref()'d sockets.
import { cryptoRandom } from '../deps.ts';
import dgram from 'node:dgram';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { CLASS_IN, MalformedMessage, parseMessage, peekId, type WireMessage } from './message.ts';
import { canonicalIp, type Resolver } from './resolvers.ts';

/** What an answer must match to be ours. */
export interface Expectation {
  id: number;
  /** nameKey of the question. */
  name: string;
  type: number;
}

export type Outcome =
  | { kind: 'answer'; message: WireMessage }
  | { kind: 'timeout' }
  /** The caller's AbortSignal fired: the query was abandoned (its late answer is a stray). */
  | { kind: 'aborted' }
  | { kind: 'malformed' | 'network'; detail: string; cause?: unknown };

type Verdict = Outcome | { kind: 'ignore'; detail: string };

/**
 * Decides whether a message answers our query. 'ignore' is for messages that
 * are not ours (wrong id, not a response, another question): over UDP they may
 * be stray or forged datagrams, and we keep waiting for the real answer.
 */
function judge(buffer: Buffer, expect: Expectation, udp = false): Verdict {
  const id = peekId(buffer);
  if (id === undefined) return { kind: 'ignore', detail: 'message shorter than a DNS header' };
  if (id !== expect.id) return { kind: 'ignore', detail: `message id ${id} is not the query's id ${expect.id}` };
  let message: WireMessage;
  try {
    message = parseMessage(buffer);
  } catch (error) {
    // A UDP response whose header says it was truncated is asked again over TCP whatever follows the header:
    // the client reads none of it, and a server may cut it anywhere (RFC 1035 §4.1.1), mid-record or with
    // bytes after it. Forged, it can only send the query to TCP, the safer transport.
    if (udp) {
      const truncated = truncatedHeader(buffer);
      if (truncated) return { kind: 'answer', message: truncated };
    }
    // Anything the parser throws means the bytes are not a message we can
    // use; it must not escape into a socket event handler.
    const detail = error instanceof MalformedMessage ? error.message : `unreadable message: ${String(error)}`;
    return { kind: 'malformed', detail };
  }
  if (!message.isResponse) return { kind: 'ignore', detail: 'message is a query, not a response' };
  if (message.opcode !== 0) return { kind: 'ignore', detail: `response has opcode ${message.opcode}, not QUERY` };
  const [question, ...more] = message.questions;
  if (question === undefined) {
    // RFC 1035 does not require an error response to repeat the question, and
    // some servers drop it from FORMERR/NOTIMP/REFUSED answers. Such an answer
    // can only ever make the lookup fail, so accepting it cannot be abused to
    // plant records.
    if (message.rcode === 0 || message.rcode === 3) return { kind: 'ignore', detail: 'successful response without a question' };
    return { kind: 'answer', message };
  }
  if (more.length > 0) return { kind: 'ignore', detail: 'response has more than one question' };
  if (question.name !== expect.name || question.type !== expect.type || question.klass !== CLASS_IN) {
    return { kind: 'ignore', detail: 'response is for another question' };
  }
  return { kind: 'answer', message };
}

/** The header of a UDP response with its TC bit set, as a message with nothing after the header; undefined for any other. */
function truncatedHeader(buffer: Buffer): WireMessage | undefined {
  const flags = buffer.readUInt16BE(2);
  const isResponse = (flags & 0x8000) !== 0;
  const opcode = (flags >> 11) & 0x0f;
  if (!isResponse || opcode !== 0 || (flags & 0x0200) === 0) return undefined;
  return { buffer, id: buffer.readUInt16BE(0), isResponse, opcode, truncated: true, authenticatedData: false, rcode: flags & 0x0f, questions: [], answers: [], authorities: [], extendedErrors: [] };
}

/**
 * TCP exchange (RFC 7766): one connection, the query and the answer each
 * behind a 2-byte length. The connection is ours alone, so a message that is
 * not the answer to our query means the stream is broken: malformed.
 */
export function tcpExchange(resolver: Resolver, query: Buffer, expect: Expectation, timeoutMs: number, signal?: AbortSignal): Promise<Outcome> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve({ kind: 'aborted' });
    const socket = net.connect({ host: resolver.host, port: resolver.port });
    let received = Buffer.alloc(0);
    let done = false;
    const onAbort = (): void => finish({ kind: 'aborted' });
    const finish = (outcome: Outcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', (error) => finish({ kind: 'network', detail: error.message, cause: error }));
    socket.on('close', () => finish({ kind: 'network', detail: 'TCP connection closed before a complete answer' }));
    socket.on('connect', () => {
      const frame = Buffer.alloc(2 + query.length);
      frame.writeUInt16BE(query.length, 0);
      query.copy(frame, 2);
      socket.write(frame);
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const length = received.readUInt16BE(0);
      if (received.length < 2 + length) return;
      const verdict = judge(received.subarray(2, 2 + length), expect);
      finish(verdict.kind === 'ignore' ? { kind: 'malformed', detail: `over TCP: ${verdict.detail}` } : verdict);
    });
  });
}

function withoutZone(address: string): string {
  const zoneAt = address.indexOf('%');
  return zoneAt === -1 ? address : address.slice(0, zoneAt);
}

// ---------------------------------------------------------------------------
// The shared UDP pool and the global cap on queries in flight (issue 14 item 2).
//
// A socket per query let one caller with a zone that never answers hold
// thousands of file descriptors open at once. Instead, each resolver gets a
// few long-lived UDP sockets, each bound by the OS to its own random source
// port; queries on a socket are told apart by a 16-bit id drawn from a CSPRNG
// (never one already in flight on that socket) and answers are matched by
// source address, id and question. A socket is retired after a bounded
// number of queries and replaced by a fresh one on a new random port, so an
// off-path forger cannot learn a port once and keep using it. Anything else
// that arrives on a socket (a stray, late or forged datagram) is ignored and
// counted. Every exchange, UDP or TCP, first takes a slot from one limiter:
// at most `maxInFlight` queries are on the wire, at most `maxQueued` wait,
// and a query that cannot get a slot within its timeout, or finds the queue
// full, ends as 'overloaded' (a failed lookup, CONTRACT §3).

/** The outcome of a query that never went on the wire because of the cap. */
export type PoolOutcome = Outcome | { kind: 'overloaded'; detail: string; cause?: undefined };

export type PoolEvent =
  /** A query found the queue full, or waited its whole timeout for a slot. */
  | 'overloaded'
  /** A datagram that answers nothing in flight (late, stray or forged). */
  | 'stray'
  /** A socket failed (EMFILE/ENFILE when binding, …); its queries fail as 'network'. */
  | 'socket-error';

/**
 * Counting semaphore with a bounded FIFO queue. acquire() resolves true once
 * a slot is held (release it exactly once), false when the queue is full or
 * no slot freed up within `waitMs`.
 */
export class QueryLimiter {
  private active = 0;
  private readonly waiting: { grant: (ok: boolean) => void; timer: NodeJS.Timeout; cancel: (() => void) | undefined }[] = [];
  constructor(
    readonly maxInFlight: number,
    readonly maxQueued: number,
  ) {
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new RangeError(`DNS maxInFlight must be an integer of at least 1, got ${maxInFlight}`);
    if (!Number.isInteger(maxQueued) || maxQueued < 0) throw new RangeError(`DNS maxQueued must be an integer of at least 0, got ${maxQueued}`);
  }
  get inFlight(): number {
    return this.active;
  }
  get queued(): number {
    return this.waiting.length;
  }
  /** Also false, at once, when `signal` fires while waiting. */
  acquire(waitMs: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    if (this.active < this.maxInFlight && this.waiting.length === 0) {
      this.active++;
      return Promise.resolve(true);
    }
    if (this.waiting.length >= this.maxQueued) return Promise.resolve(false);
    return new Promise((resolve) => {
      const leave = (): void => {
        clearTimeout(entry.timer);
        entry.cancel?.();
        const at = this.waiting.indexOf(entry);
        if (at !== -1) this.waiting.splice(at, 1);
        resolve(false);
      };
      const entry = { grant: resolve, timer: setTimeout(leave, waitMs), cancel: undefined as (() => void) | undefined };
      if (signal) {
        signal.addEventListener('abort', leave, { once: true });
        entry.cancel = () => signal.removeEventListener('abort', leave);
      }
      this.waiting.push(entry);
    });
  }
  release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) {
      // The slot passes straight to the next waiter.
      clearTimeout(next.timer);
      next.cancel?.();
      next.grant(true);
      return;
    }
    if (this.active <= 0) throw new Error('QueryLimiter.release() without a slot held');
    this.active--;
  }
}

export interface UdpPoolOptions {
  /** Long-lived sockets per resolver, each on its own random port. Default 4. */
  socketsPerResolver?: number;
  /** Queries after which a socket is retired and replaced (a new random port). Default 1024. */
  queriesPerSocket?: number;
  /** A socket with nothing in flight for this long is closed. Default 10000. */
  idleMs?: number;
  /** Global cap on DNS queries in flight (UDP and TCP). Default 256. */
  maxInFlight?: number;
  /** Queries that may wait for a slot; beyond that they fail at once as 'overloaded'. Default 1024. */
  maxQueued?: number;
  /** CSPRNG bytes for query ids; the process's pooled CSPRNG (src/deps.ts) by default. */
  random?: (bytes: number) => Buffer;
  /** Told of every overload, stray datagram and socket error (for the log and the metrics). */
  onEvent?: (event: PoolEvent, detail: string) => void;
}

export interface UdpPool {
  /**
   * One UDP exchange over a pooled socket. `expect.id` is used when it is free on that socket.
   * `signal` abandons it at once (outcome `aborted`): its id and its slot are freed.
   */
  udp(resolver: Resolver, query: Buffer, expect: Expectation, timeoutMs: number, signal?: AbortSignal): Promise<PoolOutcome>;
  /** tcpExchange behind the same cap. */
  tcp(resolver: Resolver, query: Buffer, expect: Expectation, timeoutMs: number, signal?: AbortSignal): Promise<PoolOutcome>;
  /** Sockets open now, over every resolver. */
  readonly sockets: number;
  readonly limiter: QueryLimiter;
  /** Closes every socket; queries in flight end as 'network'. */
  close(): void;
}

interface Pending {
  expect: Expectation;
  finish: (outcome: Outcome) => void;
}

interface PooledSocket {
  socket: dgram.Socket;
  pending: Map<number, Pending>;
  used: number;
  retired: boolean;
  closed: boolean;
  idle: NodeJS.Timeout | undefined;
}

export function createUdpPool(options: UdpPoolOptions): UdpPool {
  const perResolver = options.socketsPerResolver ?? 4;
  const queriesPerSocket = options.queriesPerSocket ?? 1024;
  const idleMs = options.idleMs ?? 10_000;
  const limiter = new QueryLimiter(options.maxInFlight ?? 256, options.maxQueued ?? 1024);
  const emit = options.onEvent ?? (() => {});
  const random = options.random ?? cryptoRandom.bytes;
  if (!Number.isInteger(perResolver) || perResolver < 1) throw new RangeError(`DNS socketsPerResolver must be an integer of at least 1, got ${perResolver}`);
  if (!Number.isInteger(queriesPerSocket) || queriesPerSocket < 1) throw new RangeError(`DNS queriesPerSocket must be an integer of at least 1, got ${queriesPerSocket}`);
  /** Live (not retired) sockets per resolver key, and a round-robin cursor. */
  const pools = new Map<string, { live: PooledSocket[]; next: number }>();
  const all = new Set<PooledSocket>();
  let shut = false;

  const closeSocket = (entry: PooledSocket, failure?: string): void => {
    if (entry.closed) return;
    entry.closed = true;
    clearTimeout(entry.idle);
    all.delete(entry);
    for (const pool of pools.values()) {
      const at = pool.live.indexOf(entry);
      if (at !== -1) pool.live.splice(at, 1);
    }
    for (const pending of [...entry.pending.values()]) pending.finish({ kind: 'network', detail: failure ?? 'DNS socket closed' });
    try {
      entry.socket.close();
    } catch {
      // Node already closed it after a failed bind.
    }
  };

  const openSocket = (resolver: Resolver): PooledSocket => {
    const socket = dgram.createSocket(resolver.host.includes(':') ? 'udp6' : 'udp4');
    const entry: PooledSocket = { socket, pending: new Map(), used: 0, retired: false, closed: false, idle: undefined };
    const resolverAddress = withoutZone(resolver.host);
    // EMFILE/ENFILE on bind, and any later socket error, land here: the
    // socket's queries fail, the next query opens a new socket.
    socket.on('error', (error) => {
      emit('socket-error', error.message);
      closeSocket(entry, error.message);
    });
    socket.on('message', (datagram, remote) => {
      if (remote.port !== resolver.port || withoutZone(canonicalIp(remote.address) ?? '') !== resolverAddress) {
        emit('stray', 'datagram from another address than the resolver');
        return;
      }
      const id = peekId(datagram);
      const pending = id === undefined ? undefined : entry.pending.get(id);
      if (pending === undefined) {
        emit('stray', id === undefined ? 'datagram shorter than a DNS header' : `no query in flight with id ${id}`);
        return;
      }
      const verdict = judge(datagram, pending.expect, true);
      if (verdict.kind === 'ignore') emit('stray', verdict.detail);
      else pending.finish(verdict);
    });
    socket.unref();
    all.add(entry);
    return entry;
  };

  const socketFor = (resolver: Resolver): PooledSocket => {
    const key = `${resolver.host}|${resolver.port}`;
    let pool = pools.get(key);
    if (pool === undefined) pools.set(key, (pool = { live: [], next: 0 }));
    if (pool.live.length < perResolver) {
      const fresh = openSocket(resolver);
      pool.live.push(fresh);
      return fresh;
    }
    pool.next = (pool.next + 1) % pool.live.length;
    return pool.live[pool.next]!;
  };

  /** After a query ends: retire a used-up socket, close an idle one later. */
  const settle = (entry: PooledSocket): void => {
    if (entry.pending.size > 0 || entry.closed) return;
    if (entry.retired) return closeSocket(entry);
    clearTimeout(entry.idle);
    entry.idle = setTimeout(() => {
      if (entry.pending.size === 0) closeSocket(entry);
    }, idleMs);
    entry.idle.unref();
  };

  const freeId = (entry: PooledSocket, wanted: number): number => {
    if (!entry.pending.has(wanted)) return wanted;
    for (;;) {
      const id = random(2).readUInt16BE(0);
      if (!entry.pending.has(id)) return id;
    }
  };

  const sendOn = (resolver: Resolver, query: Buffer, expect: Expectation, timeoutMs: number, signal?: AbortSignal): Promise<Outcome> =>
    new Promise((resolve) => {
      if (shut) return resolve({ kind: 'network', detail: 'DNS client closed' });
      if (signal?.aborted) return resolve({ kind: 'aborted' });
      const entry = socketFor(resolver);
      clearTimeout(entry.idle);
      entry.used++;
      if (entry.used >= queriesPerSocket) {
        // Its last query: later ones go to a fresh socket on a new port.
        entry.retired = true;
        for (const pool of pools.values()) {
          const at = pool.live.indexOf(entry);
          if (at !== -1) pool.live.splice(at, 1);
        }
      }
      const id = freeId(entry, expect.id);
      const ours: Expectation = { ...expect, id };
      let wire = query;
      if (id !== expect.id) {
        wire = Buffer.from(query);
        wire.writeUInt16BE(id, 0);
      }
      let done = false;
      const onAbort = (): void => finish({ kind: 'aborted' });
      const finish = (outcome: Outcome): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        entry.pending.delete(id);
        settle(entry);
        resolve(outcome);
      };
      const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      entry.pending.set(id, { expect: ours, finish });
      try {
        entry.socket.send(wire, resolver.port, resolver.host, (error) => {
          if (error) finish({ kind: 'network', detail: error.message, cause: error });
        });
      } catch (error) {
        finish({ kind: 'network', detail: error instanceof Error ? error.message : String(error), cause: error });
      }
    });

  // Time spent waiting for a slot counts against the query's own timeout.
  const capped = async (run: (remainingMs: number) => Promise<Outcome>, timeoutMs: number, signal: AbortSignal | undefined): Promise<PoolOutcome> => {
    const started = performance.now();
    const granted = await limiter.acquire(timeoutMs, signal);
    const remaining = timeoutMs - (performance.now() - started);
    if (signal?.aborted) {
      if (granted) limiter.release();
      return { kind: 'aborted' };
    }
    if (!granted || remaining <= 0) {
      if (granted) limiter.release();
      const detail = `more than ${limiter.maxInFlight} DNS queries in flight and ${limiter.maxQueued} waiting`;
      emit('overloaded', detail);
      return { kind: 'overloaded', detail };
    }
    try {
      return await run(remaining);
    } finally {
      limiter.release();
    }
  };

  return {
    udp: (resolver, query, expect, timeoutMs, signal) => capped((ms) => sendOn(resolver, query, expect, ms, signal), timeoutMs, signal),
    tcp: (resolver, query, expect, timeoutMs, signal) => capped((ms) => tcpExchange(resolver, query, expect, ms, signal), timeoutMs, signal),
    get sockets() {
      return all.size;
    },
    limiter,
    close() {
      shut = true;
      for (const entry of [...all]) closeSocket(entry);
    },
  };
}

/**
 * The shared DNS socket pool and the global cap on queries in flight
 * (issue 14 item 2): unit tests against a raw UDP resolver on loopback.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import type { DecodedPacket } from 'dns-packet';
import { encodeQuery, textNameKey, TYPE_CODE } from '../src/dns/message.ts';
import { parseResolvers } from '../src/dns/resolvers.ts';
import { createUdpPool, QueryLimiter, type PoolEvent } from '../src/dns/transport.ts';

interface Raw {
  resolver: ReturnType<typeof parseResolvers>[number];
  received: { query: DecodedPacket; port: number }[];
  reply(index: number, bytes: Buffer): void;
  close(): Promise<void>;
}

/** A resolver that records queries and answers only when told to. */
async function rawResolver(auto?: (query: DecodedPacket) => Buffer | undefined): Promise<Raw> {
  const socket = dgram.createSocket('udp4');
  const received: Raw['received'] = [];
  const remotes: dgram.RemoteInfo[] = [];
  socket.on('message', (datagram, remote) => {
    const query = dnsPacket.decode(datagram);
    received.push({ query, port: remote.port });
    remotes.push(remote);
    const answer = auto?.(query);
    if (answer) socket.send(answer, remote.port, remote.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    resolver: parseResolvers(`127.0.0.1:${socket.address().port}`)[0]!,
    received,
    reply: (index, bytes) => socket.send(bytes, remotes[index]!.port, remotes[index]!.address),
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

const answerTo = (query: DecodedPacket, data = 'a@example.com'): Buffer =>
  dnsPacket.encode({
    type: 'response',
    id: query.id ?? 0,
    flags: dnsPacket.RECURSION_AVAILABLE,
    questions: query.questions ?? [],
    answers: [{ type: 'TXT', name: query.questions?.[0]?.name ?? '', data: [data] }],
  });

function question(name: string, id: number) {
  return { query: encodeQuery(id, name, 'TXT'), expect: { id, name: textNameKey(name), type: TYPE_CODE.TXT } };
}

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check());
};

describe('QueryLimiter', () => {
  it('holds at most maxInFlight, queues maxQueued in order, refuses beyond, and times out waiters', async () => {
    const limiter = new QueryLimiter(2, 2);
    assert.equal(await limiter.acquire(1000), true);
    assert.equal(await limiter.acquire(1000), true);
    const order: string[] = [];
    const third = limiter.acquire(10_000).then((ok) => order.push(`third ${ok}`));
    const fourth = limiter.acquire(10_000).then((ok) => order.push(`fourth ${ok}`));
    assert.equal(limiter.queued, 2);
    assert.equal(await limiter.acquire(10_000), false, 'the queue is full');
    limiter.release();
    await third;
    assert.deepEqual(order, ['third true']);
    assert.equal(limiter.inFlight, 2);
    limiter.release();
    await fourth;
    assert.deepEqual(order, ['third true', 'fourth true']);
    // A waiter whose time runs out leaves the queue and gets false.
    assert.equal(await limiter.acquire(20), false);
    assert.equal(limiter.queued, 0);
    limiter.release();
    limiter.release();
    assert.equal(limiter.inFlight, 0);
    assert.throws(() => limiter.release(), /without a slot/);
  });
  it('refuses nonsense bounds', () => {
    assert.throws(() => new QueryLimiter(0, 1), RangeError);
    assert.throws(() => new QueryLimiter(1, -1), RangeError);
  });
});

describe('UDP pool', () => {
  it('sends 200 queries in flight at once over at most socketsPerResolver sockets, matching answers by id', async () => {
    const raw = await rawResolver();
    const pool = createUdpPool({ socketsPerResolver: 3, maxInFlight: 500 });
    try {
      const names = Array.from({ length: 200 }, (_, i) => `n${i}.example.com`);
      // Every query asks for the same id: the pool must draw others where it is taken.
      const all = names.map((name) => {
        const { query, expect } = question(name, 7);
        return pool.udp(raw.resolver, query, expect, 5000);
      });
      await until(() => raw.received.length === 200);
      assert.ok(pool.sockets <= 3, `${pool.sockets} sockets`);
      assert.equal(new Set(raw.received.map((r) => r.port)).size, pool.sockets);
      const pairs = raw.received.map((r) => `${r.port}/${r.query.id}`);
      assert.equal(new Set(pairs).size, 200, 'no two queries in flight share a socket and an id');
      // Answers in reverse order, each tagged with its own name: each lands on its own query.
      for (let i = raw.received.length - 1; i >= 0; i--) raw.reply(i, answerTo(raw.received[i]!.query, raw.received[i]!.query.questions![0]!.name));
      const outcomes = await Promise.all(all);
      for (const [i, outcome] of outcomes.entries()) {
        assert.equal(outcome.kind, 'answer');
        if (outcome.kind === 'answer') assert.equal(outcome.message.questions[0]?.name, names[i]);
      }
    } finally {
      pool.close();
      await raw.close();
    }
  });

  it('ignores stray, duplicate and forged datagrams, counting them', async () => {
    const raw = await rawResolver();
    const events: PoolEvent[] = [];
    const pool = createUdpPool({ onEvent: (e) => events.push(e) });
    const forger = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => forger.bind(0, '127.0.0.1', resolve));
    try {
      const { query, expect } = question('victim.example.com', 0x1234);
      const pending = pool.udp(raw.resolver, query, expect, 5000);
      await until(() => raw.received.length === 1);
      const q = raw.received[0]!.query;
      raw.reply(0, answerTo({ ...q, id: ((q.id ?? 0) + 1) & 0xffff }, 'evil@example.com')); // wrong id
      raw.reply(0, answerTo({ ...q, questions: [{ type: 'TXT', name: 'other.example.com' }] }, 'evil@example.com')); // other question
      forger.send(answerTo(q, 'evil@example.com'), raw.received[0]!.port, '127.0.0.1'); // right id, wrong source
      raw.reply(0, Buffer.from('junk'));
      raw.reply(0, answerTo(q, 'good@example.com'));
      const outcome = await pending;
      assert.equal(outcome.kind, 'answer');
      raw.reply(0, answerTo(q, 'late@example.com')); // after the answer: stray
      await until(() => events.filter((e) => e === 'stray').length === 5);
      if (outcome.kind === 'answer') assert.ok(outcome.message.buffer.includes(Buffer.from('good@example.com')));
    } finally {
      pool.close();
      await raw.close();
      await new Promise<void>((resolve) => forger.close(() => resolve()));
    }
  });

  it('draws ids from the CSPRNG it is given when the asked id is taken', async () => {
    const raw = await rawResolver();
    let draws = 0;
    const pool = createUdpPool({ socketsPerResolver: 1, random: (n) => (draws++, Buffer.alloc(n, draws)) });
    try {
      const a = question('a.example.com', 5);
      const b = question('b.example.com', 5);
      const first = pool.udp(raw.resolver, a.query, a.expect, 300);
      const second = pool.udp(raw.resolver, b.query, b.expect, 300);
      await until(() => raw.received.length === 2);
      assert.deepEqual(raw.received.map((r) => r.query.id), [5, 0x0101]);
      assert.equal(draws, 1);
      assert.equal((await first).kind, 'timeout');
      assert.equal((await second).kind, 'timeout');
    } finally {
      pool.close();
      await raw.close();
    }
  });

  it('retires a socket after queriesPerSocket queries: the next ones leave from a new random port', async () => {
    const raw = await rawResolver((query) => answerTo(query));
    const pool = createUdpPool({ socketsPerResolver: 1, queriesPerSocket: 3 });
    try {
      for (let i = 0; i < 9; i++) {
        const { query, expect } = question(`r${i}.example.com`, i);
        assert.equal((await pool.udp(raw.resolver, query, expect, 5000)).kind, 'answer');
      }
      const ports = raw.received.map((r) => r.port);
      assert.equal(new Set(ports.slice(0, 3)).size, 1);
      assert.equal(new Set(ports).size, 3, `ports ${ports.join(',')}`);
      assert.ok(pool.sockets <= 1);
    } finally {
      pool.close();
      await raw.close();
    }
  });

  it('caps queries in flight: excess waits, then fails as overloaded; a slot freed goes to the next waiter', async () => {
    const raw = await rawResolver(); // never answers
    const events: PoolEvent[] = [];
    const pool = createUdpPool({ maxInFlight: 4, maxQueued: 2, onEvent: (e) => events.push(e) });
    try {
      // The 4 on the wire outlast the waiters by far, so no slot frees within a waiter's time
      // (equal timeouts raced on a busy machine: a slot freed a moment before a waiter gave up).
      const started = Array.from({ length: 10 }, (_, i) => {
        const { query, expect } = question(`c${i}.example.com`, i);
        return pool.udp(raw.resolver, query, expect, i < 4 ? 3000 : 300);
      });
      const outcomes = await Promise.all(started);
      const kinds = outcomes.map((o) => o.kind);
      // 4 on the wire, 2 waited (and got no slot within their time), 4 refused at once.
      assert.equal(kinds.filter((k) => k === 'timeout').length, 4, kinds.join(','));
      assert.equal(kinds.filter((k) => k === 'overloaded').length, 6, kinds.join(','));
      assert.equal(raw.received.length, 4);
      assert.equal(events.filter((e) => e === 'overloaded').length, 6);
      assert.equal(pool.limiter.inFlight, 0);

      // A waiter whose slot frees in time is sent.
      const quick = await rawResolver((query) => answerTo(query));
      try {
        const slow = Array.from({ length: 4 }, (_, i) => {
          const { query, expect } = question(`s${i}.example.com`, i);
          return pool.udp(raw.resolver, query, expect, 200);
        });
        const { query, expect } = question('w.example.com', 9);
        const waiter = pool.udp(quick.resolver, query, expect, 5000);
        assert.equal((await waiter).kind, 'answer');
        await Promise.all(slow);
      } finally {
        await quick.close();
      }
    } finally {
      pool.close();
      await raw.close();
    }
  });

  it('fails the queries of a socket that errors, and carries on with a new socket', async () => {
    const raw = await rawResolver((query) => answerTo(query));
    const events: PoolEvent[] = [];
    const pool = createUdpPool({ socketsPerResolver: 1, onEvent: (e) => events.push(e) });
    try {
      // An IPv4 socket cannot send to port 0: the send callback reports the error.
      const bad = { host: '127.0.0.1', port: 0 } as const;
      const { query, expect } = question('e.example.com', 1);
      const failed = await pool.udp(bad, query, expect, 1000);
      assert.equal(failed.kind, 'network');
      assert.equal((await pool.udp(raw.resolver, query, expect, 5000)).kind, 'answer');
    } finally {
      pool.close();
      await raw.close();
    }
  });

  it('close() ends queries in flight as network errors and closes every socket', async () => {
    const raw = await rawResolver();
    const pool = createUdpPool({});
    const { query, expect } = question('x.example.com', 1);
    const pending = pool.udp(raw.resolver, query, expect, 10_000);
    await until(() => raw.received.length === 1);
    pool.close();
    assert.equal((await pending).kind, 'network');
    assert.equal(pool.sockets, 0);
    assert.equal((await pool.udp(raw.resolver, query, expect, 1000)).kind, 'network');
    await raw.close();
  });
});

// The DNS answer cache (issue 20, src/dns/cache.ts), the staggered retry and the
// lookups' AbortSignal, against the in-process test DNS server: the queries it
// received prove what was answered from the cache. Time is an injected clock.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, afterEach, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { DnsCache } from '../src/dns/cache.ts';
import { createDnsClient, DnsError, parseResolvers, type DnsClient } from '../src/dns/client.ts';
import { createUdpPool } from '../src/dns/transport.ts';
import { DnsOverrides } from '../src/sandbox/dns.ts';
import { dnsError, startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import https from 'node:https';
import { form, GET_PATH, PASSWORD, startTestServer } from './support/server.ts';
import { waitUntil } from './support/wait.ts';

const NAME = '_validation-contactemail.example.com';

let server: TestDnsServer;
before(async () => {
  server = await startTestDnsServer();
});
afterEach(() => server.reset());
after(() => server.close());

/** A cache over a client of the test server, on a clock the test moves. */
function setup(options: { maxTtlMs?: number; maxEntries?: number; timeoutMs?: number } = {}) {
  const clock = { t: 1_700_000_000_000 };
  const pool = createUdpPool({});
  const events: string[] = [];
  const cache = new DnsCache({ maxTtlMs: options.maxTtlMs ?? 60_000, maxEntries: options.maxEntries, now: () => clock.t, onEvent: (e) => events.push(e) });
  const inner = createDnsClient({ resolvers: parseResolvers(server.address), timeoutMs: options.timeoutMs ?? 2000, pool });
  return { clock, cache, pool, events, dns: cache.wrap(inner) };
}

const asked = (name = NAME, type = 'TXT') => server.queries.filter((q) => q.name === name && q.type === type).length;

describe('DNS cache', () => {
  it('answers a repeated lookup from the cache, with the rcode, AD bit, EDE and resolver of the answer', async () => {
    const { dns, events } = setup();
    server.setTxt(NAME, [['owner@example.net']]);
    server.setAuthenticated(NAME, true);
    server.setExtendedError(NAME, 18, 'advisory');
    const first = await dns.txt(NAME);
    const second = await dns.txt(`${NAME.toUpperCase()}.`);
    assert.equal(asked(), 1, 'one query for two lookups');
    assert.deepEqual(events, ['miss', 'hit']);
    assert.deepEqual(second.records, [['owner@example.net']]);
    assert.equal(second.authenticatedData, true);
    assert.deepEqual(second.extendedErrors, [{ infoCode: 18, extraText: 'advisory' }]);
    assert.equal(second.resolver, server.address);
    assert.equal(second.rcode, 'NOERROR');
    assert.deepEqual({ ...second, ttl: first.ttl }, first);
    // The other type is another question.
    await dns.caa(NAME);
    assert.equal(asked(NAME, 'CAA'), 1);
  });

  it('keeps an answer for its TTL on the injected clock, then asks again', async () => {
    const { dns, clock } = setup();
    server.setTxt(NAME, [['owner@example.net']]);
    server.setTtl(NAME, 30);
    assert.equal((await dns.txt(NAME)).ttl, 30);
    clock.t += 29_000;
    const later = await dns.txt(NAME);
    assert.equal(later.ttl, 1, 'a hit says how long it has left');
    assert.equal(asked(), 1);
    clock.t += 1_000;
    server.setTxt(NAME, [['new-owner@example.net']]);
    assert.deepEqual((await dns.txt(NAME)).records, [['new-owner@example.net']]);
    assert.equal(asked(), 2, 'expired at its TTL');
  });

  it('keeps no answer longer than the maximum TTL, and a clock moved backwards ends an entry', async () => {
    const { dns, clock } = setup({ maxTtlMs: 10_000 });
    server.setTxt(NAME, [['owner@example.net']]);
    server.setTtl(NAME, 3600);
    await dns.txt(NAME);
    clock.t += 9_999;
    await dns.txt(NAME);
    assert.equal(asked(), 1);
    clock.t += 1;
    await dns.txt(NAME);
    assert.equal(asked(), 2, 'capped by maxTtlMs');
    clock.t -= 60_000;
    await dns.txt(NAME);
    assert.equal(asked(), 3);
  });

  it('caches the smallest TTL of a CNAME chain', async () => {
    const { dns, clock } = setup();
    server.setCname(NAME, 'contacts.example.org');
    server.setTtl(NAME, 5);
    server.setTxt('contacts.example.org', [['alias@example.org']]);
    const result = await dns.txt(NAME);
    assert.deepEqual(result.records, [['alias@example.org']]);
    assert.equal(result.ttl, 5);
    clock.t += 5_000;
    await dns.txt(NAME);
    assert.equal(asked(), 2);
  });

  it('caches NXDOMAIN and NODATA for the lesser of the SOA TTL and MINIMUM (RFC 2308), and not at all without an SOA', async () => {
    const { dns, clock } = setup();
    server.setNxdomain(NAME);
    server.setSoa(NAME, { ttl: 300, minimum: 20 });
    const nx = await dns.txt(NAME);
    assert.equal(nx.rcode, 'NXDOMAIN');
    assert.equal(nx.ttl, 20);
    clock.t += 19_000;
    assert.equal((await dns.txt(NAME)).rcode, 'NXDOMAIN');
    assert.equal(asked(), 1);
    clock.t += 1_000;
    await dns.txt(NAME);
    assert.equal(asked(), 2);

    // NODATA: the name exists, without TXT; the SOA's own TTL is the lesser here.
    server.setSoa('example.com', { ttl: 7, minimum: 3600 });
    const nodata = await dns.txt('example.com');
    assert.equal(nodata.rcode, 'NOERROR');
    assert.deepEqual(nodata.records, []);
    assert.equal(nodata.ttl, 7);
    await dns.txt('example.com');
    assert.equal(asked('example.com'), 1);

    // Without an SOA a negative answer is not cached (RFC 2308 §5).
    const bare = await dns.txt('no-soa.example.com');
    assert.equal(bare.ttl, undefined);
    await dns.txt('no-soa.example.com');
    assert.equal(asked('no-soa.example.com'), 2);
  });

  it('never caches a failure', async () => {
    const { dns } = setup();
    server.setServfail(NAME);
    assert.equal((await dnsError(dns.txt(NAME))).kind, 'servfail');
    assert.equal((await dnsError(dns.txt(NAME))).kind, 'servfail');
    assert.equal(asked(), 2);
  });

  it('sends one query for concurrent identical lookups', async () => {
    const { dns, events } = setup();
    server.setTxt(NAME, [['owner@example.net']]);
    server.setDelay(NAME, 200);
    const results = await Promise.all(Array.from({ length: 5 }, () => dns.txt(NAME)));
    assert.equal(asked(), 1);
    for (const r of results) assert.deepEqual(r.records, [['owner@example.net']]);
    assert.deepEqual(events, ['miss', 'coalesced', 'coalesced', 'coalesced', 'coalesced']);
  });

  it('is off at a maximum TTL of 0: every lookup asks, concurrent ones too', async () => {
    const { dns, cache } = setup({ maxTtlMs: 0 });
    assert.equal(cache.enabled, false);
    server.setTxt(NAME, [['owner@example.net']]);
    server.setDelay(NAME, 100);
    await Promise.all([dns.txt(NAME), dns.txt(NAME)]);
    await dns.txt(NAME);
    assert.equal(asked(), 3);
    assert.equal(cache.size, 0);
  });

  it('holds at most maxEntries answers, dropping the least recently used', async () => {
    const { dns, cache } = setup({ maxEntries: 2 });
    for (const n of ['a', 'b', 'c']) server.setTxt(`${n}.example.com`, [[`${n}@example.com`]]);
    await dns.txt('a.example.com');
    await dns.txt('b.example.com');
    await dns.txt('a.example.com'); // a is now the most recently used
    await dns.txt('c.example.com'); // pushes b out
    assert.equal(cache.size, 2);
    await dns.txt('a.example.com');
    await dns.txt('c.example.com');
    assert.equal(asked('a.example.com'), 1);
    assert.equal(asked('c.example.com'), 1);
    await dns.txt('b.example.com');
    assert.equal(asked('b.example.com'), 2);
  });

  it('clear() forgets every answer, and an answer in flight across it is not stored', async () => {
    const { dns, cache } = setup();
    server.setTxt(NAME, [['owner@example.net']]);
    server.setDelay(NAME, 100);
    const pending = dns.txt(NAME);
    cache.clear();
    await pending;
    assert.equal(cache.size, 0);
    await dns.txt(NAME);
    await dns.txt(NAME);
    assert.equal(asked(), 2);
  });

  it('lets a sandbox override set after an answer was cached win at once, and the cached answer return when it is cleared', async () => {
    const { dns } = setup();
    const overrides = new DnsOverrides();
    const client = overrides.wrap(dns);
    server.setTxt(NAME, [['real@example.com']]);
    assert.deepEqual((await client.txt(NAME)).records, [['real@example.com']]);
    overrides.set({ name: NAME, type: 'TXT', records: ['override@example.com'] });
    const overridden = await client.txt(NAME);
    assert.deepEqual(overridden.records, [['override@example.com']]);
    assert.equal(overridden.resolver, 'sandbox-override');
    overrides.set({ name: NAME, type: 'TXT', failure: 'servfail' });
    assert.equal((await dnsError(client.txt(NAME))).kind, 'servfail');
    overrides.clear(NAME);
    assert.deepEqual((await client.txt(NAME)).records, [['real@example.com']]);
    assert.equal(asked(), 1, 'the resolver was asked once: the rest came from the overrides and the cache');
  });
});

describe('AbortSignal on DNS lookups', () => {
  it('abandons a lookup at once and frees its query slot', async () => {
    const pool = createUdpPool({});
    const dns = createDnsClient({ resolvers: parseResolvers(server.address), timeoutMs: 60_000, pool });
    server.setNoAnswer(NAME);
    const controller = new AbortController();
    const lookup = dns.txt(NAME, controller.signal);
    while (asked() === 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(pool.limiter.inFlight, 1);
    controller.abort();
    const error = await dnsError(lookup);
    assert.equal(error.kind, 'aborted');
    assert.equal(error.name, NAME);
    assert.equal(pool.limiter.inFlight, 0);
    // An already aborted signal sends nothing.
    assert.equal((await dnsError(dns.caa(NAME, AbortSignal.abort()))).kind, 'aborted');
    assert.equal(asked(NAME, 'CAA'), 0);
    pool.close();
  });

  it('abandons a shared query only when every caller has gone; the next caller asks anew', async () => {
    const { dns, pool } = setup({ timeoutMs: 60_000 });
    server.setTxt(NAME, [['owner@example.net']]);
    server.setDelay(NAME, 300);
    const leaving = new AbortController();
    const staying = new AbortController();
    const a = dns.txt(NAME, leaving.signal);
    const b = dns.txt(NAME, staying.signal);
    leaving.abort();
    assert.equal((await dnsError(a)).kind, 'aborted');
    assert.deepEqual((await b).records, [['owner@example.net']], 'the other caller still gets the answer');
    assert.equal(asked(), 1);

    server.setNoAnswer('gone.example.com');
    const all = [new AbortController(), new AbortController()];
    const both = all.map((c) => dns.txt('gone.example.com', c.signal));
    while (asked('gone.example.com') === 0) await new Promise((r) => setTimeout(r, 5));
    for (const c of all) c.abort();
    for (const p of both) assert.equal((await dnsError(p)).kind, 'aborted');
    assert.equal(pool.limiter.inFlight, 0, 'the query was abandoned with its last caller');
    server.setTxt('gone.example.com', [['back@example.com']]);
    server.reset();
    server.setTxt('gone.example.com', [['back@example.com']]);
    assert.deepEqual((await dns.txt('gone.example.com')).records, [['back@example.com']]);
    assert.equal(asked('gone.example.com'), 1, 'a new query, not the abandoned one');
    pool.close();
  });

  it('makes a signal given as a function only for a lookup that waits: a query or one joined in flight, never a cached answer', async () => {
    const { dns, pool } = setup({ timeoutMs: 60_000 });
    server.setTxt(NAME, [['owner@example.net']]);
    server.setDelay(NAME, 200);
    const made: AbortController[] = [];
    const lazy = () => {
      const c = new AbortController();
      made.push(c);
      return c.signal;
    };
    const sent = dns.txt(NAME, lazy);
    const joined = dns.txt(NAME, lazy);
    assert.equal(made.length, 2, 'the query and the caller that joined it');
    await Promise.all([sent, joined]);
    assert.deepEqual((await dns.txt(NAME, lazy)).records, [['owner@example.net']]);
    assert.equal(made.length, 2, 'a cached answer made none');
    assert.equal(asked(), 1);

    // The signal it makes still abandons the lookup; a function that makes none leaves it unbounded.
    server.setNoAnswer('gone.example.com');
    const gone = dns.txt('gone.example.com', lazy);
    while (asked('gone.example.com') === 0) await new Promise((r) => setTimeout(r, 5));
    made.at(-1)!.abort();
    assert.equal((await dnsError(gone)).kind, 'aborted');
    assert.equal(pool.limiter.inFlight, 0);
    const uncached = createDnsClient({ resolvers: parseResolvers(server.address), timeoutMs: 2000, pool });
    assert.deepEqual((await uncached.txt(NAME, () => undefined)).records, [['owner@example.net']]);
    assert.equal((await dnsError(uncached.txt(NAME, () => AbortSignal.abort()))).kind, 'aborted', 'the client without a cache makes it at once');
    pool.close();
  });
});

describe('staggered retry', () => {
  /** A resolver that answers only once it has seen `queries` queries, each one it answers with its own id. */
  async function startStubborn(answerIds: (ids: number[]) => number[]) {
    const socket = dgram.createSocket('udp4');
    const seen: { id: number; remote: dgram.RemoteInfo; question: dnsPacket.Question }[] = [];
    socket.on('message', (datagram, remote) => {
      const query = dnsPacket.decode(datagram);
      seen.push({ id: query.id ?? 0, remote, question: query.questions![0]! });
      for (const id of answerIds(seen.map((s) => s.id))) {
        const q = seen.find((s) => s.id === id)!;
        const answer = dnsPacket.encode({
          type: 'response',
          id,
          flags: dnsPacket.RECURSION_AVAILABLE,
          questions: [q.question],
          answers: [{ type: 'TXT', name: q.question.name, ttl: 60, data: [`answer-to-${seen.indexOf(q)}@example.com`] }],
        });
        socket.send(answer, q.remote.port, q.remote.address);
      }
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
    return { address: `127.0.0.1:${socket.address().port}`, seen, close: () => new Promise<void>((r) => socket.close(() => r())) };
  }

  it('sends the retry before the attempt timeout and still takes a late answer to the first query', async () => {
    // The first query is answered only after the retry arrived, with the first query's id.
    const stub = await startStubborn((ids) => (ids.length === 2 ? [ids[0]!] : []));
    try {
      const dns = createDnsClient({ resolvers: parseResolvers(stub.address), timeoutMs: 60_000, attempts: 2 });
      const result = await dns.txt(NAME);
      assert.equal(stub.seen.length, 2, 'a retry went out although the 60 s attempt timeout had not passed');
      assert.notEqual(stub.seen[0]!.id, stub.seen[1]!.id);
      assert.deepEqual(result.records, [['answer-to-0@example.com']], 'the first query was still listened to');
    } finally {
      await stub.close();
    }
  });

  it('takes the retry\u2019s answer when the first query is lost', async () => {
    const stub = await startStubborn((ids) => (ids.length === 2 ? [ids[1]!] : []));
    try {
      const dns = createDnsClient({ resolvers: parseResolvers(stub.address), timeoutMs: 60_000, attempts: 2 });
      assert.deepEqual((await dns.txt(NAME)).records, [['answer-to-1@example.com']]);
    } finally {
      await stub.close();
    }
  });
});

describe('the cache in the server', () => {
  it('serves repeated JSON calls from the cache and counts hits; each answer still has both DNS contacts', async () => {
    const dns = await startTestDnsServer();
    const t = await startTestServer({ dnsServers: parseResolvers(dns.address), dnsCacheMaxTtlMs: 60_000 });
    try {
      dns.setTxt('_validation-contactemail.www.example.com', [['web@example.net']]);
      dns.setCaa('example.com', [{ tag: 'contactemail', value: 'caa@example.org' }]);
      // The empty answers carry their zone's SOA, as a real resolver's do: negative caching.
      for (const name of ['_validation-contactemail.example.com', 'www.example.com', 'com']) dns.setSoa(name, { ttl: 60, minimum: 60 });
      await t.createAccount('cached');
      const body = form({ loginName: 'cached', loginPassword: PASSWORD, domainName: 'www.example.com', responseFormat: '2' });
      for (let i = 0; i < 3; i++) {
        const res = await t.post(GET_PATH, body);
        assert.match(res.body, /^\{"errorCode":0/);
        assert.match(res.body, /web@example\.net/);
        assert.match(res.body, /caa@example\.org/);
      }
      assert.equal(dns.queries.length, 5, 'five lookups for the first call, none for the next two');
      const metrics = await t.metrics.render();
      assert.match(metrics, /dcvd_dns_cache_total\{outcome="hit"\} 10/);
      assert.match(metrics, /dcvd_dns_cache_total\{outcome="miss"\} 5/);
    } finally {
      await t.stop();
      await dns.close();
    }
  });

  it('abandons the lookups of a call whose client goes away, and records nothing for it', async () => {
    const dns = await startTestDnsServer();
    // Lookups that would wait a minute for an answer that never comes.
    const t = await startTestServer({ dnsServers: parseResolvers(dns.address), dnsTimeoutMs: 60_000, dnsCacheMaxTtlMs: 60_000 });
    try {
      dns.setNoAnswer('_validation-contactemail.gone.example.com');
      await t.createAccount('leaver');
      const body = form({ loginName: 'leaver', loginPassword: PASSWORD, domainName: 'gone.example.com', responseFormat: '2' });
      const req = https.request({ host: '127.0.0.1', port: t.https.port, path: GET_PATH, method: 'POST', ca: t.cert, servername: 'localhost', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      req.on('error', () => undefined);
      req.end(body);
      await waitUntil('the lookups to go out', async () => dns.queries.some((q) => q.name === '_validation-contactemail.gone.example.com'));
      req.destroy();
      await waitUntil('the lookup to be abandoned', async () => /dcvd_dns_lookups_total\{type="TXT",outcome="aborted"\} 1/.test(await t.metrics.render()), 30_000);
      await waitUntil('the call to end', async () => t.logs.some((l) => l.msg === 'client left during the DNS lookups; nothing recorded'), 30_000);
      const rows = await t.store.db.selectFrom('offered_addresses').selectAll().where('domain', '=', 'gone.example.com').execute();
      assert.deepEqual(rows, [], 'nothing offered, nothing recorded');
    } finally {
      await t.stop();
      await dns.close();
    }
  });
});

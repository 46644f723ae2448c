// The DNS client (CONTRACT §3) against real servers on loopback: the
// programmable test server for ordinary behaviour, and raw UDP sockets for
// answers no well-behaved server sends (forged, malformed, question-less).
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet } from 'dns-packet';
import fc from 'fast-check';
import { createDnsClient, DnsError, parseResolvers, systemResolvers, type DnsClientOptions } from '../src/dns/client.ts';
import { MalformedMessage, TYPE_CODE, parseMessage, readCaa, readCnameTarget, readTxt } from '../src/dns/message.ts';
import { dnsError, startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';

const NAME = '_validation-contactemail.example.com';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};
process.on('unhandledRejection', onUnhandled);

let server: TestDnsServer;
before(async () => {
  server = await startTestDnsServer();
});
afterEach(() => server.reset());
after(async () => {
  await server.close();
  process.off('unhandledRejection', onUnhandled);
  assert.deepEqual(unhandled, [], 'no promise rejection went unhandled');
});

function client(options: Partial<DnsClientOptions> = {}) {
  return createDnsClient({ resolvers: parseResolvers(server.address), timeoutMs: 1000, ...options });
}

/** A UDP "resolver" whose answers the test writes by hand; it records every datagram it gets. */
async function startRawResolver(
  answer: (query: DecodedPacket, reply: (bytes: Buffer) => void, remote: dgram.RemoteInfo) => void,
): Promise<{ address: string; port: number; received: DecodedPacket[]; close(): Promise<void> }> {
  const socket = dgram.createSocket('udp4');
  const received: DecodedPacket[] = [];
  socket.on('message', (datagram, remote) => {
    const query = dnsPacket.decode(datagram);
    received.push(query);
    answer(query, (bytes) => socket.send(bytes, remote.port, remote.address), remote);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  return {
    address: `127.0.0.1:${port}`,
    port,
    received,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** A well-formed response to `query` (no OPT unless given), for tests to send as is or to corrupt. */
function responseTo(query: DecodedPacket, fields: Partial<Packet> = {}): Buffer {
  return dnsPacket.encode({ type: 'response', id: query.id ?? 0, flags: dnsPacket.RECURSION_AVAILABLE, questions: query.questions ?? [], answers: [], ...fields });
}

describe('resolver specs', () => {
  it('parses IPv4, bracketed and bare IPv6, with and without ports', () => {
    assert.deepEqual(parseResolvers('127.0.0.1:5353, 10.0.0.1 ,[::1]:53,[2001:DB8:0::1],::1,fe80::1%eth0'), [
      { host: '127.0.0.1', port: 5353 },
      { host: '10.0.0.1', port: 53 },
      { host: '::1', port: 53 },
      { host: '2001:db8::1', port: 53 },
      { host: '::1', port: 53 },
      { host: 'fe80::1%eth0', port: 53 },
    ]);
  });

  it('rejects bad specs with an error naming the entry', () => {
    const bad: [string, RegExp][] = [
      ['', /empty/],
      ['  ', /empty/],
      ['127.0.0.1,,10.0.0.1', /empty entry/],
      ['dns.google:53', /"dns.google" is not an IPv4 address/],
      ['localhost', /"localhost" is not an IP address/],
      ['127.0.0.1:0', /"127.0.0.1:0".*out of range/],
      ['127.0.0.1:65536', /out of range/],
      ['127.0.0.1:', /port "" is not a number/],
      ['127.0.0.1:dns', /port "dns" is not a number/],
      ['[::1', /"\[::1".*malformed brackets/],
      ['[::1]53', /malformed brackets/],
      ['[127.0.0.1]:53', /brackets must hold an IPv6 address/],
      ['1.2.3.4:53:1', /"1.2.3.4:53:1" is not an IP address/],
      ['256.1.1.1', /not an IP address/],
    ];
    for (const [spec, message] of bad) {
      assert.throws(() => parseResolvers(spec), message, `spec ${JSON.stringify(spec)}`);
    }
  });

  it('reads the system resolvers as node sees them', () => {
    const saved = dns.getServers();
    try {
      dns.setServers(['192.0.2.53', '[2001:db8::53]:5353', '2001:db8::35']);
      assert.deepEqual(systemResolvers(), [
        { host: '192.0.2.53', port: 53 },
        { host: '2001:db8::53', port: 5353 },
        { host: '2001:db8::35', port: 53 },
      ]);
    } finally {
      dns.setServers(saved);
    }
  });

  it('refuses a client without resolvers or with a hand-made bad one', () => {
    assert.throws(() => createDnsClient({ resolvers: [] }), /at least one resolver/);
    assert.throws(() => createDnsClient({ resolvers: [{ host: 'example.com', port: 53 }] }), /not an IP address/);
    assert.throws(() => createDnsClient({ resolvers: [{ host: '127.0.0.1', port: 0 }] }), /port 0/);
    assert.throws(() => createDnsClient({ resolvers: parseResolvers('127.0.0.1'), attempts: 0 }), RangeError);
    assert.throws(() => createDnsClient({ resolvers: parseResolvers('127.0.0.1'), timeoutMs: 0 }), RangeError);
  });
});

describe('DNS client', () => {
  it('looks up TXT with AD and EDNS0 in the query, a fresh id, and the answering resolver in the result', async () => {
    server.setTxt(NAME, [['admin@example.com']]);
    const result = await client({ random: () => Buffer.from([0xbe, 0xef]) }).txt(`${NAME}.`);
    assert.deepEqual(result, {
      name: NAME,
      rcode: 'NOERROR',
      authenticatedData: false,
      extendedErrors: [],
      resolver: server.address,
      records: [['admin@example.com']],
      // How long it may be cached: the record's TTL (the test server's default).
      ttl: 60,
    });
    assert.deepEqual(server.queries, [
      { name: NAME, type: 'TXT', transport: 'udp', id: 0xbeef, authenticatedData: true, udpPayloadSize: 1232 },
    ]);
  });

  it('keeps each TXT record and its character-strings apart and in order, bytes and all', async () => {
    const crlf = Buffer.from('line1\r\nline2\0\x7f');
    const long = 'x'.repeat(255);
    server.setTxt(NAME, [['admin@', 'example.com'], [crlf, 'ü'], [long, long], ['']]);
    const result = await client().txt(NAME);
    assert.deepEqual(result.records, [['admin@', 'example.com'], ['line1\r\nline2\0\x7f', 'ü'], [long, long], ['']]);
  });

  it('matches names case-insensitively, as DNS does', async () => {
    server.setTxt(NAME, [['a@example.com']]);
    const result = await client().txt(NAME.toUpperCase());
    assert.equal(result.name, NAME.toUpperCase());
    assert.deepEqual(result.records, [['a@example.com']]);
  });

  it('looks up CAA records with flags, tag and value', async () => {
    server.setCaa('example.com', [
      { tag: 'issue', value: 'ca.example.net' },
      { flags: 128, tag: 'contactemail', value: 'security@example.com' },
      { tag: 'iodef', value: 'mailto:ü@example.com' },
    ]);
    const result = await client().caa('example.com');
    assert.deepEqual(result.records, [
      { flags: 0, tag: 'issue', value: 'ca.example.net' },
      { flags: 128, tag: 'contactemail', value: 'security@example.com' },
      { flags: 0, tag: 'iodef', value: 'mailto:ü@example.com' },
    ]);
    assert.equal(server.queries[0]?.type, 'CAA');
  });

  it('returns NOERROR without data and NXDOMAIN as results with no records', async () => {
    server.setTxt('other.example.com', [['not for us']]);
    const empty = await client().txt(NAME);
    assert.equal(empty.rcode, 'NOERROR');
    assert.deepEqual(empty.records, []);

    server.setNxdomain('missing.example.com');
    const missing = await client().caa('missing.example.com');
    assert.equal(missing.rcode, 'NXDOMAIN');
    assert.deepEqual(missing.records, []);
  });

  it('follows a CNAME chain inside the answer and keeps only records at its end', async () => {
    server.setCname(NAME, 'contacts.example.net');
    server.setTxt('contacts.example.net', [['hostmaster@example.com']]);
    const result = await client().txt(NAME);
    assert.deepEqual(result.records, [['hostmaster@example.com']]);
  });

  it('ignores answer records of another owner name or type', async () => {
    const raw = await startRawResolver((query, reply) =>
      reply(responseTo(query, {
        answers: [
          { type: 'TXT', name: 'elsewhere.example.com', data: ['evil@example.com'] },
          { type: 'CAA', name: NAME, data: { flags: 0, tag: 'issue', value: 'x' } },
          { type: 'TXT', name: NAME, data: ['good@example.com'] },
        ],
      })),
    );
    try {
      const result = await client({ resolvers: parseResolvers(raw.address) }).txt(NAME);
      assert.deepEqual(result.records, [['good@example.com']]);
    } finally {
      await raw.close();
    }
  });

  it('throws servfail without retrying, even with attempts and resolvers to spare', async () => {
    const spare = await startTestDnsServer();
    try {
      server.setServfail(NAME);
      server.setExtendedError(NAME, 6, 'DNSSEC Bogus');
      const error = await dnsError(client({ resolvers: parseResolvers(`${server.address},${spare.address}`), attempts: 3 }).txt(NAME));
      assert.equal(error.kind, 'servfail');
      assert.equal(error.rcode, 'SERVFAIL');
      assert.equal(error.name, NAME);
      assert.equal(error.type, 'TXT');
      assert.equal(error.resolver, server.address);
      assert.deepEqual(error.extendedErrors, [{ infoCode: 6, extraText: 'DNSSEC Bogus' }]);
      assert.match(error.message, /SERVFAIL \(EDE 6: DNSSEC Bogus\)/);
      assert.match(String(error.stack), /^DnsError: DNS TXT lookup of _validation-contactemail\.example\.com via /);
      assert.equal(server.queries.length, 1);
      assert.equal(spare.queries.length, 0);
    } finally {
      await spare.close();
    }
  });

  it('applies a SERVFAIL set for one type to that type only', async () => {
    server.setServfail('example.com', 'CAA');
    assert.equal((await dnsError(client().caa('example.com'))).kind, 'servfail');
    assert.equal((await client().txt('example.com')).rcode, 'NOERROR');
  });

  it('throws refused without retrying', async () => {
    server.setRefused(NAME);
    const error = await dnsError(client({ attempts: 3 }).caa(NAME));
    assert.equal(error.kind, 'refused');
    assert.equal(error.rcode, 'REFUSED');
    assert.equal(error.type, 'CAA');
    assert.equal(server.queries.length, 1);
  });

  it('throws rcode for other error RCODEs, accepting an error answer that omits the question', async () => {
    const raw = await startRawResolver((query, reply) =>
      reply(responseTo(query, { flags: 1 /* FORMERR */, questions: [] })),
    );
    try {
      const error = await dnsError(client({ resolvers: parseResolvers(raw.address), attempts: 3 }).txt(NAME));
      assert.equal(error.kind, 'rcode');
      assert.equal(error.rcode, 'FORMERR');
      assert.equal(raw.received.length, 1);
    } finally {
      await raw.close();
    }
  });

  it('retries a timeout a bounded number of times, then throws timeout', async () => {
    server.setNoAnswer(NAME);
    const timeoutMs = 100;
    const error = await dnsError(client({ timeoutMs, attempts: 3 }).txt(NAME));
    assert.equal(error.kind, 'timeout');
    assert.equal(error.resolver, server.address);
    assert.equal(server.queries.length, 3);
    // Every query has its own id, and no attempt is still running afterwards.
    assert.equal(new Set(server.queries.map((q) => q.id)).size, 3);
    await sleep(timeoutMs * 3);
    assert.equal(server.queries.length, 3);
  });

  it('defaults to two attempts', async () => {
    server.setNoAnswer(NAME, 'TXT');
    assert.equal((await dnsError(client({ timeoutMs: 100 }).txt(NAME))).kind, 'timeout');
    assert.equal(server.queries.length, 2);
    // setNoAnswer for TXT leaves CAA answering.
    assert.equal((await client({ timeoutMs: 100 }).caa(NAME)).rcode, 'NOERROR');
  });

  it('waits for a slow answer within the timeout, and gives up on one beyond it', async () => {
    server.setTxt(NAME, [['slow@example.com']]);
    server.setDelay(NAME, 50);
    assert.deepEqual((await client({ timeoutMs: 2000 }).txt(NAME)).records, [['slow@example.com']]);

    server.setDelay(NAME, 500);
    const before = server.queries.length;
    assert.equal((await dnsError(client({ timeoutMs: 100, attempts: 2 }).txt(NAME))).kind, 'timeout');
    assert.equal(server.queries.length - before, 2);
  });

  it('moves on to the next resolver when the first is dead', async () => {
    const dead = await startRawResolver(() => {});
    try {
      server.setTxt(NAME, [['admin@example.com']]);
      const result = await client({ resolvers: parseResolvers(`${dead.address},${server.address}`), timeoutMs: 300 }).txt(NAME);
      assert.equal(result.resolver, server.address);
      assert.deepEqual(result.records, [['admin@example.com']]);
      assert.equal(dead.received.length, 1);
      assert.equal(server.queries.length, 1);
    } finally {
      await dead.close();
    }
  });

  it('retries a truncated UDP answer over TCP to the same resolver', async () => {
    server.setTruncate(NAME);
    server.setTxt(NAME, [['admin@example.com']]);
    const result = await client().txt(NAME);
    assert.deepEqual(result.records, [['admin@example.com']]);
    assert.deepEqual(server.queries.map((q) => q.transport), ['udp', 'tcp']);
    assert.equal(server.queries[1]?.id, server.queries[0]?.id);
  });

  it('asks again over TCP after a truncated UDP answer it cannot read past its header (bytes after it)', async () => {
    server.setTruncate(NAME);
    server.setTxt(NAME, [['admin@example.com']]);
    server.setTrailingBytes(NAME, 'cut-off junk', 'udp');
    const result = await client().txt(NAME);
    assert.deepEqual(result.records, [['admin@example.com']]);
    assert.deepEqual(server.queries.map((q) => q.transport), ['udp', 'tcp']);
    // Without the TC bit the same bytes make the answer malformed (never retried).
    server.reset();
    server.setTxt(NAME, [['admin@example.com']]);
    server.setTrailingBytes(NAME, 'junk', 'udp');
    assert.equal((await dnsError(client().txt(NAME))).kind, 'malformed');
    assert.deepEqual(server.queries.map((q) => q.transport), ['udp']);
  });

  it('takes a 50-record answer, over TCP once it outgrows the UDP size', async () => {
    const records = Array.from({ length: 50 }, (_, i) => [`contact${i}@example.com`, `part ${i}`]);
    server.setTxt(NAME, records);
    const result = await client().txt(NAME);
    assert.deepEqual(result.records, records);
    assert.deepEqual(server.queries.map((q) => q.transport), ['udp', 'tcp']);
  });

  it('takes an answer up to the advertised EDNS0 size over UDP alone', async () => {
    // About 1000 bytes: over the 512 of plain DNS, under the 1232 we offer.
    const records = Array.from({ length: 10 }, (_, i) => [`${i}`.padEnd(40, 'x'), 'y'.repeat(10)]);
    server.setTxt(NAME, records);
    const result = await client().txt(NAME);
    assert.deepEqual(result.records, records);
    assert.deepEqual(server.queries.map((q) => q.transport), ['udp']);
  });

  it('reports the AD bit', async () => {
    server.setAuthenticated(NAME, true);
    assert.equal((await client().txt(NAME)).authenticatedData, true);
    server.setAuthenticated(NAME, false);
    assert.equal((await client().txt(NAME)).authenticatedData, false);
  });

  it('parses Extended DNS Errors on successful answers', async () => {
    server.setNxdomain(NAME);
    server.setExtendedError(NAME, 18, 'Prohibited — by policy');
    const result = await client().caa(NAME);
    assert.equal(result.rcode, 'NXDOMAIN');
    assert.deepEqual(result.extendedErrors, [{ infoCode: 18, extraText: 'Prohibited — by policy' }]);
  });

  it('parses several EDE options, empty text, a trailing NUL, and skips a too-short one', async () => {
    const ede = (code: number, text: string) => {
      const data = Buffer.concat([Buffer.alloc(2), Buffer.from(text)]);
      data.writeUInt16BE(code, 0);
      return { code: 15, data };
    };
    const raw = await startRawResolver((query, reply) =>
      reply(responseTo(query, {
        additionals: [{
          type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false,
          options: [ede(3, 'stale'), ede(0, ''), ede(9, 'nul\0'), { code: 15, data: Buffer.from([1]) }] as never,
        }],
      })),
    );
    try {
      const result = await client({ resolvers: parseResolvers(raw.address) }).txt(NAME);
      assert.deepEqual(result.extendedErrors, [
        { infoCode: 3, extraText: 'stale' },
        { infoCode: 0, extraText: '' },
        { infoCode: 9, extraText: 'nul' },
      ]);
    } finally {
      await raw.close();
    }
  });

  it('ignores forged or stray datagrams and waits for the real answer', async () => {
    const forger = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => forger.bind(0, '127.0.0.1', resolve));
    const raw = await startRawResolver((query, reply, remote) => {
      const evil = { answers: [{ type: 'TXT' as const, name: NAME, data: ['evil@example.com'] }] };
      // Right id and question, wrong source port.
      forger.send(responseTo(query, evil), remote.port, remote.address);
      reply(Buffer.from('junk'));
      reply(responseTo({ ...query, id: ((query.id ?? 0) + 1) & 0xffff }, evil));
      reply(responseTo(query, { ...evil, questions: [{ type: 'TXT', name: 'other.example.com' }] }));
      reply(responseTo(query, { ...evil, questions: [{ type: 'CAA', name: NAME }] }));
      reply(dnsPacket.encode({ ...query, type: 'query' }));
      setTimeout(() => reply(responseTo(query, { answers: [{ type: 'TXT', name: NAME.toUpperCase(), data: ['good@example.com'] }] })), 20);
    });
    try {
      const result = await client({ resolvers: parseResolvers(raw.address) }).txt(NAME);
      assert.deepEqual(result.records, [['good@example.com']]);
    } finally {
      await raw.close();
      await new Promise<void>((resolve) => forger.close(() => resolve()));
    }
  });

  it('throws malformed, without retrying, for answers that do not parse', async () => {
    const corruptions: [string, (query: DecodedPacket) => Buffer][] = [
      ['cut short', (q) => responseTo(q, { answers: [{ type: 'TXT', name: NAME, data: ['a@example.com'] }] }).subarray(0, 40)],
      ['TXT string past its RDATA', (q) => {
        const bytes = responseTo(q, { answers: [{ type: 'TXT', name: NAME, data: ['abc'] }] });
        bytes[bytes.length - 4] = 10; // the length byte of "abc"
        return bytes;
      }],
      ['CAA tag past its RDATA', (q) => {
        const bytes = responseTo(q, { answers: [{ type: 'CAA', name: NAME, data: { flags: 0, tag: 'issue', value: 'ca.example' } }] });
        bytes[bytes.length - 1 - 'ca.example'.length - 'issue'.length] = 200; // the tag length
        return bytes;
      }],
      // Found by fuzzing (2026-12-04): a valid answer with bytes after its end was read as if they were not there.
      ['bytes after the end of the message', (q) => Buffer.concat([responseTo(q, { answers: [{ type: 'TXT', name: NAME, data: ['a@example.com'] }] }), Buffer.from('trailing-junk')])],
      ['compression loop', (q) => {
        const bytes = responseTo(q, { answers: [{ type: 'TXT', name: NAME, data: ['a'] }] });
        const owner = 12 + Buffer.byteLength(NAME) + 2 + 4; // first byte after the question
        bytes.writeUInt16BE(0xc000 | owner, owner); // a pointer to itself
        return bytes;
      }],
    ];
    for (const [what, corrupt] of corruptions) {
      const raw = await startRawResolver((query, reply) => reply(corrupt(query)));
      try {
        const lookup = what.startsWith('CAA') ? client({ resolvers: parseResolvers(raw.address), attempts: 3 }).caa(NAME)
          : client({ resolvers: parseResolvers(raw.address), attempts: 3 }).txt(NAME);
        const error = await dnsError(lookup);
        assert.equal(error.kind, 'malformed', what);
        assert.equal(raw.received.length, 1, what);
      } finally {
        await raw.close();
      }
    }
  });

  it('throws network when the TCP fallback cannot connect', async () => {
    // A UDP-only resolver that always truncates: nothing listens on its TCP port.
    const raw = await startRawResolver((query, reply) => reply(responseTo(query, { flags: dnsPacket.TRUNCATED_RESPONSE })));
    try {
      const error = await dnsError(client({ resolvers: parseResolvers(raw.address) }).txt(NAME));
      assert.equal(error.kind, 'network');
      assert.ok(error.cause instanceof Error);
      assert.equal(raw.received.length, 1);
    } finally {
      await raw.close();
    }
  });

  it('rejects names that cannot be asked for, before sending anything', async () => {
    const long = 'a'.repeat(64);
    for (const name of ['', '.', 'a..example.com', `${long}.example.com`, `${'a'.repeat(63)}.`.repeat(4) + 'com']) {
      await assert.rejects(client().txt(name), TypeError, JSON.stringify(name));
    }
    assert.equal(server.queries.length, 0);
  });

  it('leaves no socket or timer behind, whatever the outcome', async () => {
    const count = () => {
      const counts = new Map<string, number>();
      for (const resource of process.getActiveResourcesInfo()) counts.set(resource, (counts.get(resource) ?? 0) + 1);
      return Object.fromEntries(['UDPWrap', 'TCPSocketWrap', 'TCPWRAP', 'Timeout'].map((k) => [k, counts.get(k) ?? 0]));
    };
    await sleep(50);
    const baseline = count();
    server.setTxt('ok.example.com', [['a@example.com']]);
    server.setTruncate('tcp.example.com');
    server.setServfail('fail.example.com');
    server.setNoAnswer('silent.example.com');
    const c = client();
    const outcomes = await Promise.allSettled([
      c.txt('ok.example.com'), c.txt('tcp.example.com'), c.caa('fail.example.com'), client({ timeoutMs: 100 }).txt('silent.example.com'),
    ]);
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'fulfilled', 'rejected', 'rejected']);
    // Handles close asynchronously; give them a moment before comparing.
    let now = count();
    for (let i = 0; i < 40 && JSON.stringify(now) !== JSON.stringify(baseline); i++) {
      await sleep(25);
      now = count();
    }
    assert.deepEqual(now, baseline);
  });
});

describe('answer parser', () => {
  it('a message must end where its last record ends: a byte more is malformed', () => {
    const valid = dnsPacket.encode({
      type: 'response', id: 7, flags: dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: 'TXT', name: NAME }],
      answers: [{ type: 'TXT', name: NAME, data: ['a@example.com'] }],
    });
    assert.equal(parseMessage(valid).answers.length, 1);
    for (const tail of ['trailing-junk', '\0', '\0\0\0\0']) {
      assert.throws(() => parseMessage(Buffer.concat([valid, Buffer.from(tail)])), (e: unknown) => e instanceof MalformedMessage && /bytes after the end of the message/.test(e.message), JSON.stringify(tail));
    }
    // A header alone (no records) is exactly 12 bytes: one more is malformed too.
    const empty = Buffer.alloc(12);
    assert.equal(parseMessage(empty).questions.length, 0);
    assert.throws(() => parseMessage(Buffer.alloc(13)), MalformedMessage);
  });

  it('either reads a corrupted answer or calls it malformed; it never throws anything else or hangs', () => {
    const valid = dnsPacket.encode({
      type: 'response',
      id: 7,
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: 'TXT', name: NAME }],
      answers: [
        { type: 'CNAME', name: NAME, data: 'target.example.com' },
        { type: 'TXT', name: 'target.example.com', data: ['admin@', 'example.com'] },
        { type: 'CAA', name: 'target.example.com', data: { flags: 0, tag: 'issue', value: 'ca.example' } },
      ],
      additionals: [{
        type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false,
        options: [{ code: 15, data: Buffer.from([0, 6, 0x61]) }] as never,
      }],
    });
    const readers: Partial<Record<number, typeof readTxt | typeof readCaa | typeof readCnameTarget>> = {
      [TYPE_CODE.TXT]: readTxt, [TYPE_CODE.CAA]: readCaa, [TYPE_CODE.CNAME]: readCnameTarget,
    };
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.nat(valid.length),
        (edits, cut) => {
          const bytes = Buffer.from(valid);
          for (const [at, value] of edits) bytes[at] = value;
          try {
            const message = parseMessage(bytes.subarray(0, Math.max(cut, 12)));
            for (const record of message.answers) readers[record.type]?.(message, record);
          } catch (error) {
            if (!(error instanceof MalformedMessage)) throw error;
          }
        },
      ),
      { numRuns: 5000, seed: 20261123 },
    );
  });
});

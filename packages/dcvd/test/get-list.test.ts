/**
 * GetDCVEmailAddressList end to end (CONTRACT §1–§4): real HTTPS, a real DNS
 * server on loopback (UDP and TCP on one port), SQLite on disk.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/deps.ts';
import { parseResolvers } from '../src/dns/client.ts';
import { OfferedAddressRegistry, RECENT_ANSWER_MS } from '../src/registry/offered.ts';
import { OFFER_WINDOW_MS } from '../src/registry/offer-window.ts';
import type { DnsEvidence } from '../src/contacts/provider.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import { testDatabaseKind } from './support/database.ts';
import { waitUntil } from './support/wait.ts';
import { sql } from 'kysely';
import { GET_PATH, PASSWORD, form, startTestServer, type TestServer } from './support/server.ts';

const clock = new ManualClock(Date.UTC(2026, 10, 23, 12));
let dns: TestDnsServer;
let s: TestServer;
let registry: OfferedAddressRegistry;

before(async () => {
  dns = await startTestDnsServer();
  s = await startTestServer(
    {
      dnsServers: parseResolvers(dns.address),
      dnsTimeoutMs: 300,
      dnsAttempts: 2,
      emailDcv: { blocklist: ['blocked.example.com'], cutoff: Date.UTC(2028, 2, 15) },
    },
    { clock },
  );
  await s.createAccount('alice');
  await s.createAccount('bob');
  await s.createAccount('nobody', { permissions: [] });
  registry = new OfferedAddressRegistry(s.store.db);
});
after(async () => {
  await s.stop();
  await dns.close();
});
beforeEach(() => dns.reset());

function ask(domainName: string, extra: Record<string, string> = {}, login = 'alice') {
  return s.post(GET_PATH, form({ loginName: login, loginPassword: PASSWORD, domainName, product: '801', ...extra }));
}
const json = (domainName: string, login = 'alice') => ask(domainName, { responseFormat: '2' }, login);
const five = (d: string) => ['admin', 'administrator', 'hostmaster', 'postmaster', 'webmaster'].map((l) => `${l}@${d}`);

describe('text format (responseFormat 1)', () => {
  test('www.example.com: exact bytes, level 2 then level 3, the five local parts in order', async () => {
    const res = await ask('www.example.com');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
    const lines = ['0', 'domain_name\twww.example.com', ...five('example.com').map((a) => `level2_email\t${a}`), ...five('www.example.com').map((a) => `level3_email\t${a}`)];
    assert.equal(res.body, lines.join('\n') + '\n');
  });

  test('www.example.co.uk yields level 3 and 4, never co.uk', async () => {
    const res = await ask('WWW.Example.CO.UK.');
    assert.equal(
      res.body,
      ['0', 'domain_name\twww.example.co.uk', ...five('example.co.uk').map((a) => `level3_email\t${a}`), ...five('www.example.co.uk').map((a) => `level4_email\t${a}`)].join('\n') + '\n',
    );
  });

  test('text format does not look up or return DNS contacts', async () => {
    dns.setTxt('_validation-contactemail.example.org', [['owner@example.net']]);
    const res = await ask('example.org');
    assert.ok(!res.body.includes('owner@example.net'));
    assert.equal(dns.queries.length, 0);
  });

  test('wildcard, IDN and private PSL names', async () => {
    assert.match((await ask('*.example.co.uk')).body, /^0\ndomain_name\texample\.co\.uk\nlevel3_email\tadmin@example\.co\.uk\n/);
    assert.match((await ask('bücher.de')).body, /^0\ndomain_name\txn--bcher-kva\.de\nlevel2_email\tadmin@xn--bcher-kva\.de\n/);
    assert.match((await ask('xn--bcher-kva.de')).body, /domain_name\txn--bcher-kva\.de\n/);
    const gh = (await ask('foo.github.io')).body;
    assert.match(gh, /^0\ndomain_name\tfoo\.github\.io\nlevel3_email\tadmin@foo\.github\.io\n/);
    assert.ok(!gh.includes('@github.io'));
  });
});

describe('domain rules on the wire (§2)', () => {
  const cases: [string, string][] = [
    ['co.uk', "-4\nThe value of the 'domainName' argument is invalid!\n"],
    ['*.co.uk', "-4\nThe value of the 'domainName' argument is invalid!\n"],
    ['github.io', "-4\nThe value of the 'domainName' argument is invalid!\n"],
    ['a..com', "-4\nThe value of the 'domainName' argument is invalid!\n"],
    [`${'a'.repeat(64)}.com`, "-4\nThe value of the 'domainName' argument is invalid!\n"],
    ['1.2.3', "-4\nThe value of the 'domainName' argument is invalid!\n"],
    ['0x7f.1', "-4\nThe value of the 'domainName' argument is invalid!\n"],
    ['8.8.8.8', '-19\nThe Domain Name may not be an Internet-accessible IP Address!\n'],
    ['[2001:4860:4860::8888]', '-19\nThe Domain Name may not be an Internet-accessible IP Address!\n'],
    ['2001:4860:4860::8888', '-19\nThe Domain Name may not be an Internet-accessible IP Address!\n'],
    ['10.1.2.3', '-37\nThe Domain Name is an Intranet Server Name or Intranet IP Address!\n'],
    ['[::1]', '-37\nThe Domain Name is an Intranet Server Name or Intranet IP Address!\n'],
    ['intranet', '-37\nThe Domain Name is an Intranet Server Name or Intranet IP Address!\n'],
    ['host.corp', '-37\nThe Domain Name is an Intranet Server Name or Intranet IP Address!\n'],
    ['printer.local', '-37\nThe Domain Name is an Intranet Server Name or Intranet IP Address!\n'],
    ['foo.localhost', '-37\nThe Domain Name is an Intranet Server Name or Intranet IP Address!\n'],
    ['1.0.0.127.in-addr.arpa', '-37\nThe Domain Name is an Intranet Server Name or Intranet IP Address!\n'],
  ];
  for (const [domain, expected] of cases) {
    test(JSON.stringify(domain), async () => assert.equal((await ask(domain)).body, expected));
  }
  test('253 characters pass, 254 do not', async () => {
    const label = 'a'.repeat(63);
    const d253 = `${label}.${label}.${label}.${'b'.repeat(57)}.com`;
    assert.equal(d253.length, 253);
    // Addresses at the long ADNs would exceed 254 characters: only those that fit are offered.
    const lines = (await ask(d253)).body.split('\n');
    assert.equal(lines[0], '0');
    assert.ok(lines.slice(2, -1).every((l) => l.split('\t')[1]!.length <= 254));
    assert.deepEqual(lines.slice(2, 7), five(`${'b'.repeat(57)}.com`).map((a) => `level2_email\t${a}`));
    assert.ok(!lines.some((l) => l.startsWith('level5_email')), 'admin@<253 chars> does not fit');
    assert.match((await ask(`x${d253}`)).body, /^-4\n/);
  });
  test('JSON errors carry errorItem for -4 only', async () => {
    assert.equal((await json('co.uk')).body, '{"errorCode":-4,"errorMessage":"The value of the \'domainName\' argument is invalid!","errorItem":"domainName"}');
    assert.equal((await json('8.8.8.8')).body, '{"errorCode":-19,"errorMessage":"The Domain Name may not be an Internet-accessible IP Address!"}');
  });
  test('-91 comes before domain rules', async () => {
    assert.equal((await ask('8.8.8.8', {}, 'nobody')).body, '-91\nPermission Denied. Not allowed to use the AUTO-Apply service.\n');
  });
});

describe('policy (-160)', () => {
  test('blocklisted domains and names below them', async () => {
    const msg = '-160\nThe request for the DCV email address list was unsuccessful.\n';
    assert.equal((await ask('blocked.example.com')).body, msg);
    assert.equal((await ask('www.blocked.example.com')).body, msg);
    assert.match((await ask('notblocked.example.com')).body, /^0\n/);
  });
  test('after the cut-off date', async () => {
    const saved = clock.now();
    clock.set(Date.UTC(2028, 2, 15));
    try {
      assert.equal((await ask('example.com')).body, '-160\nThe request for the DCV email address list was unsuccessful.\n');
    } finally {
      clock.set(saved);
    }
  });
});

describe('DNS contacts (responseFormat 2, §3)', () => {
  test('TXT and CAA contacts are listed after the constructed ones, at their level', async () => {
    dns.setTxt('_validation-contactemail.www.example.com', [['web-owner@example.net']]);
    dns.setTxt('_validation-contactemail.example.com', [['owner@', 'example.net'], ['not an address'], ['"quoted@example.net"'], [' space@example.net']]);
    dns.setCaa('example.com', [
      { tag: 'issue', value: 'ca.example' },
      { tag: 'ContactEmail', value: 'caa-contact@example.org' },
    ]);
    const res = await json('www.example.com');
    assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(
      res.body,
      JSON.stringify({
        errorCode: 0,
        domain_name: 'www.example.com',
        level2_email: [...five('example.com'), 'owner@example.net', 'caa-contact@example.org'],
        level3_email: [...five('www.example.com'), 'web-owner@example.net'],
      }),
    );
    const names = dns.queries.map((q) => `${q.type} ${q.name}`).sort();
    assert.deepEqual(names, [
      'CAA com',
      'CAA example.com',
      'CAA www.example.com',
      'TXT _validation-contactemail.example.com',
      'TXT _validation-contactemail.www.example.com',
    ]);
  });

  test('CAA above the base domain is listed at the base domain\u2019s level; the lowest RRset wins', async () => {
    dns.setCaa('co.uk', [{ tag: 'contactemail', value: 'registry@co.uk' }]);
    const above = JSON.parse((await json('www.shop.co.uk')).body);
    assert.deepEqual(above.level3_email.slice(5), ['registry@co.uk']);
    dns.setCaa('www.shop.co.uk', [{ tag: 'issue', value: 'ca.example' }]);
    const lower = JSON.parse((await json('www.shop.co.uk')).body);
    assert.equal(lower.level3_email.length, 5, 'the relevant RRset (www) has no contactemail');
    assert.equal(lower.level4_email.length, 5);
  });

  test('junk values, CR/LF, control characters and over-long addresses are ignored', async () => {
    dns.setTxt('_validation-contactemail.junk.com', [
      ['a@b.c\r\nBcc: x@y.z'],
      ['x@y.z\u0000'],
      [`${'a'.repeat(64)}@${'b'.repeat(186)}.com`],
      ['two@a.com three@a.com'],
      [Buffer.from([0x61, 0x40, 0xff, 0x2e, 0x63, 0x6f, 0x6d])],
      ['<angle@example.net>'],
      ['ok@valid.example.net'],
    ]);
    const res = JSON.parse((await json('junk.com')).body);
    assert.deepEqual(res.level2_email, [...five('junk.com'), 'ok@valid.example.net']);
  });

  test('a multi-record answer of 50 TXT records (TCP fallback) is read whole', async () => {
    dns.setTxt('_validation-contactemail.many.com', Array.from({ length: 50 }, (_, i) => [`contact${i}@many-contacts.example.net`]));
    const res = JSON.parse((await json('many.com')).body);
    assert.equal(res.level2_email.length, 55);
    assert.ok(dns.queries.some((q) => q.transport === 'tcp'));
  });

  test('SERVFAIL, timeouts and REFUSED drop only their source; the constructed list is still served', async () => {
    dns.setServfail('_validation-contactemail.fail.com');
    dns.setNoAnswer('fail.com', 'CAA');
    const res = JSON.parse((await json('fail.com')).body);
    assert.deepEqual(res, { errorCode: 0, domain_name: 'fail.com', level2_email: five('fail.com') });
    const warnings = s.logs.filter((l) => l.msg === 'DNS lookup failed; its contact source is dropped');
    assert.ok(warnings.some((l) => (l.dns as { kind: string }).kind === 'servfail'));
    assert.ok(warnings.some((l) => (l.dns as { kind: string }).kind === 'timeout'));

    // A failed CAA lookup below a non-empty RRset makes the CAA source unknown; TXT still counts.
    dns.reset();
    dns.setRefused('www.fail.com', 'CAA');
    dns.setCaa('fail.com', [{ tag: 'contactemail', value: 'caa@fail-contact.example' }]);
    dns.setTxt('_validation-contactemail.fail.com', [['txt@fail-contact.example']]);
    const mixed = JSON.parse((await json('www.fail.com')).body);
    assert.deepEqual(mixed.level2_email, [...five('fail.com'), 'txt@fail-contact.example']);
  });

  test('an answer with bytes after the end of its message is malformed: its source is dropped, the constructed list is still served', async () => {
    // Found by fuzzing (2026-12-04): a valid TXT answer followed by junk was read, and its contact offered.
    dns.setTxt('_validation-contactemail.trail.com', [['trail@trail-contact.example']]);
    dns.setTrailingBytes('_validation-contactemail.trail.com', 'trailing-junk');
    dns.setCaa('trail.com', [{ tag: 'contactemail', value: 'caa@trail-contact.example' }]);
    const res = JSON.parse((await json('www.trail.com')).body);
    assert.deepEqual(res, { errorCode: 0, domain_name: 'www.trail.com', level2_email: [...five('trail.com'), 'caa@trail-contact.example'], level3_email: five('www.trail.com') });
    const warning = s.logs.find((l) => l.msg === 'DNS lookup failed; its contact source is dropped' && (l.dns as { name?: string }).name === '_validation-contactemail.trail.com');
    assert.equal((warning?.dns as { kind?: string } | undefined)?.kind, 'malformed', JSON.stringify(warning));
    // Not retried: a malformed answer is not a timeout.
    assert.equal(dns.queries.filter((q) => q.name === '_validation-contactemail.trail.com').length, 1);
  });

  test('issue 14 item 5: a valid 245-character domain gets its list; the TXT name too long to query is a failed lookup, never -14', async () => {
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(40)}.long.com`;
    assert.ok(long.length >= 229 && long.length <= 253, String(long.length));
    const parent = long.slice(64);
    dns.setTxt(`_validation-contactemail.${parent}`, [['owner@long-contact.example']]);
    const before = Number(/dcvd_dns_lookups_total\{type="TXT",outcome="name-too-long"\} (\d+)/.exec(await s.metrics.render())?.[1] ?? 0);
    const res = JSON.parse((await json(long)).body);
    assert.equal(res.errorCode, 0);
    assert.equal(res.domain_name, long);
    // The ADN one level up is still looked up; the FQDN's TXT name (270 characters) is not.
    assert.ok(res.level5_email.includes('owner@long-contact.example'), JSON.stringify(res));
    assert.ok(!dns.queries.some((q) => q.name.length > 253));
    const after = Number(/dcvd_dns_lookups_total\{type="TXT",outcome="name-too-long"\} (\d+)/.exec(await s.metrics.render())?.[1]);
    assert.equal(after - before, 1);
    assert.ok(s.logs.some((l) => l.msg === 'DNS lookup not possible; its contact source is dropped'));
  });

  test('duplicates of constructed addresses are listed once', async () => {
    dns.setTxt('_validation-contactemail.dup.com', [['admin@dup.com'], ['Admin@DUP.com']]);
    const res = JSON.parse((await json('dup.com')).body);
    assert.deepEqual(res.level2_email, [...five('dup.com'), 'Admin@DUP.com']);
  });
});

describe('the 24-hour registry (§4)', () => {
  test('every returned address is recorded with account, domain, source and time', async () => {
    dns.setTxt('_validation-contactemail.reg.com', [['contact@reg-owner.example']]);
    dns.setAuthenticated('_validation-contactemail.reg.com', true);
    await json('www.reg.com');
    const alice = (await s.accounts.find('alice'))!;
    const bob = (await s.accounts.find('bob'))!;
    const constructed = await registry.find(alice.id, 'www.reg.com', 'hostmaster@reg.com', clock.now());
    assert.deepEqual(constructed, { domain: 'www.reg.com', address: 'hostmaster@reg.com', level: 2, source: 'constructed', offeredAt: clock.now() });
    const txt = await registry.find(alice.id, 'www.reg.com', 'contact@REG-OWNER.example', clock.now());
    assert.equal(txt?.source, 'dns-txt');
    assert.equal(txt?.dns?.authenticatedData, true);
    assert.equal(txt?.dns?.name, '_validation-contactemail.reg.com');
    assert.equal(txt?.dns?.resolver, dns.address);
    // Another account, another domain, or 24 hours later: not offered.
    assert.equal(await registry.find(bob.id, 'www.reg.com', 'hostmaster@reg.com', clock.now()), undefined);
    assert.equal(await registry.find(alice.id, 'reg.com', 'hostmaster@reg.com', clock.now()), undefined);
    assert.equal(await registry.find(alice.id, 'www.reg.com', 'hostmaster@reg.com', clock.now() + OFFER_WINDOW_MS), undefined);
    assert.ok(await registry.find(alice.id, 'www.reg.com', 'hostmaster@reg.com', clock.now() + OFFER_WINDOW_MS - 1));
  });

  test('an answer naming one address twice records it once, as its first source, and every other row whole', async () => {
    const alice = (await s.accounts.find('alice'))!;
    const evidence: DnsEvidence = { name: '_validation-contactemail.twice.com', type: 'TXT', rcode: 'NOERROR', authenticatedData: false, extendedErrors: [], resolver: '192.0.2.53' };
    await registry.record(
      alice.id,
      'twice.com',
      [
        { address: 'admin@twice.com', level: 2, source: 'constructed' },
        { address: 'admin@TWICE.com', level: 2, source: 'dns-txt', dns: evidence },
        { address: 'owner@twice-owner.example', level: 2, source: 'dns-txt', dns: evidence },
        { address: 'webmaster@twice.com', level: 2, source: 'constructed' },
      ],
      clock.now(),
    );
    const rows = await s.store.db
      .selectFrom('offered_addresses')
      .select(['address', 'level', 'source', 'dns_detail', 'offered_at'])
      .where('account_id', '=', alice.id)
      .where('domain', '=', 'twice.com')
      .orderBy('address')
      .execute();
    assert.deepEqual(
      rows.map((r) => [r.address, Number(r.level), r.source, r.dns_detail === null ? null : JSON.parse(r.dns_detail), Number(r.offered_at)]),
      [
        ['admin@twice.com', 2, 'constructed', null, clock.now()],
        ['owner@twice-owner.example', 2, 'dns-txt', evidence, clock.now()],
        ['webmaster@twice.com', 2, 'constructed', null, clock.now()],
      ],
    );
  });

  test('a new offer refreshes the time; the purge removes only expired rows', async () => {
    const alice = (await s.accounts.find('alice'))!;
    await ask('purge.com');
    clock.advance(OFFER_WINDOW_MS / 2);
    await ask('purge.com');
    await ask('other-purge.com', {}, 'bob');
    clock.advance(OFFER_WINDOW_MS / 2 + 1);
    assert.ok(await registry.find(alice.id, 'purge.com', 'admin@purge.com', clock.now()), 'refreshed 12 h ago');
    const before = await s.store.db.selectFrom('offered_addresses').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const purged = await registry.purge(clock.now() + OFFER_WINDOW_MS / 2, 3);
    assert.ok(purged >= 10, `purged ${purged}`);
    const afterPurge = await s.store.db.selectFrom('offered_addresses').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    assert.equal(Number(before.n) - Number(afterPurge.n), purged);
    assert.equal(await registry.find(alice.id, 'purge.com', 'admin@purge.com', clock.now()), undefined);
  });

  // Found by a review: PostgreSQL rechecks a waiting DELETE's own conditions only, not its subquery's, so a batch
  // that chose a row an answer was refreshing deleted the fresh offer. Made to happen: the refresh holds the rows'
  // locks until the purge is seen waiting for them.
  test('PostgreSQL: a purge that waited for rows a new answer was refreshing keeps them', { skip: testDatabaseKind() === 'postgres' ? false : 'PostgreSQL only (its READ COMMITTED recheck)' }, async () => {
    await ask('refreshed-purge.com');
    const later = clock.now() + OFFER_WINDOW_MS + 1;
    const db = s.store.db;
    let purging: Promise<number> | undefined;
    await db.transaction().execute(async (trx) => {
      await trx.updateTable('offered_addresses').set({ offered_at: later }).where('domain', '=', 'refreshed-purge.com').execute();
      const { rows } = await sql<{ xid: string }>`select backend_xid::text as xid from pg_stat_activity where pid = pg_backend_pid()`.execute(trx);
      purging = registry.purge(later);
      await waitUntil('the purge to wait for the refreshed rows', async () => {
        const waiting = await sql<{ n: number }>`select count(*)::int as n from pg_locks where not granted and locktype = 'transactionid' and transactionid = ${rows[0]!.xid}::xid`.execute(db);
        return waiting.rows[0]!.n > 0;
      });
    });
    assert.equal(await purging, 0, 'nothing purged: the rows were refreshed');
    assert.deepEqual(await stored('alice', 'refreshed-purge.com'), at(five('refreshed-purge.com'), later));
  });

  /** Each recorded address of the account for the domain with its `offered_at`. */
  async function stored(login: string, domain: string): Promise<Record<string, number>> {
    const account = (await s.accounts.find(login))!;
    const rows = await s.store.db
      .selectFrom('offered_addresses')
      .select(['address', 'offered_at'])
      .where('account_id', '=', account.id)
      .where('domain', '=', domain)
      .execute();
    return Object.fromEntries(rows.map((r) => [r.address, Number(r.offered_at)]));
  }
  const at = (addresses: string[], t: number) => Object.fromEntries(addresses.map((a) => [a, t]));

  test('issue 20: an identical answer repeated within a minute is not written again; a changed one is, and so is one a minute later', async () => {
    const t0 = clock.now();
    await ask('memo.com');
    assert.deepEqual(await stored('alice', 'memo.com'), at(five('memo.com'), t0));
    // 30 s later, the same answer: the rows keep the first time (nothing written).
    clock.advance(30_000);
    assert.match((await ask('memo.com')).body, /^0\ndomain_name\tmemo\.com\nlevel2_email\tadmin@memo\.com\n/);
    assert.deepEqual(await stored('alice', 'memo.com'), at(five('memo.com'), t0));
    // Another account: its own answer, written.
    await ask('memo.com', {}, 'bob');
    assert.deepEqual(await stored('bob', 'memo.com'), at(five('memo.com'), clock.now()));
    // A DNS contact appears (JSON): another set, written, every row with the new time.
    dns.setTxt('_validation-contactemail.memo.com', [['owner@memo-owner.example']]);
    const t1 = clock.now();
    await json('memo.com');
    assert.deepEqual(await stored('alice', 'memo.com'), at([...five('memo.com'), 'owner@memo-owner.example'], t1));
    clock.advance(1000);
    await json('memo.com');
    assert.deepEqual(await stored('alice', 'memo.com'), at([...five('memo.com'), 'owner@memo-owner.example'], t1), 'the same set: not written');
    // The DNS contact changes: written; the contact no longer offered keeps its time and expires with it.
    dns.setTxt('_validation-contactemail.memo.com', [['new@memo-owner.example']]);
    const t2 = clock.now();
    await json('memo.com');
    assert.deepEqual(await stored('alice', 'memo.com'), { ...at([...five('memo.com'), 'new@memo-owner.example'], t2), 'owner@memo-owner.example': t1 });
    // Only the evidence changes (the AD bit): the rows differ, so they are written.
    dns.setAuthenticated('_validation-contactemail.memo.com', true);
    clock.advance(1000);
    const t3 = clock.now();
    await json('memo.com');
    assert.equal((await stored('alice', 'memo.com'))['new@memo-owner.example'], t3);
    const alice = (await s.accounts.find('alice'))!;
    assert.equal((await registry.find(alice.id, 'memo.com', 'new@memo-owner.example', t3))?.dns?.authenticatedData, true);
    // Back to the text answer: it is not the last one written for the pair, so it is written.
    clock.advance(1000);
    const t4 = clock.now();
    await ask('memo.com');
    assert.deepEqual(await stored('alice', 'memo.com'), { ...at(five('memo.com'), t4), 'new@memo-owner.example': t3, 'owner@memo-owner.example': t1 });
    // The same text answer a minute after it was written: written again.
    clock.advance(RECENT_ANSWER_MS - 1);
    await ask('memo.com');
    assert.deepEqual(await stored('alice', 'memo.com'), { ...at(five('memo.com'), t4), 'new@memo-owner.example': t3, 'owner@memo-owner.example': t1 }, 'one millisecond short of the minute');
    clock.advance(1);
    await ask('memo.com');
    assert.deepEqual(await stored('alice', 'memo.com'), { ...at(five('memo.com'), clock.now()), 'new@memo-owner.example': t3, 'owner@memo-owner.example': t1 });
  });

  test('issue 20: the memory of recent answers is bounded (the pair written longest ago is forgotten) and never trusts a clock set back', async () => {
    const alice = (await s.accounts.find('alice'))!;
    const small = new OfferedAddressRegistry(s.store.db, { recentAnswerEntries: 2 });
    const offer = (domain: string) => [{ address: `admin@${domain}`, level: 2, source: 'constructed' as const }];
    const time = async (domain: string) => (await stored('alice', domain))[`admin@${domain}`];
    const t0 = clock.now();
    for (const d of ['bound-a.com', 'bound-b.com', 'bound-c.com']) await small.record(alice.id, d, offer(d), t0);
    await small.record(alice.id, 'bound-c.com', offer('bound-c.com'), t0 + 10);
    assert.equal(await time('bound-c.com'), t0, 'remembered: not written');
    await small.record(alice.id, 'bound-a.com', offer('bound-a.com'), t0 + 10);
    assert.equal(await time('bound-a.com'), t0 + 10, 'forgotten (a third pair came): written');
    // bound-b.com was forgotten when bound-a.com came back.
    await small.record(alice.id, 'bound-b.com', offer('bound-b.com'), t0 + 10);
    assert.equal(await time('bound-b.com'), t0 + 10);
    // A clock set back: written, as it would be without the memory.
    await small.record(alice.id, 'bound-b.com', offer('bound-b.com'), t0 + 5);
    assert.equal(await time('bound-b.com'), t0 + 5);
    // Hundreds of pairs: still answers, still bounded (the first pairs are written again).
    for (let i = 0; i < 200; i++) await small.record(alice.id, `many-${i}.com`, offer(`many-${i}.com`), t0);
    await small.record(alice.id, 'many-0.com', offer('many-0.com'), t0 + 20);
    assert.equal(await time('many-0.com'), t0 + 20);
    // recentAnswerMs 0: every answer written.
    const none = new OfferedAddressRegistry(s.store.db, { recentAnswerMs: 0 });
    await none.record(alice.id, 'bound-c.com', offer('bound-c.com'), t0 + 30);
    await none.record(alice.id, 'bound-c.com', offer('bound-c.com'), t0 + 30);
    assert.equal(await time('bound-c.com'), t0 + 30);
  });

  test('the seed\u2019s sample request with credentials', async () => {
    const res = await s.post(GET_PATH, form({ loginName: 'alice', loginPassword: PASSWORD, domainName: 'domain_name', responseformat: '2', product: '801' }));
    // `domain_name` has an underscore and no public suffix: not a valid host name.
    assert.equal(res.body, '{"errorCode":-4,"errorMessage":"The value of the \'domainName\' argument is invalid!","errorItem":"domainName"}');
  });
});

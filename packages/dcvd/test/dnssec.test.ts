/**
 * The DNSSEC policy of contact lookups (CONTRACT §3, BR 3.2.2.4 since
 * 2026-03-15). The probe logic against the project's test DNS server (which
 * can be told to answer like a validating resolver or not), then the real
 * thing: Debian's Unbound validating zones signed with ldns-signzone and
 * served by NSD, all on loopback (test/support/dnssec-lab.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultMpicConfig } from '../src/mpic/corroborate.ts';
import { createDnsClient, DnsError, parseResolvers } from '../src/dns/client.ts';
import { isBogus, probeResolver } from '../src/dns/dnssec.ts';
import type { DnsEvidence } from '../src/contacts/provider.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import { dnssecLabOrSkip, startDnssecLab, type DnssecLab } from './support/dnssec-lab.ts';
import { GET_PATH, PASSWORD, form, startTestServer, type TestServer } from './support/server.ts';
import { createOrder, OK, resend } from './support/dcv.ts';
import { systemClock } from '../src/deps.ts';
import type { ServeConfig } from '../src/config.ts';
import { DEFAULT_DNSSEC } from '../src/dns/dnssec.ts';

const five = (d: string) => ['admin', 'administrator', 'hostmaster', 'postmaster', 'webmaster'].map((l) => `${l}@${d}`);

function list(s: TestServer, domainName: string) {
  return s.post(GET_PATH, form({ loginName: 'alice', loginPassword: PASSWORD, domainName, product: '801', responseFormat: '2' }));
}

async function offered(s: TestServer, domain: string, address: string): Promise<DnsEvidence> {
  const row = await s.store.db.selectFrom('offered_addresses').select('dns_detail').where('domain', '=', domain).where('address', '=', address).executeTakeFirstOrThrow();
  return JSON.parse(row.dns_detail!) as DnsEvidence;
}

async function until(what: string, check: () => Promise<boolean>, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function dnssecConfig(mode: 'require' | 'log' | 'off', lab: Pick<DnssecLab, 'probeSecure' | 'probeBogus'>, probeIntervalMs = 60_000): ServeConfig['dnssec'] {
  return { mode, probeSecure: lab.probeSecure, probeBogus: lab.probeBogus, probeIntervalMs };
}

describe('probes against the test DNS server', () => {
  let fake: TestDnsServer;
  before(async () => {
    fake = await startTestDnsServer();
  });
  after(() => fake.close());
  const names = { probeSecure: 'signed.probe.example', probeBogus: 'broken.probe.example' };
  const client = () => createDnsClient({ resolvers: parseResolvers(fake.address), timeoutMs: 2000, attempts: 3 });

  test('a resolver that answers without AD, or answers the bogus name, is not proven', async () => {
    fake.reset();
    assert.match((await probeResolver(client(), names)) ?? '', /signed\.probe\.example \(signed\) was answered NOERROR without the AD bit/);
    fake.setAuthenticated(names.probeSecure, true);
    assert.match((await probeResolver(client(), names)) ?? '', /broken\.probe\.example \(bogus\) was answered NOERROR: the resolver does not validate/);
    fake.setRefused(names.probeBogus);
    assert.match((await probeResolver(client(), names)) ?? '', /failed with refused REFUSED, not SERVFAIL/);
  });

  test('AD on the signed name and SERVFAIL on the bogus one: proven', async () => {
    fake.reset();
    fake.setAuthenticated(names.probeSecure, true);
    fake.setServfail(names.probeBogus);
    fake.setExtendedError(names.probeBogus, 6, 'signature mismatch');
    assert.equal(await probeResolver(client(), names), undefined);
  });

  test('a SERVFAIL is bogus only with a DNSSEC Extended DNS Error', async () => {
    fake.reset();
    fake.setServfail('plain.example');
    fake.setServfail('bogus.example');
    fake.setExtendedError('bogus.example', 7, 'signature expired');
    fake.setServfail('blocked.example');
    fake.setExtendedError('blocked.example', 15, 'blocked');
    const c = client();
    const failure = (name: string) => c.txt(name).then(() => assert.fail('answered'), (e: unknown) => e as DnsError);
    assert.equal(isBogus(await failure('plain.example')), false);
    assert.equal(isBogus(await failure('bogus.example')), true);
    assert.equal(isBogus(await failure('blocked.example')), false);
  });
});

describe('the DNSSEC lab: Unbound validating NSD-served zones signed with ldns-signzone', { skip: dnssecLabOrSkip() }, () => {
  let lab: DnssecLab;
  let fake: TestDnsServer;
  before(async () => {
    lab = await startDnssecLab();
    fake = await startTestDnsServer();
  });
  after(async () => {
    await fake?.close();
    await lab?.close();
  });

  async function server(mode: 'require' | 'log' | 'off', resolvers: string, probeIntervalMs?: number): Promise<TestServer> {
    // MPIC off: these tests select DNS-found contacts to see their DNSSEC evidence; corroboration has its own tests (mpic.test.ts).
    const s = await startTestServer({
      dnsServers: parseResolvers(resolvers),
      dnsTimeoutMs: 1500,
      dnsAttempts: 2,
      dnssec: dnssecConfig(mode, lab, probeIntervalMs),
      mpic: defaultMpicConfig({ mode: 'off' }),
    });
    await s.createAccount('alice');
    return s;
  }

  test('require: a secure zone\u2019s TXT and CAA contacts are offered with AD; the evidence keeps resolver, RCODE, AD, EDE and probe state', async () => {
    const s = await server('require', lab.resolver);
    try {
      const res = JSON.parse((await list(s, 'www.secure.example.com')).body);
      assert.deepEqual(res.level3_email, [...five('secure.example.com'), 'txt-contact@secure.example.com', 'caa-contact@secure.example.com']);
      const txt = await offered(s, 'www.secure.example.com', 'txt-contact@secure.example.com');
      assert.deepEqual(
        { ...txt, dnssec: { ...txt.dnssec!, probe: { ...txt.dnssec!.probe, checkedAt: 'x' } } },
        {
          name: '_validation-contactemail.secure.example.com',
          type: 'TXT',
          rcode: 'NOERROR',
          authenticatedData: true,
          extendedErrors: [],
          resolver: lab.resolver,
          dnssec: { mode: 'require', status: 'secure', probe: { state: 'proven', checkedAt: 'x', detail: null } },
        },
      );
      assert.ok(!Number.isNaN(Date.parse(txt.dnssec!.probe.checkedAt!)));
      const caa = await offered(s, 'www.secure.example.com', 'caa-contact@secure.example.com');
      assert.deepEqual([caa.type, caa.name, caa.authenticatedData, caa.dnssec?.status], ['CAA', 'secure.example.com', true, 'secure']);

      // The evidence follows the address into the order (ResendDCVEmail), as it does into a validation's record.
      await createOrder(s, systemClock, 'alice', { domain: 'www.secure.example.com', orderNumber: 7100001 });
      assert.equal((await resend(s, 'alice', { orderNumber: 7100001, dcvEmailAddress: 'txt-contact@secure.example.com' })).body, OK);
      const order = await s.store.db.selectFrom('orders').select(['dcv_address_source', 'dcv_dns_detail']).where('order_number', '=', 7100001).executeTakeFirstOrThrow();
      assert.equal(order.dcv_address_source, 'dns-txt');
      assert.deepEqual(JSON.parse(order.dcv_dns_detail!), txt);
      assert.match(await s.metrics.render(), /dcvd_dnssec_mode\{mode="require"\} 1/);
      assert.match(await s.metrics.render(), /dcvd_dnssec_resolvers\{state="proven"\} 1/);
      assert.equal((await s.request({ method: 'GET', path: '/readyz' })).status, 200);
    } finally {
      await s.stop();
    }
  });

  test('a bogus answer (record forged after signing; signatures expired) drops that source: logged, counted; constructed addresses stay', async () => {
    const s = await server('require', lab.resolver);
    try {
      for (const domain of ['www.forged.example.com', 'www.bogus.example.com']) {
        const zone = domain.slice(4);
        const res = JSON.parse((await list(s, domain)).body);
        assert.deepEqual(res.level3_email, five(zone), `${domain}: no DNS contact`);
        assert.ok(!JSON.stringify(res).includes('attacker@'), 'the forged address is never offered');
        const warning = s.logs.find(
          (l) => l.msg === 'DNSSEC validation failed (bogus answer); its contact source is dropped' && (l.dns as { name: string }).name === `_validation-contactemail.${zone}`,
        );
        assert.ok(warning, `${domain}: a warning`);
        const dns = warning.dns as { kind: string; rcode: string; resolver: string; extendedErrors: { infoCode: number }[] };
        assert.deepEqual([dns.kind, dns.rcode, dns.resolver], ['dnssec-bogus', 'SERVFAIL', lab.resolver]);
        assert.ok(dns.extendedErrors.some((e) => [6, 7, 9, 10].includes(e.infoCode)), JSON.stringify(dns.extendedErrors));
      }
      // forged: one TXT RRset; bogus (the whole zone's keys expired): both TXT names and its CAA climb.
      const metrics = await s.metrics.render();
      assert.match(metrics, /dcvd_dns_lookups_total\{type="TXT",outcome="dnssec-bogus"\} 3/);
      assert.match(metrics, /dcvd_dns_lookups_total\{type="CAA",outcome="dnssec-bogus"\} 2/);
    } finally {
      await s.stop();
    }
  });

  test('an insecure (unsigned) zone\u2019s contact is offered, its evidence says insecure', async () => {
    const s = await server('require', lab.resolver);
    try {
      const res = JSON.parse((await list(s, 'www.insecure.example.com')).body);
      assert.deepEqual(res.level3_email, [...five('insecure.example.com'), 'txt-contact@insecure.example.com']);
      const txt = await offered(s, 'www.insecure.example.com', 'txt-contact@insecure.example.com');
      assert.deepEqual([txt.rcode, txt.authenticatedData, txt.dnssec?.mode, txt.dnssec?.status, txt.dnssec?.probe.state], ['NOERROR', false, 'require', 'insecure', 'proven']);
    } finally {
      await s.stop();
    }
  });

  test('require refuses a resolver that does not validate: alone, the server does not start', async () => {
    await assert.rejects(server('require', fake.address), (err: Error) => {
      assert.match(err.message, /--dnssec require: no DNS resolver passed the DNSSEC probes/);
      assert.match(err.message, new RegExp(`${fake.address}: probe\\.secure\\.example\\.com \\(signed\\) was answered \\w+ without the AD bit`));
      return true;
    });
    // Even talking to the validating resolver's own authoritative server (real data, no validation) is not enough.
    await assert.rejects(server('require', lab.authoritative), /no DNS resolver passed the DNSSEC probes/);
  });

  test('require with a validating and a non-validating resolver: only the proven one is asked', async () => {
    const s = await server('require', `${fake.address},${lab.resolver}`);
    try {
      fake.setTxt('_validation-contactemail.secure.example.com', [['forged@evil.example.net']]);
      const asked = fake.queries.length;
      const res = JSON.parse((await list(s, 'www.secure.example.com')).body);
      assert.ok(res.level3_email.includes('txt-contact@secure.example.com'));
      assert.ok(!JSON.stringify(res).includes('forged@'));
      assert.equal(fake.queries.length, asked, 'no contact lookup went to the non-validating resolver');
      const metrics = await s.metrics.render();
      assert.match(metrics, /dcvd_dnssec_resolvers\{state="proven"\} 1/);
      assert.match(metrics, /dcvd_dnssec_resolvers\{state="failed"\} 1/);
      assert.ok(s.logs.some((l) => l.msg === 'DNS resolver failed the DNSSEC probes; contact lookups do not use it' && l.resolver === fake.address));
    } finally {
      await s.stop();
      fake.reset();
    }
  });

  test('log: starts with a non-validating resolver, warns, says so in a metric and in the evidence', async () => {
    const s = await server('log', fake.address);
    try {
      fake.setTxt('_validation-contactemail.example.org', [['owner@example.net']]);
      assert.ok(s.logs.some((l) => l.level === 40 && String(l.msg).startsWith('DNSSEC mode log: contact lookups are not proven')));
      assert.match(await s.metrics.render(), /dcvd_dnssec_mode\{mode="log"\} 1/);
      const res = JSON.parse((await list(s, 'example.org')).body);
      assert.ok(res.level2_email.includes('owner@example.net'));
      const ev = await offered(s, 'example.org', 'owner@example.net');
      assert.deepEqual(ev.dnssec, { mode: 'log', status: 'insecure', probe: { state: 'unprobed', checkedAt: null, detail: null } });
      assert.equal(fake.queries.filter((q) => q.name.startsWith('probe.')).length, 0, 'log mode sends no probes');
    } finally {
      await s.stop();
      fake.reset();
    }
  });

  test('require, later: the resolver stops validating → DNS contacts fail and /readyz is not ready; it comes back → both recover', async () => {
    const s = await server('require', lab.resolver, 300);
    try {
      assert.ok((JSON.parse((await list(s, 'www.secure.example.com')).body).level3_email as string[]).includes('txt-contact@secure.example.com'));
      await lab.stopResolver();
      await until('/readyz to say not ready', async () => (await s.request({ method: 'GET', path: '/readyz' })).status === 503);
      assert.match((await s.request({ method: 'GET', path: '/readyz' })).body, /no DNS resolver passes the DNSSEC probes/);
      const res = JSON.parse((await list(s, 'www.secure.example.com')).body);
      assert.deepEqual(res.level3_email, five('secure.example.com'), 'only the constructed addresses');
      assert.ok(s.logs.some((l) => l.msg === 'DNS lookup failed; its contact source is dropped' && (l.dns as { kind: string }).kind === 'no-validating-resolver'));
      assert.match(await s.metrics.render(), /dcvd_dns_lookups_total\{type="TXT",outcome="no-validating-resolver"\} [1-9]/);

      await lab.startResolver();
      await until('/readyz to say ready again', async () => (await s.request({ method: 'GET', path: '/readyz' })).status === 200);
      assert.ok((JSON.parse((await list(s, 'www.secure.example.com')).body).level3_email as string[]).includes('txt-contact@secure.example.com'));
    } finally {
      await s.stop();
    }
  });
});

test('the default DNSSEC mode is log (the embedded setup works offline); probes default to public names', () => {
  assert.equal(DEFAULT_DNSSEC.mode, 'log');
  assert.deepEqual([DEFAULT_DNSSEC.probeSecure, DEFAULT_DNSSEC.probeBogus], ['isc.org', 'dnssec-failed.org']);
});

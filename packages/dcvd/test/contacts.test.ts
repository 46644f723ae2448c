/**
 * Contact discovery (CONTRACT §1, §3): the contact providers (src/contacts/)
 * and the loop that asks them, with a fake DNS client at the narrow
 * `DnsClient` interface. The same providers against the real in-process DNS
 * server: get-list.test.ts, dns-attack.test.ts, dnssec.test.ts, mpic.test.ts.
 * Run: node --import tsx --test test/contacts.test.ts
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONTACT_PROVIDERS, offerContacts, providerOf, type ContactLookup, type ContactProvider } from '../src/contacts/index.ts';
import { constructedAddresses, constructedProvider, CONSTRUCTED_LOCAL_PARTS } from '../src/contacts/constructed.ts';
import { txtProvider, TXT_PREFIX } from '../src/contacts/txt.ts';
import { caaProvider } from '../src/contacts/caa.ts';
import { DnsLookupStats } from '../src/contacts/dns.ts';
import { DnsError, type CaaRecord, type DnsClient } from '../src/dns/client.ts';
import { checkDomainName, type Adn } from '../src/domains/index.ts';
import { createLogger } from '../src/log.ts';
import { normalizeAddress } from '../src/contacts/address.ts';

/** A DNS client answering from tables; a name in `fail` throws that DnsError kind. Every question is recorded. */
class FakeDns implements DnsClient {
  readonly asked: string[] = [];
  readonly txtRecords = new Map<string, string[][]>();
  readonly caaRecords = new Map<string, CaaRecord[]>();
  readonly fail = new Map<string, { kind: 'timeout' | 'servfail'; infoCode?: number }>();

  private answer(type: 'TXT' | 'CAA', name: string) {
    this.asked.push(`${type} ${name}`);
    const f = this.fail.get(`${type} ${name}`);
    if (f) {
      const extendedErrors = f.infoCode === undefined ? [] : [{ infoCode: f.infoCode, extraText: '' }];
      throw new DnsError({ kind: f.kind, rcode: f.kind === 'servfail' ? 'SERVFAIL' : undefined, extendedErrors, resolver: '192.0.2.53:53', name, type }, 'fake');
    }
    return { name, rcode: 'NOERROR' as const, authenticatedData: false, extendedErrors: [], resolver: '192.0.2.53:53' };
  }
  async txt(name: string) {
    return { ...this.answer('TXT', name), records: this.txtRecords.get(name) ?? [] };
  }
  async caa(name: string) {
    return { ...this.answer('CAA', name), records: this.caaRecords.get(name) ?? [] };
  }
}

function lookupWith(dns: DnsClient) {
  const lines: { level: number; msg: string; dns?: { type: string; name: string; kind: string } }[] = [];
  const log = createLogger('info', 1, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const stats = new DnsLookupStats();
  const lookup: ContactLookup = { dns, log, stats };
  return { lookup, stats, lines };
}

function queryOf(name: string) {
  const check = checkDomainName(name);
  assert.ok(check.ok);
  return { fqdn: check.domain, adns: check.adns };
}

const five = (d: string) => CONSTRUCTED_LOCAL_PARTS.map((l) => `${l}@${d}`);

describe('the provider list', () => {
  test('constructed, DNS TXT, DNS CAA, in wire order; only the DNS ones look up and need corroboration', () => {
    assert.deepEqual(
      CONTACT_PROVIDERS.map((p) => [p.source, p.looksUpDns, p.corroboration?.method]),
      [
        ['constructed', false, undefined],
        ['dns-txt', true, 'contact-email-txt'],
        ['dns-caa', true, 'contact-email-caa'],
      ],
    );
  });

  test('corroboration targets: TXT at the ADN the address was found for, CAA from the FQDN', () => {
    assert.equal(txtProvider.corroboration?.target('www.shop.example.com', 'example.com'), 'example.com');
    assert.equal(caaProvider.corroboration?.target('www.shop.example.com', 'example.com'), 'www.shop.example.com');
  });

  test('providerOf finds a recorded source; an unknown one has none', () => {
    assert.equal(providerOf('constructed'), constructedProvider);
    assert.equal(providerOf('dns-txt'), txtProvider);
    assert.equal(providerOf('dns-caa'), caaProvider);
    assert.equal(providerOf('whois'), undefined);
    assert.equal(providerOf('dns-caa', [constructedProvider, txtProvider]), undefined);
  });
});

describe('offerContacts', () => {
  test('without DNS (responseFormat 1) only the constructed provider is asked: no lookup at all', async () => {
    const dns = new FakeDns();
    dns.txtRecords.set(`${TXT_PREFIX}example.com`, [['owner@example.com']]);
    const { lookup } = lookupWith(dns);
    const offer = await offerContacts(CONTACT_PROVIDERS, queryOf('www.example.com'), lookup, { dns: false });
    assert.deepEqual(dns.asked, []);
    assert.deepEqual(
      offer.addresses.map((a) => [a.level, a.address, a.source]),
      [...five('example.com').map((a) => [2, a, 'constructed']), ...five('www.example.com').map((a) => [3, a, 'constructed'])],
    );
    assert.deepEqual(offer.errors, []);
  });

  test('with DNS: constructed, then TXT per ADN, then CAA; an address found twice is listed once, first source wins', async () => {
    const dns = new FakeDns();
    dns.txtRecords.set(`${TXT_PREFIX}example.com`, [['owner@example.com'], ['hostmaster@EXAMPLE.COM']]);
    dns.txtRecords.set(`${TXT_PREFIX}www.example.com`, [['web@example.net'], ['not an address']]);
    dns.caaRecords.set('example.com', [
      { flags: 0, tag: 'issue', value: 'ca.example' },
      { flags: 0, tag: 'ContactEmail', value: 'caa@example.org' },
      { flags: 0, tag: 'contactemail', value: 'owner@EXAMPLE.com' },
    ]);
    const { lookup, stats } = lookupWith(dns);
    const offer = await offerContacts(CONTACT_PROVIDERS, queryOf('www.example.com'), lookup, { dns: true });
    const dnsFound = offer.addresses.filter((a) => a.source !== 'constructed');
    assert.equal(offer.addresses.length, 10 + dnsFound.length);
    // hostmaster@EXAMPLE.COM is the constructed hostmaster@example.com; owner@EXAMPLE.com is TXT's owner@example.com.
    assert.deepEqual(
      dnsFound.map((a) => [a.level, a.address, a.source, a.dns?.name, a.dns?.type]),
      [
        [2, 'owner@example.com', 'dns-txt', `${TXT_PREFIX}example.com`, 'TXT'],
        [3, 'web@example.net', 'dns-txt', `${TXT_PREFIX}www.example.com`, 'TXT'],
        [2, 'caa@example.org', 'dns-caa', 'example.com', 'CAA'],
      ],
    );
    assert.deepEqual(offer.errors, []);
    assert.equal(stats.get('TXT', 'ok'), 2);
    assert.equal(stats.get('CAA', 'ok'), 3);
  });

  test('a failed lookup is an error of its provider and drops only what it would have found', async () => {
    const dns = new FakeDns();
    dns.txtRecords.set(`${TXT_PREFIX}example.com`, [['owner@example.com']]);
    dns.txtRecords.set(`${TXT_PREFIX}www.example.com`, [['web@example.com']]);
    dns.fail.set(`TXT ${TXT_PREFIX}www.example.com`, { kind: 'timeout' });
    // The relevant CAA RRset is at example.com, but the lookup of www.example.com below it failed: the CAA source is dropped.
    dns.caaRecords.set('example.com', [{ flags: 0, tag: 'contactemail', value: 'caa@example.com' }]);
    dns.fail.set('CAA www.example.com', { kind: 'servfail', infoCode: 6 });
    const { lookup, stats, lines } = lookupWith(dns);
    const offer = await offerContacts(CONTACT_PROVIDERS, queryOf('www.example.com'), lookup, { dns: true });
    assert.deepEqual(
      offer.addresses.filter((a) => a.source !== 'constructed').map((a) => a.address),
      ['owner@example.com'],
    );
    assert.deepEqual(offer.errors, [
      { type: 'TXT', name: `${TXT_PREFIX}www.example.com`, kind: 'timeout' },
      { type: 'CAA', name: 'www.example.com', kind: 'dnssec-bogus' },
    ]);
    assert.equal(stats.get('TXT', 'timeout'), 1);
    assert.equal(stats.get('CAA', 'dnssec-bogus'), 1);
    assert.deepEqual(
      lines.filter((l) => l.level === 40).map((l) => [l.msg, l.dns?.kind]),
      [
        ['DNS lookup failed; its contact source is dropped', 'timeout'],
        ['DNSSEC validation failed (bogus answer); its contact source is dropped', 'dnssec-bogus'],
      ],
    );
  });

  test('a CAA failure above the relevant RRset is an error but does not drop the RRset below it', async () => {
    const dns = new FakeDns();
    dns.caaRecords.set('www.example.com', [{ flags: 0, tag: 'contactemail', value: 'caa@example.com' }]);
    dns.fail.set('CAA com', { kind: 'timeout' });
    const { lookup } = lookupWith(dns);
    const offer = await caaProvider.offer(queryOf('www.example.com'), lookup);
    assert.deepEqual(offer.addresses.map((a) => [a.level, a.address]), [[3, 'caa@example.com']]);
    assert.deepEqual(offer.errors, [{ type: 'CAA', name: 'com', kind: 'timeout' }]);
  });

  test('a TXT name too long to query is an error of kind name-too-long, never sent', async () => {
    const label = 'a'.repeat(60);
    const name = `${label}.${label}.${label}.${label.slice(0, 50)}.example.com`;
    const dns = new FakeDns();
    const { lookup, stats } = lookupWith(dns);
    const offer = await txtProvider.offer(queryOf(name), lookup);
    assert.deepEqual(offer.addresses, []);
    assert.deepEqual(offer.errors, [{ type: 'TXT', name: TXT_PREFIX + name, kind: 'name-too-long' }]);
    // The four shorter ADNs are looked up; the full name is not.
    assert.equal(dns.asked.length, 4);
    assert.ok(!dns.asked.includes(`TXT ${TXT_PREFIX}${name}`));
    assert.equal(stats.get('TXT', 'name-too-long'), 1);
    assert.equal(stats.get('TXT', 'ok'), 4);
  });

  test('the list is what is asked: another provider is one more entry, a left-out one is never asked', async () => {
    const whois: ContactProvider = {
      source: 'constructed',
      looksUpDns: false,
      corroboration: undefined,
      async offer({ adns }) {
        return { addresses: [{ address: `registrant@${adns[0]!.name}`, level: adns[0]!.level, source: 'constructed' }], errors: [] };
      },
    };
    const dns = new FakeDns();
    dns.txtRecords.set(`${TXT_PREFIX}example.com`, [['owner@example.com']]);
    const { lookup } = lookupWith(dns);
    const offer = await offerContacts([txtProvider, whois], queryOf('example.com'), lookup, { dns: true });
    assert.deepEqual(dns.asked, [`TXT ${TXT_PREFIX}example.com`]);
    assert.deepEqual(offer.addresses.map((a) => a.address), ['owner@example.com', 'registrant@example.com']);
  });
});

describe('normalizeAddress', () => {
  test('the domain part lowercased as String.prototype.toLowerCase does, the local part as written', () => {
    const cases: [string, string][] = [
      ['Admin@Example.COM', 'Admin@example.com'],
      ['admin@example.com', 'admin@example.com'],
      ['x@ÄB.de', 'x@äb.de'],
      // Non-ASCII capitals that toLowerCase maps to ASCII or to two characters.
      ['x@\u212a.com', 'x@k.com'],
      ['x@\u0130.com', 'x@i\u0307.com'],
      ['a@b@C.d', 'a@b@c.d'],
      ['no-at-sign', 'no-at-sign'],
      ['User@', 'User@'],
    ];
    for (const [input, expected] of cases) assert.equal(normalizeAddress(input), expected, input);
    // Every string of these characters, against the definition (lowercase everything from the last '@').
    const chars = ['a', 'Z', '@', '.', 'Ä', 'ä', '\u212a', '\u0130', 'ẞ', '-'];
    const definition = (a: string) => {
      const at = a.lastIndexOf('@');
      return at < 0 ? a : a.slice(0, at) + a.slice(at).toLowerCase();
    };
    const all = (n: number): string[] => (n === 0 ? [''] : all(n - 1).flatMap((p) => chars.map((c) => p + c)));
    for (const input of all(4)) assert.equal(normalizeAddress(input), definition(input), JSON.stringify(input));
  });
});

describe('constructedAddresses', () => {
  test('local parts are the five of CONTRACT §1, in wire order', () => {
    assert.deepEqual([...CONSTRUCTED_LOCAL_PARTS], ['admin', 'administrator', 'hostmaster', 'postmaster', 'webmaster']);
  });

  test('www.example.co.uk: level 3 then level 4, five each, in order', () => {
    const r = checkDomainName('www.example.co.uk');
    assert.ok(r.ok);
    assert.deepEqual(constructedAddresses(r.adns), [
      { level: 3, address: 'admin@example.co.uk' },
      { level: 3, address: 'administrator@example.co.uk' },
      { level: 3, address: 'hostmaster@example.co.uk' },
      { level: 3, address: 'postmaster@example.co.uk' },
      { level: 3, address: 'webmaster@example.co.uk' },
      { level: 4, address: 'admin@www.example.co.uk' },
      { level: 4, address: 'administrator@www.example.co.uk' },
      { level: 4, address: 'hostmaster@www.example.co.uk' },
      { level: 4, address: 'postmaster@www.example.co.uk' },
      { level: 4, address: 'webmaster@www.example.co.uk' },
    ]);
  });

  test('foo.github.io never offers addresses at github.io', () => {
    const r = checkDomainName('www.foo.github.io');
    assert.ok(r.ok);
    const addresses = constructedAddresses(r.adns).map((a) => a.address);
    assert.equal(addresses.length, 10);
    assert.ok(addresses.every((a) => a.endsWith('.foo.github.io') || a.endsWith('@foo.github.io')));
    assert.ok(!addresses.includes('admin@github.io'));
  });

  test('IDN: addresses use A-labels', () => {
    const r = checkDomainName('www.bücher.de');
    assert.ok(r.ok);
    assert.deepEqual(
      constructedAddresses(r.adns).map((a) => a.address),
      [
        'admin@xn--bcher-kva.de',
        'administrator@xn--bcher-kva.de',
        'hostmaster@xn--bcher-kva.de',
        'postmaster@xn--bcher-kva.de',
        'webmaster@xn--bcher-kva.de',
        'admin@www.xn--bcher-kva.de',
        'administrator@www.xn--bcher-kva.de',
        'hostmaster@www.xn--bcher-kva.de',
        'postmaster@www.xn--bcher-kva.de',
        'webmaster@www.xn--bcher-kva.de',
      ],
    );
  });

  test('ADNs given out of order are listed lowest level first', () => {
    const adns: Adn[] = [
      { name: 'b.example.com', level: 3 },
      { name: 'a.b.example.com', level: 4 },
      { name: 'example.com', level: 2 },
    ];
    const out = constructedAddresses(adns);
    assert.deepEqual(
      out.map((a) => a.level),
      [2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4],
    );
    assert.deepEqual(out[0], { level: 2, address: 'admin@example.com' });
    assert.deepEqual(out[14], { level: 4, address: 'webmaster@a.b.example.com' });
    // the caller's array is not reordered
    assert.equal(adns[0]?.level, 3);
  });

  test('no ADNs, no addresses', () => {
    assert.deepEqual(constructedAddresses([]), []);
  });
});

describe('the constructed provider', () => {
  test('an address over 254 characters is not offered: long ADNs offer none, short ones still do', async () => {
    const label = 'a'.repeat(63);
    const name = `${label}.${label}.${label}.${'b'.repeat(49)}.example.com`;
    const { lookup } = lookupWith(new FakeDns());
    const offer = await constructedProvider.offer(queryOf(name), lookup);
    assert.ok(offer.addresses.every((a) => a.address.length <= 254 && a.source === 'constructed'));
    assert.deepEqual(offer.addresses.slice(0, 5).map((a) => a.address), five('example.com'));
    assert.ok(!offer.addresses.some((a) => a.address.endsWith(`@${name}`)));
    assert.deepEqual(offer.errors, []);
  });
});

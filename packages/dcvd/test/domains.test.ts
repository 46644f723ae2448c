/**
 * Domain-name rules (CONTRACT §2); the constructed addresses are in contacts.test.ts.
 * Run: node --import tsx --test test/domains.test.ts
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { getPublicSuffix } from 'tldts';
import {
  checkDomainName,
  MAX_INPUT_LENGTH,
  type Adn,
  type DomainCheck,
  type DomainRejectReason,
} from '../src/domains/index.ts';

type Expected =
  | { ok: true; domain: string; base: string; levels: number[]; wildcard: boolean }
  | { ok: false; code: -4 | -19 | -37; reason: DomainRejectReason };

function ok(domain: string, base: string, levels: number[], wildcard = false): Expected {
  return { ok: true, domain, base, levels, wildcard };
}
function err(code: -4 | -19 | -37, reason: DomainRejectReason): Expected {
  return { ok: false, code, reason };
}
function expectedCheck(e: Expected): DomainCheck {
  if (!e.ok) return { ok: false, code: e.code, reason: e.reason };
  const labels = e.domain.split('.');
  return {
    ok: true,
    domain: e.domain,
    wildcard: e.wildcard,
    baseDomain: e.base,
    adns: e.levels.map((level) => ({ name: labels.slice(labels.length - level).join('.'), level })),
  };
}

const label = (ch: string, n: number): string => ch.repeat(n);
// 63 + 1 + 63 + 1 + 63 + 1 + 57 + 1 + 3 = 253
const NAME_253 = [label('a', 63), label('b', 63), label('c', 63), label('d', 57), 'com'].join('.');
const NAME_254 = [label('a', 63), label('b', 63), label('c', 63), label('d', 58), 'com'].join('.');

const cases: Array<[input: string, expected: Expected]> = [
  // CONTRACT §2 examples
  ['www.example.co.uk', ok('www.example.co.uk', 'example.co.uk', [3, 4])],
  ['www.example.com', ok('www.example.com', 'example.com', [2, 3])],
  ['example.com', ok('example.com', 'example.com', [2])],
  ['a.b.c.example.com', ok('a.b.c.example.com', 'example.com', [2, 3, 4, 5])],
  ['co.uk', err(-4, 'public-suffix')],
  ['com', err(-4, 'public-suffix')],
  ['github.io', err(-4, 'public-suffix')],
  ['*.co.uk', err(-4, 'public-suffix')],
  ['intranet', err(-37, 'internal-name')],
  ['host.corp', err(-37, 'internal-name')],
  ['printer.local', err(-37, 'special-use')],

  // normalization: case, whitespace, trailing dot, wildcard
  ['EXAMPLE.COM', ok('example.com', 'example.com', [2])],
  ['WwW.ExAmPlE.Co.Uk', ok('www.example.co.uk', 'example.co.uk', [3, 4])],
  ['  example.com\t\n', ok('example.com', 'example.com', [2])],
  ['\u00a0example.com\u3000', ok('example.com', 'example.com', [2])],
  ['example.com.', ok('example.com', 'example.com', [2])],
  ['example.com..', err(-4, 'syntax')],
  ['.example.com', err(-4, 'syntax')],
  ['*.example.co.uk', ok('example.co.uk', 'example.co.uk', [3], true)],
  ['*.www.example.com', ok('www.example.com', 'example.com', [2, 3], true)],
  ['*.EXAMPLE.COM.', ok('example.com', 'example.com', [2], true)],
  ['*.com', err(-4, 'public-suffix')],
  ['*.github.io', err(-4, 'public-suffix')],
  ['*', err(-4, 'syntax')],
  ['*.', err(-4, 'syntax')],
  ['*.*.example.com', err(-4, 'syntax')],
  ['www.*.example.com', err(-4, 'syntax')],
  ['*example.com', err(-4, 'syntax')],
  ['**.example.com', err(-4, 'syntax')],
  ['', err(-4, 'syntax')],
  ['   ', err(-4, 'syntax')],
  ['.', err(-4, 'syntax')],
  ['..', err(-4, 'syntax')],

  // IDN (UTS-46, nontransitional)
  ['bücher.de', ok('xn--bcher-kva.de', 'xn--bcher-kva.de', [2])],
  ['BÜCHER.DE', ok('xn--bcher-kva.de', 'xn--bcher-kva.de', [2])],
  ['www.bücher.de', ok('www.xn--bcher-kva.de', 'xn--bcher-kva.de', [2, 3])],
  ['*.bücher.de', ok('xn--bcher-kva.de', 'xn--bcher-kva.de', [2], true)],
  ['münchen.de', ok('xn--mnchen-3ya.de', 'xn--mnchen-3ya.de', [2])],
  ['faß.de', ok('xn--fa-hia.de', 'xn--fa-hia.de', [2])],
  ['例え.jp', ok('xn--r8jz45g.jp', 'xn--r8jz45g.jp', [2])],
  ['пример.рф', ok('xn--e1afmkfd.xn--p1ai', 'xn--e1afmkfd.xn--p1ai', [2])],
  ['рф', err(-4, 'public-suffix')],
  ['ｅｘａｍｐｌｅ.com', ok('example.com', 'example.com', [2])],
  ['example。com', ok('example.com', 'example.com', [2])],
  ['example．com｡', ok('example.com', 'example.com', [2])],
  ['*。example.com', ok('example.com', 'example.com', [2], true)],
  ['ex\u00adample.com', ok('example.com', 'example.com', [2])], // soft hyphen: UTS-46 "ignored"
  ['\u00ad.com', err(-4, 'syntax')], // a label made only of ignored characters is empty
  ['⒈com', err(-4, 'idna')], // maps to "1.com": the label structure would change
  ['a／b.com', err(-4, 'idna')],
  ['a％41.com', err(-4, 'idna')],
  ['exa\u00a0mple.com', err(-4, 'idna')],
  ['exa\u0085mple.com', err(-4, 'idna')],
  ['\ud800.com', err(-4, 'idna')],
  ['\u202ea.com', err(-4, 'idna')],
  ['ä'.repeat(60) + '.de', err(-4, 'syntax')], // A-label over 63
  ['ü.local', err(-37, 'special-use')],
  ['bücher.corp', err(-37, 'internal-name')],

  // punycode input
  ['xn--bcher-kva.de', ok('xn--bcher-kva.de', 'xn--bcher-kva.de', [2])],
  ['XN--BCHER-KVA.DE', ok('xn--bcher-kva.de', 'xn--bcher-kva.de', [2])],
  ['www.xn--bcher-kva.de', ok('www.xn--bcher-kva.de', 'xn--bcher-kva.de', [2, 3])],
  ['xn--e1afmkfd.xn--p1ai', ok('xn--e1afmkfd.xn--p1ai', 'xn--e1afmkfd.xn--p1ai', [2])],
  ['xn--zz.com', err(-4, 'idna')],
  ['xn--.com', err(-4, 'idna')],
  ['xn--a.com', err(-4, 'idna')],
  ['xn--ab--cd.com', err(-4, 'idna')],
  ['xn--abc-.com', err(-4, 'idna')], // decodes to plain "abc": not a canonical A-label
  ['xn--bcher-1pa.de', err(-4, 'idna')], // decodes to "Übcher": uppercase is not a valid label character
  ['xn--e-xbb.de', err(-4, 'idna')], // decodes to "e" + combining acute: not NFC

  // syntax
  [label('a', 63) + '.com', ok(label('a', 63) + '.com', label('a', 63) + '.com', [2])],
  [label('a', 64) + '.com', err(-4, 'syntax')],
  ['www.' + label('a', 64) + '.com', err(-4, 'syntax')],
  [NAME_253, ok(NAME_253, label('d', 57) + '.com', [2, 3, 4, 5])],
  [NAME_253 + '.', ok(NAME_253, label('d', 57) + '.com', [2, 3, 4, 5])],
  ['*.' + NAME_253, ok(NAME_253, label('d', 57) + '.com', [2, 3, 4, 5], true)],
  [NAME_254, err(-4, 'syntax')],
  ['-bad.com', err(-4, 'syntax')],
  ['bad-.com', err(-4, 'syntax')],
  ['bad.-com', err(-4, 'syntax')],
  ['under_score.com', err(-4, 'syntax')],
  ['_dmarc.example.com', err(-4, 'syntax')],
  ['a..com', err(-4, 'syntax')],
  ['exa mple.com', err(-4, 'syntax')],
  ['exa\tmple.com', err(-4, 'syntax')], // the URL parser would silently drop the tab
  ['exa\nmple.com', err(-4, 'syntax')],
  ['exa\rmple.com', err(-4, 'syntax')],
  ['exa\u0000mple.com', err(-4, 'syntax')],
  ['example.com\u0000', err(-4, 'syntax')],
  ['\u0000', err(-4, 'syntax')],
  ['exa\u007fmple.com', err(-4, 'syntax')],
  // the same with a non-ASCII or xn-- label, where domainToASCII would run
  ['bü\tcher.de', err(-4, 'syntax')],
  ['xn--bcher-kva.d\ne', err(-4, 'syntax')],
  ['bü%63her.de', err(-4, 'syntax')],
  ['bücher.de/evil', err(-4, 'syntax')],
  ['bü_cher.de', err(-4, 'syntax')],
  ['exa%2emple.com', err(-4, 'syntax')], // the URL parser would percent-decode
  ['a%41.com', err(-4, 'syntax')],
  ['exa/mple.com', err(-4, 'syntax')],
  ['user@example.com', err(-4, 'syntax')],
  ['example.com:443', err(-4, 'syntax')],
  ['http://example.com', err(-4, 'syntax')],
  ['example.com/', err(-4, 'syntax')],
  ['my-site.com', ok('my-site.com', 'my-site.com', [2])],
  ['ab--cd.com', ok('ab--cd.com', 'ab--cd.com', [2])],
  ['3com.com', ok('3com.com', '3com.com', [2])],
  ['123.com', ok('123.com', '123.com', [2])],
  ['x.com', ok('x.com', 'x.com', [2])],

  // IPv4 literals
  ['8.8.8.8', err(-19, 'public-ip')],
  ['1.1.1.1', err(-19, 'public-ip')],
  ['172.32.0.1', err(-19, 'public-ip')],
  ['8.8.8.8.', err(-19, 'public-ip')],
  [' 8.8.8.8 ', err(-19, 'public-ip')],
  ['[8.8.8.8]', err(-19, 'public-ip')],
  ['８.８.８.８', err(-19, 'public-ip')], // full-width digits map to the address they spell
  ['10.0.0.1', err(-37, 'private-ip')],
  ['172.16.0.1', err(-37, 'private-ip')],
  ['192.168.1.1', err(-37, 'private-ip')],
  ['127.0.0.1', err(-37, 'private-ip')],
  ['169.254.1.1', err(-37, 'private-ip')],
  ['100.64.0.1', err(-37, 'private-ip')],
  ['0.0.0.0', err(-37, 'private-ip')],
  ['255.255.255.255', err(-37, 'private-ip')],
  ['224.0.0.1', err(-37, 'private-ip')],
  ['192.0.2.1', err(-37, 'private-ip')],
  ['240.0.0.1', err(-37, 'private-ip')],
  ['[10.0.0.1]', err(-37, 'private-ip')],
  ['*.1.2.3.4', err(-4, 'wildcard-ip')],
  ['*.8.8.8.8', err(-4, 'wildcard-ip')],
  ['*.10.0.0.1', err(-4, 'wildcard-ip')],
  ['*.８.８.８.８', err(-4, 'wildcard-ip')],
  // not canonical IPv4, not host names either
  ['1.2.3', err(-4, 'numeric-tld')],
  ['0x7f.1', err(-4, 'numeric-tld')],
  ['0x7f.0.0.1', err(-4, 'numeric-tld')],
  ['2130706433', err(-4, 'numeric-tld')],
  ['01.2.3.4', err(-4, 'numeric-tld')],
  ['256.1.1.1', err(-4, 'numeric-tld')],
  ['1.2.3.4.5', err(-4, 'numeric-tld')],
  ['example.123', err(-4, 'numeric-tld')],
  ['1.0x7f', err(-4, 'numeric-tld')],
  ['a.0x', err(-4, 'numeric-tld')],
  ['１.２.３', err(-4, 'numeric-tld')],
  ['foo.1a', err(-37, 'internal-name')],
  ['1.2.3.4.com', ok('1.2.3.4.com', '4.com', [2, 3, 4, 5])],

  // IPv6 literals
  ['2001:4860:4860::8888', err(-19, 'public-ip')],
  ['[2001:4860:4860::8888]', err(-19, 'public-ip')],
  ['2001:4860:4860:0:0:0:0:8888', err(-19, 'public-ip')],
  ['2A00:1450:4001:81D::200E', err(-19, 'public-ip')],
  ['::ffff:8.8.8.8', err(-19, 'public-ip')],
  ['::1', err(-37, 'private-ip')],
  ['[::1]', err(-37, 'private-ip')],
  ['::', err(-37, 'private-ip')],
  ['[fe80::1]', err(-37, 'private-ip')],
  ['fe80::1%eth0', err(-37, 'private-ip')],
  ['fd00::1', err(-37, 'private-ip')],
  ['ff02::1', err(-37, 'private-ip')],
  ['2001:db8::1', err(-37, 'private-ip')],
  ['::ffff:10.0.0.1', err(-37, 'private-ip')],
  ['::ffff:127.0.0.1', err(-37, 'private-ip')],
  ['::8.8.8.8', err(-37, 'private-ip')], // deprecated IPv4-compatible form, in reserved ::/8
  ['4000::1', err(-37, 'private-ip')], // outside 2000::/3, never allocated
  ['*.[::1]', err(-4, 'wildcard-ip')],
  ['*.2001:4860:4860::8888', err(-4, 'wildcard-ip')],
  ['[2001:4860:4860::8888', err(-4, 'syntax')],
  ['2001:4860:4860::8888]', err(-4, 'syntax')],
  ['[]', err(-4, 'syntax')],
  ['[example.com]', err(-4, 'syntax')],
  ['2001:4860:4860::88888', err(-4, 'syntax')],
  [':::1', err(-4, 'syntax')],

  // special-use names and reverse zones, the names themselves included
  ['localhost', err(-37, 'special-use')],
  ['LOCALHOST.', err(-37, 'special-use')],
  ['foo.localhost', err(-37, 'special-use')],
  ['*.localhost', err(-37, 'special-use')],
  ['local', err(-37, 'special-use')],
  ['*.local', err(-37, 'special-use')],
  ['test', err(-37, 'special-use')],
  ['x.test', err(-37, 'special-use')],
  ['invalid', err(-37, 'special-use')],
  ['a.invalid', err(-37, 'special-use')],
  ['example', err(-37, 'special-use')],
  ['foo.example', err(-37, 'special-use')],
  ['onion', err(-37, 'special-use')],
  ['xyz.onion', err(-37, 'special-use')],
  ['x.alt', err(-37, 'special-use')],
  ['home.arpa', err(-37, 'special-use')],
  ['router.home.arpa', err(-37, 'special-use')],
  ['ipv4only.arpa', err(-37, 'special-use')],
  ['in-addr.arpa', err(-37, 'reverse-zone')],
  ['1.0.0.127.in-addr.arpa', err(-37, 'reverse-zone')],
  ['8.8.8.8.in-addr.arpa', err(-37, 'reverse-zone')],
  ['ip6.arpa', err(-37, 'reverse-zone')],
  ['b.a.9.8.ip6.arpa', err(-37, 'reverse-zone')],
  ['arpa', err(-4, 'public-suffix')],
  // label boundaries: these are ordinary names
  ['localhost.com', ok('localhost.com', 'localhost.com', [2])],
  ['mytest.com', ok('mytest.com', 'mytest.com', [2])],
  ['test.com', ok('test.com', 'test.com', [2])],
  ['onion.com', ok('onion.com', 'onion.com', [2])],
  ['notlocal.com', ok('notlocal.com', 'notlocal.com', [2])],
  ['www.example.net', ok('www.example.net', 'example.net', [2, 3])],
  ['example.org', ok('example.org', 'example.org', [2])],

  // internal names: no ICANN suffix (tldts's implicit '*' rule must not pass them)
  ['server.lan', err(-37, 'internal-name')],
  ['a.b.c.corp', err(-37, 'internal-name')],
  ['*.corp', err(-37, 'internal-name')],
  ['corp', err(-37, 'internal-name')],
  ['mail.internal', err(-37, 'internal-name')],
  ['xn--bcher-kva.corp', err(-37, 'internal-name')],

  // PSL private section: the base domain sits below the private suffix
  ['foo.github.io', ok('foo.github.io', 'foo.github.io', [3])],
  ['www.foo.github.io', ok('www.foo.github.io', 'foo.github.io', [3, 4])],
  ['*.foo.github.io', ok('foo.github.io', 'foo.github.io', [3], true)],
  // PSL wildcard and exception rules (*.ck, !www.ck)
  ['foo.ck', err(-4, 'public-suffix')],
  ['bar.foo.ck', ok('bar.foo.ck', 'bar.foo.ck', [3])],
  ['www.ck', ok('www.ck', 'www.ck', [2])],
];

describe('checkDomainName table', () => {
  for (const [input, expected] of cases) {
    const title = JSON.stringify(input.length > 70 ? `${input.slice(0, 40)}…(${input.length})` : input);
    test(title, () => {
      assert.deepEqual(checkDomainName(input), expectedCheck(expected));
    });
  }
});

describe('checkDomainName invariants', () => {
  test('the table has no duplicate inputs', () => {
    const seen = new Set<string>();
    for (const [input] of cases) {
      assert.ok(!seen.has(input), `duplicate case ${JSON.stringify(input)}`);
      seen.add(input);
    }
  });

  test('every accepted name is a fixed point, and accepted again with "*."', () => {
    for (const [input, expected] of cases) {
      if (!expected.ok) continue;
      const again = checkDomainName(expected.domain);
      assert.deepEqual(again, expectedCheck({ ...expected, wildcard: false }), input);
      const wild = checkDomainName(`*.${expected.domain}`);
      assert.deepEqual(wild, expectedCheck({ ...expected, wildcard: true }), input);
    }
  });

  test('arbitrary strings never throw and give well-formed answers', () => {
    const domainish = fc.string({
      unit: fc.constantFrom(...'abcxyz019-.*:[]%_ \t\u0000Üüß．。例\u00ad'.split(''), 'xn--', 'com', 'co.uk', 'github.io', 'local', '127.0.0.1', '::'),
      maxLength: 30,
    });
    const anything = fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: 'binary-ascii', maxLength: 80 }), domainish);
    fc.assert(
      fc.property(anything, (input) => {
        const r = checkDomainName(input);
        if (!r.ok) {
          assert.ok([-4, -19, -37].includes(r.code));
          assert.equal(typeof r.reason, 'string');
          return;
        }
        assertWellFormed(r);
        // Normalization is idempotent.
        assert.deepEqual(checkDomainName(r.domain), { ...r, wildcard: false });
      }),
      { numRuns: 3000, seed: 20261123 },
    );
  });

  test('generated valid names under real suffixes are accepted with the right ADNs', () => {
    const ldhLabel = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?$/).filter((l) => !/^[0-9]+$/.test(l) && !l.startsWith('xn--') && l.slice(2, 4) !== '--');
    const suffix = fc.constantFrom(
      { suffix: 'com', level: 1 },
      { suffix: 'co.uk', level: 2 },
      { suffix: 'github.io', level: 2 },
      { suffix: 'de', level: 1 },
    );
    fc.assert(
      fc.property(fc.array(ldhLabel, { minLength: 1, maxLength: 6 }), suffix, fc.boolean(), (labels, s, star) => {
        const domain = `${labels.join('.')}.${s.suffix}`;
        // Some generated names sit under a longer suffix of the PSL (`br.com`, `de.com` are private-section suffixes): not this property's case.
        fc.pre(getPublicSuffix(domain, { allowPrivateDomains: true }) === s.suffix);
        const r = checkDomainName((star ? '*.' : '') + domain.toUpperCase() + '.');
        assert.ok(r.ok, `${domain}: ${JSON.stringify(r)}`);
        assertWellFormed(r);
        assert.equal(r.domain, domain);
        assert.equal(r.wildcard, star);
        assert.equal(r.baseDomain, `${labels[labels.length - 1]}.${s.suffix}`);
        assert.equal(r.adns[0]?.level, s.level + 1);
        assert.equal(r.adns.length, labels.length);
      }),
      { numRuns: 500, seed: 20261123 },
    );
  });
});

function assertWellFormed(r: Extract<DomainCheck, { ok: true }>): void {
  assert.ok(r.domain.length >= 1 && r.domain.length <= 253, r.domain);
  assert.match(r.domain, /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/);
  for (const l of r.domain.split('.')) assert.ok(l.length >= 1 && l.length <= 63, r.domain);
  assert.ok(r.adns.length >= 1);
  assert.equal(r.adns[0]?.name, r.baseDomain);
  assert.equal(r.adns[r.adns.length - 1]?.name, r.domain);
  r.adns.forEach((adn, i) => {
    assert.equal(adn.level, adn.name.split('.').length);
    assert.ok(adn.level >= 2, 'a TLD is never an ADN');
    if (i > 0) {
      const prev = r.adns[i - 1] as Adn;
      assert.equal(adn.level, prev.level + 1);
      assert.ok(adn.name.endsWith(`.${prev.name}`));
    }
  });
}

describe('checkDomainName on very long input', () => {
  const huge: Array<[string, string]> = [
    ['a × 100k', 'a'.repeat(100_000)],
    ['a × 100k + .com', 'a'.repeat(100_000) + '.com'],
    ['dots × 100k', '.'.repeat(100_000)],
    ['ü × 100k', 'ü'.repeat(100_000)],
    ['"*." × 50k', '*.'.repeat(50_000) + 'example.com'],
    ['spaces × 100k around a name', ' '.repeat(50_000) + 'example.com' + ' '.repeat(50_000)],
    ['NUL × 100k', '\u0000'.repeat(100_000)],
    ['digits × 100k', '1.'.repeat(50_000)],
  ];
  for (const [title, input] of huge) {
    test(`${title} is refused quickly`, () => {
      const start = performance.now();
      const r = checkDomainName(input);
      const ms = performance.now() - start;
      assert.deepEqual(r, { ok: false, code: -4, reason: 'too-long' });
      assert.ok(ms < 50, `${ms} ms`);
    });
  }

  test('inputs up to the cap are still examined, and fast', () => {
    const atCap = [
      'a'.repeat(MAX_INPUT_LENGTH),
      'ü'.repeat(MAX_INPUT_LENGTH),
      'a.'.repeat(MAX_INPUT_LENGTH / 2),
      '\u00ad'.repeat(MAX_INPUT_LENGTH - 'example.com'.length) + 'example.com',
      '例'.repeat(MAX_INPUT_LENGTH - 3) + '.jp',
    ];
    for (const input of atCap) assert.equal(input.length, MAX_INPUT_LENGTH);
    const start = performance.now();
    const results = atCap.map((input) => checkDomainName(input));
    const ms = performance.now() - start;
    assert.ok(ms < 200, `${ms} ms`);
    assert.deepEqual(results.slice(0, 3), [
      { ok: false, code: -4, reason: 'syntax' },
      { ok: false, code: -4, reason: 'syntax' },
      { ok: false, code: -4, reason: 'syntax' },
    ]);
    // Soft hyphens are UTS-46 "ignored": the name is example.com.
    assert.deepEqual(results[3], expectedCheck(ok('example.com', 'example.com', [2])));
    assert.deepEqual(results[4], { ok: false, code: -4, reason: 'syntax' });
    assert.deepEqual(checkDomainName('a'.repeat(MAX_INPUT_LENGTH + 1)), { ok: false, code: -4, reason: 'too-long' });
  });
});

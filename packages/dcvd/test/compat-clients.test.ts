/**
 * Other people's clients of the reseller API, unmodified (CONTRACT §1, issue 12). Each case
 * behaves like one kind of public client observed in the wild (PHP, Ruby, Python, C#, Go): the
 * parameters it sends and in what order, the Content-Type and headers it sets, and how it reads
 * the answer — split on LF and TAB with no trimming, the first line compared with `0` exactly,
 * `whois_email` read unconditionally, any HTTP status but 200 taken for a transport failure,
 * urlencoded answers decoded twice. The fixtures are written here, in our own words.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { ManualClock } from '../src/deps.ts';
import { parseResolvers } from '../src/dns/client.ts';
import { parseProducts } from '../src/cli/options.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import { createOrder } from './support/dcv.ts';
import { GET_PATH, PASSWORD, RESEND_PATH, form, startTestServer, type Response, type TestServer } from './support/server.ts';

const clock = new ManualClock(Date.UTC(2026, 11, 2, 12));
let dns: TestDnsServer;
let s: TestServer;
/** The same server code, started with the historic text format and an extra product code. */
let historic: TestServer;

before(async () => {
  dns = await startTestDnsServer();
  const common = { dnsServers: parseResolvers(dns.address), dnsTimeoutMs: 500, dnsAttempts: 2 };
  s = await startTestServer({ ...common, httpListen: { host: '127.0.0.1', port: 0 } }, { clock });
  historic = await startTestServer({ ...common, textWhoisNone: true, products: [801, 803, 287] }, { clock });
  for (const server of [s, historic]) await server.createAccount('reseller');
  dns.setTxt('_validation-contactemail.example.com', [['owner@example.net']]);
});
after(async () => {
  await Promise.all([s.stop(), historic.stop()]);
  await dns.close();
});

const credentials: [string, string][] = [
  ['loginName', 'reseller'],
  ['loginPassword', PASSWORD],
];

/** What a client that splits the text answer on LF and TAB, without trimming, makes of it. */
function parseLikeAPlainClient(body: string): { ok: boolean; domain?: string; whois?: string; emails: string[] } {
  const lines = body.split('\n');
  if (lines[0] !== '0') return { ok: false, emails: [] };
  const [key, domain] = lines[1]!.split('\t');
  if (key !== 'domain_name') throw new Error(`second line is not domain_name: ${JSON.stringify(lines[1])}`);
  const out: { ok: boolean; domain?: string; whois?: string; emails: string[] } = { ok: true, emails: [] };
  if (domain !== undefined) out.domain = domain;
  for (const line of lines.slice(2)) {
    if (line === '') continue;
    const [name, value] = line.split('\t');
    if (name === 'whois_email') out.whois = value;
    else if (/^level\d+_email$/.test(name!)) out.emails.push(value!);
    else throw new Error(`unexpected line ${JSON.stringify(line)}`);
  }
  return out;
}

/** A client that URL-decodes the whole answer, then parses it as a query string (decoding twice). */
function parseDecodingTwice(body: string): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(decodeURIComponent(body.replace(/\+/g, ' '))));
}

describe('GetDCVEmailAddressList as real clients call it', () => {
  test('no product, credentials then domainName: the address list, read by splitting on LF and TAB', async () => {
    const res = await s.post(GET_PATH, form([...credentials, ['domainName', 'www.example.com']]));
    assert.equal(res.status, 200);
    const parsed = parseLikeAPlainClient(res.body);
    assert.equal(parsed.ok, true);
    assert.equal(parsed.domain, 'www.example.com');
    assert.equal(parsed.whois, undefined, 'the seed\u2019s format has no whois_email line');
    assert.deepEqual(parsed.emails.slice(0, 2), ['admin@example.com', 'administrator@example.com']);
    assert.equal(parsed.emails.length, 10);
    // No value carries a CR or surrounding blanks that an untrimmed split would keep.
    for (const e of parsed.emails) assert.match(e, /^[a-z]+@[a-z.]+$/);
  });

  test('lowercase responseformat=2 without product: JSON with the DNS contact after the constructed ones', async () => {
    const res = await s.post(GET_PATH, form([...credentials, ['domainName', 'example.com'], ['responseformat', '2']]));
    assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
    const data = JSON.parse(res.body) as Record<string, unknown>;
    assert.equal(data.errorCode, 0);
    assert.equal(data.domain_name, 'example.com');
    assert.deepEqual((data.level2_email as string[]).at(-1), 'owner@example.net');
  });

  test('responseFormat=1 given explicitly, as some clients always do', async () => {
    const res = await s.post(GET_PATH, form([...credentials, ['domainName', 'example.com'], ['responseFormat', '1']]));
    assert.equal(parseLikeAPlainClient(res.body).emails.length, 5);
  });

  test('product 801/803 as before; a code the operator has not configured is -4 product', async () => {
    for (const product of ['801', '803']) {
      const res = await s.post(GET_PATH, form([...credentials, ['domainName', 'example.com'], ['product', product]]));
      assert.equal(parseLikeAPlainClient(res.body).ok, true, product);
    }
    const res = await s.post(GET_PATH, form([...credentials, ['domainName', 'example.com'], ['product', '287']]));
    assert.equal(res.body, "-4\nThe value of the 'product' argument is invalid!\n");
  });

  test('--products adds a code: 287 is then accepted, 288 still refused', async () => {
    const ok = await historic.post(GET_PATH, form([...credentials, ['domainName', 'example.com'], ['product', '287']]));
    assert.equal(parseLikeAPlainClient(ok.body).ok, true);
    const refused = await historic.post(GET_PATH, form([...credentials, ['domainName', 'example.com'], ['product', '288']]));
    assert.equal(refused.body, "-4\nThe value of the 'product' argument is invalid!\n");
  });

  test('--text-whois-none: whois_email<TAB>none right after domain_name, which a historic client drops', async () => {
    const res = await historic.post(GET_PATH, form([...credentials, ['domainName', 'www.example.com']]));
    const lines = res.body.split('\n');
    assert.deepEqual(lines.slice(0, 4), ['0', 'domain_name\twww.example.com', 'whois_email\tnone', 'level2_email\tadmin@example.com']);
    const parsed = parseLikeAPlainClient(res.body);
    assert.equal(parsed.whois, 'none');
    assert.equal(parsed.emails.length, 10);
    assert.ok(!parsed.emails.includes('none'));
    // JSON has no whois key either way: the option is about the text format only.
    const json = await historic.post(GET_PATH, form([...credentials, ['domainName', 'www.example.com'], ['responseFormat', '2']]));
    assert.ok(!('whois_email' in (JSON.parse(json.body) as object)));
    // Errors keep their two lines.
    const err = await historic.post(GET_PATH, form([...credentials, ['domainName', 'localhost']]));
    assert.equal(err.body.split('\n')[0], '-37');
  });

  test('the /products/download/ path that some documentation gives', async () => {
    const res = await s.post('/products/download/!GetDCVEmailAddressList', form([...credentials, ['domainName', 'www.example.com']]));
    assert.equal(parseLikeAPlainClient(res.body).domain, 'www.example.com');
  });
});

describe('a client that treats any status but 200 as a transport failure', () => {
  const cases: [string, () => Promise<Response>, RegExp][] = [
    ['a body over the limit', () => s.post(GET_PATH, form([...credentials, ['domainName', 'x'.repeat(70 * 1024)]])), /^-14\n/],
    ['GET instead of POST', () => s.request({ path: GET_PATH, method: 'GET' }), /^-17\n/],
    ['an unknown parameter', () => s.post(RESEND_PATH, form([...credentials, ['orderNo', '1']])), /^errorCode=-2&/],
    ['no parameters at all', () => s.post(RESEND_PATH, ''), /^errorCode=-3&/],
    ['a JSON body', () => s.request({ path: RESEND_PATH, body: '{"loginName":"reseller"}', headers: { 'content-type': 'application/json' } }), /^errorCode=-3&/],
    ['a wrong password', () => s.post(RESEND_PATH, form([['loginName', 'reseller'], ['loginPassword', 'nope'], ['orderNumber', '5']])), /^errorCode=-16&/],
    ['plain HTTP', () => s.post(RESEND_PATH, form(credentials), { plain: true }), /^errorCode=-1&/],
    ['an order that does not exist', () => s.post(RESEND_PATH, form([...credentials, ['orderNumber', '999999']])), /^errorCode=-4&/],
  ];
  for (const [name, call, body] of cases) {
    test(name, async () => {
      const res = await call();
      assert.equal(res.status, 200);
      assert.match(res.body, body);
    });
  }
});

describe('ResendDCVEmail as real clients call it', () => {
  test('form body with charset, answer URL-decoded twice: errorCode=0, then the error fields intact', async () => {
    await createOrder(s, clock, 'reseller', { domain: 'shop.example.com', orderNumber: 4_200_001 });
    await s.post(GET_PATH, form([...credentials, ['domainName', 'shop.example.com']]));
    const ok = await s.post(RESEND_PATH, form([...credentials, ['orderNumber', '4200001'], ['dcvEmailAddress', 'admin@example.com']]), {
      headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    });
    assert.deepEqual(parseDecodingTwice(ok.body), { errorCode: '0' });
    const bad = await s.post(RESEND_PATH, form([['loginName', 'reseller'], ['loginPassword', 'wrong password'], ['orderNumber', '4200001']]));
    const fields = parseDecodingTwice(bad.body);
    assert.equal(fields.errorCode, '-16');
    assert.equal(fields.errorMessage, 'Incorrect login details, account is locked, password has expired or your source IP is blocked.');
  });

  test('Expect: 100-continue, as curl-based clients send for larger bodies', async () => {
    const body = form([...credentials, ['orderNumber', '999999'], ['dcvEmailAddress', `admin@${'a'.repeat(1100)}.com`.slice(0, 255)]]);
    const res = await new Promise<Response>((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: s.https.port,
          servername: 'localhost',
          ca: s.cert,
          path: RESEND_PATH,
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), expect: '100-continue' },
        },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks).toString() }));
        },
      );
      req.on('continue', () => req.end(body));
      req.on('error', reject);
    });
    assert.equal(res.status, 200);
    assert.match(res.body, /^errorCode=-4&.*errorItem=orderNumber$/);
  });
});

test('--products parses a list of API integers', () => {
  assert.deepEqual(parseProducts('801, 803,287,801'), [801, 803, 287]);
  assert.throws(() => parseProducts(''), /at least one product code/);
  assert.throws(() => parseProducts('801,-3'), /whole number/);
  assert.throws(() => parseProducts('0'), /whole number/);
});

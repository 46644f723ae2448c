/**
 * A table of response bodies in every shape the client must read: what dcvd
 * sends, and what the real reseller host is known to send beyond it
 * (a domain_name line, whois_email lines, a space after the tab, CRLF, level
 * keys of any N, unknown keys, urlencoded errors with errorItem or
 * errorDetail, JSON). Each body goes through the real client, with a fetch
 * that answers it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DcvApiError, DcvClient, ErrorCode, type CollectSslResult, type DcvEmailAddressListResult, type Endpoint } from '../src/index.ts';

const five = (d: string) => ['admin', 'administrator', 'hostmaster', 'postmaster', 'webmaster'].map((l) => `${l}@${d}`);

function clientAnswering(body: string, status = 200, contentType = 'text/plain'): DcvClient {
  return new DcvClient({
    loginName: 'u',
    loginPassword: 'secret password',
    fetch: async () => new Response(body, { status, headers: { 'content-type': contentType } }),
  });
}

interface ListFixture {
  name: string;
  body: string;
  expect: Partial<DcvEmailAddressListResult>;
}

const lists: ListFixture[] = [
  {
    name: 'dcvd text: domain_name then level lines, \\n ends',
    body: ['0', 'domain_name\twww.example.com', ...five('example.com').map((a) => `level2_email\t${a}`), ...five('www.example.com').map((a) => `level3_email\t${a}`)].join('\n') + '\n',
    expect: {
      domainName: 'www.example.com',
      levels: { 2: five('example.com'), 3: five('www.example.com') },
      emails: [...five('example.com'), ...five('www.example.com')],
      whoisEmails: [],
      extra: {},
    },
  },
  {
    name: 'the seed\u2019s sample success: the code alone',
    body: '0',
    expect: { domainName: '', levels: {}, emails: [], whoisEmails: [], extra: {} },
  },
  {
    name: 'real host: no domain_name line, CRLF, a space after the tab',
    body: '0\r\nlevel2_email\t admin@example.com\r\nlevel2_email\t postmaster@example.com\r\n',
    expect: { domainName: '', levels: { 2: ['admin@example.com', 'postmaster@example.com'] }, emails: ['admin@example.com', 'postmaster@example.com'] },
  },
  {
    name: 'real host: whois_email lines, the value none dropped, kept apart from the levels',
    body: '0\nwhois_email\tnone\nwhois_email\tregistrant@example.net\nlevel2_email\tadmin@example.com\n',
    expect: { levels: { 2: ['admin@example.com'] }, emails: ['admin@example.com'], whoisEmails: ['registrant@example.net'] },
  },
  {
    name: 'level keys of any N, in any order; emails follow level order',
    body: '0\nlevel12_email\tx@l.k.j.i.h.g.f.e.d.c.b.a\nlevel2_email\tadmin@a\nLEVEL7_EMAIL\tadmin@g.f.e.d.c.b.a\n',
    expect: { levels: { 2: ['admin@a'], 7: ['admin@g.f.e.d.c.b.a'], 12: ['x@l.k.j.i.h.g.f.e.d.c.b.a'] }, emails: ['admin@a', 'admin@g.f.e.d.c.b.a', 'x@l.k.j.i.h.g.f.e.d.c.b.a'] },
  },
  {
    name: 'unknown keys kept as sent, repeats included',
    body: '0\ndomain_name\texample.com\nfuture_key\tone\nfuture_key\ttwo\nlevel2_email\tadmin@example.com\n',
    expect: { domainName: 'example.com', extra: { future_key: ['one', 'two'] }, emails: ['admin@example.com'] },
  },
  {
    name: 'dcvd JSON, DNS contacts after the constructed addresses of their level',
    body: JSON.stringify({ errorCode: 0, domain_name: 'example.com', level2_email: [...five('example.com'), 'owner@example.net'] }),
    expect: { domainName: 'example.com', levels: { 2: [...five('example.com'), 'owner@example.net'] }, whoisEmails: [], extra: {} },
  },
  {
    name: 'JSON with whois_email, a single string level, a string errorCode and an unknown key',
    body: '{"errorCode":"0","level3_email":"admin@www.example.com","whois_email":["none","w@example.org"],"note":{"a":1}}',
    expect: { levels: { 3: ['admin@www.example.com'] }, whoisEmails: ['w@example.org'], extra: { note: ['{"a":1}'] } },
  },
  {
    name: 'a byte order mark before JSON or text',
    body: '\uFEFF{"errorCode":0,"level2_email":["admin@example.com"]}',
    expect: { levels: { 2: ['admin@example.com'] } },
  },
  {
    name: 'a byte order mark before the text format’s code',
    body: '\uFEFF0\nlevel2_email\tadmin@example.com\n',
    expect: { levels: { 2: ['admin@example.com'] } },
  },
  {
    name: 'an address listed at two levels appears once in emails',
    body: '0\nlevel2_email\tcontact@example.org\nlevel3_email\tcontact@example.org\n',
    expect: { levels: { 2: ['contact@example.org'], 3: ['contact@example.org'] }, emails: ['contact@example.org'] },
  },
];

for (const f of lists) {
  test(`list: ${f.name}`, async () => {
    const result = await clientAnswering(f.body).getDcvEmailAddressList({ domainName: 'example.com', product: 801 });
    for (const [key, value] of Object.entries(f.expect)) assert.deepEqual(result[key as keyof DcvEmailAddressListResult], value, key);
  });
}

interface CollectFixture {
  name: string;
  body: string;
  expect: CollectSslResult;
}

const collected: CollectFixture[] = [
  {
    name: 'dcvd urlencoded, every field it sends',
    body: 'errorCode=0&orderNumber=1234567&certificateID=7654321&dcvStatus=1&fqdn=www.example.com',
    expect: { statusCode: 0, orderNumber: 1234567, certificateID: 7654321, dcvStatus: 1, fqdn: 'www.example.com', extra: {}, lines: [] },
  },
  {
    name: 'dcvd urlencoded without the show flags, for an order placed outside the API (no certificateID)',
    body: 'errorCode=0&orderNumber=1234567',
    expect: { statusCode: 0, orderNumber: 1234567, extra: {}, lines: [] },
  },
  {
    name: 'dcvd text (responseFormat 0): the status line alone',
    body: '0\n',
    expect: { statusCode: 0, extra: {}, lines: [] },
  },
  {
    name: 'urlencoded with unknown fields, a value that is not a number kept in extra, CRLF at the end',
    body: 'errorCode=0&orderNumber=7&dcvStatus=unknown&certificateStatus=Awaiting+Validation&fqdn=a.example\r\n',
    expect: { statusCode: 0, orderNumber: 7, fqdn: 'a.example', extra: { dcvStatus: 'unknown', certificateStatus: 'Awaiting Validation' }, lines: [] },
  },
  {
    name: 'the real host’s code 2 (read by its clients as an issued certificate) with further lines, CRLF ends',
    body: '2\r\n-----BEGIN CERTIFICATE-----\r\nMIIB\r\n-----END CERTIFICATE-----\r\n',
    expect: { statusCode: 2, extra: {}, lines: ['-----BEGIN CERTIFICATE-----', 'MIIB', '-----END CERTIFICATE-----'] },
  },
  {
    name: 'a byte order mark before either form',
    body: '\uFEFFerrorCode=0&orderNumber=5',
    expect: { statusCode: 0, orderNumber: 5, extra: {}, lines: [] },
  },
];

for (const f of collected) {
  test(`collect: ${f.name}`, async () => {
    assert.deepEqual(await clientAnswering(f.body).collectSsl({ orderNumber: 1 }), f.expect);
  });
}

interface ErrorFixture {
  name: string;
  endpoint: Endpoint;
  body: string;
  status?: number;
  expect: { code: number; message: string; item?: string; detail?: string; extra?: Record<string, string> };
}

const errors: ErrorFixture[] = [
  {
    name: 'text error, as dcvd sends it; the item read back from the message',
    endpoint: 'GetDCVEmailAddressList',
    body: "-3\nThe 'product' argument is missing!\n",
    expect: { code: ErrorCode.MissingArgument, message: "The 'product' argument is missing!", item: 'product' },
  },
  {
    name: 'text error with CRLF and no final line end (the seed\u2019s sample)',
    endpoint: 'GetDCVEmailAddressList',
    body: '-16\r\nIncorrect login details, account is locked, password has expired or your source IP is blocked.',
    expect: { code: ErrorCode.IncorrectLogin, message: 'Incorrect login details, account is locked, password has expired or your source IP is blocked.' },
  },
  {
    name: 'JSON error with errorItem',
    endpoint: 'GetDCVEmailAddressList',
    body: '{"errorCode":-4,"errorMessage":"The value of the \'domainName\' argument is invalid!","errorItem":"domainName"}',
    expect: { code: ErrorCode.InvalidArgument, message: "The value of the 'domainName' argument is invalid!", item: 'domainName' },
  },
  {
    name: 'JSON error of a code not in the seeds is kept as sent',
    endpoint: 'GetDCVEmailAddressList',
    body: '{"errorCode":-999,"errorMessage":"Something new"}',
    expect: { code: -999, message: 'Something new' },
  },
  {
    name: 'a urlencoded error to GetDCVEmailAddressList',
    endpoint: 'GetDCVEmailAddressList',
    body: 'errorCode=-160&errorMessage=The+request+for+the+DCV+email+address+list+was+unsuccessful.&errorDetail=blocked',
    expect: { code: ErrorCode.RequestUnsuccessful, message: 'The request for the DCV email address list was unsuccessful.', detail: 'blocked' },
  },
  {
    name: 'urlencoded error with errorItem, as dcvd sends it',
    endpoint: 'ResendDCVEmail',
    body: 'errorCode=-4&errorMessage=The+value+of+the+%27orderNumber%27+argument+is+invalid%21&errorItem=orderNumber',
    expect: { code: ErrorCode.InvalidArgument, message: "The value of the 'orderNumber' argument is invalid!", item: 'orderNumber' },
  },
  {
    name: 'the seed\u2019s -16 sample: an errorItem that is a sentence',
    endpoint: 'ResendDCVEmail',
    body: 'errorCode=-16&errorMessage=Incorrect+login+details%2C+account+is+locked%2C+password+has+expired+or+your+source+IP+is+blocked.&errorItem=Incorrect login details or account is locked.',
    expect: {
      code: ErrorCode.IncorrectLogin,
      message: 'Incorrect login details, account is locked, password has expired or your source IP is blocked.',
      item: 'Incorrect login details or account is locked.',
    },
  },
  {
    name: 'urlencoded error with errorDetail and an unknown field, CRLF at the end',
    endpoint: 'ResendDCVEmail',
    body: 'errorCode=-160&errorMessage=The+attempt+to+resend+DCV+emails+did+not+succeed.&errorDetail=DCV+already+completed&ticket=42\r\n',
    expect: { code: ErrorCode.RequestUnsuccessful, message: 'The attempt to resend DCV emails did not succeed.', detail: 'DCV already completed', extra: { ticket: '42' } },
  },
  {
    name: 'CollectSSL text error: the item read back from the message',
    endpoint: 'CollectSSL',
    body: "-4\nThe value of the 'certificateID' argument is invalid!\n",
    expect: { code: ErrorCode.InvalidArgument, message: "The value of the 'certificateID' argument is invalid!", item: 'certificateID' },
  },
  {
    name: 'CollectSSL urlencoded -20, as dcvd sends it for a cancelled or declined order',
    endpoint: 'CollectSSL',
    body: 'errorCode=-20&errorMessage=The+order+was+rejected+or+cancelled.',
    expect: { code: ErrorCode.OrderRejected, message: 'The order was rejected or cancelled.' },
  },
  {
    name: 'CollectSSL urlencoded -2 with its item',
    endpoint: 'CollectSSL',
    body: 'errorCode=-2&errorMessage=%27showCertificateID%27+is+an+unrecognized+argument%21&errorItem=showCertificateID',
    expect: { code: ErrorCode.UnrecognisedArgument, message: "'showCertificateID' is an unrecognized argument!", item: 'showCertificateID' },
  },
  {
    name: 'a -14 that comes with HTTP 413 (dcvd before CONTRACT §1 was revised; other hosts may) is still an API error',
    endpoint: 'ResendDCVEmail',
    status: 413,
    body: 'errorCode=-14&errorMessage=An+unknown+error+occurred%21',
    expect: { code: ErrorCode.UnknownError, message: 'An unknown error occurred!' },
  },
];

for (const f of errors) {
  test(`error: ${f.name}`, async () => {
    const client = clientAnswering(f.body, f.status ?? 200);
    const call =
      f.endpoint === 'ResendDCVEmail'
        ? client.resendDcvEmail({ orderNumber: 1 })
        : f.endpoint === 'CollectSSL'
          ? client.collectSsl({ orderNumber: 1 })
          : client.getDcvEmailAddressList({ domainName: 'a.com', product: 801 });
    await assert.rejects(call, (err: unknown) => {
      assert.ok(err instanceof DcvApiError);
      assert.equal(err.name, 'DcvApiError');
      assert.equal(err.endpoint, f.endpoint);
      assert.equal(err.code, f.expect.code);
      assert.equal(err.message, f.expect.message);
      assert.equal(err.item, f.expect.item);
      assert.equal(err.detail, f.expect.detail);
      assert.equal(err.status, f.status ?? 200);
      assert.deepEqual(err.extra, f.expect.extra ?? {});
      return true;
    });
  });
}

test('resend success: errorCode=0, with what else the answer carried', async () => {
  assert.deepEqual(await clientAnswering('errorCode=0', 200, 'application/x-www-form-urlencoded').resendDcvEmail({ orderNumber: 1 }), { extra: {} });
  assert.deepEqual(await clientAnswering('errorCode=0&orderNumber=7\r\n').resendDcvEmail({ baseOrderNumber: 7 }), { extra: { orderNumber: '7' } });
});

test('every code of the seeds has a named constant, and the one code CollectSSL adds', () => {
  const seedCodes = [0, -1, -2, -3, -4, -14, -16, -17, -19, -37, -90, -91, -160];
  // -20: CollectSSL's rejected or cancelled order (docs/PROTOCOL.md), no seed's.
  assert.deepEqual(Object.values(ErrorCode).sort((a, b) => a - b), [...seedCodes, -20].sort((a, b) => a - b));
});

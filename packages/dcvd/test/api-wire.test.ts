/**
 * The wire protocol over real HTTPS (CONTRACT §1, §7, §8): every error code
 * reachable before the endpoints' own logic, with the seeds' exact bodies.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import http from 'node:http';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { GET_PATH, PASSWORD, RESEND_PATH, form, startTestServer, type TestServer } from './support/server.ts';

const MSG16 = 'Incorrect login details, account is locked, password has expired or your source IP is blocked.';
const ENC16 = 'errorCode=-16&errorMessage=Incorrect+login+details%2C+account+is+locked%2C+password+has+expired+or+your+source+IP+is+blocked.';

let s: TestServer;
before(async () => {
  s = await startTestServer({ httpListen: { host: '127.0.0.1', port: 0 } });
  await s.createAccount('alice');
  await s.createAccount('nobody', { permissions: [] });
});
after(() => s.stop());

const alice = { loginName: 'alice', loginPassword: PASSWORD };

describe('GetDCVEmailAddressList errors, text format', () => {
  const cases: [string, string | [string, string][], string][] = [
    ['-3 loginName first', {} as never, "-3\nThe 'loginName' argument is missing!\n"],
    ['-3 in table order', [['loginName', 'a'], ['loginPassword', 'b'], ['product', '801']], "-3\nThe 'domainName' argument is missing!\n"],
    ['product is optional: without it the checks go on to credentials', [['loginName', 'a'], ['loginPassword', 'b'], ['domainName', 'a.com']], `-16\n${MSG16}\n`],
    ['-2 unknown name', [['loginName', 'a'], ['Whatever', 'x']], '-2\nUnrecognised argument!\n'],
    ['-4 repeated', [['loginName', 'a'], ['LOGINNAME', 'b']], "-4\nThe value of the 'loginName' argument is invalid!\n"],
    ['-4 product not among the operator\u2019s codes', [['loginName', 'a'], ['loginPassword', 'b'], ['domainName', 'a.com'], ['product', '802']], "-4\nThe value of the 'product' argument is invalid!\n"],
    ['-4 product 287 (a TLS product, not configured)', [['loginName', 'a'], ['loginPassword', 'b'], ['domainName', 'a.com'], ['product', '287']], "-4\nThe value of the 'product' argument is invalid!\n"],
    ['-4 product not an integer', [['loginName', 'a'], ['loginPassword', 'b'], ['domainName', 'a.com'], ['product', '801x']], "-4\nThe value of the 'product' argument is invalid!\n"],
    ['-4 responseFormat', [['loginName', 'a'], ['loginPassword', 'b'], ['domainName', 'a.com'], ['product', '801'], ['responseFormat', '3']], "-4\nThe value of the 'responseFormat' argument is invalid!\n"],
    ['-4 domainName length', [['loginName', 'a'], ['loginPassword', 'b'], ['domainName', 'a'.repeat(256)], ['product', '801']], "-4\nThe value of the 'domainName' argument is invalid!\n"],
    ['-16 unknown login', [['loginName', 'mallory'], ['loginPassword', 'x'], ['domainName', 'a.com'], ['product', '801']], `-16\n${MSG16}\n`],
    ['-91 without auto-apply', [['loginName', 'nobody'], ['loginPassword', PASSWORD], ['domainName', 'example.com'], ['product', '801']], '-91\nPermission Denied. Not allowed to use the AUTO-Apply service.\n'],
  ];
  for (const [name, pairs, expected] of cases) {
    test(name, async () => {
      const res = await s.post(GET_PATH, Array.isArray(pairs) ? form(pairs) : '');
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(res.body, expected);
    });
  }

  test('issue 14 item 12: -17 for every other method Node parses (PROPFIND, MKCOL, PURGE, LINK …), in the endpoint\u2019s format', async () => {
    const methods = http.METHODS.filter((m) => m !== 'POST' && m !== 'CONNECT');
    for (const method of methods) {
      const text = await s.request({ path: GET_PATH, method });
      assert.equal(text.status, 200, method);
      assert.equal(text.headers['content-type'], 'text/plain; charset=utf-8', method);
      if (method !== 'HEAD') assert.equal(text.body, '-17\nRequest used GET rather than POST!\n', method);
      const resend = await s.request({ path: RESEND_PATH, method });
      assert.equal(resend.status, 200, method);
      if (method !== 'HEAD') assert.equal(resend.body, 'errorCode=-17&errorMessage=Request+used+GET+rather+than+POST%21', method);
    }
    // A form body asking for JSON gets the -17 in JSON, as a POST's errors would be.
    const json = await s.request({ path: GET_PATH, method: 'PROPFIND', body: 'responseFormat=2', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(json.body, '{"errorCode":-17,"errorMessage":"Request used GET rather than POST!"}');
    // Other paths keep their plain 404.
    assert.equal((await s.request({ path: '/elsewhere', method: 'PROPFIND' })).status, 404);
  });

  test('-17 for every method but POST', async () => {
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const res = await s.request({ path: GET_PATH, method });
      assert.equal(res.status, 200, method);
      assert.equal(res.body, '-17\nRequest used GET rather than POST!\n', method);
    }
  });
});

describe('GetDCVEmailAddressList errors, JSON format', () => {
  test('the seed\u2019s sample request answers -3 loginName in JSON', async () => {
    const res = await s.post(GET_PATH, 'domainName=domain_name&responseformat=2&product=801');
    assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(res.body, '{"errorCode":-3,"errorMessage":"The \'loginName\' argument is missing!","errorItem":"loginName"}');
  });
  test('-2 carries the name as sent; -16 has no item', async () => {
    assert.equal(
      (await s.post(GET_PATH, 'responseFormat=2&FooBar=1')).body,
      '{"errorCode":-2,"errorMessage":"Unrecognised argument!","errorItem":"FooBar"}',
    );
    const res = await s.post(GET_PATH, form({ ...alice, loginPassword: 'wrong', domainName: 'a.com', product: '801', responseFormat: '2' }));
    assert.equal(res.body, `{"errorCode":-16,"errorMessage":"${MSG16}"}`);
  });
});

describe('ResendDCVEmail errors, urlencoded', () => {
  const cases: [string, string, string][] = [
    ['-3 loginName', '', 'errorCode=-3&errorMessage=The+%27loginName%27+argument+is+missing%21&errorItem=loginName'],
    ['-3 orderNumber for the conditional pair', 'loginName=a&loginPassword=b', 'errorCode=-3&errorMessage=The+%27orderNumber%27+argument+is+missing%21&errorItem=orderNumber'],
    ['-2 with the name', 'loginName=a&Bogus=1', 'errorCode=-2&errorMessage=%27Bogus%27+is+an+unrecognized+argument%21&errorItem=Bogus'],
    ['-4 integer', 'loginName=a&loginPassword=b&orderNumber=12x', 'errorCode=-4&errorMessage=The+value+of+the+%27orderNumber%27+argument+is+invalid%21&errorItem=orderNumber'],
    ['-4 template id', 'loginName=a&loginPassword=b&orderNumber=1&dcvTemplateID=-2', 'errorCode=-4&errorMessage=The+value+of+the+%27dcvTemplateID%27+argument+is+invalid%21&errorItem=dcvTemplateID'],
    ['-16', 'loginName=a&loginPassword=b&baseOrderNumber=5', ENC16],
  ];
  for (const [name, body, expected] of cases) {
    test(name, async () => {
      const res = await s.post(RESEND_PATH, body);
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'application/x-www-form-urlencoded');
      assert.equal(res.body, expected);
    });
  }
  test('issue 14 item 12: orderNumber with leading zeros: the digits after them count (PROTOCOL.md), any number of zeros', async () => {
    const wrong = { loginName: 'nobody-here', loginPassword: 'wrong password!' };
    // Parsed (then refused at the credentials, step 7): 30 zeros before 16 digits, and before the largest value.
    for (const orderNumber of [`${'0'.repeat(30)}1000000000000001`, `${'0'.repeat(5)}9007199254740991`]) {
      const res = await s.post(RESEND_PATH, form({ ...wrong, orderNumber }));
      assert.match(res.body, /^errorCode=-16&/, orderNumber);
    }
    // Still -4: 17 significant digits, a value over 2^53-1, or zeros alone.
    for (const orderNumber of [`${'0'.repeat(3)}10000000000000000`, '009007199254740992', '0000']) {
      const res = await s.post(RESEND_PATH, form({ ...wrong, orderNumber }));
      assert.equal(res.body, 'errorCode=-4&errorMessage=The+value+of+the+%27orderNumber%27+argument+is+invalid%21&errorItem=orderNumber', orderNumber);
    }
  });
  test('names match ASCII-case-insensitively only: KELVIN SIGN is no k (-2, the name as sent)', async () => {
    // U+212A lower-cases to 'k' with toLowerCase(), which took this for AutoApplyOrder's isCallbackCompleted (fuzzing, 2026-12-04).
    const name = 'isCallbac\u212ACompleted';
    const res = await s.post('/products/!AutoApplyOrder', form([['loginName', 'a'], [name, 'Y']]));
    assert.equal(res.status, 200);
    assert.equal(res.body, 'errorCode=-2&errorMessage=%27isCallbac%E2%84%AACompleted%27+is+an+unrecognized+argument%21&errorItem=isCallbac%E2%84%AACompleted');
    // Its ASCII spelling in any case is the known, ignored parameter: the checks go on to the missing password.
    const known = await s.post('/products/!AutoApplyOrder', form([['loginName', 'a'], ['ISCALLBACKcompleted', 'Y']]));
    assert.match(known.body, /^errorCode=-3&errorMessage=[^&]+&errorItem=loginPassword$/);
  });
  test('-17', async () => {
    const res = await s.request({ path: RESEND_PATH, method: 'GET' });
    assert.equal(res.body, 'errorCode=-17&errorMessage=Request+used+GET+rather+than+POST%21');
  });
});

describe('transport and body rules', () => {
  test('%21 reaches the endpoint too, in either case', async () => {
    assert.match((await s.post('/products/%21ResendDCVEmail', '')).body, /^errorCode=-3&/);
    assert.match((await s.post('/products/%21GetDCVEmailAddressList', '')).body, /^-3\n/);
  });
  test('the path is matched exactly (case-sensitive) with %21 as with !: only the ! may be spelled otherwise', async () => {
    // Found by fuzzing (2026-12-04): the %21 rewrite ignored the case of the rest of the path.
    for (const bang of ['!', '%21']) {
      for (const path of [
        `/PRODUCTS/${bang}GetDCVEmailAddressList`,
        `/Products/${bang}ResendDCVEmail`,
        `/products/${bang}getdcvemailaddresslist`,
        `/products/DOWNLOAD/${bang}ResendDCVEmail`,
        `/PRODUCTS/download/${bang}ResendDCVEmail`,
        `/products/Download/${bang}GetDCVEmailAddressList`,
      ]) {
        const r = await s.post(path, form({ ...alice, domainName: 'www.example.com' }));
        assert.deepEqual([r.status, r.body], [404, 'Not Found\n'], path);
      }
      // The exact paths answer, under /products/ and /products/download/.
      for (const prefix of ['/products/', '/products/download/']) {
        assert.match((await s.post(`${prefix}${bang}GetDCVEmailAddressList`, form({ ...alice, domainName: 'www.example.com' }))).body, /^0\ndomain_name\t/, prefix + bang);
      }
    }
  });
  test('a body over the limit: -14 with HTTP 200 in the endpoint format, connection closed', async () => {
    const big = 'a='.padEnd(65 * 1024, 'x');
    const g = await s.post(GET_PATH, big);
    assert.equal(g.status, 200);
    assert.equal(g.body, '-14\nAn unknown error occurred!\n');
    assert.equal(g.headers.connection, 'close');
    const r = await s.post(RESEND_PATH, big);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'errorCode=-14&errorMessage=An+unknown+error+occurred%21');
    // Also for content types the API does not parse, and under /products/download/.
    const j = await s.request({ path: RESEND_PATH, body: big, headers: { 'content-type': 'application/json' } });
    assert.deepEqual([j.status, j.body], [200, 'errorCode=-14&errorMessage=An+unknown+error+occurred%21']);
    const d = await s.post('/products/download/!GetDCVEmailAddressList', big);
    assert.deepEqual([d.status, d.body], [200, '-14\nAn unknown error occurred!\n']);
    // §1's first two steps still come first: over plain HTTP -1, with another method -17, whatever the size.
    const plain = await s.post(RESEND_PATH, big, { plain: true });
    assert.deepEqual([plain.status, plain.body], [200, 'errorCode=-1&errorMessage=Request+was+not+made+over+https%21']);
    const put = await s.request({ path: RESEND_PATH, method: 'PUT', body: big, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.deepEqual([put.status, put.body], [200, 'errorCode=-17&errorMessage=Request+used+GET+rather+than+POST%21']);
  });
  test('/products/download/ serves both endpoints identically, %21 too', async () => {
    for (const prefix of ['/products/download/!', '/products/download/%21']) {
      const r = await s.post(`${prefix}ResendDCVEmail`, form({ ...alice, orderNumber: '1' }));
      assert.deepEqual([r.status, r.body], [200, 'errorCode=-4&errorMessage=The+value+of+the+%27orderNumber%27+argument+is+invalid%21&errorItem=orderNumber'], prefix);
      const g = await s.post(`${prefix}GetDCVEmailAddressList`, form({ ...alice, domainName: 'www.example.com' }));
      assert.equal(g.status, 200);
      assert.equal(g.body, (await s.post(GET_PATH, form({ ...alice, domainName: 'www.example.com' }))).body, prefix);
      assert.match(g.body, /^0\ndomain_name\twww\.example\.com\n/);
      const m = await s.request({ path: `${prefix}ResendDCVEmail`, method: 'GET' });
      assert.equal(m.body, 'errorCode=-17&errorMessage=Request+used+GET+rather+than+POST%21');
    }
    assert.equal((await s.request({ path: '/products/download/!Nope', method: 'POST' })).status, 404);
  });
  test('a body of another content type carries no parameters', async () => {
    for (const type of ['application/json', 'text/plain', 'multipart/form-data; boundary=x', 'application/octet-stream', 'garbage']) {
      const res = await s.request({ path: RESEND_PATH, body: form(alice), headers: { 'content-type': type } });
      assert.equal(res.body, 'errorCode=-3&errorMessage=The+%27loginName%27+argument+is+missing%21&errorItem=loginName', type);
    }
    const none = await s.request({ path: RESEND_PATH, body: form(alice) });
    assert.equal(none.body, 'errorCode=-3&errorMessage=The+%27loginName%27+argument+is+missing%21&errorItem=loginName');
  });
  test('charset parameter and parameters in the query string', async () => {
    const res = await s.post(`${RESEND_PATH}?orderNumber=1`, form(alice), {
      headers: { 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' },
    });
    // The query string carries no parameters: only the body does (orderNumber=1 read from it would answer -4).
    assert.equal(res.body, 'errorCode=-3&errorMessage=The+%27orderNumber%27+argument+is+missing%21&errorItem=orderNumber');
  });
  test('plain HTTP answers -1, whatever else is wrong', async () => {
    const r = await s.post(RESEND_PATH, 'bogus=1', { plain: true });
    assert.equal(r.body, 'errorCode=-1&errorMessage=Request+was+not+made+over+https%21');
    const g = await s.request({ path: GET_PATH, method: 'GET', plain: true });
    assert.equal(g.body, '-1\nRequest was not made over https!\n');
    // X-Forwarded-Proto from an untrusted peer changes nothing.
    const x = await s.post(RESEND_PATH, '', { plain: true, headers: { 'x-forwarded-proto': 'https' } });
    assert.match(x.body, /^errorCode=-1&/);
  });
  test('over-long and malformed URLs get a plain 4xx that echoes nothing', async () => {
    const long = await s.request({ path: `/dcv/confirm/${'A'.repeat(5000)}`, method: 'GET' });
    assert.deepEqual([long.status, long.headers['content-type'], long.body], [414, 'text/plain; charset=utf-8', 'URI Too Long\n']);
    const bad = await s.request({ path: '/dcv/confirm/%E0%A4%A', method: 'GET' });
    assert.deepEqual([bad.status, bad.body], [400, 'Bad Request\n']);
  });
  test('unknown paths get a plain 404', async () => {
    const res = await s.request({ path: '/products/!Nope', method: 'POST' });
    assert.equal(res.status, 404);
  });
  test('responses carry a request id and no-store', async () => {
    const res = await s.post(RESEND_PATH, '');
    assert.match(String(res.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(res.headers['cache-control'], 'no-store');
  });
});

describe('health endpoints', () => {
  test('/healthz and /readyz on both listeners', async () => {
    for (const plain of [false, true]) {
      const h = await s.request({ path: '/healthz', method: 'GET', plain });
      assert.deepEqual([h.status, h.body], [200, 'ok\n']);
      const r = await s.request({ path: '/readyz', method: 'GET', plain });
      assert.deepEqual([r.status, r.body], [200, 'ready\n']);
    }
  });
  test('/readyz answers 503 while a migration is pending', async () => {
    const t = await startTestServer();
    // As after deploying a newer dcvd on a database nobody migrated: its last migration is not recorded.
    const db = t.store.db as unknown as Kysely<{ kysely_migration: { name: string } }>;
    const last = await db.selectFrom('kysely_migration').select('name').orderBy('name', 'desc').limit(1).executeTakeFirstOrThrow();
    await db.deleteFrom('kysely_migration').where('name', '=', last.name).execute();
    const r = await t.request({ path: '/readyz', method: 'GET' });
    assert.deepEqual([r.status, r.body], [503, `not ready: pending migrations: ${last.name}\n`]);
    assert.equal((await t.request({ path: '/healthz', method: 'GET' })).status, 200);
    await t.stop();
  });
  test('issue 14 item 12: /readyz answers 503 when a hot table is gone, and names it', async () => {
    const t = await startTestServer();
    try {
      assert.equal((await t.request({ path: '/readyz', method: 'GET' })).status, 200);
      await sql.raw(`drop table random_values${t.store.dialect === 'postgres' ? ' cascade' : ''}`).execute(t.store.db);
      const r = await t.request({ path: '/readyz', method: 'GET' });
      assert.deepEqual([r.status, r.body], [503, 'not ready: table random_values unreadable\n']);
      assert.equal((await t.request({ path: '/healthz', method: 'GET' })).status, 200);
    } finally {
      await t.stop();
    }
  });
  test('issue 14 item 12: /readyz answers 503 on a SQLite file whose table is corrupt', { skip: process.env.DCVD_TEST_DATABASE === 'postgres' }, async () => {
    const t = await startTestServer();
    const file = join(t.dataDir, 'dcvd.sqlite');
    const { rootpage } = (await sql<{ rootpage: number }>`select rootpage from sqlite_master where name = 'orders'`.execute(t.store.db)).rows[0]!;
    const pageSize = (await sql<{ page_size: number }>`pragma page_size`.execute(t.store.db)).rows[0]!.page_size;
    await t.close();
    // The orders table's root page overwritten, as a bad disk or a stray write would leave it.
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, (rootpage - 1) * pageSize);
    closeSync(fd);
    const again = await startTestServer({ dataDir: t.dataDir });
    try {
      const r = await again.request({ path: '/readyz', method: 'GET' });
      assert.deepEqual([r.status, r.body], [503, 'not ready: table orders unreadable\n']);
    } finally {
      await again.stop();
      await t.stop();
    }
  });
});

describe('TLS', () => {
  const handshake = (opts: tls.ConnectionOptions) =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: s.https.port, ca: s.cert, servername: 'localhost', ...opts }, () => {
        const version = `${socket.getProtocol()} ${socket.getCipher().name}`;
        socket.end();
        resolve(version);
      });
      socket.on('error', reject);
    });
  test('TLS 1.3 and 1.2 with a forward-secret AEAD suite', async () => {
    assert.match(await handshake({}), /^TLSv1\.3 /);
    assert.match(await handshake({ maxVersion: 'TLSv1.2' }), /^TLSv1\.2 ECDHE-(ECDSA|RSA)-(AES\d+-GCM|CHACHA20)/);
  });
  test('TLS 1.1 and weak TLS 1.2 suites are refused', async () => {
    // SECLEVEL=0 lets this client really offer TLS 1.1, so the refusal is the server's.
    await assert.rejects(handshake({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }), /version|protocol/i);
    await assert.rejects(handshake({ maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:AES256-SHA:ECDHE-ECDSA-AES128-SHA' }));
  });
});

describe('trusted proxies', () => {
  let p: TestServer;
  before(async () => {
    p = await startTestServer({ httpListen: { host: '127.0.0.1', port: 0 }, trustProxy: ['127.0.0.1/32'] });
    await p.createAccount('carol', { allowedNetworks: ['203.0.113.7/32'] });
  });
  after(() => p.stop());
  const body = form({ loginName: 'carol', loginPassword: PASSWORD, orderNumber: '1' });

  test('X-Forwarded-Proto: https from a trusted proxy passes step 1', async () => {
    const res = await p.post(RESEND_PATH, '', { plain: true, headers: { 'x-forwarded-proto': 'https' } });
    assert.match(res.body, /^errorCode=-3&/);
    const http = await p.post(RESEND_PATH, '', { plain: true, headers: { 'x-forwarded-proto': 'http' } });
    assert.match(http.body, /^errorCode=-1&/);
  });
  test('the same headers from a peer outside the list do nothing', async () => {
    const res = await p.post(RESEND_PATH, '', { plain: true, localAddress: '127.0.0.2', headers: { 'x-forwarded-proto': 'https' } });
    assert.match(res.body, /^errorCode=-1&/);
  });
  test('the source IP comes from X-Forwarded-For only through a trusted proxy', async () => {
    const through = await p.post(RESEND_PATH, body, { plain: true, headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.7' } });
    // The allowed source passes authentication; carol has no order 1.
    assert.equal(through.body, 'errorCode=-4&errorMessage=The+value+of+the+%27orderNumber%27+argument+is+invalid%21&errorItem=orderNumber');
    const other = await p.post(RESEND_PATH, body, { plain: true, headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '198.51.100.1' } });
    assert.equal(other.body, ENC16);
    // A client cannot claim the address itself on the HTTPS listener from an untrusted peer.
    const spoof = await p.post(RESEND_PATH, body, { localAddress: '127.0.0.2', headers: { 'x-forwarded-for': '203.0.113.7' } });
    assert.equal(spoof.body, ENC16);
  });
});

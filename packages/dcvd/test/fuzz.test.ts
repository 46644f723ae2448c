/**
 * Hostile input (CONTRACT §1 "never a crash"): thousands of random bodies,
 * paths, methods and headers against a running server. Every API answer must
 * be a well-formed error of the endpoint's format, never a 5xx, and the
 * process must stay up and keep answering.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import fc from 'fast-check';
import { decodeJson, decodeText, decodeUrlencoded, errorMessage, type Endpoint } from '@dcvd/client';
import { PASSWORD, startTestServer, type TestServer } from './support/server.ts';

const RUNS = Number(process.env.DCVD_FUZZ_RUNS ?? 2000);
// A fixed seed by default (CI is repeatable); DCVD_FUZZ_SEED runs another batch — 50 seeds × 2,000 = 100,000 cases.
const SEED = Number(process.env.DCVD_FUZZ_SEED ?? 20261123);

let s: TestServer;
let agent: https.Agent;
before(async () => {
  s = await startTestServer({ bodyLimit: 4096 });
  await s.createAccount('fuzzer');
  agent = new https.Agent({ ca: s.cert, keepAlive: true, maxSockets: 8 });
});
after(async () => {
  agent.destroy();
  await s.stop();
});

interface Res {
  status: number;
  type: string;
  body: string;
}

function send(method: string, path: string, headers: Record<string, string>, body: Buffer): Promise<Res> {
  const withBody = method !== 'GET' && method !== 'HEAD';
  // Node's client frames an OPTIONS/DELETE body only with an explicit length.
  const all = withBody ? { ...headers, 'content-length': String(body.length) } : headers;
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: s.https.port, method, path, headers: all, agent, servername: 'localhost' },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(withBody ? body : undefined);
  });
}

const names = ['loginName', 'loginPassword', 'domainName', 'product', 'responseFormat', 'orderNumber', 'baseOrderNumber', 'dcvEmailAddress', 'dcvTemplateID'];
const nameArb = fc.oneof(
  fc.constantFrom(...names),
  fc.constantFrom(...names).map((n) => n.toUpperCase()),
  fc.string({ maxLength: 12 }),
  fc.constant(''),
);
const valueArb = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('fuzzer', PASSWORD, '801', '803', '1', '2', '0', '-1', '9007199254740993', 'example.com', '*.co.uk', '8.8.8.8', '%', '%zz', '+', ''),
  fc.integer().map(String),
  fc.string({ maxLength: 300 }),
);
const formArb = fc
  .array(fc.tuple(nameArb, valueArb), { maxLength: 8 })
  .map((pairs) => Buffer.from(new URLSearchParams(pairs).toString()));
const rawArb = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
  fc.string({ maxLength: 200 }).map((x) => Buffer.from(x)),
  fc.constantFrom(Buffer.from('%'), Buffer.from('a=%ZZ&&&=&b'), Buffer.from('x'.repeat(5000)), Buffer.from('\u0000=\u0000')),
);
const pathArb = fc.oneof(
  { arbitrary: fc.constantFrom('/products/!GetDCVEmailAddressList', '/products/%21GetDCVEmailAddressList', '/products/!ResendDCVEmail', '/products/%21ResendDCVEmail', '/products/%21ResendDCVEmail?x=1'), weight: 6 },
  fc.constantFrom('/products/!GetDCVEmailAddressList/', '/products/%21resenddcvemail', '/', '/products/', '/products/%'),
  fc.webPath().map((p) => p || '/'),
);
const methodArb = fc.constantFrom('POST', 'POST', 'POST', 'GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD');
const headerValue = fc.string({ maxLength: 60 }).map((v) => v.replace(/[^\t\x20-\x7e]/g, ''));
const headersArb = fc.record(
  {
    'content-type': fc.oneof(
      fc.constantFrom('application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=latin1', 'application/json', 'text/plain', 'multipart/form-data', ';;', 'a/b/c'),
      headerValue,
    ),
    'x-forwarded-for': headerValue,
    'x-forwarded-proto': fc.constantFrom('https', 'http', 'HTTPS', 'x'),
    accept: headerValue,
  },
  { requiredKeys: [] },
);

function endpointOf(path: string): Endpoint | undefined {
  // Paths match exactly (only the `!` may be percent-encoded); a wrong case is a 404.
  const p = path.split('?')[0]!.replace('%21', '!');
  if (p === '/products/!GetDCVEmailAddressList') return 'GetDCVEmailAddressList';
  if (p === '/products/!ResendDCVEmail') return 'ResendDCVEmail';
  return undefined;
}

/** A well-formed API error: decodes in the endpoint's format, with the table's message for its code. */
function assertWellFormed(endpoint: Endpoint, res: Res): void {
  let error: { errorCode: number; errorMessage: string } | undefined;
  if (endpoint === 'ResendDCVEmail') {
    assert.equal(res.type, 'application/x-www-form-urlencoded');
    const d = decodeUrlencoded(res.body);
    assert.ok(!d.ok, `unexpected success: ${res.body}`);
    error = d.error;
  } else if (res.type.startsWith('application/json')) {
    const d = decodeJson(res.body);
    assert.ok(!d.ok);
    error = d.error;
  } else {
    assert.equal(res.type, 'text/plain; charset=utf-8');
    assert.ok(res.body.endsWith('\n'));
    const d = decodeText(res.body);
    assert.ok(!d.ok, `unexpected success: ${res.body}`);
    error = d.error;
  }
  assert.ok(error.errorCode < 0);
  const withoutItem = errorMessage(endpoint, error.errorCode);
  if (withoutItem.includes('xxxx')) {
    const [head, tail] = withoutItem.split('xxxx') as [string, string];
    assert.ok(error.errorMessage.startsWith(head) && error.errorMessage.endsWith(tail), error.errorMessage);
  } else {
    assert.equal(error.errorMessage, withoutItem);
  }
}

test(`${RUNS} random requests: no 5xx, every API answer a well-formed error`, async () => {
  let apiAnswers = 0;
  const result = await fc.check(
    fc.asyncProperty(methodArb, pathArb, headersArb, fc.oneof(formArb, rawArb), async (method, path, headers, body) => {
      const res = await send(method, path, headers, body).catch((err: unknown) => {
        throw new Error(`request failed: ${String(err)}`);
      });
      assert.ok(res.status < 500, `${res.status} for ${method} ${path}`);
      const endpoint = endpointOf(path);
      if (!endpoint || path.endsWith('/')) return;
      if (method === 'HEAD') {
        assert.equal(res.status, 200);
        return;
      }
      // Every answer of the protocol is HTTP 200, a body over the limit's -14 included (CONTRACT §1).
      assert.equal(res.status, 200);
      assertWellFormed(endpoint, res);
      apiAnswers++;
    }),
    { numRuns: RUNS, seed: SEED },
  );
  if (result.failed) {
    assert.fail(`seed ${SEED}: counterexample ${JSON.stringify(result.counterexample)}: ${String(result.errorInstance)}`);
  }
  assert.ok(apiAnswers > RUNS / 4, `only ${apiAnswers} answers came from the API paths`);
  // Still up, still right.
  const ok = await send('POST', '/products/!ResendDCVEmail', { 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from(''));
  assert.equal(ok.body, 'errorCode=-3&errorMessage=The+%27loginName%27+argument+is+missing%21&errorItem=loginName');
  assert.equal(s.logs.filter((l) => (l.level as number) >= 50).length, 0, 'no error-level log lines');
});

const codeArb = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.stringMatching(/^[0-9A-Z]{26}$/),
  fc.constantFrom('', '%', '%00', '..%2f..%2fetc%2fpasswd', '<script>', 'A'.repeat(5000)),
);
const confirmBodyArb = fc.oneof(
  fc
    .array(fc.tuple(fc.constantFrom('code', 'csrf', 'decision', 'token', 'x', ''), fc.oneof(valueArb, codeArb)), { maxLength: 6 })
    .map((pairs) => Buffer.from(new URLSearchParams(pairs).toString())),
  rawArb,
);
const confirmHeadersArb = fc.record(
  {
    'content-type': fc.constantFrom('application/x-www-form-urlencoded', 'text/plain', 'application/json', ';;'),
    origin: fc.oneof(fc.constant('null'), fc.constant('https://localhost'), headerValue),
    'sec-fetch-site': fc.constantFrom('same-origin', 'cross-site', 'none', ''),
  },
  { requiredKeys: [] },
);

test(`${Math.ceil(RUNS / 4)} random requests to the confirmation pages: no 5xx, HTML or CSS only`, async () => {
  const result = await fc.check(
    fc.asyncProperty(
      fc.constantFrom('GET', 'POST', 'POST', 'PUT', 'HEAD'),
      fc.oneof(codeArb.map((c) => `/dcv/confirm/${encodeURIComponent(c)}`), fc.constantFrom('/dcv/confirm', '/dcv/confirm/', '/dcv/style.css')),
      confirmHeadersArb,
      confirmBodyArb,
      async (method, path, headers, body) => {
        const res = await send(method, path, headers, body);
        assert.ok(res.status < 500, `${res.status} for ${method} ${path}`);
        // The pages answer HTML (CSS for the stylesheet); paths outside them get the plain-text 4xx of the server.
        // (A path over the router's limit gets a bodiless 414.)
        if (method !== 'HEAD' && res.body !== '') assert.match(res.type, /^text\/(html|css|plain); charset=utf-8$/);
      },
    ),
    { numRuns: Math.ceil(RUNS / 4), seed: SEED },
  );
  if (result.failed) {
    assert.fail(`seed ${SEED}: counterexample ${JSON.stringify(result.counterexample)}: ${String(result.errorInstance)}`);
  }
  assert.equal(s.logs.filter((l) => (l.level as number) >= 50).length, 0, 'no error-level log lines');
});

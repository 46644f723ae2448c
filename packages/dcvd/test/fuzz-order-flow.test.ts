/**
 * Hostile input to the endpoints of the rest of the email-DCV flow (issue 16;
 * test/fuzz.test.ts's style): authenticated requests with random parameters,
 * names and values to AutoApplyOrder, AutoApplySSL, AutoUpdateDCV and
 * GetMDCDomainDetails. Every answer is HTTP 200 and well-formed (an error
 * with its table's message, or a success that decodes); no error-level log
 * line; no order lost: exactly the orders answered as placed are stored and answer after it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as x509 from '@peculiar/x509';
import { decodeMdcDomainDetails, decodeUrlencoded, errorMessage, type Endpoint } from '@dcvd/client';
import { form, PASSWORD, startTestServer, type TestServer } from './support/server.ts';
import { getList } from './support/dcv.ts';

x509.cryptoProvider.set(globalThis.crypto);
const RUNS = Number(process.env.DCVD_FUZZ_RUNS ?? 600);
const SEED = Number(process.env.DCVD_FUZZ_SEED ?? 20261202);

let s: TestServer;
let csr: string;
let orderNumber: number;
/** The orders the fuzz run placed (success answers). */
const orders = new Set<number>();

before(async () => {
  s = await startTestServer({ bodyLimit: 16384 });
  await s.createAccount('fuzzer');
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await crypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  csr = (await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=fuzz.example.com', keys, signingAlgorithm: alg })).toString('pem');
  await getList(s, 'fuzzer', 'fuzz.example.com');
  const r = await s.post('/products/!AutoApplyOrder', form({ loginName: 'fuzzer', loginPassword: PASSWORD, product: '801', days: '365', csr, dcvEmailAddress: 'admin@example.com' }));
  const d = decodeUrlencoded(r.body);
  assert.ok(d.ok, r.body);
  orderNumber = Number(d.value.orderNumber);
});
after(async () => {
  await s.stop();
});

const ENDPOINTS: Endpoint[] = ['AutoApplyOrder', 'AutoApplySSL', 'AutoUpdateDCV', 'GetMDCDomainDetails', 'CollectSSL'];
const names = [
  'product', 'days', 'csr', 'domainNames', 'serverSoftware', 'isCustomerValidated', 'dcvMethod', 'dcvEmailAddress', 'dcvEmailAddresses',
  'showCertificateID', 'responseFormat', 'orderNumber', 'baseOrderNumber', 'domainName', 'newMethod', 'newDCVEmailAddress', 'dcvTemplateID',
  'newMethods', 'newDCVEmailAddresses', 'showStatusDetails', 'uniqueValue', 'years', 'organizationName', 'queryType', 'certificateID', 'showFQDN',
];
const nameArb = fc.oneof({ arbitrary: fc.constantFrom(...names), weight: 8 }, fc.constantFrom(...names).map((n) => n.toLowerCase()), fc.string({ maxLength: 10 }));
const valueArb = () =>
  fc.oneof(
    fc.constantFrom('801', '803', '365', '1', '2', '0', '-1', 'Y', 'N', 'EMAIL', 'HTTP_CSR_HASH', 'CNAME_CSR_HASH', 'fuzz.example.com', '*.example.com',
      'a.example.com b.example.com', 'admin@example.com', 'admin@example.com,admin@example.com', 'EMAIL,EMAIL', '8.8.8.8', 'printer.local', '%', '+', '',
      String(orderNumber), csr, csr.replace(/A/g, 'B'), csr.slice(0, 200), '9007199254740993'),
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.integer().map(String),
  );

test(`${RUNS} random authenticated requests to the order endpoints: HTTP 200, well-formed answers, nothing lost`, async () => {
  const result = await fc.check(
    fc.asyncProperty(fc.constantFrom(...ENDPOINTS), fc.boolean(), fc.array(fc.tuple(nameArb, valueArb()), { maxLength: 7 }), async (endpoint, valid, pairs) => {
      // Half the time a valid order first (so orders are placed, in both formats), then the random pairs.
      const base: [string, string][] = valid ? [['product', '801'], ['days', '365'], ['csr', csr], ['dcvEmailAddress', 'admin@example.com']] : [];
      const body = new URLSearchParams([['loginName', 'fuzzer'], ['loginPassword', PASSWORD], ...base, ...pairs]).toString();
      const res = await s.post(`/products/!${endpoint}`, body);
      assert.equal(res.status, 200);
      const type = String(res.headers['content-type']);
      let e: { errorCode: number; errorMessage: string };
      if (type.startsWith('text/plain')) {
        // AutoApplyOrder's responseFormat=0 and CollectSSL's default: success lines, or code and message.
        assert.ok(endpoint === 'AutoApplyOrder' || endpoint === 'AutoApplySSL' || endpoint === 'CollectSSL', res.body);
        if (endpoint === 'CollectSSL' && res.body === '0\n') return;
        const placed = /^0\n([0-9]+)\n0\.00\n0\n(?:[0-9]+\n)?$/.exec(res.body);
        if (placed) return void orders.add(Number(placed[1]));
        const m = /^(-[0-9]+)\n([^\n]*)\n$/.exec(res.body);
        assert.ok(m, res.body);
        e = { errorCode: Number(m[1]), errorMessage: m[2]! };
      } else {
        const json = type.startsWith('application/json');
        const decoded = endpoint === 'GetMDCDomainDetails' ? decodeMdcDomainDetails(res.body) : decodeUrlencoded(res.body);
        if (!json) assert.equal(type, 'application/x-www-form-urlencoded');
        if (decoded.ok) {
          if (endpoint === 'AutoApplyOrder' || endpoint === 'AutoApplySSL') orders.add(Number((decoded.value as Record<string, string>).orderNumber));
          return;
        }
        e = decoded.error;
      }
      assert.ok(e.errorCode < 0 && e.errorCode !== -14, res.body);
      const template = errorMessage(endpoint, e.errorCode);
      if (template.includes('xxxx')) {
        const [head, tail] = template.split('xxxx') as [string, string];
        assert.ok(e.errorMessage.startsWith(head) && e.errorMessage.endsWith(tail), e.errorMessage);
      } else {
        assert.equal(e.errorMessage, template);
      }
    }),
    { numRuns: RUNS, seed: SEED },
  );
  if (result.failed) assert.fail(`seed ${SEED}: counterexample ${JSON.stringify(result.counterexample)}: ${String(result.errorInstance)}`);
  assert.equal(s.logs.filter((l) => (l.level as number) >= 50).length, 0, 'no error-level log lines');
  const details = await s.post('/products/!GetMDCDomainDetails', form({ loginName: 'fuzzer', loginPassword: PASSWORD, orderNumber: String(orderNumber) }));
  assert.match(details.body, /^errorCode=0&1_domainName=fuzz\.example\.com&1_dcvMethod=[A-Z_]+&1_dcvStatus=[A-Za-z]+$/);
  // No lost order, none stored without a success answer: exactly the orders answered, each with its domains.
  assert.ok(orders.size > 0, 'the run placed orders');
  const stored = await s.store.db.selectFrom('orders').select('order_number').execute();
  assert.deepEqual(stored.map((o) => Number(o.order_number)).sort(), [orderNumber, ...orders].sort());
  for (const n of orders) {
    const r = await s.post('/products/!GetMDCDomainDetails', form({ loginName: 'fuzzer', loginPassword: PASSWORD, orderNumber: String(n) }));
    assert.match(r.body, /^errorCode=0&1_domainName=/);
  }
});

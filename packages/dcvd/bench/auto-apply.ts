/**
 * AutoApplyOrder over HTTPS (issue 16's benchmark): keep-alive, a
 * single-domain order (product 801, an EC P-256 CSR checked on every call),
 * `dcvEmailAddress` through the 24-hour rule, the order and its DCV email
 * queued in one transaction — queued orders per second, beside a bare
 * node:https server in the same run (SQLite).
 */
import https from 'node:https';
import * as x509 from '@peculiar/x509';
import { fmt, load, startChild, type LoadResult } from './lib.ts';

x509.cryptoProvider.set(globalThis.crypto);

const LOGIN = 'bench';
const PASSWORD = 'bench password 1234';

function post(port: number, ca: string, path: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path, method: 'POST', ca, servername: 'localhost', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export default async function bench(
  opts: { durationMs?: number; concurrency?: number; flowControl?: boolean; prefill?: number; bare?: boolean; databaseUrl?: string } = {},
): Promise<{ lines: string[]; dcvd: LoadResult; bare: LoadResult | undefined; cpuPerOrder: number }> {
  const durationMs = opts.durationMs ?? 10_000;
  const concurrency = opts.concurrency ?? 64;
  let bare: LoadResult | undefined;
  let bareRss = 0;
  if (opts.bare !== false) {
    const bareChild = await startChild('bare');
    bare = await load({ port: bareChild.port, ca: bareChild.ca, path: '/', body: 'x=1', concurrency, durationMs });
    bareRss = await bareChild.stop();
  }

  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await crypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const csr = (await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=www.example.com', keys, signingAlgorithm: alg })).toString('pem');
  const child = await startChild('dcvd', { login: LOGIN, password: PASSWORD, ...(opts.flowControl === false ? { flowControl: false } : {}), ...(opts.prefill ? { prefill: opts.prefill } : {}), ...(opts.databaseUrl ? { databaseUrl: opts.databaseUrl } : {}) });
  // The 24-hour rule: the address must have been offered to the account first.
  const offered = await post(child.port, child.ca, '/products/!GetDCVEmailAddressList', new URLSearchParams({ loginName: LOGIN, loginPassword: PASSWORD, domainName: 'www.example.com', product: '801' }).toString());
  if (!offered.startsWith('0\n')) throw new Error(`GetDCVEmailAddressList failed: ${offered}`);
  const body = new URLSearchParams({ loginName: LOGIN, loginPassword: PASSWORD, product: '801', days: '365', csr, dcvEmailAddress: 'admin@example.com', responseFormat: '1', showCertificateID: 'Y' }).toString();
  const cpuBefore = await child.cpuMicros();
  const dcvd = await load({
    port: child.port,
    ca: child.ca,
    path: '/products/!AutoApplyOrder',
    body,
    concurrency,
    durationMs,
    check: (status, b) => status === 200 && /^errorCode=0&orderNumber=[0-9]+&certificateID=/.test(b),
  });
  const cpuPerOrder = ((await child.cpuMicros()) - cpuBefore) / Math.max(1, dcvd.answered);
  // The orders' emails, delivered as .eml files by the same process meanwhile (under the default flow control).
  const emails = await child.backlog();
  const rss = await child.stop();
  const emailLine = emails
    ? `its DCV emails (.eml files, delivered by the same process; ${opts.flowControl === false ? 'no flow control, --outbox-max-lag 0' : 'the default flow control, --outbox-max-lag 2s'}): ${emails.delivered} delivered during the load, ${emails.waiting} waiting at its end, the oldest due for ${(emails.lagMs / 1000).toFixed(1)}s`
    : 'its DCV emails: not read';
  return {
    dcvd,
    bare,
    cpuPerOrder,
    lines: [
      `AutoApplyOrder, HTTPS keep-alive, concurrency ${concurrency}, ${durationMs / 1000}s, single domain, EC P-256 CSR, email queued (${opts.databaseUrl ? 'PostgreSQL' : 'SQLite'})`,
      ...(bare ? [fmt('bare node:https (fixed body)', bare, bareRss)] : []),
      fmt('dcvd AutoApplyOrder (queued orders)', dcvd, rss),
      ...(bare ? [`ratio dcvd/bare req/s: ${(dcvd.rps / bare.rps).toFixed(2)}`] : []),
      `dcvd CPU per order, all its threads: ${cpuPerOrder.toFixed(0)} µs`,
      emailLine,
    ],
  };
}

// `node --import tsx bench/auto-apply.ts`: this case alone (DCVD_BENCH_SECONDS, DCVD_BENCH_CONCURRENCY).
if (import.meta.url === `file://${process.argv[1]}`) {
  const lines = (await bench({ durationMs: Number(process.env.DCVD_BENCH_SECONDS ?? 10) * 1000, concurrency: Number(process.env.DCVD_BENCH_CONCURRENCY ?? 64) })).lines;
  for (const line of lines) console.log(line);
}

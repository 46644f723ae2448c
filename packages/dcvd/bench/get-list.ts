/**
 * GetDCVEmailAddressList over HTTPS (issue 3's benchmark): keep-alive,
 * concurrency 64, warm credential cache, JSON format, a 3-label name with TXT
 * and CAA answers from a DNS server on loopback — beside a bare node:https
 * server answering a fixed body, in the same run.
 */
import { fmt, load, startChild, type LoadResult } from './lib.ts';

const LOGIN = 'bench';
const PASSWORD = 'bench password 1234';

export interface GetListBench {
  lines: string[];
  dcvd: LoadResult;
  text: LoadResult;
  bare: LoadResult;
}

export default async function bench(opts: { durationMs?: number; concurrency?: number } = {}): Promise<GetListBench> {
  const durationMs = opts.durationMs ?? 10_000;
  const concurrency = opts.concurrency ?? 64;
  const dns = await startChild('dns');
  const lines: string[] = [];
  try {
    const bareChild = await startChild('bare');
    const bare = await load({ port: bareChild.port, ca: bareChild.ca, path: '/', body: 'x=1', concurrency, durationMs });
    const bareRss = await bareChild.stop();

    const dcvdChild = await startChild('dcvd', { dnsServer: dns.info.address, login: LOGIN, password: PASSWORD });
    const body = new URLSearchParams({ loginName: LOGIN, loginPassword: PASSWORD, domainName: 'www.example.com', product: '801', responseFormat: '2' }).toString();
    const cpu0 = await dcvdChild.cpuMicros();
    const dcvd = await load({
      port: dcvdChild.port,
      ca: dcvdChild.ca,
      path: '/products/!GetDCVEmailAddressList',
      body,
      concurrency,
      durationMs,
      // Every answer must carry the DNS contacts: a lookup that failed silently would flatter the figures.
      check: (status, b) => status === 200 && b.startsWith('{"errorCode":0') && b.includes('caa@example.org') && b.includes('web@example.net'),
    });
    // The same server without DNS: the text format returns the constructed addresses only.
    const cpu1 = await dcvdChild.cpuMicros();
    const textBody = new URLSearchParams({ loginName: LOGIN, loginPassword: PASSWORD, domainName: 'www.example.com', product: '801' }).toString();
    const text = await load({
      port: dcvdChild.port,
      ca: dcvdChild.ca,
      path: '/products/!GetDCVEmailAddressList',
      body: textBody,
      concurrency,
      durationMs,
      check: (status, b) => status === 200 && b.startsWith('0\ndomain_name\twww.example.com\n'),
    });
    const cpu2 = await dcvdChild.cpuMicros();
    const dcvdRss = await dcvdChild.stop();
    lines.push(`GetDCVEmailAddressList, HTTPS keep-alive, concurrency ${concurrency}, ${durationMs / 1000}s, JSON, www.example.com with TXT+CAA (SQLite)`);
    lines.push(fmt('bare node:https (fixed body)', bare, bareRss));
    lines.push(fmt('dcvd GetDCVEmailAddressList JSON+DNS', dcvd, dcvdRss));
    lines.push(fmt('dcvd GetDCVEmailAddressList text', text, dcvdRss));
    lines.push(`ratio dcvd/bare req/s: ${(dcvd.rps / bare.rps).toFixed(2)}  (target >= 0.35; p99 target <= 25 ms)`);
    // Warm-up requests included on both sides of the division.
    lines.push(`dcvd CPU per request (all threads): JSON+DNS ${((cpu1 - cpu0) / dcvd.answered).toFixed(0)} µs, text ${((cpu2 - cpu1) / text.answered).toFixed(0)} µs`);
    return { lines, dcvd, text, bare };
  } finally {
    await dns.stop();
  }
}

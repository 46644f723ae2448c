/**
 * GetDCVEmailAddressList over HTTPS (issue 3's benchmark, issue 20's targets): keep-alive, warm
 * credential cache, JSON format, a 3-label name with TXT and CAA answers from a DNS server on
 * loopback — with the DNS answer cache warm and cold — and the text format (no DNS), beside a bare
 * node:https server answering a fixed body, in the same run; then the same with `serve --processes N`.
 */
import { fmt, load, startChild, type LoadResult } from './lib.ts';

const LOGIN = 'bench';
const PASSWORD = 'bench password 1234';
const PATH = '/products/!GetDCVEmailAddressList';

export interface GetListBench {
  lines: string[];
  dcvd: LoadResult;
  text: LoadResult;
  bare: LoadResult;
}

interface Measured {
  json: LoadResult;
  text: LoadResult | undefined;
  cpuJson: number;
  cpuText: number;
  rss: number;
}

/** One dcvd child: the JSON case, then (unless `jsonOnly`) the text case; server CPU per answered request of each. */
async function measure(options: Record<string, unknown>, common: { concurrency: number; durationMs: number }, jsonOnly = false): Promise<Measured> {
  const child = await startChild('dcvd', { login: LOGIN, password: PASSWORD, ...options });
  const body = new URLSearchParams({ loginName: LOGIN, loginPassword: PASSWORD, domainName: 'www.example.com', product: '801', responseFormat: '2' }).toString();
  const cpu0 = await child.cpuMicros();
  const json = await load({
    port: child.port,
    ca: child.ca,
    path: PATH,
    body,
    ...common,
    // Every answer must carry the DNS contacts: a lookup that failed silently would flatter the figures.
    check: (status, b) => status === 200 && b.startsWith('{"errorCode":0') && b.includes('caa@example.org') && b.includes('web@example.net'),
  });
  const cpu1 = await child.cpuMicros();
  let text: LoadResult | undefined;
  if (!jsonOnly) {
    // The same server without DNS: the text format returns the constructed addresses only.
    const textBody = new URLSearchParams({ loginName: LOGIN, loginPassword: PASSWORD, domainName: 'www.example.com', product: '801' }).toString();
    text = await load({ port: child.port, ca: child.ca, path: PATH, body: textBody, ...common, check: (status, b) => status === 200 && b.startsWith('0\ndomain_name\twww.example.com\n') });
  }
  const cpu2 = await child.cpuMicros();
  const rss = await child.stop();
  // Warm-up requests included on both sides of the division.
  return { json, text, cpuJson: (cpu1 - cpu0) / json.answered, cpuText: text ? (cpu2 - cpu1) / text.answered : NaN, rss };
}

export default async function bench(opts: { durationMs?: number; concurrency?: number; processes?: number[] } = {}): Promise<GetListBench> {
  const common = { durationMs: opts.durationMs ?? 10_000, concurrency: opts.concurrency ?? 64 };
  const dns = await startChild('dns');
  const lines: string[] = [];
  try {
    const bareChild = await startChild('bare');
    const bare = await load({ port: bareChild.port, ca: bareChild.ca, path: '/', body: 'x=1', ...common });
    const bareRss = await bareChild.stop();
    const cpuNote = (m: Measured) => `server CPU per request (all threads and processes): JSON+DNS ${m.cpuJson.toFixed(0)} µs${m.text ? `, text ${m.cpuText.toFixed(0)} µs` : ''}`;
    const ratios = (m: Measured) =>
      `ratio dcvd/bare req/s: JSON+DNS ${(m.json.rps / bare.rps).toFixed(2)} (target >= 0.35, p99 <= 100 ms)${m.text ? `, text ${(m.text.rps / bare.rps).toFixed(2)} (target >= 0.5)` : ''}`;

    const one = await measure({ dnsServer: dns.info.address }, common);
    const cold = await measure({ dnsServer: dns.info.address, dnsCacheMaxTtlMs: 0 }, common, true);
    lines.push(`GetDCVEmailAddressList, HTTPS keep-alive, concurrency ${common.concurrency}, ${common.durationMs / 1000}s, JSON, www.example.com with TXT+CAA (SQLite)`);
    lines.push(fmt('bare node:https (fixed body)', bare, bareRss));
    lines.push(fmt('dcvd GetDCVEmailAddressList JSON+DNS', one.json, one.rss));
    lines.push(fmt('dcvd JSON+DNS, DNS cache off (cold)', cold.json, cold.rss));
    lines.push(fmt('dcvd GetDCVEmailAddressList text', one.text!, one.rss));
    lines.push(ratios(one));
    lines.push(`cache cold: ratio ${(cold.json.rps / bare.rps).toFixed(2)}, CPU per request ${cold.cpuJson.toFixed(0)} µs (5 DNS queries per request)`);
    lines.push(cpuNote(one));
    for (const processes of opts.processes ?? []) {
      const many = await measure({ dnsServer: dns.info.address, processes }, common);
      lines.push(`serve --processes ${processes} (API processes sharing the port; RSS and CPU: all processes)`);
      lines.push(fmt(`dcvd JSON+DNS x${processes}`, many.json, many.rss));
      lines.push(fmt(`dcvd text x${processes}`, many.text!, many.rss));
      lines.push(ratios(many));
      lines.push(cpuNote(many));
    }
    return { lines, dcvd: one.json, text: one.text!, bare };
  } finally {
    await dns.stop();
  }
}

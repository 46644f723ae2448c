/**
 * GetDCVEmailAddressList over HTTPS (issue 3's benchmark, issue 20's targets): keep-alive, warm
 * credential cache, JSON format, a 3-label name with TXT and CAA answers from a DNS server on
 * loopback — with the DNS answer cache warm and cold — and the text format (no DNS), beside a bare
 * node:https server answering a fixed body, measured before and after them in the same run; then the same with `serve --processes N`.
 */
import { fmt, load, sampleTreeMemory, startChild, type LoadResult } from './lib.ts';

const LOGIN = 'bench';
const PASSWORD = 'bench password 1234';
const PATH = '/products/!GetDCVEmailAddressList';

export interface GetListBench {
  lines: string[];
  dcvd: LoadResult;
  text: LoadResult;
  /** The bare server's rate: the mean of its runs before and after dcvd's cases. */
  bareRps: number;
}

interface Measured {
  json: LoadResult;
  text: LoadResult | undefined;
  cpuJson: number;
  cpuText: number;
  rss: number;
  /** Peak memory of all its processes with shared pages counted once (lib.ts sampleTreeMemory), MiB. */
  memory: number;
}

/** One dcvd child: the JSON case, then (unless `jsonOnly`) the text case; server CPU per answered request of each. */
async function measure(options: Record<string, unknown>, common: { concurrency: number; durationMs: number }, jsonOnly = false): Promise<Measured> {
  const child = await startChild('dcvd', { login: LOGIN, password: PASSWORD, ...options });
  const memory = sampleTreeMemory(await child.pids());
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
  const peak = memory.stop();
  const rss = await child.stop();
  // Warm-up requests included on both sides of the division.
  return { json, text, cpuJson: (cpu1 - cpu0) / json.answered, cpuText: text ? (cpu2 - cpu1) / text.answered : NaN, rss, memory: peak };
}

export default async function bench(opts: { durationMs?: number; concurrency?: number; processes?: number[] } = {}): Promise<GetListBench> {
  const common = { durationMs: opts.durationMs ?? 10_000, concurrency: opts.concurrency ?? 64 };
  const dns = await startChild('dns');
  const lines: string[] = [];
  const measureBare = async () => {
    const bareChild = await startChild('bare');
    const result = await load({ port: bareChild.port, ca: bareChild.ca, path: '/', body: 'x=1', ...common });
    return { result, rss: await bareChild.stop() };
  };
  try {
    // The baseline before and after dcvd's cases: on this shared machine the bare server's rate moved by
    // over a third within one run (docs/PERFORMANCE.md, fourth round), so ratios are to the mean of both.
    const before = await measureBare();
    const one = await measure({ dnsServer: dns.info.address }, common);
    const cold = await measure({ dnsServer: dns.info.address, dnsCacheMaxTtlMs: 0 }, common, true);
    const many: [number, Measured][] = [];
    for (const processes of opts.processes ?? []) many.push([processes, await measure({ dnsServer: dns.info.address, processes }, common)]);
    const after = await measureBare();
    const bareRps = (before.result.rps + after.result.rps) / 2;

    const cpuNote = (m: Measured) => `server CPU per request (all threads and processes): JSON+DNS ${m.cpuJson.toFixed(0)} µs${m.text ? `, text ${m.cpuText.toFixed(0)} µs` : ''}`;
    const ratios = (m: Measured) =>
      `ratio dcvd/bare req/s: JSON+DNS ${(m.json.rps / bareRps).toFixed(2)} (target >= 0.35, p99 <= 100 ms)${m.text ? `, text ${(m.text.rps / bareRps).toFixed(2)} (target >= 0.5)` : ''}`;
    lines.push(`GetDCVEmailAddressList, HTTPS keep-alive, concurrency ${common.concurrency}, ${common.durationMs / 1000}s, JSON, www.example.com with TXT+CAA (SQLite)`);
    lines.push(fmt('bare node:https (fixed body) before', before.result, before.rss));
    lines.push(fmt('bare node:https (fixed body) after', after.result, after.rss));
    lines.push(`bare baseline: ${bareRps.toFixed(0)} req/s, the mean of both (they differ by ${((100 * Math.abs(before.result.rps - after.result.rps)) / bareRps).toFixed(0)} %)`);
    lines.push(fmt('dcvd GetDCVEmailAddressList JSON+DNS', one.json, one.rss));
    lines.push(fmt('dcvd JSON+DNS, DNS cache off (cold)', cold.json, cold.rss));
    lines.push(fmt('dcvd GetDCVEmailAddressList text', one.text!, one.rss));
    lines.push(ratios(one));
    lines.push(`cache cold: ratio ${(cold.json.rps / bareRps).toFixed(2)}, CPU per request ${cold.cpuJson.toFixed(0)} µs (5 DNS queries per request)`);
    lines.push(cpuNote(one));
    const memoryNote = (m: Measured, rss = 'peak RSS') => `memory (target <= 400 MiB): ${rss} ${m.rss.toFixed(0)} MiB; peak of private pages plus shared ones counted once ${m.memory.toFixed(0)} MiB`;
    lines.push(memoryNote(one));
    for (const [processes, m] of many) {
      lines.push(`serve --processes ${processes} (API processes sharing the port; RSS and CPU: all processes)`);
      lines.push(fmt(`dcvd JSON+DNS x${processes}`, m.json, m.rss));
      lines.push(fmt(`dcvd text x${processes}`, m.text!, m.rss));
      lines.push(ratios(m));
      lines.push(cpuNote(m));
      lines.push(memoryNote(m, 'peak RSS summed over the processes'));
    }
    return { lines, dcvd: one.json, text: one.text!, bareRps };
  } finally {
    await dns.stop();
  }
}

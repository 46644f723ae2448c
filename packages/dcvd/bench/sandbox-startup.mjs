// Start-up time of `dcvd sandbox` (issue 17, docs/PERFORMANCE.md): from spawn until the block of
// settings is printed (listening, account seeded) and GET /healthz answers, with the process's CPU
// time until then (utime + stime from /proc, Linux). Fresh data folder each run.
//   node bench/sandbox-startup.mjs [runs] [entry.js]   (entry: default bin/dcvd.js, i.e. tsx; or a compiled build's main)
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
const runs = Number(process.argv[2] ?? 5);
const entry = process.argv[3] ?? fileURLToPath(new URL('../bin/dcvd.js', import.meta.url));
const cmd = [entry];
const results = [];
for (let i = 0; i < runs; i++) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [...cmd, 'sandbox', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--dns-servers', '127.0.0.1:9', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stderr.on('data', (c) => (err += c));
  const api = await new Promise((resolve) => child.stdout.on('data', (c) => { out += c; const m = /^api: (.+)$/m.exec(out); if (m && /data dir:/.test(out)) resolve(m[1]); }));
  const ca = /^ca certificate: (.+)$/m.exec(out)[1];
  await new Promise((resolve, reject) => https.get(`${api}/healthz`, { ca: readFileSync(ca) }, (res) => { res.resume(); res.on('end', resolve); }).on('error', reject));
  const ready = performance.now() - t0;
  // CPU time of the process until then (utime + stime, clock ticks of 10 ms): less sensitive to the machine's load than wall time.
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const cpuS = (Number(stat[11]) + Number(stat[12])) / 100;
  const exit = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exit;
  results.push({ readyMs: Math.round(ready), cpuS });
}
const sorted = results.map((r) => r.readyMs).sort((a, b) => a - b);
console.log(JSON.stringify({ entry, runs: results, medianReadyMs: sorted[Math.floor(sorted.length / 2)] }));

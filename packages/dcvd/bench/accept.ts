/**
 * How fast a saturated node:https server accepts new connections (issue 20, ninth round; not part of
 * `npm run bench`): the bare server of the benchmark, answering at once and after spinning
 * DCVD_ACCEPT_SPIN_US (default 100,250) µs of CPU per request, loaded by DCVD_ACCEPT_CONNECTIONS
 * (default 1024,256) keep-alive connections that all open at the start. Prints how long the connections'
 * first answers (TCP and TLS set-up included) took. Node 20's libuv accepts one connection per
 * event-loop iteration, so when every iteration answers hundreds of requests the late connections
 * wait until the load stops. Run `node scripts/build-bench.mjs` first (it compiles the child).
 */
import { fileURLToPath } from 'node:url';
import { load, startChild } from './lib.ts';

const list = (name: string, fallback: string) => (process.env[name] ?? fallback).split(',').filter(Boolean).map(Number);

export default async function bench(opts: { durationMs?: number; spins?: number[]; connections?: number[] } = {}): Promise<string[]> {
  const durationMs = opts.durationMs ?? 5000;
  const lines = [`A bare node:https server's accept rate under load: first answer of each connection (TCP and TLS set-up included), ${durationMs / 1000}s, no warm-up`];
  for (const concurrency of opts.connections ?? [1024, 256]) {
    for (const spinUs of [0, ...(opts.spins ?? [100, 250])]) {
      const bare = await startChild('bare', { spinUs });
      try {
        const r = await load({ port: bare.port, ca: bare.ca, path: '/', body: 'x=1', concurrency, durationMs, warmupMs: 0 });
        lines.push(
          `${String(concurrency).padStart(5)} connections, ${String(spinUs).padStart(4)} µs of work per request: ${r.rps.toFixed(0).padStart(6)} req/s; ` +
            `first answer p50 ${r.firstP50.toFixed(0)} ms, p90 ${r.firstP90.toFixed(0)} ms, max ${r.firstMax.toFixed(0)} ms`,
        );
      } finally {
        await bare.stop();
      }
    }
  }
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const durationMs = Number(process.env.DCVD_BENCH_SECONDS ?? 5) * 1000;
  for (const line of await bench({ durationMs, spins: list('DCVD_ACCEPT_SPIN_US', '100,250'), connections: list('DCVD_ACCEPT_CONNECTIONS', '1024,256') })) console.log(line);
  process.exit(0);
}

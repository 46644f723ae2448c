/**
 * `npm run bench`: both endpoints and AutoApplyOrder at each concurrency of DCVD_BENCH_CONCURRENCY
 * (default 16,64,256,1024), each beside a bare node:https server measured in
 * the same run, and the address list and resends again with `serve --processes N`
 * for each N of DCVD_BENCH_PROCESSES (default 2), the resends also with
 * `serve --delivery-process` (one API process, delivery in the primary), all without the outbox's flow
 * control (--outbox-max-lag 0), then one process and `--delivery-process` with it; then storage (SQLite vs
 * PostgreSQL, one vs two instances), then growth (the write paths on an empty store against one of
 * DCVD_BENCH_GROWTH_ROWS rows, default 200,000, on SQLite and on PostgreSQL: bench/growth.ts), then a
 * metrics scrape and the email cut-off's minute scan on such stores (bench/background.ts).
 * DCVD_BENCH_SECONDS sets the measuring time per case (default 10).
 */
import getList from './get-list.ts';
import resend from './resend.ts';
import autoApply from './auto-apply.ts';
import storage from './postgres.ts';
import growth from './growth.ts';
import background from './background.ts';

const durationMs = Number(process.env.DCVD_BENCH_SECONDS ?? 10) * 1000;
const levels = (process.env.DCVD_BENCH_CONCURRENCY ?? '16,64,256,1024').split(',').map(Number);
console.log(`dcvd benchmarks — node ${process.version}, ${new Date().toISOString()}, ${durationMs / 1000}s per case`);
// DCVD_BENCH_PROCESSES: the `serve --processes` counts to measure beside one process (default 2; empty: none).
const clusters = (process.env.DCVD_BENCH_PROCESSES ?? '2').split(',').filter(Boolean).map(Number);
for (const concurrency of levels) {
  console.log('');
  const list = await getList({ durationMs, concurrency, processes: clusters });
  for (const line of list.lines) console.log(line);
  // Without flow control (how fast resends queue), then one process and --delivery-process with the default one.
  const shapes: [processes: number, deliveryProcess: boolean, flowControl: boolean][] = [
    [1, false, false],
    [1, true, false],
    ...clusters.map((n): [number, boolean, boolean] => [n, true, false]),
    [1, false, true],
    [1, true, true],
  ];
  for (const [processes, deliveryProcess, flowControl] of shapes) {
    console.log('');
    for (const line of (await resend({ durationMs, concurrency, processes, deliveryProcess, flowControl, bareRps: list.bareRps })).lines) console.log(line);
  }
  console.log('');
  for (const line of (await autoApply({ durationMs, concurrency })).lines) console.log(line);
}
console.log('');
for (const line of await storage({ durationMs })) console.log(line);
console.log('');
// Half the case length a run: eight runs and two uncounted ones.
for (const line of await growth({ durationMs: durationMs / 2, rows: Number(process.env.DCVD_BENCH_GROWTH_ROWS ?? 200_000) })) console.log(line);
console.log('');
for (const line of await background({ rows: Number(process.env.DCVD_BENCH_GROWTH_ROWS ?? 200_000) })) console.log(line);

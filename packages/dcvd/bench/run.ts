/**
 * `npm run bench`: both endpoints and AutoApplyOrder at each concurrency of DCVD_BENCH_CONCURRENCY
 * (default 16,64,256,1024), each beside a bare node:https server measured in
 * the same run; then storage (SQLite vs PostgreSQL, one vs two instances).
 * DCVD_BENCH_SECONDS sets the measuring time per case (default 10).
 */
import getList from './get-list.ts';
import resend from './resend.ts';
import autoApply from './auto-apply.ts';
import storage from './postgres.ts';

const durationMs = Number(process.env.DCVD_BENCH_SECONDS ?? 10) * 1000;
const levels = (process.env.DCVD_BENCH_CONCURRENCY ?? '16,64,256,1024').split(',').map(Number);
console.log(`dcvd benchmarks — node ${process.version}, ${new Date().toISOString()}, ${durationMs / 1000}s per case`);
for (const concurrency of levels) {
  console.log('');
  for (const line of (await getList({ durationMs, concurrency })).lines) console.log(line);
  for (const line of await resend({ durationMs, concurrency })) console.log(line);
  for (const line of (await autoApply({ durationMs, concurrency })).lines) console.log(line);
}
console.log('');
for (const line of await storage({ durationMs })) console.log(line);

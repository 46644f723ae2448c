/** `npm run bench`: every benchmark, each against a baseline measured in the same run. */
import getList from './get-list.ts';
import resend from './resend.ts';

const durationMs = Number(process.env.DCVD_BENCH_SECONDS ?? 10) * 1000;
console.log(`dcvd benchmarks — node ${process.version}, ${new Date().toISOString()}`);
const list = await getList({ durationMs });
for (const line of list.lines) console.log(line);
console.log('');
for (const line of await resend({ durationMs })) console.log(line);
console.log('');
const { default: storage } = await import('./postgres.ts');
for (const line of await storage({ durationMs })) console.log(line);

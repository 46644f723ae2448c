/**
 * Growth (issue 20, tenth round): the write paths on an empty store against one that already holds
 * DCVD_BENCH_GROWTH_ROWS (default 200,000) of everything that only grows — orders, their domain rows,
 * random values, delivered emails (those of live values keeping their sealed codes) and registry rows,
 * as a long-running deployment leaves them (bench/tree.ts prefillStore; statistics taken on PostgreSQL only, as autovacuum would) — in one
 * run, as ratios. A statement whose cost grows with a table shows here as a ratio under 1 (the ninth
 * round found five such statements by timing and by reading plans; test/query-plans.test.ts checks
 * their plans, this checks what the requests pay). SQLite, then PostgreSQL (each run on an empty schema of
 * its own; skipped with a line saying so where none answers), one process, no flow control (so that the
 * figures are the statements', not the delivery's pace), 64 connections.
 */
import { fileURLToPath } from 'node:url';
import { createPostgresSchema, postgresReachable, DEFAULT_TEST_POSTGRES_URL } from '../test/support/database.ts';
import resend from './resend.ts';
import autoApply from './auto-apply.ts';

/** Each case runs four times, empty, filled, filled, empty (so neither side always runs first or warmer). */
const ORDER = [false, true, true, false] as const;

interface Runs {
  rate: number[];
  cpu: number[];
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function describe(what: string, unit: string, empty: Runs, filled: Runs): string {
  const each = (r: Runs) => r.rate.map((x, i) => `${x.toFixed(0)}/${r.cpu[i]!.toFixed(0)}`).join(', ');
  return (
    `${what}: ${mean(empty.rate).toFixed(0)} ${unit}/s empty, ${mean(filled.rate).toFixed(0)} filled (ratio ${(mean(filled.rate) / mean(empty.rate)).toFixed(2)}); ` +
    `CPU per call ${mean(empty.cpu).toFixed(0)} µs empty, ${mean(filled.cpu).toFixed(0)} filled (ratio ${(mean(filled.cpu) / mean(empty.cpu)).toFixed(2)}); ` +
    `each run (${unit}/s / µs): empty ${each(empty)}; filled ${each(filled)}`
  );
}

/** A run on a fresh store: SQLite in a data directory, or an empty PostgreSQL schema dropped afterwards. */
async function onFreshStore<T>(postgres: boolean, run: (databaseUrl: string | undefined) => Promise<T>): Promise<T> {
  if (!postgres) return run(undefined);
  const schema = await createPostgresSchema();
  try {
    return await run(schema.url);
  } finally {
    await schema.drop();
  }
}

async function growthOn(postgres: boolean, durationMs: number, rows: number): Promise<string[]> {
  const concurrency = 64;
  const runs = () => ({ empty: { rate: [], cpu: [] } as Runs, filled: { rate: [], cpu: [] } as Runs });
  const resends = runs();
  const orders = runs();
  let errors = 0;
  // Uncounted: the load generator's first load of a kind runs before its own code is warm (measured: the
  // first of five resend runs 1,718 resends/s, the others 2,667–2,915).
  await onFreshStore(postgres, (databaseUrl) => resend({ durationMs: Math.min(durationMs, 3000), concurrency, ...(databaseUrl ? { databaseUrl } : {}) }));
  for (const filled of ORDER) {
    const r = await onFreshStore(postgres, (databaseUrl) => resend({ durationMs, concurrency, ...(filled ? { prefill: rows } : {}), ...(databaseUrl ? { databaseUrl } : {}) }));
    const side = filled ? resends.filled : resends.empty;
    side.rate.push(r.queued.rps);
    side.cpu.push(r.cpuPerResend);
    errors += r.queued.errors;
  }
  await onFreshStore(postgres, (databaseUrl) => autoApply({ durationMs: Math.min(durationMs, 3000), concurrency, flowControl: false, bare: false, ...(databaseUrl ? { databaseUrl } : {}) }));
  for (const filled of ORDER) {
    const r = await onFreshStore(postgres, (databaseUrl) => autoApply({ durationMs, concurrency, flowControl: false, bare: false, ...(filled ? { prefill: rows } : {}), ...(databaseUrl ? { databaseUrl } : {}) }));
    const side = filled ? orders.filled : orders.empty;
    side.rate.push(r.dcvd.rps);
    side.cpu.push(r.cpuPerOrder);
    errors += r.dcvd.errors;
  }
  const store = postgres ? 'PostgreSQL (each run on an empty schema; the filled tables analyzed, as autovacuum would)' : 'SQLite';
  return [
    `Growth on ${store}: an empty store against one holding ${rows.toLocaleString('en-US')} orders, random values, delivered emails and registry rows (one process, no flow control, concurrency ${concurrency}, ${durationMs / 1000}s a run, four runs a case after an uncounted one: empty, filled, filled, empty)`,
    describe('ResendDCVEmail', 'resends', resends.empty, resends.filled),
    describe('AutoApplyOrder', 'orders', orders.empty, orders.filled),
    `errors ${errors}; a ratio near 1 (within the runs' own spread) means no statement on these paths pays for what the tables already hold`,
  ];
}

export default async function bench(opts: { durationMs?: number; rows?: number } = {}): Promise<string[]> {
  const durationMs = opts.durationMs ?? 10_000;
  const rows = opts.rows ?? 200_000;
  const lines = await growthOn(false, durationMs, rows);
  const url = process.env.DCVD_TEST_DATABASE_URL ?? DEFAULT_TEST_POSTGRES_URL;
  if (await postgresReachable(url)) lines.push(...(await growthOn(true, durationMs, rows)));
  else lines.push(`Growth on PostgreSQL: skipped, no PostgreSQL at ${url}`);
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const lines = await bench({ durationMs: Number(process.env.DCVD_BENCH_SECONDS ?? 10) * 1000, rows: Number(process.env.DCVD_BENCH_GROWTH_ROWS ?? 200_000) });
  for (const line of lines) console.log(line);
  process.exit(0);
}

/**
 * A metrics scrape (`GET /metrics`'s exposition, src/metrics.ts) on an empty store against one holding
 * DCVD_BENCH_GROWTH_ROWS delivered emails (bench/tree.ts prefillStore) and 1,000 waiting ones after them,
 * on SQLite and on PostgreSQL (issue 20, thirteenth round). The outbox's gauge used to count every email at
 * every scrape; on SQLite that statement holds the event loop, so its time is the API's latency too. Each
 * store is scraped once (the first scrape of a process counts the final emails once), then SCRAPES more
 * times; the statements run in this process (their time is the databases'), one scrape at a time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { openStore, type Store } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { createMetrics } from '../src/metrics.ts';
import { createPostgresSchema, postgresReachable, DEFAULT_TEST_POSTGRES_URL } from '../test/support/database.ts';
import { prefillStore } from './tree.ts';

const SCRAPES = 50;
const WAITING = 1000;

interface Timing {
  first: number;
  mean: number;
  max: number;
}

async function onStore<T>(postgres: boolean, run: (store: Store) => Promise<T>): Promise<T> {
  if (postgres) {
    const schema = await createPostgresSchema();
    const store = openStore({ dataDir: '', databaseUrl: schema.url });
    try {
      await migrateToLatest(store.db, store.dialect);
      return await run(store);
    } finally {
      await store.close();
      await schema.drop();
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'dcvd-bench-scrape-'));
  const store = openStore({ dataDir: dir });
  try {
    await migrateToLatest(store.db, store.dialect);
    return await run(store);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function scrapes(store: Store, rows: number): Promise<Timing> {
  const now = Date.now();
  await sql`insert into accounts (login, password_hash, created_at, updated_at) values ('scrape', 'x', ${now}, ${now})`.execute(store.db);
  const { id } = await store.db.selectFrom('accounts').select('id').where('login', '=', 'scrape').executeTakeFirstOrThrow();
  if (rows > 0) {
    await prefillStore(store.db, Number(id), rows);
    // Waiting emails after the history: the queue the scrape must still count at every scrape.
    await sql`insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at)
      select '<waiting-' || id || '@ca.example>', order_id, random_value_id, recipient, 'pending', 0, ${now}, ${now}, ${now}
      from outbox where state = 'delivered' order by id desc limit ${sql.lit(WAITING)}`.execute(store.db);
    if (store.dialect === 'postgres') await sql`analyze outbox`.execute(store.db);
  }
  const metrics = createMetrics(store.db, { clock: { now: () => Date.now() } });
  const check = (text: string) => {
    // A state without its line counts 0 (before the thirteenth round no line was written for a state without emails).
    const delivered = Number(/^dcvd_outbox_emails\{state="delivered"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    const pending = Number(/^dcvd_outbox_emails\{state="pending"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    if (delivered !== rows || pending !== (rows > 0 ? WAITING : 0)) throw new Error(`scrape counted ${delivered} delivered and ${pending} pending, expected ${rows} and ${rows > 0 ? WAITING : 0}`);
  };
  let t = performance.now();
  check(await metrics.render());
  const first = performance.now() - t;
  const times: number[] = [];
  for (let i = 0; i < SCRAPES; i++) {
    t = performance.now();
    check(await metrics.render());
    times.push(performance.now() - t);
  }
  return { first, mean: times.reduce((a, b) => a + b, 0) / times.length, max: Math.max(...times) };
}

const ms = (x: number) => `${x.toFixed(2)} ms`;

async function on(postgres: boolean, rows: number): Promise<string> {
  const empty = await onStore(postgres, (s) => scrapes(s, 0));
  const filled = await onStore(postgres, (s) => scrapes(s, rows));
  return (
    `metrics scrape on ${postgres ? 'PostgreSQL' : 'SQLite'}: empty ${ms(empty.mean)} (max ${ms(empty.max)}); ${rows.toLocaleString('en-US')} delivered + ${WAITING.toLocaleString('en-US')} waiting emails ` +
    `${ms(filled.mean)} (max ${ms(filled.max)}; the process's first scrape ${ms(filled.first)}); ratio filled/empty ${(filled.mean / empty.mean).toFixed(2)}; every scrape's counts checked`
  );
}

export default async function bench(opts: { rows?: number } = {}): Promise<string[]> {
  const rows = opts.rows ?? 200_000;
  const lines = [`Metrics scrape (GET /metrics's exposition, in the benchmark's process, ${SCRAPES} scrapes after the first, one at a time)`, await on(false, rows)];
  const url = process.env.DCVD_TEST_DATABASE_URL ?? DEFAULT_TEST_POSTGRES_URL;
  if (await postgresReachable(url)) lines.push(await on(true, rows));
  else lines.push(`metrics scrape on PostgreSQL: skipped, no PostgreSQL at ${url}`);
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const line of await bench({ rows: Number(process.env.DCVD_BENCH_GROWTH_ROWS ?? 200_000) })) console.log(line);
  process.exit(0);
}

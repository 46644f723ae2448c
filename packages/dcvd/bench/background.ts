/**
 * Background work on a store that grew (issue 20, thirteenth round), on SQLite and on PostgreSQL; the
 * statements run in this process (their time is the databases'), one at a time. On SQLite a statement holds
 * the event loop, so its time is the API's latency too.
 * - A metrics scrape (`GET /metrics`'s exposition, src/metrics.ts) on an empty store against one holding
 *   DCVD_BENCH_GROWTH_ROWS delivered emails (bench/tree.ts prefillStore) and 1,000 waiting ones after them.
 *   The outbox's gauge used to count every email at every scrape. Each store is scraped once (the first
 *   scrape of a process counts the final emails once; on PostgreSQL, then every 15 s for a minute, whose
 *   scrapes count everything), then SCRAPES more times.
 * - The email cut-off's minute scan (src/webhooks/webhooks.ts) on the same filled store, once every validated
 *   order (half of them) has its `dcv.unusable` event: the whole scan, which finds nothing, as every minute
 *   ran it before, against a run of UnusableWebhookScan once a quiet scan let it skip.
 * - The admin list of the newest 100 delivered emails (src/outbox/outbox.ts listOutbox: `dcvd outbox list
 *   --state delivered`, GET /v1/outbox?state=delivered) on the filled store, against the statement it
 *   replaced (every email of the state sorted by id), run here as it was.
 */
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import type { Store } from '../src/store/database.ts';
import { createMetrics } from '../src/metrics.ts';
import { queueUnusableWebhooks, UnusableWebhookScan, UNUSABLE_EVENT } from '../src/webhooks/webhooks.ts';
import { listOutbox } from '../src/outbox/outbox.ts';
import { postgresReachable, postgresTestStore, sqliteTestStore, DEFAULT_TEST_POSTGRES_URL } from '../test/support/database.ts';
import { prefillStore } from './tree.ts';

const SCRAPES = 50;
const SCANS = 10;
const WAITING = 1000;

interface Timing {
  first: number;
  mean: number;
  max: number;
  /** The admin list's line (a filled store). */
  list: string | undefined;
}

/** A migrated store of its own (a SQLite directory, or a PostgreSQL schema), removed after `run`. */
async function onStore<T>(postgres: boolean, run: (store: Store) => Promise<T>): Promise<T> {
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const { store } = postgres ? await postgresTestStore(cleanups) : await sqliteTestStore(cleanups, 'dcvd-bench-background-');
    return await run(store);
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}

/** An account (its webhook URL, if any) for the fill; its id. */
async function account(store: Store, login: string, webhookUrl: string | null = null): Promise<number> {
  const now = Date.now();
  await sql`insert into accounts (login, password_hash, webhook_url, created_at, updated_at) values (${login}, 'x', ${webhookUrl}, ${now}, ${now})`.execute(store.db);
  return Number((await store.db.selectFrom('accounts').select('id').where('login', '=', login).executeTakeFirstOrThrow()).id);
}

const ms = (x: number) => `${x.toFixed(2)} ms`;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function scrapes(store: Store, rows: number): Promise<Timing> {
  const now = Date.now();
  const id = await account(store, 'scrape');
  if (rows > 0) {
    await prefillStore(store.db, id, rows);
    // Waiting emails after the history: the queue the scrape must still count at every scrape.
    await sql`insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at)
      select '<waiting-' || id || '@ca.example>', order_id, random_value_id, recipient, 'pending', 0, ${now}, ${now}, ${now}
      from outbox where state = 'delivered' order by id desc limit ${sql.lit(WAITING)}`.execute(store.db);
    if (store.dialect === 'postgres') await sql`analyze outbox`.execute(store.db);
  }
  const list = rows > 0 ? await adminLists(store) : undefined;
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
  // PostgreSQL trusts the largest id a scrape saw a minute later (src/outbox/state-counts.ts): its first
  // minute of scrapes counts everything, so the measured ones come after it, scraped every 15 s as Prometheus would.
  if (store.dialect === 'postgres') {
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 15_000));
      check(await metrics.render());
    }
  }
  const times: number[] = [];
  for (let i = 0; i < SCRAPES; i++) {
    t = performance.now();
    check(await metrics.render());
    times.push(performance.now() - t);
  }
  return { first, mean: mean(times), max: Math.max(...times), list };
}

async function on(postgres: boolean, rows: number): Promise<string> {
  const empty = await onStore(postgres, (s) => scrapes(s, 0));
  const filled = await onStore(postgres, (s) => scrapes(s, rows));
  return (
    `admin list of the newest 100 of ${rows.toLocaleString('en-US')} delivered emails on ${postgres ? 'PostgreSQL' : 'SQLite'}: ${filled.list ?? 'not measured'}, 10 of each, answers checked equal\n` +
    `metrics scrape on ${postgres ? 'PostgreSQL' : 'SQLite'}: empty ${ms(empty.mean)} (max ${ms(empty.max)}); ${rows.toLocaleString('en-US')} delivered + ${WAITING.toLocaleString('en-US')} waiting emails ` +
    `${ms(filled.mean)} (max ${ms(filled.max)}; the process's first scrape ${ms(filled.first)}); ratio filled/empty ${(filled.mean / empty.mean).toFixed(2)}; every scrape's counts checked`
  );
}

/** The newest 100 delivered emails: listOutbox against the statement it replaced (same answer checked). */
async function adminLists(store: Store): Promise<string> {
  const before: number[] = [];
  const after: number[] = [];
  for (let i = 0; i < 10; i++) {
    let t = performance.now();
    const old = await store.db
      .selectFrom('outbox as o')
      .innerJoin('orders as ord', 'ord.id', 'o.order_id')
      .select(['o.message_id', 'ord.order_number', 'o.recipient', 'o.state', 'o.attempts', 'o.next_attempt_at', 'o.last_error', 'o.response', 'o.created_at', 'o.delivered_at'])
      .where('o.state', '=', 'delivered')
      .orderBy('o.id', 'desc')
      .limit(100)
      .execute();
    before.push(performance.now() - t);
    t = performance.now();
    const now = await listOutbox(store.db, { state: 'delivered', limit: 100 });
    after.push(performance.now() - t);
    if (now.length !== 100 || now.some((v, j) => v.messageId !== old[j]!.message_id)) throw new Error('the admin list answered otherwise than the statement it replaced');
  }
  return `the statement it replaced ${ms(mean(before))} (max ${ms(Math.max(...before))}), listOutbox ${ms(mean(after))} (max ${ms(Math.max(...after))})`;
}

/** The cut-off scan on a filled store whose validated orders all have their event: the whole scan, and a skipped run. */
async function cutoffScan(postgres: boolean, rows: number): Promise<string> {
  return onStore(postgres, async (store) => {
    const now = Date.now();
    await prefillStore(store.db, await account(store, 'scan', 'https://hooks.example/'), rows);
    await sql`insert into webhook_outbox (event_id, order_id, event, url, body, state, attempts, next_attempt_at, created_at, updated_at, delivered_at)
      select 'bench-' || id, id, ${UNUSABLE_EVENT}, 'https://hooks.example/', '{}', 'delivered', 1, ${now}, ${now}, ${now}, ${now} from orders where dcv_status = 'validated'`.execute(store.db);
    if (store.dialect === 'postgres') await sql`analyze webhook_outbox`.execute(store.db);
    const policy = { blocklist: [], cutoff: now - 1000 };
    const full: number[] = [];
    for (let i = 0; i < SCANS; i++) {
      const t = performance.now();
      const queued = await queueUnusableWebhooks(store.db, store.dialect, {}, policy, now);
      full.push(performance.now() - t);
      if (queued !== 0) throw new Error(`the scan queued ${queued} events where every order has its own`);
    }
    let clock = 0;
    const scan = new UnusableWebhookScan(store.db, store.dialect, {}, policy, { monotonic: () => clock });
    await scan.run(now);
    clock = 61_000;
    await scan.run(now); // the quiet scan that lets the next runs skip
    const skipped: number[] = [];
    for (let i = 0; i < SCANS; i++) {
      clock += 60_000;
      const t = performance.now();
      const queued = await scan.run(now);
      skipped.push(performance.now() - t);
      if (queued !== 0) throw new Error(`a skipped run queued ${queued} events`);
    }
    const validated = Math.floor(rows / 2).toLocaleString('en-US');
    return (
      `email cut-off minute scan on ${postgres ? 'PostgreSQL' : 'SQLite'}, ${rows.toLocaleString('en-US')} orders (${validated} validated, each with its event): ` +
      `the whole scan ${ms(mean(full))} (max ${ms(Math.max(...full))}), a run after a quiet scan ${ms(mean(skipped))} (max ${ms(Math.max(...skipped))}), ${SCANS} of each`
    );
  });
}

export default async function bench(opts: { rows?: number } = {}): Promise<string[]> {
  const rows = opts.rows ?? 200_000;
  const lines = [`Background work on a grown store (in the benchmark's process, one statement at a time): the admin list by state; ${SCRAPES} metrics scrapes after the first; the email cut-off's minute scan`];
  lines.push(await on(false, rows), await cutoffScan(false, rows));
  const url = process.env.DCVD_TEST_DATABASE_URL ?? DEFAULT_TEST_POSTGRES_URL;
  if (await postgresReachable(url)) lines.push(await on(true, rows), await cutoffScan(true, rows));
  else lines.push(`background work on PostgreSQL: skipped, no PostgreSQL at ${url}`);
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const line of await bench({ rows: Number(process.env.DCVD_BENCH_GROWTH_ROWS ?? 200_000) })) console.log(line);
  process.exit(0);
}

/**
 * A server under test as a tree of processes (`serve --processes`): its start in a bench child, and
 * CPU time and peak RSS of the primary together with its API processes, read from /proc for the
 * others: the benchmark divides the CPU of the whole tree by the requests it answered, and reports
 * the memory of all of it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServeConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../src/store/schema.ts';
import { dialectOf } from '../src/store/database.ts';
import { oldestDueEmail } from '../src/outbox/flow.ts';

/** The outbox's emails by state (bench/resend.ts's exactly-once count and the backlog below). */
export async function outboxStates(db: Kysely<Database>): Promise<Record<string, number>> {
  const rows = await db.selectFrom('outbox').select(['state']).select((eb) => eb.fn.countAll<number>().as('n')).groupBy('state').execute();
  return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
}

/** Emails not yet delivered nor given up: pending or sending. */
export const waitingOf = (states: Record<string, number>): number => (states.pending ?? 0) + (states.sending ?? 0);

/** The outbox now: emails waiting (pending or sending), delivered, and how long the oldest due one has waited for delivery. */
export interface OutboxBacklog {
  waiting: number;
  delivered: number;
  lagMs: number;
}

export async function outboxBacklog(db: Kysely<Database>): Promise<OutboxBacklog> {
  const now = Date.now();
  const states = await outboxStates(db);
  const due = await oldestDueEmail.first(db, { now });
  return { waiting: waitingOf(states), delivered: states.delivered ?? 0, lagMs: due ? now - Number(due.next_attempt_at) : 0 };
}

/**
 * The primary of `serve --processes N` in a bench child whose script is `scriptUrl`: its API processes run
 * that script in mode `dcvd-api` with `childOptions` (which name the data directory all of them share).
 */
export async function startBenchCluster(scriptUrl: string, config: ServeConfig, childOptions: object) {
  const { startCluster } = await import('../src/cluster.ts');
  return startCluster(config, {
    logger: createLogger('warn'),
    // The compiled child (bench/.build/, lib.ts forkBenchChild): plain node, as the primary runs.
    setup: { exec: fileURLToPath(scriptUrl), args: ['dcvd-api', JSON.stringify(childOptions)], execArgv: [] },
  });
}

/** How the calls that waited in the outbox's flow control went on, and their seconds, from the server's metrics (its API processes' summed in). */
export type FlowWaits = Record<string, number>;

export async function flowWaits(metrics: { render(): Promise<string> }): Promise<FlowWaits> {
  const waits: FlowWaits = {};
  for (const line of (await metrics.render()).split('\n')) {
    const outcome = /^dcvd_outbox_flow_waits_total\{outcome="([a-z-]+)"\} (\S+)$/.exec(line);
    if (outcome) waits[outcome[1]!] = Number(outcome[2]);
    const seconds = /^dcvd_outbox_flow_wait_seconds_total (\S+)$/.exec(line);
    if (seconds) waits.seconds = Number(seconds[1]);
  }
  return waits;
}

/** Mode `dcvd-api`: an API process of that primary; it talks to the primary only (node:cluster's channel). */
export async function runBenchApiProcess(config: ServeConfig): Promise<void> {
  const { runApiProcess } = await import('../src/cluster.ts');
  await runApiProcess(config, { logger: createLogger('warn') });
}

/** Clock ticks per second of /proc's utime/stime (100 on Linux, as `getconf CLK_TCK` says). */
const TICKS_PER_SECOND = 100;

function procCpuMicros(pid: number): number {
  try {
    // The fields after the command name (which may contain spaces) start after its closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name and state.
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / TICKS_PER_SECOND;
  } catch {
    return 0; // gone
  }
}

function procPeakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** This process's CPU (all threads) plus the other processes', in µs. */
function treeCpuMicros(others: number[]): number {
  const { user, system } = process.cpuUsage();
  return user + system + others.reduce((sum, pid) => sum + procCpuMicros(pid), 0);
}

/** The other processes' peak RSS, summed, in MiB. */
function treePeakRssMiB(others: number[]): number {
  return others.reduce((sum, pid) => sum + procPeakRssMiB(pid), 0);
}

/**
 * A bench child's answers to the benchmark: `cpu` (µs of this process and its API processes — divided by
 * requests, a figure that depends much less than req/s on what else the shared machine is doing), `pids`
 * (this process's and its API processes', for lib.ts's memory sampler), `count` when it has one, and
 * `stop` (then the peak RSS of all of them, the API processes' read before they stop).
 */
export function answerBenchmark(o: { apiPids: () => number[]; stop: () => Promise<void>; count?: () => Promise<unknown>; backlog?: () => Promise<unknown>; flow?: () => Promise<unknown> }): void {
  const send = (m: unknown) => process.send!(m);
  const allocations = startAllocationProfile();
  process.on('message', async (m) => {
    if (m === 'count' && o.count) send({ count: await o.count() });
    if (m === 'backlog' && o.backlog) send({ backlog: await o.backlog() });
    if (m === 'flow' && o.flow) send({ flow: await o.flow() });
    if (m === 'cpu') send({ cpu: treeCpuMicros(o.apiPids()) });
    if (m === 'pids') send({ pids: [process.pid, ...o.apiPids()] });
    if (m !== 'stop') return;
    await (await allocations)?.();
    const apiRss = treePeakRssMiB(o.apiPids());
    await o.stop();
    send({ maxRssMiB: process.resourceUsage().maxRSS / 1024 + apiRss });
    process.exit(0);
  });
}

/**
 * DCVD_BENCH_ALLOC_PROFILE=DIR: what this process allocates from now until it stops, sampled every 4 KiB
 * with the objects the garbage collector has already taken included (a request's garbage, not only what
 * stays), written as DIR/alloc-<mode>-<pid>.heapprofile (Chrome DevTools' Memory tab reads it). How issue
 * 20's fourth round found what a GetDCVEmailAddressList call allocated (docs/PERFORMANCE.md). Resolves with
 * the function that stops and writes it, or undefined when the variable is not set.
 */
async function startAllocationProfile(): Promise<(() => Promise<void>) | undefined> {
  const dir = process.env.DCVD_BENCH_ALLOC_PROFILE;
  if (!dir) return undefined;
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
  return async () => {
    const { profile } = await session.post('HeapProfiler.stopSampling');
    writeFileSync(join(dir, `alloc-${process.argv[2] ?? 'child'}-${process.pid}.heapprofile`), JSON.stringify(profile));
    session.disconnect();
  };
}

/**
 * bench/growth.ts: `n` of everything that only grows, as a long-running deployment leaves it, written
 * straight into the store (recursive CTEs, one transaction): the account's orders from an hour ago (every
 * other one validated), one domain row and one random value each (the validated orders' values spent),
 * one delivered email each (those of live values still keeping their sealed code, as for 30 days), and one
 * registry row each. Order numbers from 10,000,000. On SQLite no statistics are taken (dcvd never runs
 * ANALYZE there); on PostgreSQL the tables are analyzed afterwards, as autovacuum does after such growth in
 * a deployment (left to itself it would do it during a measured run, at a moment nobody chose).
 */
export async function prefillStore(db: Kysely<Database>, accountId: number, n: number): Promise<void> {
  // Literals, not parameters: PostgreSQL infers a CASE's parameter as text, which a bigint column refuses.
  const t = sql.lit(Date.now() - 3_600_000);
  const expires = sql.lit(Date.now() - 3_600_000 + 30 * 86_400_000);
  const account = sql.lit(accountId);
  const rows = sql`with recursive g(i) as (select 1 union all select i + 1 from g where i < ${sql.lit(n)})`;
  await db.transaction().execute(async (trx) => {
    // Hundreds of thousands of rows with their foreign keys checked: longer than dcvd's 5 s statement timeout on a busy machine.
    if (dialectOf(db) === 'postgres') await sql`set local statement_timeout = 0`.execute(trx);
    await sql`${rows} insert into orders (account_id, order_number, base_order_number, product, domain, dcv_method, dcv_status, voucher, template_id,
        dcv_email_address, dcv_adn, dcv_address_source, last_dcv_email_at, dcv_decided_at, created_at, updated_at)
      select ${account}, 10000000 + i, 10000000 + i, 801, 'd' || i || '.example.net', 'email', case when i % 2 = 0 then 'validated' else 'awaiting' end, 0, null,
        'admin@d' || i || '.example.net', 'd' || i || '.example.net', 'constructed', ${t}, case when i % 2 = 0 then ${t} end, ${t}, ${t} from g`.execute(trx);
    await sql`insert into order_domains (order_id, position, domain, dcv_method, dcv_status, dcv_email_address, dcv_adn, dcv_address_source, last_dcv_email_at, dcv_decided_at, created_at, updated_at)
      select id, 0, domain, dcv_method, dcv_status, dcv_email_address, dcv_adn, dcv_address_source, last_dcv_email_at, dcv_decided_at, created_at, updated_at
      from orders where order_number >= 10000000`.execute(trx);
    await sql`insert into random_values (order_id, value_hash, recipient, adn, address_source, created_at, expires_at, spent_at, order_domain_id)
      select o.id, 'growth-' || o.id, o.dcv_email_address, o.dcv_adn, 'constructed', ${t}, ${expires}, o.dcv_decided_at, d.id
      from orders o join order_domains d on d.order_id = o.id where o.order_number >= 10000000`.execute(trx);
    await sql`insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at, delivered_at, sealed_code, mail_from, subject, response)
      select '<growth-' || v.id || '@ca.example>', v.order_id, v.id, v.recipient, 'delivered', 1, ${t}, ${t}, ${t}, ${t}, case when v.spent_at is null then 'sealed' end, 'dcv@ca.example', 'DCV', '250 ok'
      from random_values v where v.value_hash like 'growth-%'`.execute(trx);
    await sql`${rows} insert into offered_addresses (account_id, domain, address, level, source, dns_detail, offered_at)
      select ${account}, 'd' || i || '.example.net', 'admin@d' || i || '.example.net', 2, 'constructed', null, ${t} from g`.execute(trx);
  });
  // SQLite: copied into the database file now, not by the checkpointer during the measured load.
  if (dialectOf(db) === 'sqlite') await sql`pragma wal_checkpoint(truncate)`.execute(db);
  else await sql`analyze orders, order_domains, random_values, outbox, offered_addresses`.execute(db);
}

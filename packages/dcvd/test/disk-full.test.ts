/**
 * The disk full (issue 8), on a real filesystem: a small tmpfs mounted as part
 * of the data directory and filled with a ballast file until ENOSPC.
 *
 * 1. Only the .eml outbox full: queued emails stay pending (a transient error,
 *    retried with backoff, "no space left on device" in last_error and the
 *    log), no *.eml file ever shows up half written, and once the ballast is
 *    gone each email is written exactly once, complete.
 * 2. The whole data directory full, SQLite included: both endpoints answer
 *    -14 (HTTP 200, no detail), the log says the disk is full, nothing is
 *    half stored; once space is freed the same calls succeed. A restart while
 *    the disk is full refuses to start with the reason; once space is freed
 *    everything answered errorCode=0 is there and delivered once.
 *
 * Mounting needs root (CAP_SYS_ADMIN): elsewhere both tests are skipped with
 * the reason. Every mount is undone in a finally, with a lazy unmount as the
 * fallback and a last sweep when the process exits.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { simpleParser } from 'mailparser';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { systemClock } from '../src/deps.ts';
import type { Store } from '../src/store/database.ts';
import { form, GET_PATH, PASSWORD, startTestServer, type TestServer } from './support/server.ts';
import { codeIn, createOrder, errorBody, getList, OK, resend } from './support/dcv.ts';
import { waitUntil } from './support/wait.ts';
import { sampleOf } from './support/metrics.ts';

// Short retries; attempts enough that no email gives up while the disk is full.
const FAST = { ...DEFAULT_OUTBOX_POLICY, pollMs: 50, retryBaseMs: 100, retryMaxMs: 400, maxAttempts: 1000, leaseMs: 3000 };
const dcvEmail = defaultDcvEmailConfig({ mailFrom: 'dcv@ca.example', outbox: FAST });
const BALLAST = 'ballast';
/** Generous: a loaded machine may be slow, a correct run is never near it. */
const WAIT_MS = 20_000;

// ------------------------------------------------------------ mounts

const mounted = new Set<string>();

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function mountTmpfs(dir: string, size: string): void {
  run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  mounted.add(dir);
}

function unmount(dir: string): void {
  if (!mounted.delete(dir)) return;
  try {
    run('umount', [dir]);
  } catch (err) {
    console.error(`umount ${dir}: ${String(err)}; detaching it lazily`);
    run('umount', ['-l', dir]); // something still holds a file open: detach it anyway
  }
}

function unmountAll(): void {
  for (const dir of [...mounted]) {
    try {
      unmount(dir);
    } catch (err) {
      console.error(`could not unmount ${dir}: ${String(err)}`);
    }
  }
}
after(unmountAll);
process.on('exit', unmountAll);

/** Why a tmpfs cannot be mounted here, or undefined when it can. */
function mountProblem(): string | undefined {
  if (process.platform !== 'linux') return `tmpfs mounts need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root (CAP_SYS_ADMIN); run as root to test a full disk';
  const dir = mkdtempSync(join(tmpdir(), 'dcvd-mount-probe-'));
  try {
    mountTmpfs(dir, '64k');
    unmount(dir);
    return undefined;
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    return `cannot mount a tmpfs here (${(stderr || String(err)).replace(/\s+/g, ' ')})`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const noMount = mountProblem();

/** Writes a ballast file until the filesystem says ENOSPC; afterwards not one block is free. */
function fillUp(dir: string): void {
  const fd = openSync(join(dir, BALLAST), 'w');
  const chunk = Buffer.alloc(64 * 1024, 0xa5);
  try {
    for (;;) writeSync(fd, chunk); // a short write when little is left, then ENOSPC
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  assert.equal(statfsSync(dir).bavail, 0, 'the filesystem is full');
}

function freeUp(dir: string): void {
  rmSync(join(dir, BALLAST));
  assert.ok(statfsSync(dir).bavail > 0);
}

// ------------------------------------------------------------ helpers

function outboxRows(store: Store) {
  return store.db
    .selectFrom('outbox as o')
    .innerJoin('orders as d', 'd.id', 'o.order_id')
    .select(['o.message_id', 'o.state', 'o.attempts', 'o.last_error', 'o.next_attempt_at', 'o.updated_at', 'o.subject', 'd.order_number'])
    .orderBy('o.id')
    .execute();
}

function emlFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.eml'));
}

/**
 * Each email is one complete .eml named by its Message-ID, written once: the
 * directory holds exactly these files, each parses with its code and link.
 */
async function assertDeliveredOnce(logs: Record<string, unknown>[], dir: string, rows: { message_id: string; subject: string | null }[]): Promise<void> {
  const files = rows.map((r) => `${r.message_id.slice(1, -1)}.eml`);
  assert.deepEqual(readdirSync(dir).sort(), [...files].sort(), 'only complete .eml files, no temp files left');
  const codes = new Set<string>();
  for (const [i, row] of rows.entries()) {
    const parsed = await simpleParser(readFileSync(join(dir, files[i]!)));
    assert.equal(parsed.messageId, row.message_id);
    assert.equal(parsed.subject, row.subject);
    const code = codeIn(parsed.text);
    assert.ok(parsed.text!.includes(`/dcv/confirm/${code}`), `the confirmation link is in ${files[i]}`);
    codes.add(code);
  }
  assert.equal(codes.size, rows.length, 'one code per email');
  const written = logs.filter((l) => l.msg === 'dcv email written').map((l) => String(l.file));
  for (const f of files) assert.equal(written.filter((w) => w.endsWith(`/${f}`)).length, 1, `${f} written once`);
  assert.equal(written.length, files.length);
  assert.equal(logs.filter((l) => l.msg === 'dcv email already written, not rewritten').length, 0);
}

let nextOrder = 8_000_000;

async function newOrder(server: TestServer, domain = 'www.example.com'): Promise<number> {
  const orderNumber = nextOrder++;
  await createOrder(server, systemClock, 'alice', { domain, orderNumber });
  return orderNumber;
}

function resendTo(server: TestServer, orderNumber: number, dcvEmailAddress = 'admin@example.com') {
  return resend(server, 'alice', { orderNumber, dcvEmailAddress });
}

// ------------------------------------------------------------ tests

test('the .eml outbox on a full disk: emails stay pending, nothing half written, each delivered once when space is back', { skip: noMount }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-diskfull-outbox-'));
  const outbox = join(dataDir, 'outbox');
  mkdirSync(outbox, { mode: 0o700 });
  let server: TestServer | undefined;
  try {
    mountTmpfs(outbox, '512k');
    fillUp(outbox);
    server = await startTestServer({ dataDir, dcvEmail });
    await server.createAccount('alice');
    await getList(server, 'alice', 'www.example.com');

    const orders: number[] = [];
    for (let i = 0; i < 5; i++) {
      const n = await newOrder(server);
      assert.equal((await resendTo(server, n)).body, OK, 'queueing needs no outbox space');
      orders.push(n);
    }
    // Every email fails a few times; meanwhile no *.eml ever becomes visible.
    const s = server;
    await waitUntil('three failed attempts each', async () => {
      assert.deepEqual(emlFiles(outbox), [], 'no .eml while the disk is full');
      const rows = await outboxRows(s.store);
      return rows.length === orders.length && rows.every((r) => r.state === 'pending' && r.attempts >= 3);
    }, WAIT_MS);
    const waiting = await outboxRows(server.store);
    for (const r of waiting) {
      assert.match(r.last_error ?? '', /ENOSPC/);
      assert.match(r.last_error ?? '', /no space left on device/);
      assert.ok(r.next_attempt_at > r.updated_at, 'the next attempt waits (backoff)');
    }
    const retries = server.logs.filter((l) => l.msg === 'dcv email attempt failed; will retry');
    assert.ok(retries.length >= 3 * orders.length);
    assert.ok(retries.every((l) => l.level === 40 && /ENOSPC: no space left on device/.test(String(l.reason)) && typeof l.retryAt === 'string'));
    assert.equal(server.logs.filter((l) => l.msg === 'dcv email failed').length, 0, 'a full disk never fails an email at once');
    // The queue depth: pending, or sending at the instant the worker retries one (every state has a line, 0 for none).
    const metrics = await server.metrics.render();
    const gauge = (state: string) => sampleOf(metrics, 'dcvd_outbox_emails', `state="${state}"`);
    assert.equal(gauge('pending') + gauge('sending'), 5, metrics);
    assert.equal(gauge('delivered') + gauge('failed'), 0, metrics);
    // The API is unaffected: the database is elsewhere.
    await getList(server, 'alice', 'www.example.com');

    freeUp(outbox);
    await waitUntil('every email delivered', async () => (await outboxRows(s.store)).every((r) => r.state === 'delivered'), WAIT_MS);
    await sleep(500); // time enough for a duplicate attempt to show up
    await server.outbox!.idle();
    const rows = await outboxRows(server.store);
    assert.deepEqual(rows.map((r) => r.order_number), orders);
    assert.ok(rows.every((r) => r.state === 'delivered' && r.last_error === null));
    await assertDeliveredOnce(server.logs, outbox, rows);
  } finally {
    await server?.stop();
    unmount(outbox);
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('the database on a full disk: -14 on both endpoints, nothing half stored, and every errorCode=0 kept and delivered once', { skip: noMount }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-diskfull-db-'));
  const outbox = join(dataDir, 'outbox');
  // SQLite in the data directory whatever DCVD_TEST_DATABASE says: the point is its file on the full disk.
  const start = () => startTestServer({ dataDir, databaseUrl: undefined, dcvEmail });
  let server: TestServer | undefined;
  try {
    mountTmpfs(dataDir, '8m');
    server = await start();
    assert.equal(server.store.dialect, 'sqlite');
    await server.createAccount('alice');
    await getList(server, 'alice', 'www.example.com');
    const answeredOk: number[] = [];
    for (let i = 0; i < 3; i++) {
      const n = await newOrder(server);
      assert.equal((await resendTo(server, n)).body, OK);
      answeredOk.push(n);
    }
    const refused = [await newOrder(server), await newOrder(server), await newOrder(server)];
    const s = server;
    await waitUntil('the first emails delivered', async () => (await outboxRows(s.store)).every((r) => r.state === 'delivered'), WAIT_MS);
    await server.outbox!.idle();

    // An empty WAL, so the next write needs new blocks (otherwise SQLite may go on for a while in the WAL it already has).
    const [checkpoint] = (await sql<{ busy: number }>`pragma wal_checkpoint(TRUNCATE)`.execute(server.store.db)).rows;
    assert.equal(checkpoint?.busy, 0);
    fillUp(dataDir);

    const getBody = (domainName: string, responseFormat: string) =>
      form({ loginName: 'alice', loginPassword: PASSWORD, domainName, product: '801', responseFormat });
    const answers = [
      ...(await Promise.all(refused.map((n) => resendTo(s, n)))).map((r) => ({ r, want: errorBody(-14) })),
      { r: await server.post(GET_PATH, getBody('www.example.net', '1')), want: '-14\nAn unknown error occurred!\n' },
      { r: await server.post(GET_PATH, getBody('www.example.net', '2')), want: '{"errorCode":-14,"errorMessage":"An unknown error occurred!"}' },
    ];
    for (const { r, want } of answers) {
      assert.equal(r.status, 200);
      assert.equal(r.body, want);
      // The operator finds the cause under the request id the answer carries.
      const logged: Record<string, unknown> | undefined = server.logs.find((l) => l.reqId === r.headers['x-request-id'] && l.msg === 'unexpected error');
      const err = logged?.err as { code?: string; message?: string } | undefined;
      assert.equal(err?.code, 'SQLITE_FULL', JSON.stringify(logged));
      assert.match(err?.message ?? '', /database or disk is full/);
    }
    assert.match(await server.metrics.render(), /^dcvd_api_requests_total\{endpoint="ResendDCVEmail",code="-14"\} 3$/m);
    for (const path of ['/healthz', '/readyz']) assert.equal((await server.request({ method: 'GET', path })).status, 200, `${path}: still up, reads work`);

    freeUp(dataDir);
    // The refused calls left nothing behind: not a queued email, not a resend time that would now answer -160.
    for (const n of refused) {
      assert.equal((await resendTo(server, n)).body, OK);
      answeredOk.push(n);
    }
    assert.match((await server.post(GET_PATH, getBody('www.example.net', '1'))).body, /^0\n/);
    const late = await newOrder(server, 'www.example.net');
    assert.equal((await resendTo(server, late, 'admin@example.net')).body, OK, 'the offer answered 0 after the disk was freed is on record');
    answeredOk.push(late);
    await waitUntil('every email delivered', async () => (await outboxRows(s.store)).every((r) => r.state === 'delivered'), WAIT_MS);

    // Stopped, and the disk fills before the restart: it refuses to start, saying why.
    const logs = server.logs;
    await server.stop();
    server = undefined;
    fillUp(dataDir);
    await assert.rejects(start(), /^Error: cannot open the database \S+dcvd\.sqlite: .*; no space left on the disk$/);
    freeUp(dataDir);
    // Everything answered errorCode=0 is on disk: the restarted server finds it, and nothing is sent twice.
    server = await start();
    await sleep(500);
    await server.outbox!.idle();
    const rows = await outboxRows(server.store);
    assert.deepEqual(rows.map((r) => r.order_number), answeredOk, 'one email per errorCode=0, none for a -14');
    assert.ok(rows.every((r) => r.state === 'delivered'));
    await assertDeliveredOnce([...logs, ...server.logs], outbox, rows);
  } finally {
    await server?.stop();
    unmount(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  }
});

/**
 * Issue 20: delivery off the request loop and several API processes on one port.
 *
 * - `--role api` beside `--role worker` on one database (SQLite file or PostgreSQL schema): the API
 *   process queues and never delivers; the worker delivers each email once, with the configured links.
 * - `dcvd serve --processes 2`, a real process tree: requests over fresh connections reach both API
 *   processes; a lockout made through one holds in the other; offers recorded by one let the other
 *   queue; the primary delivers at once (its poll is 30 s: only the API processes' wake explains a
 *   delivery within seconds), each email once; /metrics sums the API processes' counters; a killed API
 *   process is replaced; SIGTERM stops the tree.
 * - `dcvd serve --delivery-process`: one API process answers every call, the primary none; the primary
 *   delivers what it queued at once, each email once; SIGTERM stops both.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { getPriority } from 'node:os';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultDcvEmailConfig, defaultServeConfig } from '../src/config.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { startWorker, type RunningWorker } from '../src/server.ts';
import { API_PROCESS_SEMI_SPACE_MIB, apiProcessExecArgv } from '../src/cluster.ts';
import { openStore, type Store } from '../src/store/database.ts';
import { systemClock } from '../src/deps.ts';
import { createLogger } from '../src/log.ts';
import pg from 'pg';
import { LISTENER_NAME } from '../src/store/wake.ts';
import { createPostgresSchema, createTestDatabase, postgresOrSkip, type TestDatabase } from './support/database.ts';
import { startServe, type ServeProcess } from './support/instance.ts';
import { runDcvd } from './support/cli.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, GET_PATH, PASSWORD, RESEND_PATH, startTestServer, type TestServer } from './support/server.ts';
import { createOrder, getList, OK, resend, seedOrders } from './support/dcv.ts';
import { waitUntil } from './support/wait.ts';
import { sampleSum } from './support/metrics.ts';

/** A `--role api` test server and a `--role worker` beside it on the same data directory (secret key) and database, as two processes of one deployment share them. */
async function startApiAndWorker(sink: SmtpSink, pollMs: number, databaseUrl?: string): Promise<{ api: TestServer; worker: RunningWorker }> {
  const dcvEmail = () =>
    defaultDcvEmailConfig({ smtpUrl: sink.url, mailFrom: 'dcv@ca.example', publicUrl: 'https://dcv.ca.example/', outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs } });
  const api = await startTestServer({ role: 'api', dcvEmail: dcvEmail(), ...(databaseUrl !== undefined ? { databaseUrl } : {}) });
  const worker = await startWorker(
    defaultServeConfig({ role: 'worker', listen: { host: '127.0.0.1', port: 0 }, dataDir: api.dataDir, databaseUrl: databaseUrl ?? api.databaseUrl, dcvEmail: dcvEmail() }),
    { logger: createLogger('warn') },
  ).catch(async (err: unknown) => {
    await api.stop();
    throw err;
  });
  return { api, worker };
}

describe('--role api beside --role worker', () => {
  let sink: SmtpSink;
  let api: TestServer;
  let worker: RunningWorker;
  before(async () => {
    sink = await startSmtpSink();
    ({ api, worker } = await startApiAndWorker(sink, 50));
    await api.createAccount('alice');
  });
  after(async () => {
    await worker?.close();
    await api?.stop();
    await sink?.close();
  });

  test('the API process queues, the worker delivers each email once with the configured links', async () => {
    assert.equal(api.outbox, undefined);
    assert.equal(api.webhooks, undefined);
    for (const orderNumber of [801001, 801002, 801003]) await createOrder(api, systemClock, 'alice', { domain: 'www.example.com', orderNumber });
    assert.match((await getList(api, 'alice', 'www.example.com')).body, /^0\n/);
    for (const orderNumber of [801001, 801002, 801003]) {
      assert.equal((await resend(api, 'alice', { orderNumber, dcvEmailAddress: 'admin@example.com' })).body, OK);
    }
    const messages = await sink.waitFor(3, 20_000);
    await worker.outbox.idle();
    assert.equal(messages.length, 3);
    assert.equal(new Set(messages.map((m) => m.parsed.messageId)).size, 3);
    for (const m of messages) assert.match(m.parsed.text ?? '', /https:\/\/dcv\.ca\.example\/dcv\/confirm\//);
    const states = await api.store.db.selectFrom('outbox').select('state').execute();
    assert.deepEqual(states.map((r) => r.state), ['delivered', 'delivered', 'delivered']);
  });

  test('a worker needs --public-url when --listen has no fixed port, and says so before opening anything', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-worker-'));
    try {
      await assert.rejects(
        startWorker(defaultServeConfig({ role: 'worker', listen: { host: '127.0.0.1', port: 0 }, dataDir }), { logger: createLogger('silent') }),
        /--role worker needs --public-url/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

const noPostgres = await postgresOrSkip();

describe('--role api wakes --role worker through PostgreSQL (LISTEN/NOTIFY)', { skip: noPostgres }, () => {
  let sink: SmtpSink;
  let schema: TestDatabase & { url: string };
  let api: TestServer;
  let worker: RunningWorker;
  before(async () => {
    sink = await startSmtpSink();
    schema = await createPostgresSchema();
    // A poll of a minute: an email delivered within seconds was woken by a notification.
    ({ api, worker } = await startApiAndWorker(sink, 60_000, schema.url));
    await api.createAccount('alice');
    for (const orderNumber of [802001, 802002, 802003]) await createOrder(api, systemClock, 'alice', { domain: 'www.example.com', orderNumber });
    assert.match((await getList(api, 'alice', 'www.example.com')).body, /^0\n/);
  });
  after(async () => {
    await worker?.close();
    await api?.stop();
    await schema?.drop();
    await sink?.close();
  });

  test('an email queued by the API process is delivered at once, not at the worker\u2019s poll', async () => {
    assert.equal((await resend(api, 'alice', { orderNumber: 802001, dcvEmailAddress: 'admin@example.com' })).body, OK);
    const [m] = await sink.waitFor(1, 20_000);
    assert.match(m?.parsed.text ?? '', /https:\/\/dcv\.ca\.example\/dcv\/confirm\//);
  });

  test('a dropped LISTEN connection is made again, and wakes the worker for what was queued meanwhile', async () => {
    const admin = new pg.Client({ connectionString: schema.url });
    await admin.connect();
    try {
      // Every wake listener on the server (another test file's may be among them: it reconnects the same way).
      const killed = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [LISTENER_NAME]);
      assert.ok((killed.rowCount ?? 0) >= 1, 'the worker listens on a connection of its own');
    } finally {
      await admin.end();
    }
    // Queued while the worker may not be listening: the wake after the reconnection (or a notification
    // on the new connection, whichever comes after the commit) delivers it, not the poll of a minute.
    assert.equal((await resend(api, 'alice', { orderNumber: 802002, dcvEmailAddress: 'admin@example.com' })).body, OK);
    await sink.waitFor(2, 20_000);
    // That delivery needed the new connection; a notification on it delivers the next one.
    assert.equal((await resend(api, 'alice', { orderNumber: 802003, dcvEmailAddress: 'admin@example.com' })).body, OK);
    await sink.waitFor(3, 20_000);
    await worker.outbox.idle();
    const states = await api.store.db.selectFrom('outbox').select('state').execute();
    assert.deepEqual(states.map((r) => r.state), ['delivered', 'delivered', 'delivered']);
  });
});

test('an API process caps its young generation unless the operator set it, in node\u2019s options or NODE_OPTIONS', () => {
  const cap = `--max-semi-space-size=${API_PROCESS_SEMI_SPACE_MIB}`;
  assert.deepEqual(apiProcessExecArgv([], undefined), [cap]);
  assert.deepEqual(apiProcessExecArgv(['--enable-source-maps'], '--max-old-space-size=512'), ['--enable-source-maps', cap]);
  assert.deepEqual(apiProcessExecArgv(['--max-semi-space-size=32'], undefined), ['--max-semi-space-size=32']);
  assert.deepEqual(apiProcessExecArgv(['--max_semi_space_size', '4'], undefined), ['--max_semi_space_size', '4']);
  assert.deepEqual(apiProcessExecArgv([], '--trace-warnings --max-semi-space-size=64'), []);
  assert.deepEqual(apiProcessExecArgv([], '--max-semi-space-sizes'), [cap], 'another word is not the option');
});

test('--processes or --delivery-process with a role other than all is refused with one line, before anything starts', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-roles-'));
  try {
    for (const args of [['--processes', '2', '--role', 'worker'], ['--delivery-process', '--role', 'api']]) {
      const r = runDcvd(dataDir, ['serve', ...args]);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, /--processes and --delivery-process run API processes beside a delivering primary: use them with --role all/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

/**
 * A `dcvd serve` process tree for one describe block: the alice orders seeded on the test database
 * (SQLite in a new data directory, or a PostgreSQL schema), an SMTP sink, the primary's poll at 30 s
 * (so that only a wake explains a quick delivery), and `args` on top; every JSON log line is kept.
 * Hooks are registered in the calling describe; the getters are valid in its tests.
 */
function processTree(args: string[], orders: number[], seed: (store: Store) => Promise<void> = async () => undefined) {
  let dir: string | undefined;
  let database: TestDatabase | undefined;
  let store: Store | undefined;
  let sink: SmtpSink | undefined;
  let serve: ServeProcess | undefined;
  const lines: Record<string, unknown>[] = [];
  // A new connection for every request: the primary hands connections to the API processes in turn.
  const fresh = new https.Agent({ keepAlive: false });
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dcvd-cluster-'));
    database = await createTestDatabase();
    sink = await startSmtpSink();
    store = openStore({ dataDir: dir, databaseUrl: database.url });
    await seedOrders(store, 'alice', 'www.example.com', orders);
    await seed(store);
    serve = await startServe(
      dir,
      [
        ...args,
        ...(database.url ? ['--database-url', database.url] : []),
        '--smtp-url', sink.url,
        '--outbox-poll-interval', '30s',
        '--mpic', 'off',
        '--log-level', 'info',
      ],
      { onLogLine: (line) => lines.push(line), timeoutMs: 120_000 },
    );
  });
  after(async () => {
    fresh.destroy();
    if (serve && serve.child.exitCode === null && serve.child.signalCode === null) serve.child.kill('SIGKILL');
    await serve?.exited;
    await store?.close();
    await sink?.close();
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    lines,
    fresh,
    get serve() {
      return serve!;
    },
    get store() {
      return store!;
    },
    get sink() {
      return sink!;
    },
    /** The pids that wrote request lines of API calls. */
    requestPids: () => new Set(lines.filter((l) => l.msg === 'request' && typeof l.endpoint === 'string').map((l) => l.pid as number)),
    /** Resends each order to admin@example.com at once; waits until the sink has them all and every row is delivered; fails on an error line. */
    async resendAll(ordersToSend: number[]) {
      const started = Date.now();
      const answers = await Promise.all(
        ordersToSend.map((orderNumber) =>
          serve!.post(RESEND_PATH, form({ loginName: 'alice', loginPassword: PASSWORD, orderNumber: String(orderNumber), dcvEmailAddress: 'admin@example.com' }), fresh),
        ),
      );
      assert.deepEqual(answers, ordersToSend.map(() => OK));
      const messages = await sink!.waitFor(ordersToSend.length, 20_000);
      // The primary polls every 30 s: a delivery this soon came from the API processes' wake.
      assert.ok(Date.now() - started < 20_000);
      assert.equal(new Set(messages.map((m) => m.parsed.messageId)).size, ordersToSend.length);
      await waitUntil('every row delivered', async () => (await store!.db.selectFrom('outbox').select('state').execute()).every((r) => r.state === 'delivered'));
      await sleep(300);
      assert.equal(sink!.messages.length, ordersToSend.length, 'each email once');
    },
    /** SIGTERM to the primary: exit code 0, and every API process that answered is gone. */
    async stopsOnSigterm() {
      const pids = [...this.requestPids()];
      serve!.child.kill('SIGTERM');
      assert.equal(await serve!.exited, 0);
      for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `process ${pid} is gone`);
      return pids;
    },
  };
}

describe('dcvd serve --processes 2', () => {
  const TOKEN = 'cluster-test-admin-token-0123456789abcdef';
  const ORDERS = Array.from({ length: 6 }, (_, i) => 802_001 + i);
  const tree = processTree(['--processes', '2', '--lockout-failures', '3', '--admin-listen', '127.0.0.1:0', '--admin-token', TOKEN], ORDERS, (store) =>
    seedOrders(store, 'mallory', 'shop.example.com', []),
  );
  const { lines, requestPids } = tree;
  const creds = { loginName: 'alice', loginPassword: PASSWORD };

  const calls = new Map<string, number>();
  const post = (path: string, body: Record<string, string>) => {
    calls.set(path, (calls.get(path) ?? 0) + 1);
    return tree.serve.post(path, form(body), tree.fresh);
  };

  test('requests over fresh connections are answered by both API processes', async () => {
    for (let i = 0; i < 12; i++) assert.match(await post(GET_PATH, { ...creds, domainName: 'www.example.com', product: '801' }), /^0\ndomain_name\twww\.example\.com\n/);
    await waitUntil('request lines from two API processes', async () => requestPids().size === 2, 10_000);
    assert.ok(![...requestPids()].includes(tree.serve.child.pid!), 'the primary answers no API call');
    // --api-nice (default 10): the API processes yield the CPU to the delivering primary.
    for (const pid of requestPids()) assert.equal(getPriority(pid), Math.min(19, getPriority(tree.serve.child.pid!) + 10), `niceness of API process ${pid}`);
  });

  test('a lockout made through the API processes holds in all of them', async () => {
    const wrong = { loginName: 'mallory', loginPassword: 'not the password' };
    const refused = /^-16\nIncorrect login details/;
    for (let i = 0; i < 3; i++) assert.match(await post(GET_PATH, { ...wrong, domainName: 'shop.example.com' }), refused);
    // Whichever process answers, the right password now meets the lock.
    for (let i = 0; i < 4; i++) assert.match(await post(GET_PATH, { loginName: 'mallory', loginPassword: PASSWORD, domainName: 'shop.example.com' }), refused);
    const row = await tree.store.db.selectFrom('accounts').select(['locked_until']).where('login', '=', 'mallory').executeTakeFirstOrThrow();
    assert.ok(Number(row.locked_until) > Date.now(), 'the account is locked in the database');
  });

  test('offers recorded by one process let any process queue; the primary delivers each email once, woken at once', async () => {
    await tree.resendAll(ORDERS);
  });

  test('/metrics on the primary sums the API processes\u2019 counters', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const port = Number(/internal API on https:\/\/127\.0\.0\.1:(\d+)\//.exec(tree.serve.stderr())?.[1]);
      https
        .get({ host: '127.0.0.1', port, path: '/metrics', ca: tree.serve.ca, servername: 'localhost', headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
    assert.equal(sampleSum(text, 'dcvd_api_requests_total', { endpoint: 'GetDCVEmailAddressList' }), calls.get(GET_PATH));
    assert.equal(sampleSum(text, 'dcvd_api_requests_total', { endpoint: 'ResendDCVEmail' }), ORDERS.length);
    // Read from the database once, not once per process.
    assert.equal(sampleSum(text, 'dcvd_outbox_emails', { state: 'delivered' }), ORDERS.length);
    assert.ok(!lines.some((l) => (l.level as number) >= 50), `error lines: ${JSON.stringify(lines.filter((l) => (l.level as number) >= 50))}`);
  });

  test('a killed API process is replaced, and the port keeps answering', async () => {
    const before = requestPids();
    assert.equal(before.size, 2);
    const victim = [...before][0]!;
    process.kill(victim, 'SIGKILL');
    await waitUntil('the primary to report the death', async () => lines.some((l) => l.msg === 'an API process exited; starting another'), 10_000);
    await waitUntil(
      'a request answered by the replacement',
      async () => {
        assert.match(await post(GET_PATH, { ...creds, domainName: 'www.example.com' }), /^0\n/);
        return [...requestPids()].some((pid) => !before.has(pid));
      },
      30_000,
    );
    const replacement = [...requestPids()].find((pid) => !before.has(pid))!;
    assert.notEqual(replacement, tree.serve.child.pid);
    process.kill(replacement, 0); // alive
  });

  test('SIGTERM stops the API processes, then the primary, exit code 0', async () => {
    // The two that answered first, the one killed above among them, and its replacement.
    assert.equal((await tree.stopsOnSigterm()).length, 3);
  });
});

describe('dcvd serve --delivery-process (one API process beside the delivering primary)', () => {
  const ORDERS = Array.from({ length: 4 }, (_, i) => 803_001 + i);
  const tree = processTree(['--delivery-process'], ORDERS);
  const creds = { loginName: 'alice', loginPassword: PASSWORD };

  test('one API process, not the primary, answers every call, at a lower priority', async () => {
    const { serve, lines } = tree;
    await waitUntil('the role line', async () => /this process \(pid \d+\) delivers/.test(serve.stderr()), 10_000);
    const apiPid = Number(/1 API process \(pid (\d+)\) serves the HTTPS port; this process \(pid \d+\) delivers/.exec(serve.stderr())?.[1]);
    assert.ok(apiPid > 0 && apiPid !== serve.child.pid, serve.stderr());
    for (let i = 0; i < 6; i++) {
      assert.match(await serve.post(GET_PATH, form({ ...creds, domainName: 'www.example.com' }), tree.fresh), /^0\ndomain_name\twww\.example\.com\n/);
    }
    await waitUntil('six request lines', async () => lines.filter((l) => l.msg === 'request').length >= 6, 10_000);
    assert.deepEqual([...tree.requestPids()], [apiPid]);
    assert.equal(getPriority(apiPid), Math.min(19, getPriority(serve.child.pid!) + 10));
    // Its young generation is capped (cluster.ts API_PROCESS_SEMI_SPACE_MIB); the primary's is node's.
    const nodeOptions = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    assert.ok(nodeOptions(apiPid).includes(`--max-semi-space-size=${API_PROCESS_SEMI_SPACE_MIB}`), nodeOptions(apiPid).join(' '));
    assert.ok(!nodeOptions(serve.child.pid!).some((o) => o.startsWith('--max-semi-space-size')));
  });

  test('the primary delivers what the API process queued at once, each email once', async () => {
    await tree.resendAll(ORDERS);
    assert.ok(!tree.lines.some((l) => (l.level as number) >= 50), `error lines: ${JSON.stringify(tree.lines.filter((l) => (l.level as number) >= 50))}`);
  });

  test('SIGTERM stops the API process, then the primary, exit code 0', async () => {
    assert.equal((await tree.stopsOnSigterm()).length, 1);
  });
});

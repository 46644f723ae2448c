/**
 * Processes of the ResendDCVEmail benchmark (bench/resend.ts), each with its
 * own CPU: `sink`, an SMTP server that counts what it accepts (no parsing),
 * and `dcvd`, the server with its outbox delivering to that sink — with
 * `processes` above 1 (or `deliveryProcess`) the primary of `serve --processes N`,
 * delivering, whose API processes run this file in mode `dcvd-api`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { defaultDcvEmailConfig, defaultServeConfig, splitsDelivery } from '../src/config.ts';
import { startServer } from '../src/server.ts';
import { createLogger } from '../src/log.ts';
import { AccountRepository } from '../src/accounts/repository.ts';
import { OfferedAddressRegistry } from '../src/registry/offered.ts';
import { OrderRepository } from '../src/orders/orders.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { DEFAULT_OUTBOX_FLOW } from '../src/queue/policy.ts';
import { cryptoRandom, systemClock } from '../src/deps.ts';
import { answerBenchmark, flowWaits, outboxBacklog, outboxStates, prefillStore, runBenchApiProcess, startBenchCluster } from './tree.ts';

const [mode, raw] = process.argv.slice(2);
const options = JSON.parse(raw ?? '{}') as { smtpUrl?: string; login?: string; password?: string; orderNumber?: number; orders?: number; processes?: number; deliveryProcess?: boolean; dataDir?: string; flowControl?: boolean; prefill?: number; databaseUrl?: string };
const send = (m: unknown) => process.send!(m);
let count: () => Promise<unknown>;
let backlog: () => Promise<unknown>;
let flow: () => Promise<unknown> = async () => ({});
let stop: () => Promise<void>;
let apiPids: () => number[] = () => [];

function dcvdConfig(dataDir: string) {
  const config = defaultServeConfig({
    listen: { host: '127.0.0.1', port: 0 },
    dataDir,
    databaseUrl: options.databaseUrl,
    logLevel: 'warn',
    processes: options.processes ?? 1,
    deliveryProcess: options.deliveryProcess === true,
    // Interval 0: one order can be resent as fast as the load comes (the default 60 s would answer -160).
    dcvEmail: defaultDcvEmailConfig({
      smtpUrl: options.smtpUrl,
      mailFrom: 'dcv@ca.example',
      resendIntervalMs: 0,
      outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 100 },
      // The default flow control (--outbox-max-lag 2s), or none: how fast resends queue when nothing holds them back.
      outboxFlow: options.flowControl === true ? { ...DEFAULT_OUTBOX_FLOW } : { ...DEFAULT_OUTBOX_FLOW, maxLagMs: 0 },
    }),
  });
  config.auth.ipFailures = 1_000_000;
  return config;
}

if (mode === 'sink') {
  let accepted = 0;
  const sink = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, _session, callback) {
      stream.resume();
      stream.on('end', () => {
        accepted += 1;
        callback(null, 'Queued');
      });
    },
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const port = (sink.server.address() as { port: number }).port;
  count = async () => accepted;
  stop = () => new Promise((r) => sink.close(() => r()));
  send({ port, ca: '' });
} else if (mode === 'dcvd-api') {
  await runBenchApiProcess(dcvdConfig(options.dataDir!));
} else if (mode === 'dcvd') {
  const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-bench-resend-'));
  let server: { https: { port: number }; cert: string; store: { db: Awaited<ReturnType<typeof startServer>>['store']['db'] }; metrics: { render(): Promise<string> }; close(): Promise<void> };
  const config = dcvdConfig(dataDir);
  if (splitsDelivery(config)) {
    const running = await startBenchCluster(import.meta.url, config, { ...options, dataDir });
    apiPids = () => running.pids();
    server = { https: running.https, cert: running.worker.cert, store: running.worker.store, metrics: running.worker.metrics, close: () => running.close() };
  } else {
    server = await startServer(config, { logger: createLogger('warn') });
  }
  const db = server.store.db;
  await new AccountRepository(db, systemClock).create(options.login!, { password: options.password!, permissions: ['auto-apply'] });
  const account = (await db.selectFrom('accounts').select('id').where('login', '=', options.login!).executeTakeFirstOrThrow()).id;
  const orders = new OrderRepository(db, systemClock, cryptoRandom);
  for (let i = 0; i < (options.orders ?? 1); i++) await orders.create({ accountId: account, domain: 'www.example.com', orderNumber: options.orderNumber! + i });
  await new OfferedAddressRegistry(db).record(account, 'www.example.com', [{ address: 'admin@example.com', level: 2, source: 'constructed' }], Date.now());
  // bench/growth.ts: a store as a long-running deployment leaves it.
  if (options.prefill) await prefillStore(db, account, options.prefill);
  count = () => outboxStates(db);
  // The queue while the load runs.
  backlog = () => outboxBacklog(db);
  flow = () => flowWaits(server.metrics);
  stop = async () => {
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
  send({ port: server.https.port, ca: server.cert });
} else {
  throw new Error(`unknown mode ${mode}`);
}

// An API process answers its primary only.
if (mode !== 'dcvd-api') answerBenchmark({ apiPids: () => apiPids(), stop: () => stop(), count: () => count(), backlog: () => backlog(), flow: () => flow() });

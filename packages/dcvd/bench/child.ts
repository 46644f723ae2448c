/**
 * A server under test, run by bench/lib.ts startChild(): `bare` (node:https, fixed body) or `dcvd`
 * (with `processes` above 1: the primary of `serve --processes N`, whose API processes run this file
 * in mode `dcvd-api`).
 */
import https from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { defaultDcvEmailConfig, defaultServeConfig } from '../src/config.ts';
import { DEFAULT_OUTBOX_FLOW } from '../src/queue/policy.ts';
import { startServer } from '../src/server.ts';
import { LISTEN_BACKLOG } from '../src/http/listener.ts';
import { createLogger } from '../src/log.ts';
import { parseResolvers } from '../src/dns/client.ts';
import { AccountRepository } from '../src/accounts/repository.ts';
import { systemClock } from '../src/deps.ts';
import { answerBenchmark, outboxBacklog, prefillStore, runBenchApiProcess, startBenchCluster, type OutboxBacklog } from './tree.ts';

const [mode, raw] = process.argv.slice(2);
const options = JSON.parse(raw ?? '{}') as {
  dnsServer?: string;
  login?: string;
  password?: string;
  databaseUrl?: string;
  dnsCacheMaxTtlMs?: number;
  /** API processes (`serve --processes`); 1 = one process doing everything. */
  processes?: number;
  /** Set by the primary for its API processes, so that all of them use one data directory. */
  dataDir?: string;
  /** false: `--outbox-max-lag 0` (bench/growth.ts measures the statements, not the .eml writes' pace). */
  flowControl?: boolean;
  /** bench/growth.ts: rows of everything that only grows, written before the load (bench/tree.ts prefillStore). */
  prefill?: number;
  /** `bare` only: CPU each answer spends first, in µs (bench/accept.ts: a saturated server's accept rate). */
  spinUs?: number;
};
const send = (m: unknown) => process.send!(m);
let stop: () => Promise<void>;
/** The pids of the API processes, when there are any (their CPU and RSS count with this process's). */
let apiPids: () => number[] = () => [];
/** The one-process server's outbox (AutoApplyOrder's emails); none in other modes. */
let backlog: () => Promise<OutboxBacklog | undefined> = async () => undefined;

function dcvdConfig(dataDir: string) {
  const config = defaultServeConfig({
    listen: { host: '127.0.0.1', port: 0 },
    dataDir,
    databaseUrl: options.databaseUrl,
    dnsServers: options.dnsServer ? parseResolvers(options.dnsServer) : undefined,
    ...(options.dnsCacheMaxTtlMs === undefined ? {} : { dnsCacheMaxTtlMs: options.dnsCacheMaxTtlMs }),
    processes: options.processes ?? 1,
    logLevel: 'warn',
    ...(options.flowControl === false ? { dcvEmail: defaultDcvEmailConfig({ outboxFlow: { ...DEFAULT_OUTBOX_FLOW, maxLagMs: 0 } }) } : {}),
  });
  // Raise the per-IP limit: the load comes from one address.
  config.auth.ipFailures = 1_000_000;
  return config;
}

if (mode === 'bare') {
  // Imported here: the API processes of `processes` run this file too, and dcvd loads selfsigned only to make a certificate.
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
  const body = '0\n';
  const server = https.createServer({ key: pems.private, cert: pems.cert, minVersion: 'TLSv1.2' }, (req, res) => {
    req.resume();
    req.on('end', () => {
      if (options.spinUs) {
        const until = performance.now() + options.spinUs / 1000;
        while (performance.now() < until);
      }
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 10_000;
  // The accept queue dcvd's listeners have (LISTEN_BACKLOG): the baseline differs from dcvd in its work, not its kernel queue.
  await new Promise<void>((r) => server.listen({ port: 0, host: '127.0.0.1', backlog: LISTEN_BACKLOG }, r));
  stop = () => new Promise((r) => server.close(() => r()));
  send({ port: (server.address() as AddressInfo).port, ca: pems.cert });
} else if (mode === 'dns') {
  // The test DNS server with the benchmark's records, in its own process so it does not share the load generator's CPU.
  const { startTestDnsServer } = await import('../test/support/dns-server.ts');
  const dns = await startTestDnsServer();
  dns.setTxt('_validation-contactemail.example.com', [['owner@example.net']]);
  dns.setTxt('_validation-contactemail.www.example.com', [['web@example.net']]);
  dns.setCaa('example.com', [
    { tag: 'issue', value: 'ca.example' },
    { tag: 'contactemail', value: 'caa@example.org' },
  ]);
  // The CAA climb's empty answers carry their zone's SOA, as a real resolver's negative answers do (RFC 2308).
  for (const name of ['www.example.com', 'com']) dns.setSoa(name, { ttl: 60, minimum: 60 });
  stop = () => dns.close();
  send({ port: dns.port, ca: '', info: { address: dns.address } });
} else if (mode === 'dcvd-api') {
  await runBenchApiProcess(dcvdConfig(options.dataDir!));
} else if (mode === 'dcvd' && (options.processes ?? 1) > 1) {
  const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-bench-'));
  const running = await startBenchCluster(import.meta.url, dcvdConfig(dataDir), { ...options, dataDir });
  const db = running.worker.store.db;
  if (options.login && options.password) {
    await new AccountRepository(db, systemClock).create(options.login, { password: options.password, permissions: ['auto-apply', 'voucher'] });
  }
  apiPids = () => running.pids();
  stop = async () => {
    await running.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
  send({ port: running.https.port, ca: running.worker.cert, info: { database: running.worker.store.dialect, processes: options.processes } });
} else if (mode === 'dcvd') {
  const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-bench-'));
  const server = await startServer(dcvdConfig(dataDir), { logger: createLogger('warn') });
  if (options.login && options.password) {
    await new AccountRepository(server.store.db, systemClock).create(options.login, { password: options.password, permissions: ['auto-apply', 'voucher'] });
    if (options.prefill) {
      const account = (await server.store.db.selectFrom('accounts').select('id').where('login', '=', options.login).executeTakeFirstOrThrow()).id;
      await prefillStore(server.store.db, account, options.prefill);
    }
  }
  backlog = () => outboxBacklog(server.store.db);
  stop = async () => {
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
  send({ port: server.https.port, ca: server.cert, info: { database: server.store.dialect } });
} else {
  throw new Error(`unknown bench child mode ${mode}`);
}

// An API process answers its primary only.
if (mode !== 'dcvd-api') answerBenchmark({ apiPids: () => apiPids(), stop: () => stop(), backlog: () => backlog() });

/** Starts a real dcvd server on loopback with a fresh data directory, and talks to it over HTTPS. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import http from 'node:http';
import { defaultServeConfig, type ServeConfig } from '../../src/config.ts';
import { startServer, type RunningServer, type ServerDeps } from '../../src/server.ts';
import { capturedLogger } from './logs.ts';
import { AccountRepository, type AccountInput } from '../../src/accounts/repository.ts';
import { createTestDatabase } from './database.ts';

export interface TestServer extends RunningServer {
  dataDir: string;
  /** undefined: SQLite in dataDir (a restarted server given the same two finds the same data). */
  databaseUrl: string | undefined;
  /** Every log line the server wrote, parsed. */
  logs: Record<string, unknown>[];
  accounts: AccountRepository;
  post(path: string, body: string | Buffer, opts?: RequestOptions): Promise<Response>;
  request(opts: RequestOptions & { path: string; body?: string | Buffer }): Promise<Response>;
  createAccount(login: string, input?: Partial<AccountInput> & { password?: string }): Promise<void>;
  stop(): Promise<void>;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | number>;
  /** Use the plain-HTTP listener. */
  plain?: boolean;
  /** Use the internal API's listener (HTTPS). */
  admin?: boolean;
  /** Send from this local address (loopback range). */
  localAddress?: string;
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export const PASSWORD = 'correct horse battery staple';
/** `webhooks.allowNetworks` for a test whose accounts' webhook receivers listen on loopback (src/webhooks/egress.ts). */
export const LOOPBACK = '127.0.0.1/32';

export async function startTestServer(
  overrides: Partial<ServeConfig> = {},
  deps: Pick<ServerDeps, 'clock' | 'timeouts'> = {},
): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-test-'));
  const { logger, lines: logs } = capturedLogger('debug');
  // SQLite in the data directory, or a schema of its own on PostgreSQL (DCVD_TEST_DATABASE=postgres).
  const database = await createTestDatabase();
  // No DNS cache unless a test asks for one: tests change the test DNS server's answers between calls (test/dns-cache.test.ts covers the cache).
  const config = defaultServeConfig({ listen: { host: '127.0.0.1', port: 0 }, dataDir, databaseUrl: database.url, dnsCacheMaxTtlMs: 0, ...overrides });
  const server = await startServer(config, { logger, ...deps });
  const accounts = new AccountRepository(server.store.db, deps.clock ?? { now: () => Date.now() });
  const agent = new https.Agent({ ca: server.cert, keepAlive: false });

  function request(opts: RequestOptions & { path: string; body?: string | Buffer }): Promise<Response> {
    const plain = opts.plain === true;
    const address = plain ? server.http : opts.admin ? server.admin : server.https;
    if (!address) throw new Error('no such listener');
    const lib = plain ? http : https;
    return new Promise((resolve, reject) => {
      const req = lib.request(
        {
          host: '127.0.0.1',
          port: address.port,
          path: opts.path,
          method: opts.method ?? 'POST',
          headers: opts.headers ?? {},
          ...(plain ? {} : { agent, servername: 'localhost' }),
          ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      if (opts.body !== undefined) req.end(opts.body);
      else req.end();
    });
  }

  return {
    ...server,
    dataDir,
    databaseUrl: database.url,
    logs,
    accounts,
    request,
    post(path, body, opts = {}) {
      return request({
        ...opts,
        path,
        body,
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(opts.headers ?? {}) },
      });
    },
    async createAccount(login, input = {}) {
      await accounts.create(login, { password: PASSWORD, permissions: ['auto-apply'], ...input });
    },
    async stop() {
      agent.destroy();
      await server.close();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const GET_PATH = '/products/!GetDCVEmailAddressList';
export const RESEND_PATH = '/products/!ResendDCVEmail';

/** A form body from pairs, in order (repeats allowed). */
export function form(pairs: [string, string][] | Record<string, string>): string {
  return new URLSearchParams(Array.isArray(pairs) ? pairs : Object.entries(pairs)).toString();
}

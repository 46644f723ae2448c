/** A sandbox (`dcvd sandbox` in-process, issue 17) on loopback ports 0, SQLite on disk or a PostgreSQL schema, and HTTPS helpers. */
import https from 'node:https';
import { capturedLogger } from './logs.ts';
import { startSandbox, type RunningSandbox, type SandboxOptions } from '../../src/sandbox/start.ts';
import { defaultDcvEmailConfig } from '../../src/config.ts';
import { DEFAULT_OUTBOX_POLICY } from '../../src/queue/leased.ts';
import { createTestDatabase } from './database.ts';

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: any;
}

export interface TestSandbox extends RunningSandbox {
  logs: Record<string, unknown>[];
  /** The internal API, with the admin token. */
  admin(method: string, path: string, body?: unknown): Promise<HttpResult>;
  /** The API listener (API, pages, viewer). */
  https(method: string, path: string, opts?: { body?: string; headers?: Record<string, string> }): Promise<HttpResult>;
  /** A reseller API call with the seeded account. */
  call(endpoint: string, params: Record<string, string | number>): Promise<HttpResult>;
  stop(): Promise<void>;
}

export function request(url: string, ca: string, method: string, opts: { body?: string; headers?: Record<string, string> } = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(url), { method, ca, headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
      });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export async function startTestSandbox(options: Partial<SandboxOptions> = {}): Promise<TestSandbox> {
  const { logger, lines: logs } = capturedLogger('debug');
  const database = await createTestDatabase();
  const running = await startSandbox({
    listen: { host: '127.0.0.1', port: 0 },
    adminListen: { host: '127.0.0.1', port: 0 },
    databaseUrl: database.url,
    logger: logger.child({ mode: 'sandbox' }),
    ...options,
    serve: { dcvEmail: defaultDcvEmailConfig({ outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50 } }), ...options.serve },
  });
  const ca = running.server.cert;
  const info = running.info;
  return {
    ...running,
    logs,
    admin(method, path, body) {
      const headers: Record<string, string> = { authorization: `Bearer ${info.adminToken}` };
      if (body !== undefined) headers['content-type'] = 'application/json';
      return request(`${info.adminApi}${path}`, ca, method, { headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    },
    https(method, path, opts = {}) {
      return request(`${info.api}${path}`, ca, method, opts);
    },
    call(endpoint, params) {
      const body = new URLSearchParams({ loginName: info.login, loginPassword: info.password, ...Object.fromEntries(Object.entries(params).map(([k, v]) => [k, String(v)])) }).toString();
      return request(`${info.api}/products/!${endpoint}`, ca, 'POST', { body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    },
    async stop() {
      await running.close();
      await database.drop();
    },
  };
}

/**
 * Starting a sandbox (issue 17): `dcvd serve` with sandbox defaults — a fresh
 * data folder, emails captured (never SMTP), the internal API on, a seeded
 * account and an admin token — and the one block of `key: value` lines that
 * tells an integrator where everything is.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { defaultServeConfig, SANDBOX_ADMIN_LISTEN, SANDBOX_LISTEN, SANDBOX_LOGIN, type HostPort, type ServeConfig, SANDBOX_INFO_FILE } from '../config.ts';
import { defaultMpicConfig } from '../mpic/corroborate.ts';
import { startServer, type RunningServer, type ServerDeps } from '../server.ts';
import { AccountRepository } from '../accounts/repository.ts';
import { defaultPublicUrl } from '../outbox/settings.ts';
import type { Logger } from '../log.ts';
import type { Clock } from '../deps.ts';
import { Sandbox, VIEWER_PATH } from './index.ts';

/** Where accounts' webhook URLs may lead in the sandbox besides the Internet: loopback (docs/SANDBOX.md). */
export const SANDBOX_WEBHOOK_NETWORKS = '127.0.0.0/8,::1/128';

export { SANDBOX_INFO_FILE } from '../config.ts';

export interface SandboxOptions {
  /** undefined: a fresh folder under the system's temporary directory, removed on close. */
  dataDir?: string | undefined;
  databaseUrl?: string | undefined;
  listen?: HostPort;
  adminListen?: HostPort;
  /** Listeners beyond loopback are refused unless this is true (and then a warning is logged). */
  allowRemote?: boolean;
  login?: string;
  /** undefined: generated. */
  password?: string | undefined;
  adminToken?: string | undefined;
  /** Refused: a sandbox never sends email. */
  smtpUrl?: string | undefined;
  /** Settings of `serve` beyond the sandbox's own (resolvers, timeouts …). */
  serve?: Partial<ServeConfig>;
  autoApproveAfterSeconds?: number | null;
  logger: Logger;
  /** The time the sandbox clock adds its offset to (tests pin it). */
  baseClock?: Clock;
  timeouts?: ServerDeps['timeouts'];
}

export interface SandboxInfo {
  api: string;
  adminApi: string;
  caCertificate: string;
  login: string;
  password: string;
  adminToken: string;
  mailViewer: string;
  dataDir: string;
}

export interface RunningSandbox {
  server: RunningServer;
  sandbox: Sandbox;
  info: SandboxInfo;
  close(): Promise<void>;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const secret = (bytes: number) => randomBytes(bytes).toString('base64url');

function url(address: AddressInfo, path = ''): string {
  return `${defaultPublicUrl(address)}${path}`;
}

export async function startSandbox(options: SandboxOptions): Promise<RunningSandbox> {
  if (options.smtpUrl !== undefined && options.smtpUrl !== '') {
    throw new Error('the sandbox never sends email: remove --smtp-url / DCVD_SMTP_URL (emails are captured for the mail viewer)');
  }
  const listen = options.listen ?? SANDBOX_LISTEN;
  const adminListen = options.adminListen ?? SANDBOX_ADMIN_LISTEN;
  const remote = [listen, adminListen].filter((l) => !isLoopback(l.host));
  if (remote.length > 0 && options.allowRemote !== true) {
    throw new Error(`the sandbox listens on loopback only; ${remote.map((l) => l.host).join(', ')} is not (add --allow-remote to mean it)`);
  }
  const logger = options.logger;
  if (remote.length > 0) logger.warn({ sandbox: true, hosts: remote.map((l) => l.host) }, 'SANDBOX listening beyond loopback: its mail viewer and switches have no authentication beyond the admin token');
  const fresh = options.dataDir === undefined || options.dataDir === '';
  const dataDir = fresh ? mkdtempSync(join(tmpdir(), 'dcvd-sandbox-')) : resolve(options.dataDir!);
  const adminToken = options.adminToken ?? secret(32);
  const password = options.password ?? secret(18);
  const login = options.login ?? SANDBOX_LOGIN;
  const sandbox = new Sandbox({ dataDir, ...(options.baseClock ? { baseClock: options.baseClock } : {}) });
  const config = defaultServeConfig({
    ...options.serve,
    listen,
    adminListen,
    adminToken,
    dataDir,
    databaseUrl: options.databaseUrl,
    dcvEmail: { ...defaultServeConfig().dcvEmail, ...options.serve?.dcvEmail, smtpUrl: undefined },
    // No Open MPIC service can see the sandbox's DNS overrides: DNS-found addresses are selected on
    // the word of the (overridden) resolver, as `--mpic off` does (not BR 3.2.2.9-compliant; a test server).
    mpic: options.serve?.mpic ?? defaultMpicConfig({ mode: 'off' }),
    // An integrator's webhook receiver runs beside its tests: accounts' URLs may reach loopback, over http:// too.
    webhooks: { ...options.serve?.webhooks, allowNetworks: options.serve?.webhooks?.allowNetworks ?? SANDBOX_WEBHOOK_NETWORKS },
  });
  let server: RunningServer;
  try {
    server = await startServer(config, { logger, clock: sandbox.clock, sandbox, ...(options.timeouts ? { timeouts: options.timeouts } : {}) });
  } catch (err) {
    if (fresh) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  try {
    // The seeded account: created, or given the password (and permissions) again on a kept data folder.
    const accounts = new AccountRepository(server.store.db, sandbox.clock);
    const seed = { password, permissions: ['auto-apply' as const, 'voucher' as const] };
    if (await accounts.find(login)) await accounts.update(login, { ...seed, allowedNetworks: [] });
    else await accounts.create(login, seed);
    if (options.autoApproveAfterSeconds !== undefined) sandbox.setAutoApprove(options.autoApproveAfterSeconds);
  } catch (err) {
    await server.close();
    if (fresh) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const info: SandboxInfo = {
    api: url(server.https),
    adminApi: url(server.admin!),
    caCertificate: server.certPath,
    login,
    password,
    adminToken,
    mailViewer: url(server.https, VIEWER_PATH),
    dataDir,
  };
  // For `dcvd sandbox dns …` and scripts: private, like the data folder's secret key.
  writeFileSync(join(dataDir, SANDBOX_INFO_FILE), `${JSON.stringify({ adminApi: info.adminApi, adminToken, caCertificate: info.caCertificate, api: info.api, mailViewer: info.mailViewer })}\n`, { mode: 0o600 });
  logger.warn({ sandbox: true, api: info.api, mailViewer: info.mailViewer, dataDir }, 'SANDBOX mode: emails are captured, never sent; the clock, DNS and API errors are controllable');
  let closing: Promise<void> | undefined;
  return {
    server,
    sandbox,
    info,
    close() {
      closing ??= (async () => {
        await server.close();
        if (fresh) rmSync(dataDir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}

/** The block `dcvd sandbox` prints: one `key: value` per line. */
export function formatSandboxInfo(info: SandboxInfo): string {
  return [
    `api: ${info.api}`,
    `admin api: ${info.adminApi}`,
    `ca certificate: ${info.caCertificate}`,
    `login: ${info.login}`,
    `password: ${info.password}`,
    `admin token: ${info.adminToken}`,
    `mail viewer: ${info.mailViewer}`,
    `data dir: ${info.dataDir}`,
  ].join('\n');
}

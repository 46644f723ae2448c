/** The `dcvd` command as a user runs it (CONTRACT §9): real processes, env variables, --json, graceful shutdown. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import { connect } from 'node:net';
import { BIN, runDcvd } from './support/cli.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dcvd-cli-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const dcvd = (args: string[], opts: { input?: string; env?: Record<string, string> } = {}) => runDcvd(dir, args, opts);

test('account create / update / lock / unlock / list with --json', () => {
  const created = dcvd(['account', 'create', '--login', 'cli-user', '--password-stdin', '--permission', 'auto-apply', '--allow-ip', '10.0.0.0/8', '--json'], {
    input: 'a long enough password\n',
  });
  assert.equal(created.code, 0, created.stderr);
  const view = JSON.parse(created.stdout);
  assert.equal(view.login, 'cli-user');
  assert.deepEqual(view.permissions, ['auto-apply']);
  assert.deepEqual(view.allowedNetworks, ['10.0.0.0/8']);
  assert.equal(view.password_hash, undefined);

  // An empty network (a shell variable that was empty) is an error, never "any source"; nothing changes.
  for (const env of [{ DCVD_ALLOW_IP: '' }, { DCVD_ALLOW_IP: '10.0.0.0/8,' }]) {
    const slip = dcvd(['account', 'update', '--login', 'cli-user', '--json'], { env });
    assert.notEqual(slip.code, 0, JSON.stringify(env));
    assert.match(slip.stderr, /an empty entry/);
  }
  const emptyFlag = dcvd(['account', 'update', '--login', 'cli-user', '--allow-ip', '']);
  assert.notEqual(emptyFlag.code, 0);
  assert.deepEqual(JSON.parse(dcvd(['account', 'list', '--json']).stdout).find((a: { login: string }) => a.login === 'cli-user').allowedNetworks, ['10.0.0.0/8']);

  // Options from the environment, repeatable ones comma-separated.
  const updated = dcvd(['account', 'update', '--json'], { env: { DCVD_LOGIN: 'cli-user', DCVD_PERMISSION: 'auto-apply,voucher', DCVD_PASSWORD_EXPIRES: '2030-01-31' } });
  assert.equal(updated.code, 0, updated.stderr);
  const u = JSON.parse(updated.stdout);
  assert.deepEqual(u.permissions, ['auto-apply', 'voucher']);
  assert.equal(u.passwordExpiresAt, '2030-01-31T00:00:00.000Z');

  assert.equal(JSON.parse(dcvd(['account', 'lock', '--login', 'cli-user', '--json']).stdout).locked, true);
  assert.equal(JSON.parse(dcvd(['account', 'unlock', '--login', 'cli-user', '--json']).stdout).locked, false);
  const list = JSON.parse(dcvd(['account', 'list', '--json']).stdout);
  assert.equal(list.length, 1);
  assert.match(dcvd(['account', 'list']).stdout, /cli-user {2}\(active\)/);
});

test('account create/update do not take an account\u2019s webhook URL from DCVD_WEBHOOK_URL, serve\u2019s global URL', () => {
  const env = { DCVD_WEBHOOK_URL: 'https://hooks.example.com/global' };
  const created = dcvd(['account', 'create', '--login', 'env-hook', '--password-stdin', '--json'], { input: 'a long enough password\n', env });
  assert.equal(created.code, 0, created.stderr);
  const view = JSON.parse(created.stdout);
  assert.equal(view.webhookUrl ?? null, null, 'no URL of its own');
  assert.equal(view.webhookSecret, undefined, 'no secret made');
  const updated = dcvd(['account', 'update', '--login', 'env-hook', '--json'], { env });
  assert.equal(JSON.parse(updated.stdout).webhookUrl ?? null, null);
  // The flag still sets it.
  const own = dcvd(['account', 'update', '--login', 'env-hook', '--webhook-url', 'https://hooks.example.com/own', '--json'], { env });
  assert.equal(own.code, 0, own.stderr);
  assert.equal(JSON.parse(own.stdout).webhookUrl, 'https://hooks.example.com/own');
  assert.doesNotMatch(dcvd(['account', 'create', '--help']).stdout, /DCVD_WEBHOOK_URL/);
});

test('errors are one line on stderr with exit code 1', () => {
  const weak = dcvd(['account', 'create', '--login', 'weak', '--password-stdin'], { input: 'short' });
  assert.equal(weak.code, 1);
  assert.equal(weak.stderr, 'dcvd: password must be at least 12 characters\n');
  const missing = dcvd(['account', 'lock', '--login', 'ghost']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no account "ghost"/);
  const badPerm = dcvd(['account', 'create', '--login', 'p', '--password-stdin', '--permission', 'root'], { input: 'a long enough password' });
  assert.equal(badPerm.code, 1);
  assert.match(badPerm.stderr, /unknown permission "root"/);
  const badDate = dcvd(['account', 'update', '--login', 'cli-user', '--password-expires', 'tomorrow']);
  assert.equal(badDate.code, 1);
  assert.match(badDate.stderr, /expected an ISO date/);
});

test('migrate --json and --help name the environment variables', () => {
  const m = JSON.parse(dcvd(['migrate', '--json']).stdout);
  assert.deepEqual(m.applied, []);
  const help = dcvd(['serve', '--help']).stdout;
  for (const v of [
    'DCVD_LISTEN', 'DCVD_HTTP_LISTEN', 'DCVD_TRUST_PROXY', 'DCVD_TLS_CERT', 'DCVD_TLS_KEY', 'DCVD_DATA_DIR', 'DCVD_DATABASE_URL', 'DCVD_BODY_LIMIT',
    'DCVD_IPV6_PREFIX', 'DCVD_WEBHOOK_ALLOW_NETWORKS', 'DCVD_WEBHOOK_TIMEOUT', 'DCVD_WEBHOOK_RECEIVER_CONCURRENCY', 'DCVD_WEBHOOK_GLOBAL_CONCURRENCY',
  ]) {
    assert.ok(help.includes(v), v);
  }
  // The per-IP limits' IPv6 grouping is the server's option (it sat on `account create`, where it did nothing).
  assert.match(help, /--ipv6-prefix <bits>[\s\S]*?\(default:\s+64,/);
  assert.doesNotMatch(dcvd(['account', 'create', '--help']).stdout, /ipv6-prefix/);
  const tooLong = dcvd(['serve', '--ipv6-prefix', '129']);
  assert.equal(tooLong.code, 1);
  assert.match(tooLong.stderr, /at most 128 bits/);
  const noGlobalShare = dcvd(['serve', '--webhook-global-concurrency', '0']);
  assert.equal(noGlobalShare.code, 1);
  assert.match(noGlobalShare.stderr, /--webhook-global-concurrency <n>' argument '0' is invalid/);
  const emptyNetwork = dcvd(['serve', '--webhook-allow-networks', '10.0.0.0/8,']);
  assert.equal(emptyNetwork.code, 1);
  assert.match(emptyNetwork.stderr, /an empty entry/);
});

/** Waits (up to 2 min: a loaded machine) for a started dcvd's "HTTPS on" line; its port and what it has printed on stderr so far. */
async function listening(child: ChildProcess): Promise<{ port: number; stderr: () => string }> {
  let text = '';
  child.stderr!.on('data', (c: Buffer) => (text += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no start: ${text}`)), 120_000);
    child.stderr!.on('data', () => {
      if (/HTTPS on/.test(text)) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  const port = Number(/https:\/\/127\.0\.0\.1:(\d+)\//.exec(text)?.[1]);
  assert.ok(port > 0, text);
  return { port, stderr: () => text };
}

test('serve: listens, answers, and finishes an in-flight request on SIGTERM', async () => {
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', '--log-level', 'warn'], {
    env: { ...process.env, DCVD_DATA_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const { port, stderr } = await listening(child);
  const certPath = /certificate: (\S+)\)/.exec(stderr())?.[1];
  assert.ok(port > 0 && certPath);
  // Where the emails go, so that a first run finds its .eml files.
  for (let i = 0; i < 1200 && !stderr().includes('dcvd: DCV emails'); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(stderr().includes(`dcvd: DCV emails are written as .eml files to ${join(dir, 'outbox')}/ (no --smtp-url)`), stderr());
  const ca = readFileSync(certPath, 'utf8');

  // A request whose body arrives slowly is in flight when SIGTERM comes.
  const answer = new Promise<string>((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/products/!ResendDCVEmail', ca, servername: 'localhost', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '11' } },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
    req.write('loginName=');
    setTimeout(() => {
      child.kill('SIGTERM');
      setTimeout(() => req.end('x'), 300);
    }, 300);
  });
  assert.equal(await answer, 'errorCode=-3&errorMessage=The+%27loginPassword%27+argument+is+missing%21&errorItem=loginPassword');
  assert.equal(await exited, 0);
  assert.match(stderr(), /SIGTERM, finishing in-flight requests/);
});

test('npm start: a SIGTERM to npm (what a service manager or `kill $!` sends) stops dcvd too, not only npm', async (t) => {
  const root = new URL('../../..', import.meta.url).pathname;
  // Its own process group, so that whatever it left running is killed at the end, pass or fail.
  const npm = spawn('npm', ['start', '--', '--listen', '127.0.0.1:0', '--log-level', 'warn', '--data-dir', join(dir, 'npm-start')], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const group = npm.pid!;
  t.after(() => {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // Nothing left in it.
    }
  });
  const npmExited = new Promise<void>((resolve) => npm.on('exit', () => resolve()));
  const { port, stderr } = await listening(npm);
  npm.kill('SIGTERM');
  await npmExited;
  // dcvd finishes and closes its listener; before `exec` in the script, sh died and left it serving.
  const refused = async (): Promise<boolean> =>
    new Promise((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(false);
      });
      socket.on('error', () => resolve(true));
    });
  let closed = false;
  for (let i = 0; i < 600 && !closed; i++) {
    closed = await refused();
    if (!closed) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(closed, `dcvd still listens on ${port} after npm was stopped`);
  assert.match(stderr(), /SIGTERM, finishing in-flight requests/);
});

/**
 * docs/SANDBOX.md, step by step (issue 17): `dcvd sandbox` as a real process,
 * its block of settings saved to a file, then the documented example test
 * (examples/sandbox.test.ts, TypeScript with @dcvd/client) and the curl
 * version (examples/sandbox-curl.sh) run against it. DNS goes to a test
 * server on loopback, never beyond.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN } from './support/cli.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';

const PACKAGE = fileURLToPath(new URL('..', import.meta.url));

/** This process's environment for a child, without node:test's own variables (a nested runner would report to us, not print). */
function withoutTestRunner(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  return env;
}
let dns: TestDnsServer;
let child: ChildProcess;
let stdout = '';
let stderr = '';
let work: string;
let info: Record<string, string>;

before(async () => {
  dns = await startTestDnsServer();
  work = mkdtempSync(join(tmpdir(), 'dcvd-sandbox-example-'));
  child = spawn(process.execPath, [BIN, 'sandbox', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--dns-servers', dns.address], {
    env: withoutTestRunner({ DCVD_DATA_DIR: '' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no settings block within 120 s: ${stderr.slice(-2000)}`)), 120_000);
    const check = () => {
      if (/^data dir: .+\n/m.test(stdout)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.on('exit', (code) => reject(new Error(`sandbox exited (${code}): ${stderr.slice(-2000)}`)));
  });
  info = Object.fromEntries(stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
  writeFileSync(join(work, 'sandbox.txt'), stdout);
});

after(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  await dns?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the settings block: one key: value per line, the log on standard error says sandbox', async () => {
  assert.deepEqual(Object.keys(info), ['api', 'admin api', 'ca certificate', 'login', 'password', 'admin token', 'mail viewer', 'data dir']);
  assert.match(info.api!, /^https:\/\/localhost:\d+$/);
  assert.equal(info['mail viewer'], `${info.api}/sandbox/mail`);
  assert.equal(info.login, 'sandbox');
  assert.ok(existsSync(info['ca certificate']!));
  // The log is written asynchronously: its "SANDBOX mode" line may reach stderr after the block reached stdout.
  for (let waited = 0; !/SANDBOX mode/.test(stderr) && waited < 30_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
  assert.match(stderr, /SANDBOX mode/);
  for (const line of stderr.split('\n').filter((l) => l.startsWith('{'))) assert.equal(JSON.parse(line).mode, 'sandbox', line);
});

test('the TypeScript example of SANDBOX.md passes', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', 'examples/sandbox.test.ts'], {
    cwd: PACKAGE,
    env: withoutTestRunner({ DCVD_SANDBOX_INFO: join(work, 'sandbox.txt'), NODE_EXTRA_CA_CERTS: info['ca certificate']! }),
    encoding: 'utf8',
    timeout: 300_000,
  });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /# pass 1/);
});

test('the curl example of SANDBOX.md passes', { skip: existsSync('/usr/bin/curl') ? false : 'curl is not installed' }, () => {
  const r = spawnSync('bash', ['examples/sandbox-curl.sh'], { cwd: PACKAGE, env: { ...process.env, DCVD_SANDBOX_INFO: join(work, 'sandbox.txt') }, encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^order \d+ validated$/m);
});

test('the command refuses SMTP (DCVD_SMTP_URL too) and a listener beyond loopback without --allow-remote', () => {
  const run = (args: string[], env: Record<string, string>) => spawnSync(process.execPath, [BIN, 'sandbox', ...args], { env: withoutTestRunner(env), encoding: 'utf8', timeout: 120_000 });
  let r = run(['--admin-listen', '127.0.0.1:0', '--listen', '127.0.0.1:0'], { DCVD_SMTP_URL: 'smtp://127.0.0.1:2525' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^dcvd: the sandbox never sends email/m);
  assert.equal(r.stdout, '');
  r = run(['--listen', '0.0.0.0:0', '--admin-listen', '127.0.0.1:0'], {});
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^dcvd: the sandbox listens on loopback only; 0\.0\.0\.0 is not \(add --allow-remote to mean it\)/m);
});

test('dcvd sandbox dns set|list|clear talk to the running sandbox; SIGTERM stops it and removes its fresh data folder', async () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, 'sandbox', 'dns', ...args, '--data-dir', info['data dir']!], { encoding: 'utf8', timeout: 120_000 });
  let r = run('set', 'example.org', 'CAA', 'contactemail ops@example.org', '0 issue "ca.example"');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'set CAA example.org: 0 contactemail "ops@example.org", 0 issue "ca.example"\n');
  r = run('set', '_validation-contactemail.example.org', 'TXT', '--failure', 'timeout');
  assert.equal(r.status, 0, r.stderr);
  r = run('set', 'bad_name.org', 'TXT', 'a@b.org');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^dcvd: name: "bad_name.org" is not a valid domain name/);
  r = run('list', '--json');
  const listed = new Map((JSON.parse(r.stdout) as { type: string; name: string; failure: string | null; records: unknown[] }[]).map((o) => [`${o.type} ${o.name}`, o]));
  assert.equal(listed.get('TXT _validation-contactemail.example.org')?.failure, 'timeout');
  assert.deepEqual(listed.get('CAA example.org')?.records, [
    { flags: 0, tag: 'contactemail', value: 'ops@example.org' },
    { flags: 0, tag: 'issue', value: 'ca.example' },
  ]);
  // DCVD_* variables exported for serve or dcvd client do not override what --data-dir finds; a flag does.
  const env = { ...process.env, DCVD_ADMIN_URL: 'https://127.0.0.1:1/', DCVD_ADMIN_TOKEN: 'x'.repeat(40), DCVD_CA_FILE: '/nonexistent/ca.pem' };
  const list = (...extra: string[]) => spawnSync(process.execPath, [BIN, 'sandbox', 'dns', 'list', '--data-dir', info['data dir']!, ...extra], { encoding: 'utf8', timeout: 120_000, env });
  r = list();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /CAA example\.org/);
  r = list('--admin-token', 'y'.repeat(40));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^dcvd: wrong token/m);
  r = run('clear');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^cleared \d+ override\(s\)\n$/);
  assert.equal(run('list').stdout, 'no overrides\n');

  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.ok(!existsSync(info['data dir']!), 'the fresh data folder is removed');
});

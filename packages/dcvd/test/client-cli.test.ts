/**
 * `dcvd client get-dcv-emails`, `resend` and `status` as a user runs them:
 * real processes against a real dcvd over HTTPS, credentials from the
 * environment or standard input, never from argv.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../src/deps.ts';
import { BIN, type CliResult } from './support/cli.ts';
import { PASSWORD, startTestServer, type TestServer } from './support/server.ts';
import { createOrder } from './support/dcv.ts';
import { OrderRepository } from '../src/orders/orders.ts';
import { cryptoRandom } from '../src/deps.ts';

const clock = new ManualClock(Date.UTC(2026, 10, 23, 12));
let s: TestServer;
let dir: string;
let caFile: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dcvd-client-cli-'));
  s = await startTestServer({ httpListen: { host: '127.0.0.1', port: 0 } }, { clock });
  caFile = join(dir, 'localhost.crt');
  writeFileSync(caFile, s.cert);
  await s.createAccount('alice');
});
after(async () => {
  await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The server runs in this process, so the command must not block it: an asynchronous spawn. */
function dcvd(args: string[], opts: { input?: string; env?: Record<string, string | undefined> } = {}): Promise<CliResult> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    DCVD_DATA_DIR: dir,
    DCVD_BASE_URL: `https://127.0.0.1:${s.https.port}`,
    DCVD_LOGIN_NAME: 'alice',
    DCVD_LOGIN_PASSWORD: PASSWORD,
    DCVD_CA_FILE: caFile,
    ...opts.env,
  };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

const five = (d: string) => ['admin', 'administrator', 'hostmaster', 'postmaster', 'webmaster'].map((l) => `${l}@${d}`);

test('get-dcv-emails: the list as readable lines, and with --json as one JSON value; options from the environment', async () => {
  const text = await dcvd(['client', 'get-dcv-emails', '--domain', 'www.example.com', '--product', '801']);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stderr, '');
  assert.equal(
    text.stdout,
    ['www.example.com', ...five('example.com').map((a) => `  level 2  ${a}`), ...five('www.example.com').map((a) => `  level 3  ${a}`)].join('\n') + '\n',
  );
  const json = await dcvd(['client', 'get-dcv-emails', '--format', 'json', '--json'], { env: { DCVD_DOMAIN: 'example.com', DCVD_PRODUCT: '803' } });
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), { domainName: 'example.com', levels: { 2: five('example.com') }, emails: five('example.com'), whoisEmails: [], extra: {} });
});

test('the password: from standard input with --password-stdin (it wins over the environment), never from argv', async () => {
  const stdin = await dcvd(['client', 'get-dcv-emails', '--domain', 'example.com', '--product', '801', '--password-stdin'], {
    input: `${PASSWORD}\n`,
    env: { DCVD_LOGIN_PASSWORD: 'a wrong password here' },
  });
  assert.equal(stdin.code, 0, stdin.stderr);
  assert.match(stdin.stdout, /^example\.com\n/);

  const none = await dcvd(['client', 'get-dcv-emails', '--domain', 'example.com'], { env: { DCVD_LOGIN_PASSWORD: undefined } });
  assert.equal(none.code, 1);
  assert.equal(none.stderr, 'dcvd: no password: set DCVD_LOGIN_PASSWORD or pass --password-stdin and write it to standard input\n');

  for (const flag of ['--password', '--login-password']) {
    const argv = await dcvd(['client', 'resend', '--order', '1', flag, PASSWORD]);
    assert.equal(argv.code, 1);
    assert.match(argv.stderr, new RegExp(`unknown option '${flag}'`));
  }
});

test('an API error: one line on stderr, exit 1, the error as JSON with --json, no password anywhere', async () => {
  const wrong = 'this is not the right password';
  const r = await dcvd(['client', 'get-dcv-emails', '--domain', 'example.com', '--product', '801', '--json'], { env: { DCVD_LOGIN_PASSWORD: wrong } });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'dcvd: GetDCVEmailAddressList answered -16: Incorrect login details, account is locked, password has expired or your source IP is blocked.\n');
  assert.deepEqual(JSON.parse(r.stdout), { errorCode: -16, errorMessage: 'Incorrect login details, account is locked, password has expired or your source IP is blocked.' });
  assert.ok(!`${r.stdout}${r.stderr}`.includes(wrong));

  const invalid = await dcvd(['client', 'get-dcv-emails', '--domain', 'example.com', '--product', '287']);
  assert.equal(invalid.code, 1);
  assert.equal(invalid.stderr, "dcvd: GetDCVEmailAddressList answered -4: The value of the 'product' argument is invalid! (errorItem: product)\n");
  assert.equal(invalid.stdout, '');
});

test('resend: --order with --email, --base-order, -160 too soon, -4 for an unknown order; one of the two is needed', async () => {
  await createOrder(s, clock, 'alice', { domain: 'cli.example.org', orderNumber: 6100001, baseOrderNumber: 6100000 });
  const offered = await dcvd(['client', 'get-dcv-emails', '--domain', 'cli.example.org', '--product', '801', '--json']);
  const address = JSON.parse(offered.stdout).levels[3][0] as string;
  const ok = await dcvd(['client', 'resend', '--order', '6100001', '--email', address]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, `ResendDCVEmail accepted for order 6100001 to ${address}\n`);

  const soon = await dcvd(['client', 'resend', '--base-order', '6100000', '--json']);
  assert.equal(soon.code, 1);
  assert.equal(soon.stderr, 'dcvd: ResendDCVEmail answered -160: The attempt to resend DCV emails did not succeed.\n');
  assert.deepEqual(JSON.parse(soon.stdout), { errorCode: -160, errorMessage: 'The attempt to resend DCV emails did not succeed.' });
  clock.advance(24 * 3600_000);
  const later = await dcvd(['client', 'resend', '--json'], { env: { DCVD_BASE_ORDER: '6100000' } });
  assert.equal(later.code, 0, later.stderr);
  assert.deepEqual(JSON.parse(later.stdout), { errorCode: 0 });

  const unknown = await dcvd(['client', 'resend', '--order', '999999999', '--template', '3']);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stderr, "dcvd: ResendDCVEmail answered -4: The value of the 'orderNumber' argument is invalid! (errorItem: orderNumber)\n");

  const neither = await dcvd(['client', 'resend']);
  assert.equal(neither.code, 1);
  assert.equal(neither.stderr, 'dcvd: give --order N or --base-order N\n');
  const bad = await dcvd(['client', 'resend', '--order', '12x']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /expected a whole number from 1 to 2\^53-1, got "12x"/);
});

test('status: CollectSSL by --order or --base-order, as lines or --json; -20 for a cancelled order, -4 for an unknown one; one reference is needed', async () => {
  await createOrder(s, clock, 'alice', { domain: 'status.example.org', orderNumber: 6200001, baseOrderNumber: 6200000 });
  const lines = await dcvd(['client', 'status', '--order', '6200001']);
  assert.equal(lines.code, 0, lines.stderr);
  // No email has gone out for it yet: DCV not started.
  assert.equal(lines.stdout, 'order 6200001\n  status          0 (being processed)\n  DCV             0 (not started)\n  domain          status.example.org\n');
  const json = await dcvd(['client', 'collect-ssl', '--base-order', '6200000', '--json']);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), { statusCode: 0, orderNumber: 6200001, dcvStatus: 0, fqdn: 'status.example.org', extra: {}, lines: [] });

  await new OrderRepository(s.store.db, clock, cryptoRandom).cancel(6200001);
  const cancelled = await dcvd(['client', 'status', '--order', '6200001', '--json']);
  assert.equal(cancelled.code, 1);
  assert.match(cancelled.stderr, /^dcvd: CollectSSL answered -20: /);
  assert.equal(JSON.parse(cancelled.stdout).errorCode, -20);

  const unknown = await dcvd(['client', 'status', '--certificate-id', '12345678']);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stderr, "dcvd: CollectSSL answered -4: The value of the 'certificateID' argument is invalid! (errorItem: certificateID)\n");
  const none = await dcvd(['client', 'status']);
  assert.equal(none.code, 1);
  assert.equal(none.stderr, 'dcvd: give --order N, --certificate-id N or --base-order N\n');
  assert.ok((await dcvd(['client', 'status', '--help'])).stdout.includes('DCVD_CERTIFICATE_ID'));
});

test('status: a server\u2019s answer reaches the terminal without its controls (any base URL may answer)', async () => {
  const hostile = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded' }).end('errorCode=0&orderNumber=5&dcvStatus=1&fqdn=a%1B%5B2J%C2%9B31mb%E2%80%AEc.example');
  });
  await new Promise<void>((r) => hostile.listen(0, '127.0.0.1', r));
  try {
    const out = await dcvd(['client', 'status', '--order', '5', '--base-url', `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /domain {10}a\ufffd\[2J\ufffd31mb\ufffdc\.example\n$/);
  } finally {
    await new Promise((r) => hostile.close(r));
  }
});

test('TLS: an untrusted certificate fails with a hint; --insecure works with a warning; http: warns and gets -1', async () => {
  const untrusted = await dcvd(['client', 'get-dcv-emails', '--domain', 'example.com', '--product', '801'], { env: { DCVD_CA_FILE: undefined } });
  assert.equal(untrusted.code, 1);
  assert.match(untrusted.stderr, /self[- ]signed certificate.*pass --ca-file DATA_DIR\/tls\/localhost\.crt\)\n$/);

  const insecure = await dcvd(['client', 'get-dcv-emails', '--domain', 'example.com', '--product', '801', '--insecure'], { env: { DCVD_CA_FILE: undefined } });
  assert.equal(insecure.code, 0, insecure.stderr);
  assert.match(insecure.stderr, /^dcvd: warning: --insecure: the server\u2019s certificate is not verified/);
  assert.match(insecure.stdout, /^example\.com\n {2}level 2 {2}admin@example\.com\n/);

  const plain = await dcvd(['client', 'resend', '--order', '1', '--base-url', `http://127.0.0.1:${s.http!.port}`]);
  assert.equal(plain.code, 1);
  assert.match(plain.stderr, /warning: an http: base URL sends the password unencrypted/);
  assert.match(plain.stderr, /dcvd: ResendDCVEmail answered -1: Request was not made over https!\n$/);
});

test('--help names every option\u2019s DCVD_* variable and where the password comes from', async () => {
  const get = (await dcvd(['client', 'get-dcv-emails', '--help'])).stdout;
  for (const v of ['DCVD_BASE_URL', 'DCVD_LOGIN_NAME', 'DCVD_PASSWORD_STDIN', 'DCVD_CA_FILE', 'DCVD_INSECURE', 'DCVD_TIMEOUT', 'DCVD_DOMAIN', 'DCVD_PRODUCT', 'DCVD_FORMAT', 'DCVD_RETRIES', 'DCVD_JSON']) {
    assert.ok(get.includes(v), v);
  }
  assert.match(get, /default:\s+"https:\/\/secure\.trust-provider\.com"/);
  assert.match(get, /read from DCVD_LOGIN_PASSWORD or, with --password-stdin, from standard input; never from the command line/);
  const resend = (await dcvd(['client', 'resend', '--help'])).stdout;
  for (const v of ['DCVD_ORDER', 'DCVD_BASE_ORDER', 'DCVD_EMAIL', 'DCVD_TEMPLATE']) assert.ok(resend.includes(v), v);
});

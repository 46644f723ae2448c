/**
 * The MPIC options as an operator uses them (issue 19): `dcvd order create
 * --dcv-email` with a DNS-found address, through the Open MPIC test peer;
 * `--mpic off`; `serve`'s warning and option checks. Real processes (spawned
 * asynchronously: the peer answers from this process).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { OfferedAddressRegistry } from '../src/registry/offered.ts';
import { AccountRepository } from '../src/accounts/repository.ts';
import { systemClock } from '../src/deps.ts';
import { BIN } from './support/cli.ts';
import { startTestMpicServer, type TestMpicServer } from './support/mpic-server.ts';

let dir: string;
let peer: TestMpicServer;
let mpicEnv: Record<string, string>;

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, DCVD_DATA_DIR: dir, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** What GetDCVEmailAddressList records for a DNS TXT contact, written straight into the registry. */
async function offerTxt(domain: string, address: string, level: number) {
  const store = openStore({ dataDir: dir });
  try {
    const account = await store.db.selectFrom('accounts').select('id').where('login', '=', 'alice').executeTakeFirstOrThrow();
    const dns = { name: `_validation-contactemail.${domain.split('.').slice(-level).join('.')}`, type: 'TXT' as const, rcode: 'NOERROR', authenticatedData: false, extendedErrors: [], resolver: '127.0.0.1:53' };
    await new OfferedAddressRegistry(store.db).record(account.id, domain, [{ address, level, source: 'dns-txt', dns }], Date.now());
  } finally {
    await store.close();
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dcvd-mpic-cli-'));
  peer = await startTestMpicServer();
  writeFileSync(join(dir, 'mpic.key'), peer.apiKey);
  writeFileSync(join(dir, 'mpic-ca.pem'), peer.ca);
  mpicEnv = { DCVD_MPIC_URL: peer.url, DCVD_MPIC_API_KEY_FILE: join(dir, 'mpic.key'), DCVD_MPIC_CA_FILE: join(dir, 'mpic-ca.pem') };
  const store = openStore({ dataDir: dir });
  try {
    await migrateToLatest(store.db, store.dialect);
    await new AccountRepository(store.db, systemClock).create('alice', { password: 'correct horse battery staple', permissions: ['auto-apply'] });
  } finally {
    await store.close();
  }
});
after(async () => {
  await peer.close();
  rmSync(dir, { recursive: true, force: true });
});

test('order create --dcv-email with a DNS TXT contact: corroborated through DCVD_MPIC_* → queued, evidence in order show', async () => {
  peer.setTxtEverywhere('_validation-contactemail.cli-ok.com', [['owner@contact.example']]);
  await offerTxt('www.cli-ok.com', 'owner@contact.example', 2);
  const r = await run(['order', 'create', '--account', 'alice', '--domain', 'www.cli-ok.com', '--order-number', '8100001', '--dcv-email', 'owner@contact.example', '--json'], mpicEnv);
  assert.equal(r.code, 0, r.stderr);
  assert.match(JSON.parse(r.stdout).queuedEmail, /@localhost>$/);
  assert.equal(peer.requests.at(-1)?.body.domain_or_ip_target, 'cli-ok.com');
  const shown = await run(['order', 'show', '8100001', '--json']);
  const c = JSON.parse(shown.stdout).corroborations;
  assert.equal(c.length, 1);
  assert.equal(c[0].outcome, 'corroborated');
  assert.equal(c[0].used, true);
  assert.match((await run(['order', 'show', '8100001'])).stdout, /MPIC corroborated .* for owner@contact\.example \(contact-email-txt at cli-ok\.com\): 6\/6 perspectives, RIRs APNIC, ARIN, RIPE NCC/);
});

test('not corroborated, or no MPIC service: refused with exit 1 and nothing written; --mpic off: queued', async () => {
  peer.setTxtEverywhere('_validation-contactemail.cli-no.com', [['someone-else@contact.example']]);
  await offerTxt('cli-no.com', 'owner@contact.example', 2);
  const refused = await run(['order', 'create', '--account', 'alice', '--domain', 'cli-no.com', '--order-number', '8100002', '--dcv-email', 'owner@contact.example'], mpicEnv);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /Multi-Perspective Issuance Corroboration did not corroborate it \(quorum-not-met\)/);
  const unwritten = await run(['order', 'show', '8100002']);
  assert.deepEqual([unwritten.code, unwritten.stderr], [1, 'dcvd: no order 8100002\n'], 'no order was created');

  const none = await run(['order', 'create', '--account', 'alice', '--domain', 'cli-no.com', '--order-number', '8100003', '--dcv-email', 'owner@contact.example']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /not-configured/);

  const off = await run(['order', 'create', '--account', 'alice', '--domain', 'cli-no.com', '--order-number', '8100004', '--dcv-email', 'owner@contact.example', '--mpic', 'off', '--json']);
  assert.equal(off.code, 0, off.stderr);
  assert.match(off.stderr, /not BR 3\.2\.2\.9-compliant/);
});

test('serve: --help names the DCVD_MPIC_* variables; contradictory or weak settings refuse to start; --mpic off warns at start', async () => {
  const help = await run(['serve', '--help']);
  // Commander wraps --help at the terminal's width: compare with the line breaks folded.
  const text = help.stdout.replace(/\s+/g, ' ');
  for (const v of ['env: DCVD_MPIC)', 'DCVD_MPIC_URL', 'DCVD_MPIC_API_KEY_FILE', 'DCVD_MPIC_CA_FILE', 'DCVD_MPIC_PERSPECTIVES', 'DCVD_MPIC_TIMEOUT']) assert.ok(text.includes(v), v);
  const both = await run(['serve', '--listen', '127.0.0.1:0', '--mpic', 'off', '--mpic-url', 'https://mpic.example/']);
  assert.equal(both.code, 1);
  assert.match(both.stderr, /contradict/);
  const few = await run(['serve', '--listen', '127.0.0.1:0', '--mpic-perspectives', '4']);
  assert.equal(few.code, 1);
  assert.match(few.stderr, /≥ 5/);
  const plain = await run(['serve', '--listen', '127.0.0.1:0', '--mpic-url', 'http://mpic.example/']);
  assert.equal(plain.code, 1);
  assert.match(plain.stderr, /https/);

  // --mpic off: the warning on stderr at start, then a clean stop.
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', '--mpic', 'off'], { env: { ...process.env, DCVD_DATA_DIR: dir }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 60_000);
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (stderr.includes('WARNING')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  await exited;
  assert.match(stderr, /WARNING: --mpic off: .* NOT compliant with BR 3\.2\.2\.9/);
});

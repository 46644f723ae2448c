/**
 * The packages as a user installs them (issue 13): `npm pack` of dcvd and @dcvd/client, both
 * tarballs installed into an empty folder (dependencies from the registry or npm's cache), and
 * `npx dcvd` run there — with no TypeScript and no tsx installed, so only the built JavaScript
 * can run. Slow (npm install, better-sqlite3 may compile): its own step of `npm test`, outside
 * test/*.test.ts, with a wide limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../..', import.meta.url));

/** The environment without what npm sets for the script that runs this test (workspace, prefix…). */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
}

function post(port: number, path: string, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'POST', rejectUnauthorized: false, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('npm pack → npm install in an empty folder → npx dcvd serve answers, with no TypeScript or tsx installed', { timeout: 1_800_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvd-pack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env = cleanEnv();
  const packs = join(dir, 'tarballs');
  const app = join(dir, 'app');
  execFileSync('mkdir', ['-p', packs, app]);

  // prepack builds each package from its current sources.
  execFileSync('npm', ['pack', '-w', 'dcvd', '-w', '@dcvd/client', '--pack-destination', packs], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] });
  const tarballs = readdirSync(packs).filter((f) => f.endsWith('.tgz')).sort();
  assert.deepEqual(tarballs, ['dcvd-0.1.0.tgz', 'dcvd-client-0.1.0.tgz']);
  const listing = execFileSync('tar', ['tzf', join(packs, 'dcvd-0.1.0.tgz')], { encoding: 'utf8' }).split('\n');
  assert.ok(listing.includes('package/dist/cli/main.js'), 'the dcvd tarball carries the build');
  assert.ok(!listing.some((f) => f.startsWith('package/src/') || f.endsWith('.ts') && !f.endsWith('.d.ts')), 'and no TypeScript sources');

  writeFileSync(join(app, 'package.json'), '{ "name": "try-dcvd", "private": true }\n');
  execFileSync('npm', ['install', '--no-audit', '--no-fund', ...tarballs.map((f) => join(packs, f))], { cwd: app, env, stdio: ['ignore', 'ignore', 'inherit'] });
  for (const absent of ['typescript', 'tsx']) assert.ok(!existsSync(join(app, 'node_modules', absent)), `${absent} is not installed`);

  assert.equal(execFileSync('npx', ['--no-install', 'dcvd', '--version'], { cwd: app, env, encoding: 'utf8' }).trim(), '0.1.0');

  const child = spawn('npx', ['--no-install', 'dcvd', 'serve', '--listen', '127.0.0.1:0', '--log-level', 'warn'], {
    cwd: app,
    env: { ...env, DCVD_DATA_DIR: join(app, 'dcvd-data') },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true, // its own process group: npx, the shell it may start and dcvd stop together
  });
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.after(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {}
  });
  let stderr = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => {
      stderr += c;
      const m = /HTTPS on https:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    void closed.then((code) => reject(new Error(`dcvd serve exited (${code}): ${stderr}`)));
  });
  const r = await post(port, '/products/!GetDCVEmailAddressList', 'domainName=example.com&product=801');
  assert.equal(r.status, 200);
  assert.equal(r.text, "-3\nThe 'loginName' argument is missing!\n", 'the seed\u2019s -3 for the missing loginName, as text');

  process.kill(-child.pid!, 'SIGTERM');
  await closed;
  assert.match(stderr, /SIGTERM, finishing in-flight requests/);
});

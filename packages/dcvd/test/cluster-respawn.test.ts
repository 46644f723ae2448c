/**
 * `serve --delivery-process` (one API process) keeps its port served (issue 20): when the API
 * process dies and its replacements die too before they listen, the primary tries again, with a
 * growing delay, until one listens. Real processes (node:cluster), a real HTTPS port.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultServeConfig } from '../src/config.ts';
import { startCluster, type RunningCluster } from '../src/cluster.ts';
import { waitUntil } from './support/wait.ts';
import { capturedLogger } from './support/logs.ts';
import { freePort } from './support/ports.ts';

const dir = mkdtempSync(join(tmpdir(), 'dcvd-respawn-'));
let running: RunningCluster | undefined;
after(async () => {
  await running?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The body of GET /healthz on the shared port, or the error's code. */
function health(port: number): Promise<string> {
  return new Promise((resolve) => {
    https
      .get({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false, agent: false, timeout: 5_000 }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      })
      // A connection handed to a process that dies before answering.
      .on('timeout', function (this: import('node:http').ClientRequest) {
        this.destroy(new Error('timeout'));
      })
      .on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

test('replacements that die before they listen are tried again until one serves the port', async () => {
  // A fixed port, as in production: node:cluster closes the shared socket with its last process, and a replacement's port 0 would be a new one.
  const config = defaultServeConfig({ listen: { host: '127.0.0.1', port: await freePort() }, dataDir: join(dir, 'data'), deliveryProcess: true, logLevel: 'warn' });
  const counter = join(dir, 'starts');
  writeFileSync(counter, '');
  const { logger, lines } = capturedLogger('warn');
  // Start 1 is the API process; starts 2 and 3 (its first two replacements) die before they listen; start 4 serves.
  running = await startCluster(config, {
    logger,
    setup: { exec: fileURLToPath(new URL('./support/flaky-api-process.ts', import.meta.url)), args: [counter, '2,3', JSON.stringify(config)] },
  });
  const port = running.https.port;
  assert.equal(await health(port), 'ok\n');
  const [first] = running.pids();
  assert.ok(first);
  process.kill(first, 'SIGKILL');
  await waitUntil('a replacement serving the port', async () => (await health(port)) === 'ok\n' && running!.pids().some((pid) => pid !== first), 90_000);
  assert.equal(readFileSync(counter, 'utf8'), '4', 'two replacements died, the third serves');
  const retries = lines.filter((l) => l.msg === 'a replacement API process failed to start; trying again');
  assert.deepEqual(retries.map((l) => l.retryInMs), [2_000, 4_000]);
  assert.equal(running.pids().length, 1);
});

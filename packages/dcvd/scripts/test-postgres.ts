/**
 * Runs every test file that starts a dcvd server (startTestServer)
 * again on PostgreSQL (CONTRACT §10). Without a reachable server it prints a
 * clear "skipped" line and succeeds — unless DCVD_REQUIRE_POSTGRES=1 (CI),
 * where a missing PostgreSQL is a failure.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TEST_POSTGRES_URL, postgresReachable } from '../test/support/database.ts';

const testDir = fileURLToPath(new URL('../test/', import.meta.url));
const url = process.env.DCVD_TEST_DATABASE_URL ?? DEFAULT_TEST_POSTGRES_URL;
const shown = url.replace(/:[^:@/]*@/, ':***@');

if (!(await postgresReachable(url))) {
  if (process.env.DCVD_REQUIRE_POSTGRES === '1') {
    console.error(`PostgreSQL tests: no PostgreSQL at ${shown}, and DCVD_REQUIRE_POSTGRES=1`);
    process.exit(1);
  }
  console.log(`skipped: no PostgreSQL at ${shown} — the PostgreSQL run of the suite did not happen (set DCVD_TEST_DATABASE_URL or start one)`);
  process.exit(0);
}

const files = readdirSync(testDir)
  .filter((f) => f.endsWith('.test.ts') && readFileSync(testDir + f, 'utf8').includes('startTestServer('))
  .sort()
  .map((f) => `test/${f}`);
console.log(`PostgreSQL run (${shown}): ${files.join(' ')}`);
const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-timeout=900000', ...files], {
  stdio: 'inherit',
  env: { ...process.env, DCVD_TEST_DATABASE: 'postgres', DCVD_TEST_DATABASE_URL: url },
  cwd: fileURLToPath(new URL('..', import.meta.url)),
});
process.exit(run.status ?? 1);

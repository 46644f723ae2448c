/** Runs the `dcvd` command as a user does: a real process, its DCVD_* environment, stdin, exit code. */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildIsCurrent } from '../../bin/build-state.js';

export const BIN = fileURLToPath(new URL('../../bin/dcvd.js', import.meta.url));
const PACKAGE = fileURLToPath(new URL('../..', import.meta.url));
const CLIENT = fileURLToPath(new URL('../../../client', import.meta.url));
const LOCK = fileURLToPath(new URL('../../.build-lock', import.meta.url));

/**
 * The tests spawn bin/dcvd.js, which runs dist/ when it is current and the sources through tsx
 * (about 3 s a start on a busy machine, against well under 1 s) when it is not. So that they never
 * run old code and stay fast, a test file that loads this module first rebuilds a stale dist/
 * (`npm test` builds before any test, so there this finds it current). Several test files may
 * start at once: one builds, under a lock directory, while the others wait for it.
 */
function ensureBuild(): void {
  const current = () => buildIsCurrent(PACKAGE) && buildIsCurrent(CLIENT);
  while (!current()) {
    try {
      mkdirSync(LOCK);
    } catch {
      // Another test file is building; a lock older than ten minutes is left from a killed run.
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 600_000) rmdirSync(LOCK);
      } catch {}
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
      continue;
    }
    try {
      const r = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: PACKAGE, encoding: 'utf8' });
      // A failed build (a type error) leaves no stamp: bin/dcvd.js then runs the sources, slower but current.
      if (r.status !== 0) process.stderr.write(`test support: npm run build failed, the CLI runs from the sources\n${r.stdout}${r.stderr}`);
      return;
    } finally {
      rmdirSync(LOCK);
    }
  }
}
ensureBuild();

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runDcvd(dataDir: string, args: string[], opts: { input?: string; env?: Record<string, string> } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    input: opts.input ?? '',
    env: { ...process.env, DCVD_DATA_DIR: dataDir, ...opts.env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

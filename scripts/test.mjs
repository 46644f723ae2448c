#!/usr/bin/env node
// The test suite, step by step: `node scripts/test.mjs [step…]` (default: every step, in order).
// Every step runs even when an earlier one failed, and the run ends with one summary line per step
// (tests passed/failed where the step runs node:test), exiting 1 if any step failed. `npm test`
// runs scripts/test-setup.sh (chromium, PostgreSQL) first, then this.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dcvd = `${root}packages/dcvd`;
// Per test, not per file; wide, because a test must never fail for being slow on a loaded
// 2-core machine. The CLI tests are fast through the build (test/support/cli.ts).
const TIMEOUT = '--test-timeout=900000';

const STEPS = {
  typecheck: { title: 'type check', cmd: ['npm', 'run', 'typecheck'], cwd: root },
  // The CLI tests spawn bin/dcvd.js, which runs dist/: build it from the current sources first.
  build: { title: 'build (tsc → dist/)', cmd: ['npm', 'run', 'build'], cwd: root },
  client: { title: '@dcvd/client tests', cmd: ['npm', 'test', '-w', '@dcvd/client'], cwd: root },
  sqlite: { title: 'dcvd tests on SQLite', cmd: [process.execPath, '--import', 'tsx', '--test', TIMEOUT, 'test/*.test.ts'], cwd: dcvd, glob: true },
  postgres: { title: 'dcvd tests on PostgreSQL', cmd: [process.execPath, '--import', 'tsx', 'scripts/test-postgres.ts'], cwd: dcvd },
  package: { title: 'packed tarballs install and run', cmd: [process.execPath, '--import', 'tsx', '--test', TIMEOUT, 'test/package/pack.test.ts'], cwd: dcvd },
};

const chosen = process.argv.slice(2);
for (const name of chosen) if (!(name in STEPS)) throw new Error(`unknown step ${name}; steps: ${Object.keys(STEPS).join(', ')}`);
const names = chosen.length > 0 ? chosen : Object.keys(STEPS);

function run(step) {
  return new Promise((done) => {
    const started = Date.now();
    const counts = {};
    let skipped = null;
    let tail = '';
    // A shell only for the glob; the other commands run directly.
    const child = step.glob
      ? spawn(step.cmd.join(' '), { cwd: step.cwd, shell: true, stdio: ['inherit', 'pipe', 'inherit'] })
      : spawn(step.cmd[0], step.cmd.slice(1), { cwd: step.cwd, stdio: ['inherit', 'pipe', 'inherit'] });
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      const text = tail + chunk.toString('utf8');
      const lines = text.split('\n');
      tail = lines.pop() ?? '';
      for (const line of lines) {
        // node:test's totals: "# pass 12" (TAP, when piped) or "ℹ pass 12" (spec reporter).
        const m = /^(?:#|ℹ) (tests|pass|fail|cancelled|skipped|todo) (\d+)\s*$/.exec(line);
        if (m) counts[m[1]] = (counts[m[1]] ?? 0) + Number(m[2]);
        if (/^skipped: /.test(line)) skipped = line;
      }
    });
    child.on('close', (code, signal) => {
      const seconds = Math.round((Date.now() - started) / 1000);
      done({ ok: code === 0, code: code ?? signal, counts, skipped, seconds });
    });
  });
}

const results = [];
for (const name of names) {
  const step = STEPS[name];
  process.stdout.write(`\n=== ${step.title} (${name}) ===\n`);
  results.push([step, await run(step)]);
}

process.stdout.write('\n=== summary ===\n');
for (const [step, r] of results) {
  const c = r.counts;
  const tests = c.tests !== undefined ? `: ${c.pass ?? 0} passed, ${c.fail ?? 0} failed${c.cancelled ? `, ${c.cancelled} cancelled` : ''}${c.skipped ? `, ${c.skipped} skipped` : ''} of ${c.tests}` : '';
  const state = r.skipped ? 'SKIPPED' : r.ok ? 'ok' : `FAILED (exit ${r.code})`;
  process.stdout.write(`${state.padEnd(16)} ${step.title}${tests} in ${r.seconds} s${r.skipped ? ` — ${r.skipped.slice(9)}` : ''}\n`);
}
process.exitCode = results.every(([, r]) => r.ok) ? 0 : 1;

// `npm run build -w dcvd`: compiles src/ to dist/ with tsc (tsconfig.build.json), after building
// @dcvd/client, whose dist/ the compiled code imports. The stamp dist/.built is written last,
// only when both compiled, so bin/dcvd.js and the tests can tell a current build from a stale one.
import { execFileSync } from 'node:child_process';
import { rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { STAMP } from '../bin/build-state.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const client = fileURLToPath(new URL('../../client/', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

// The stamp carries the time the build started: a source edited while tsc ran is newer, so stale.
const started = new Date();
execFileSync(process.execPath, [`${client}scripts/build.mjs`], { cwd: client, stdio: 'inherit' });
rmSync(`${root}dist`, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
writeFileSync(`${root}dist/${STAMP}`, '');
utimesSync(`${root}dist/${STAMP}`, started, started);

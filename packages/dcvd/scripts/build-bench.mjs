// `npm run bench` first: @dcvd/client's dist/ (what the compiled code imports), then the benchmark's child
// processes and everything they import (src/, the test DNS server) into bench/.build/ with the build's
// compiler options (tsconfig.bench.json): the servers under test run the same JavaScript as dist/, under
// plain node. Always from scratch, so a benchmark never measures code older than src/.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const client = fileURLToPath(new URL('../../client/', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

execFileSync(process.execPath, [`${client}scripts/build.mjs`], { cwd: client, stdio: 'inherit' });
rmSync(`${root}bench/.build`, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.bench.json'], { cwd: root, stdio: 'inherit' });

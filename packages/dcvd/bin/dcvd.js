#!/usr/bin/env node
// Runs the built JavaScript in dist/ (`npm run build`; an installed package ships only that). In a
// checkout whose sources are newer than the build, or that has no build, it runs the TypeScript
// sources through tsx (a development dependency) instead, so it never runs code older than src/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildIsCurrent } from './build-state.js';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const clientDir = fileURLToPath(new URL('../../client', import.meta.url));
const built = buildIsCurrent(packageDir) && (!existsSync(`${clientDir}/src`) || buildIsCurrent(clientDir));

let main;
if (built) {
  ({ main } = await import('../dist/cli/main.js'));
} else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write('dcvd: no current build in dist/ and no tsx to run the sources: run `npm run build`\n');
    process.exit(1);
  }
  // The tsconfig maps @dcvd/client to the client's sources, so both packages run from src/.
  register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
  ({ main } = await import('../src/cli/main.ts'));
}
process.exitCode = await main(process.argv);

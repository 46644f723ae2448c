// Builds the publishable package into dist/: ESM (dist/esm) and CommonJS
// (dist/cjs) with .d.ts files, and dist/package.json whose "exports" point at
// them. The workspace's own package.json keeps exporting the TypeScript
// sources, so dcvd (run through tsx) and every `node --import tsx` script in
// the repo use the sources with no build step and no extra condition.
// Publish or pack from dist/: `npm pack ./packages/client/dist`.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

const started = new Date(); // the stamp's time: a source edited during the build is newer, so stale
rmSync(dist, { recursive: true, force: true });
for (const project of ['tsconfig.build.json', 'tsconfig.cjs.json']) {
  execFileSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
}
writeFileSync(`${dist}cjs/package.json`, '{ "type": "commonjs" }\n');

// tsc rewrites `./x.ts` to `./x.js` in the JavaScript it emits, but not in
// the declaration files; do it there, so they read like any package's.
for (const entry of readdirSync(dist, { withFileTypes: true, recursive: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const file = join(entry.parentPath, entry.name);
  const text = readFileSync(file, 'utf8');
  writeFileSync(file, text.replace(/(\bfrom\s+['"]\.{1,2}\/[^'"]*)\.ts(['"])/g, '$1.js$2'));
}

const source = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));
const published = {
  name: source.name,
  version: source.version,
  description: source.description,
  license: source.license,
  type: 'module',
  engines: { node: '>=20' },
  sideEffects: false,
  exports: {
    '.': {
      import: { types: './esm/index.d.ts', default: './esm/index.js' },
      require: { types: './cjs/index.d.ts', default: './cjs/index.js' },
    },
    './package.json': './package.json',
  },
  main: './cjs/index.js',
  module: './esm/index.js',
  types: './cjs/index.d.ts',
};
writeFileSync(`${dist}package.json`, `${JSON.stringify(published, null, 2)}\n`);
// Last, and only when both builds succeeded: dcvd's bin/build-state.js compares it with src/.
writeFileSync(`${dist}.built`, '');
utimesSync(`${dist}.built`, started, started);

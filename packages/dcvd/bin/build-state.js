// Whether a package's build (dist/, made by `npm run build`) is current: its stamp, written by the
// build script only after the compiler succeeded, is at least as new as every file of src/.
// Shared by bin/dcvd.js and the tests, so neither ever runs a build older than the sources.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const STAMP = '.built';

function newestMtime(dir) {
  let newest = statSync(dir).mtimeMs;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** true: dist/ is current (or there are no sources, as in an installed package); false: missing or older than src/. */
export function buildIsCurrent(packageDir) {
  const stamp = join(packageDir, 'dist', STAMP);
  const src = join(packageDir, 'src');
  if (!existsSync(src)) return existsSync(join(packageDir, 'dist'));
  if (!existsSync(stamp)) return false;
  return statSync(stamp).mtimeMs >= newestMtime(src);
}

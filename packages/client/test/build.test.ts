/**
 * The built package (dist/, made by `npm run build`, which `npm test` runs
 * first): ESM and CJS with .d.ts files, no runtime dependency, no Node-only
 * import, and it runs where only web-standard globals exist.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';

const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
const LIST = '0\ndomain_name\texample.com\nlevel2_email\tadmin@example.com\n';

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

test('dist exists (npm test builds it first)', () => {
  assert.ok(existsSync(join(DIST, 'package.json')), 'run `npm run build -w @dcvd/client`');
});

test('the published package.json: no dependency of any kind, exports for import and require with types', () => {
  const pkg = JSON.parse(readFileSync(join(DIST, 'package.json'), 'utf8'));
  for (const key of ['dependencies', 'peerDependencies', 'optionalDependencies', 'bundleDependencies', 'bundledDependencies']) {
    assert.equal(pkg[key], undefined, key);
  }
  assert.equal(pkg.name, '@dcvd/client');
  assert.equal(pkg.type, 'module');
  const root = pkg.exports['.'];
  for (const [condition, dir] of [['import', 'esm'], ['require', 'cjs']] as const) {
    assert.deepEqual(root[condition], { types: `./${dir}/index.d.ts`, default: `./${dir}/index.js` });
    assert.ok(existsSync(join(DIST, dir, 'index.js')) && existsSync(join(DIST, dir, 'index.d.ts')), dir);
  }
  assert.deepEqual(JSON.parse(readFileSync(join(DIST, 'cjs/package.json'), 'utf8')), { type: 'commonjs' });
});

test('every module imports only its siblings: no package, no node: builtin, no Node-only global', () => {
  const js = files(DIST).filter((f) => /\.(js|d\.ts)$/.test(f));
  assert.ok(js.length >= 10, `built files: ${js.length}`);
  for (const file of js) {
    const text = readFileSync(file, 'utf8');
    const specifiers = [
      ...text.matchAll(/\bfrom\s+["']([^"']+)["']/g),
      ...text.matchAll(/\bimport\s*\(\s*["']([^"']+)["']/g),
      ...text.matchAll(/\bimport\s+["']([^"']+)["']/g),
      ...text.matchAll(/\brequire\s*\(\s*["']([^"']+)["']/g),
    ].map((m) => m[1]!);
    for (const s of specifiers) assert.match(s, /^\.\.?\/.*\.js$/, `${relative(DIST, file)} imports ${s}`);
    if (file.endsWith('.js')) {
      const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
      for (const use of [/\bprocess\s*\./, /\bBuffer\s*[.(]/, /\bglobal\s*\./, /\b__dirname\b/, /\b__filename\b/, /\bsetImmediate\s*\(/]) {
        assert.doesNotMatch(code, use, `${relative(DIST, file)} uses a Node-only global`);
      }
    }
  }
});

test('the CJS build runs with web-standard globals only (as in a browser or an edge runtime)', async () => {
  const cjs = join(DIST, 'cjs');
  const cache = new Map<string, unknown>();
  let fetched = '';
  const context = vm.createContext({
    fetch: async (_url: string, init: { body: string }) => {
      fetched = init.body;
      return new Response(LIST);
    },
    Response,
    URL,
    URLSearchParams,
    AbortController,
    AbortSignal,
    DOMException,
    setTimeout,
    clearTimeout,
    TextEncoder,
    TextDecoder,
  });
  // A require that knows the package's own files and nothing else.
  function load(path: string): unknown {
    if (cache.has(path)) return cache.get(path);
    const module = { exports: {} as Record<string, unknown> };
    cache.set(path, module.exports);
    const fn = vm.runInContext(`(function (exports, require, module) {${readFileSync(path, 'utf8')}\n})`, context, { filename: path });
    fn(module.exports, (spec: string) => {
      if (!spec.startsWith('.')) throw new Error(`require of ${spec} in ${relative(DIST, path)}`);
      return load(join(dirname(path), spec));
    }, module);
    cache.set(path, module.exports);
    return module.exports;
  }
  const api = load(join(cjs, 'index.js')) as typeof import('../src/index.ts');
  const client = new api.DcvClient({ baseUrl: 'https://dcvd.test', loginName: 'u', loginPassword: 'p' });
  const list = await client.getDcvEmailAddressList({ domainName: 'example.com', product: 801 });
  // Arrays of the other realm: compared as JSON.
  assert.equal(JSON.stringify(list), JSON.stringify({ domainName: 'example.com', levels: { 2: ['admin@example.com'] }, emails: ['admin@example.com'], whoisEmails: [], extra: {} }));
  assert.equal(fetched, 'loginName=u&loginPassword=p&domainName=example.com&product=801');
});

test('installed as a package: import and require resolve through "exports", and TypeScript finds the types for both', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvd-client-consumer-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'node_modules/@dcvd'), { recursive: true });
  symlinkSync(DIST, join(dir, 'node_modules/@dcvd/client'), 'dir');
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');

  const esm = await import(pathToFileURL(join(dir, 'node_modules/@dcvd/client/esm/index.js')).href);
  const required = createRequire(join(dir, 'consumer.cjs'))('@dcvd/client');
  assert.equal(typeof required.DcvClient, 'function');
  assert.equal(required.ErrorCode.IncorrectLogin, -16);
  assert.equal(typeof esm.DcvClient, 'function');
  assert.equal(esm.DEFAULT_BASE_URL, 'https://secure.trust-provider.com');
  assert.notEqual(required.DcvClient, esm.DcvClient, 'two builds, one per module system');

  // A bare `import '@dcvd/client'` takes the "import" branch of "exports".
  writeFileSync(join(dir, 'consumer.mjs'), "import { DcvClient } from '@dcvd/client';\nimport { createRequire } from 'node:module';\nprocess.stdout.write(String(DcvClient !== createRequire(import.meta.url)('@dcvd/client').DcvClient));\n");
  assert.equal(execFileSync(process.execPath, [join(dir, 'consumer.mjs')], { encoding: 'utf8' }), 'true');

  // A strict NodeNext consumer, ESM and CJS files, against the .d.ts files only.
  const consumer = `
import { DcvApiError, DcvClient, ErrorCode, type DcvEmailAddressListResult } from '@dcvd/client';
const client = new DcvClient({ baseUrl: 'https://localhost:8443', loginName: 'demo', loginPassword: 'x', timeoutMs: 5000, retries: 1 });
export async function run(): Promise<string[]> {
  try {
    const list: DcvEmailAddressListResult = await client.getDcvEmailAddressList({ domainName: 'example.com', product: 801, responseFormat: 2 });
    await client.resendDcvEmail({ baseOrderNumber: 1 }, { dcvEmailAddress: list.emails[0], dcvTemplateId: 2 });
    return list.levels[2] ?? [];
  } catch (err) {
    if (err instanceof DcvApiError && err.code === ErrorCode.IncorrectLogin) return [err.endpoint, err.item ?? ''];
    throw err;
  }
}
// @ts-expect-error: product is a number
void client.getDcvEmailAddressList({ domainName: 'a.com', product: '801' });
// @ts-expect-error: an order number is needed
void client.resendDcvEmail({});
`;
  writeFileSync(join(dir, 'a.mts'), consumer);
  writeFileSync(join(dir, 'b.cts'), consumer);
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, lib: ['ES2022', 'DOM'], types: [] }, files: ['a.mts', 'b.cts'] }),
  );
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const out = execFileSync(process.execPath, [tsc, '-p', dir, '--traceResolution'], { encoding: 'utf8' });
  assert.match(out, /'@dcvd\/client' was successfully resolved to '[^']*dist\/esm\/index\.d\.ts'/);
  assert.match(out, /'@dcvd\/client' was successfully resolved to '[^']*dist\/cjs\/index\.d\.ts'/);
});

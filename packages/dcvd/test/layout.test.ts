/**
 * The layout's one rule (issue 15): every arrow between the rooms of src/ points one way.
 * Reads every .ts file under src/, resolves its relative imports (static imports, `export … from`,
 * `import type`, and `import('…')` with a string literal, all found by TypeScript's own
 * pre-processor, so comments and strings do not count), and checks:
 *  - no cycle between folders (a file directly in src/, such as config.ts or server.ts, is a
 *    room of its own: src/ itself is no room);
 *  - nothing imports cli/, the top (it may import anything);
 *  - no cycle between files inside one folder either.
 * Run: node --import tsx --test test/layout.test.ts
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import ts from 'typescript';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return sourceFiles(path);
      return name.endsWith('.ts') ? [path] : [];
    });
}

/** A file's path under src/, with forward slashes: `outbox/outbox.ts`. */
const rel = (path: string) => relative(SRC, path).split(sep).join('/');

/** The room of a file: its first folder under src/, or the file itself when it sits directly in src/. */
const room = (file: string) => (file.includes('/') ? `${file.slice(0, file.indexOf('/'))}/` : file);

interface Arrow {
  from: string;
  to: string;
}

/** Every relative import of every file under `root`, resolved to a file under `root` (one that does not exist fails). */
export function importArrows(root: string = SRC): Arrow[] {
  const arrows: Arrow[] = [];
  for (const path of sourceFiles(root)) {
    const info = ts.preProcessFile(readFileSync(path, 'utf8'), true, true);
    for (const { fileName } of info.importedFiles) {
      if (!fileName.startsWith('.')) continue; // a package
      const target = resolve(dirname(path), fileName);
      assert.ok(statSync(target, { throwIfNoEntry: false })?.isFile(), `${rel(path)} imports ${fileName}, which is no file`);
      arrows.push({ from: rel(path), to: rel(target) });
    }
  }
  return arrows;
}

/**
 * The cycles of a directed graph: one per strongly connected component of two or more nodes
 * (Tarjan), with all its members and its shortest cycle through the first of them, as a closed path.
 */
export function cycles(edges: Map<string, Set<string>>): { members: string[]; cycle: string[] }[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let next = 0;
  const visit = (node: string) => {
    index.set(node, next);
    low.set(node, next);
    next++;
    stack.push(node);
    onStack.add(node);
    for (const to of edges.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node)!, index.get(to)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) components.push(component);
    }
  };
  for (const node of [...edges.keys()].sort()) if (!index.has(node)) visit(node);
  // One readable cycle per component: the shortest path back to its first node, by breadth-first search inside it.
  return components.map((component) => {
    const members = new Set(component);
    const start = [...members].sort()[0]!;
    const parent = new Map<string, string>();
    const queue = [start];
    while (queue.length > 0) {
      const node = queue.shift()!;
      for (const to of [...(edges.get(node) ?? [])].sort()) {
        if (!members.has(to)) continue;
        if (to === start) {
          const path = [node];
          while (path[0] !== start) path.unshift(parent.get(path[0]!)!);
          return { members: [...members].sort(), cycle: [...path, start] };
        }
        if (!parent.has(to)) {
          parent.set(to, node);
          queue.push(to);
        }
      }
    }
    throw new Error(`no cycle through ${start}`);
  });
}

function graph(arrows: Arrow[], node: (file: string) => string, keep: (a: Arrow) => boolean = () => true): Map<string, Set<string>> {
  const edges = new Map<string, Set<string>>();
  for (const a of arrows) {
    if (!keep(a)) continue;
    const from = node(a.from);
    const to = node(a.to);
    if (from === to) continue;
    if (!edges.has(from)) edges.set(from, new Set());
    edges.get(from)!.add(to);
  }
  return edges;
}

/** A component's members, and one cycle with the files behind each of its arrows, so a failure says which import to move. */
function explain({ members, cycle }: { members: string[]; cycle: string[] }, arrows: Arrow[], node: (file: string) => string): string {
  const steps = cycle.slice(1).map((to, i) => {
    const from = cycle[i]!;
    const files = arrows.filter((a) => node(a.from) === from && node(a.to) === to).map((a) => `${a.from} → ${a.to}`);
    return `  ${from} → ${to}: ${[...new Set(files)].join(', ')}`;
  });
  return `${members.join(', ')} import each other; one cycle: ${cycle.join(' → ')}\n${steps.join('\n')}`;
}

describe('layout of src/', () => {
  const arrows = importArrows();

  test('the import scan sees static, type-only, re-export and dynamic imports', () => {
    const seen = (from: string, to: string) => arrows.some((a) => a.from === from && a.to === to);
    // One of each kind, in files whose imports are part of the rule; if one moves, pick another.
    assert.ok(seen('server.ts', 'config.ts'), 'import type { ServeConfig } from ./config.ts');
    assert.ok(seen('cli/serve.ts', 'server.ts'), "await import('../server.ts')");
    assert.ok(seen('domains/index.ts', 'domains/check.ts'), "export … from './check.ts'");
    assert.ok(arrows.length > 200, `only ${arrows.length} imports found`);
  });

  test('no cycle between folders', () => {
    const found = cycles(graph(arrows, room));
    assert.deepEqual(found.map((c) => explain(c, arrows, room)), [], 'folder-level import cycles');
  });

  test('nothing imports cli/ (the top)', () => {
    const intoCli = arrows.filter((a) => room(a.to) === 'cli/' && room(a.from) !== 'cli/');
    assert.deepEqual(intoCli.map((a) => `${a.from} → ${a.to}`), []);
  });

  test('no cycle between files of one folder', () => {
    const within = graph(arrows, (file) => file, (a) => room(a.from) === room(a.to));
    const found = cycles(within);
    assert.deepEqual(found.map((c) => explain(c, arrows, (file) => file)), [], 'file-level import cycles inside a folder');
  });
});

describe('cycle finder', () => {
  const edges = (pairs: [string, string][]) => graph(pairs.map(([from, to]) => ({ from, to })), (n) => n);

  test('finds a cycle of two and one of three, with their members', () => {
    const found = cycles(edges([['a', 'b'], ['b', 'a'], ['c', 'd'], ['d', 'e'], ['e', 'c'], ['e', 'f']]));
    assert.deepEqual(found.map((c) => c.cycle.join(' ')).sort(), ['a b a', 'c d e c']);
    assert.deepEqual(found.map((c) => c.members.join(' ')).sort(), ['a b', 'c d e']);
  });

  test('a graph whose arrows all point one way has none', () => {
    assert.deepEqual(cycles(edges([['a', 'b'], ['b', 'c'], ['a', 'c'], ['c', 'd']])), []);
  });
});

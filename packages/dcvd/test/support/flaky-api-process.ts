/**
 * An API process of test/cluster-respawn.test.ts (node:cluster runs this file): the Nth start of
 * the process tree's API processes, counted in a file, exits before it listens when N is in the
 * list it is given, as a process killed or out of memory during its start would; every other start
 * is a real API process (runApiProcess).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { runApiProcess } from '../../src/cluster.ts';
import { createLogger } from '../../src/log.ts';
import type { ServeConfig } from '../../src/config.ts';

const [counterFile, dyingStarts, config] = process.argv.slice(2) as [string, string, string];
const start = Number(readFileSync(counterFile, 'utf8') || '0') + 1;
writeFileSync(counterFile, String(start));
if (dyingStarts.split(',').map(Number).includes(start)) process.exit(3);
await runApiProcess(JSON.parse(config) as ServeConfig, { logger: createLogger('silent') });

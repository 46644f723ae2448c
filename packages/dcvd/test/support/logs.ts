/** A dcvd logger whose JSON lines are kept in an array, for tests that look at what was logged. */
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.ts';

export function capturedLogger(level: string): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger(level, 1, sink), lines };
}

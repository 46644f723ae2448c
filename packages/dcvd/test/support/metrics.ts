/** Reading Prometheus samples in tests. */
import type { RunningServer } from '../../src/server.ts';

/** The value of one sample in a rendering of the metrics (0 when absent: a label value with no count has no line). */
export function sampleOf(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** The value of one sample of a server's metrics now (0 when absent). */
export async function metric(s: Pick<RunningServer, 'metrics'>, name: string, labels: string): Promise<number> {
  return sampleOf(await s.metrics.render(), name, labels);
}

/** The sum of a metric's samples whose labels include every one given (`{ endpoint: 'X' }` sums over the other labels). */
export function sampleSum(text: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.slice(name.length, l.lastIndexOf('}') + 1).includes(w)))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

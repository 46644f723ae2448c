/**
 * Benchmark tools: a keep-alive HTTPS load generator with latency
 * percentiles, and child processes for the servers under test so that their
 * CPU and peak RSS are their own. Figures are only compared within one run.
 */
import https from 'node:https';
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { OutboxBacklog } from './tree.ts';

export interface LoadResult {
  /** Requests answered in the measured window. */
  requests: number;
  /** Requests answered in all, warm-up included (for CPU per request). */
  answered: number;
  errors: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  /** The slowest answer (issue 20: none slower than the DNS timeout). */
  max: number;
  /**
   * The slowest first successful answer of a load loop (each opens its connection with it: TCP and
   * TLS set-up included), warm-up or not: the percentiles and max count only requests sent after the
   * warm-up, so a connection that waited for its handshake behind a busy server shows here.
   */
  firstMax: number;
  /** The median and 90th percentile of those first answers. */
  firstP50: number;
  firstP90: number;
  /** The first failed answer (status and body start, or the error), for the report. */
  firstError?: string;
}

export interface LoadOptions {
  port: number;
  /** More servers to spread the loops over (round robin), e.g. several instances. */
  morePorts?: number[];
  /** The server's certificate, or one per server (port, morePorts…): each gets its own agent. */
  ca: string | string[];
  path: string;
  /** The request body, or each loop's own (by its index). */
  body: string | ((loop: number) => string);
  concurrency: number;
  durationMs: number;
  warmupMs?: number;
  /** A response counts as an error unless this returns true. */
  check?: (status: number, body: string) => boolean;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function once(agent: https.Agent, o: LoadOptions, port: number, body: string): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: o.path,
        method: 'POST',
        agent,
        servername: 'localhost',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve([res.statusCode ?? 0, body]));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `concurrency` loops, each sending its next request when the last one is answered. */
export async function load(o: LoadOptions): Promise<LoadResult> {
  const ports = [o.port, ...(o.morePorts ?? [])];
  const cas = Array.isArray(o.ca) ? o.ca : ports.map(() => o.ca as string);
  const agents = ports.map((_, i) => new https.Agent({ ca: cas[i], keepAlive: true, maxSockets: o.concurrency }));
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let measuring = false;
  const warmupEnd = Date.now() + (o.warmupMs ?? 1000);
  const end = warmupEnd + o.durationMs;
  let started = 0n;
  // The window ends with the last counted answer: loops still waiting for a warm-up request (a late
  // handshake at 1,024 connections) when the run ends would otherwise stretch it.
  let lastCounted = 0n;
  let answered = 0;
  const firsts: number[] = [];
  const loop = async (_: unknown, index: number) => {
    const port = ports[index % ports.length]!;
    const agent = agents[index % ports.length]!;
    const body = typeof o.body === 'function' ? o.body(index) : o.body;
    let first = true;
    while (Date.now() < end) {
      if (!measuring && Date.now() >= warmupEnd) {
        measuring = true;
        started = process.hrtime.bigint();
      }
      // A request sent during the warm-up is the warm-up's, even when its answer comes after it.
      const counted = measuring;
      const t0 = process.hrtime.bigint();
      let ok = false;
      let failure = '';
      try {
        const [status, answer] = await once(agent, o, port, body);
        answered++;
        ok = o.check ? o.check(status, answer) : status === 200;
        failure = `${status} ${answer.slice(0, 120)}`;
      } catch (err) {
        failure = String(err);
      }
      const t1 = process.hrtime.bigint();
      const ms = Number(t1 - t0) / 1e6;
      if (first && ok) firsts.push(ms);
      first = false;
      if (counted) {
        latencies.push(ms);
        lastCounted = t1;
      }
      // Errors count from the warm-up's end, whenever their request was sent.
      if (measuring) {
        if (!ok) {
          errors++;
          firstError ??= failure;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, (_, i) => loop(undefined, i)));
  const seconds = Number((lastCounted > started ? lastCounted : process.hrtime.bigint()) - started) / 1e9;
  for (const agent of agents) agent.destroy();
  const sorted = Float64Array.from(latencies).sort();
  const sortedFirsts = Float64Array.from(firsts).sort();
  return {
    ...(firstError === undefined ? {} : { firstError }),
    requests: latencies.length,
    answered,
    errors,
    seconds,
    rps: latencies.length / seconds,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
    firstMax: sortedFirsts.length ? sortedFirsts[sortedFirsts.length - 1]! : NaN,
    firstP50: percentile(sortedFirsts, 50),
    firstP90: percentile(sortedFirsts, 90),
  };
}

/**
 * A child process of the benchmark (bench/child.ts, bench/resend-child.ts) as `npm run bench` compiled it
 * into bench/.build/ (scripts/build-bench.mjs): the servers under test and the bare baseline run the
 * JavaScript that ships, under plain node, so their CPU and memory are not the tsx loader's.
 */
export function forkBenchChild(name: 'child' | 'resend-child', args: string[]): ChildProcess {
  const script = fileURLToPath(new URL(`./.build/bench/${name}.js`, import.meta.url));
  if (!existsSync(script)) throw new Error(`${script} is missing: run the benchmark with \`npm run bench\`, which compiles its child processes first`);
  return fork(script, args, {
    // DCVD_BENCH_PROFILE=DIR writes a CPU profile of each process under test there.
    execArgv: process.env.DCVD_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.DCVD_BENCH_PROFILE}`] : [],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
}

/** A server under test in its own process (bench/child.ts). */
export interface Child {
  port: number;
  ca: string;
  info: Record<string, unknown>;
  /** Stops the child; resolves with its peak RSS in MiB. */
  stop(): Promise<number>;
  /** CPU time (user + system, all threads) the child has used so far, in µs. */
  cpuMicros(): Promise<number>;
  /** The child's pid and those of its API processes (`serve --processes`). */
  pids(): Promise<number[]>;
  /** A one-process dcvd child's outbox (bench/tree.ts outboxBacklog); undefined for other children. */
  backlog(): Promise<OutboxBacklog | undefined>;
}

export function startChild(mode: string, options: Record<string, unknown> = {}): Promise<Child> {
  const child = forkBenchChild('child', [mode, JSON.stringify(options)]);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`bench child ${mode} exited with ${code}`)));
    child.once('message', (msg: { port: number; ca: string; info?: Record<string, unknown> }) => {
      child.removeAllListeners('exit');
      resolve({
        port: msg.port,
        ca: msg.ca,
        info: msg.info ?? {},
        stop: () =>
          new Promise<number>((done) => {
            child.once('message', (m: { maxRssMiB: number }) => done(m.maxRssMiB));
            child.send('stop');
          }),
        cpuMicros: () =>
          new Promise<number>((done) => {
            child.once('message', (m: { cpu: number }) => done(m.cpu));
            child.send('cpu');
          }),
        pids: () =>
          new Promise<number[]>((done) => {
            child.once('message', (m: { pids: number[] }) => done(m.pids));
            child.send('pids');
          }),
        backlog: () =>
          new Promise<OutboxBacklog | undefined>((done) => {
            child.once('message', (m: { backlog?: OutboxBacklog }) => done(m.backlog));
            child.send('backlog');
          }),
      });
    });
  });
}

/**
 * The memory a tree of processes holds together, sampled from this process (so that reading /proc costs
 * the servers under test nothing) every `everyMs`: each process's private pages, plus the pages they
 * share counted once (the largest share of any one process: node's binary and libraries, the same
 * files in each). Summing peak RSS instead counts those shared pages once per process, about 50 MiB
 * each for node itself. `stop` resolves with the peak in MiB.
 */
export function sampleTreeMemory(pids: number[], everyMs = 250): { stop(): number } {
  let peakKiB = 0;
  const sample = () => {
    let privateKiB = 0;
    let sharedKiB = 0;
    for (const pid of pids) {
      let text: string;
      try {
        text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      } catch {
        continue; // gone
      }
      const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
      privateKiB += field('Private_Clean') + field('Private_Dirty');
      sharedKiB = Math.max(sharedKiB, field('Shared_Clean') + field('Shared_Dirty'));
    }
    peakKiB = Math.max(peakKiB, privateKiB + sharedKiB);
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peakKiB / 1024;
    },
  };
}

export function fmt(name: string, r: LoadResult, rssMiB: number): string {
  const failure = r.firstError === undefined ? '' : `  first error: ${JSON.stringify(r.firstError)}`;
  return `${name.padEnd(34)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2).padStart(6)} ms  p99 ${r.p99.toFixed(2).padStart(6)} ms  p99.9 ${r.p999.toFixed(2).padStart(6)} ms  max ${r.max.toFixed(0).padStart(5)} ms  first answer of a connection max ${r.firstMax.toFixed(0).padStart(5)} ms  errors ${r.errors}  peak RSS ${rssMiB.toFixed(0)} MiB${failure}`;
}

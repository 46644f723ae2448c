/**
 * ResendDCVEmail with the outbox on SQLite (issue 4's benchmark): HTTPS
 * keep-alive, concurrency 64, warm credential cache, every answer checked to
 * be `errorCode=0` (a durably queued email); then the rate at which the
 * outbox delivers the backlog over pooled SMTP to a counting sink in its own
 * process. Targets on the 2-core machine: ≥ 1,500 resends/s, ≥ 300 emails/s.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { fmt, forkBenchChild, load, type LoadResult } from './lib.ts';
import { splitsDelivery } from '../src/config.ts';
import type { FlowOutcome } from '../src/outbox/flow.ts';
import { waitingOf as waiting, type FlowWaits, type OutboxBacklog } from './tree.ts';

const LOGIN = 'bench';
const PASSWORD = 'bench password 1234';
const ORDER = 4242424;

interface Proc {
  port: number;
  ca: string;
  count<T>(): Promise<T>;
  backlog(): Promise<Backlog>;
  flow(): Promise<FlowWaits>;
  cpuMicros(): Promise<number>;
  stop(): Promise<number>;
}

function start(mode: 'sink' | 'dcvd', options: Record<string, unknown> = {}): Promise<Proc> {
  const child = forkBenchChild('resend-child', [mode, JSON.stringify(options)]);
  const reply = <T>(key: string) => new Promise<T>((resolve) => {
    const on = (m: Record<string, unknown>) => {
      if (!(key in m)) return;
      child.off('message', on);
      resolve(m[key] as T);
    };
    child.on('message', on);
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`bench process ${mode} exited with ${code}`)));
    child.once('message', (msg: { port: number; ca: string }) => {
      child.removeAllListeners('exit');
      resolve({
        port: msg.port,
        ca: msg.ca,
        count<T>() {
          const r = reply<T>('count');
          child.send('count');
          return r;
        },
        backlog() {
          const r = reply<Backlog>('backlog');
          child.send('backlog');
          return r;
        },
        flow() {
          const r = reply<FlowWaits>('flow');
          child.send('flow');
          return r;
        },
        cpuMicros() {
          const r = reply<number>('cpu');
          child.send('cpu');
          return r;
        },
        stop() {
          const r = reply<number>('maxRssMiB');
          child.send('stop');
          return r;
        },
      });
    });
  });
}

type States = Record<string, number>;
type Backlog = OutboxBacklog;

/** The lines to print, and the figures bench/growth.ts compares. */
export interface ResendResult {
  lines: string[];
  queued: LoadResult;
  cpuPerResend: number;
}

export default async function bench(
  opts: {
    durationMs?: number;
    concurrency?: number;
    processes?: number;
    deliveryProcess?: boolean;
    flowControl?: boolean;
    bareRps?: number;
    prefill?: number;
    /** PostgreSQL (bench/growth.ts; an empty schema of its own) instead of SQLite in a data directory. */
    databaseUrl?: string;
  } = {},
): Promise<ResendResult> {
  const durationMs = opts.durationMs ?? 10_000;
  const concurrency = opts.concurrency ?? 64;
  const processes = opts.processes ?? 1;
  const split = splitsDelivery({ processes, deliveryProcess: opts.deliveryProcess === true });
  const sink = await start('sink');
  try {
    // One order per connection: concurrent resends of ONE order through several processes would mostly
    // answer -160 by design (exactly one of them is queued, CONTRACT §10).
    const server = await start('dcvd', { smtpUrl: `smtp://127.0.0.1:${sink.port}`, login: LOGIN, password: PASSWORD, orderNumber: ORDER, orders: concurrency, processes, deliveryProcess: split, flowControl: opts.flowControl === true, prefill: opts.prefill ?? 0, ...(opts.databaseUrl ? { databaseUrl: opts.databaseUrl } : {}) });
    const body = (loop: number) =>
      new URLSearchParams({ loginName: LOGIN, loginPassword: PASSWORD, orderNumber: String(ORDER + (loop % concurrency)), dcvEmailAddress: 'admin@example.com' }).toString();
    const acceptedBefore = await sink.count<number>();
    const cpuBefore = await server.cpuMicros();
    const t0 = Date.now();
    // The queue's course during the load, read by the delivering process once a second.
    const samples: Backlog[] = [];
    let sampling = true;
    const sampled = (async () => {
      while (sampling) {
        await sleep(1000);
        if (sampling) samples.push(await server.backlog());
      }
    })();
    const queued = await load({
      port: server.port,
      ca: server.ca,
      path: '/products/!ResendDCVEmail',
      body,
      concurrency,
      durationMs,
      check: (status, b) => status === 200 && b === 'errorCode=0',
    });
    const loadSeconds = (Date.now() - t0) / 1000;
    sampling = false;
    await sampled;
    const atEnd = await server.backlog();
    const waits = await server.flow();
    const cpuPerResend = ((await server.cpuMicros()) - cpuBefore) / queued.answered;
    const deliveredDuringLoad = (await sink.count<number>()) - acceptedBefore;

    // The backlog the load left behind, delivered with nothing else running.
    const drainStart = Date.now();
    const atDrainStart = await sink.count<number>();
    const cpuAtDrainStart = await server.cpuMicros();
    let states = await server.count<States>();
    const backlog = waiting(states);
    while (waiting(states) > 0 && Date.now() - drainStart < 60_000) {
      await sleep(250);
      states = await server.count<States>();
    }
    const drainSeconds = (Date.now() - drainStart) / 1000;
    const drained = (await sink.count<number>()) - atDrainStart;
    const cpuPerEmail = ((await server.cpuMicros()) - cpuAtDrainStart) / Math.max(1, drained);
    const total = await sink.count<number>();
    const serverRss = await server.stop();
    const sinkRss = await sink.stop();
    const shape =
      processes > 1
        ? `serve --processes ${processes}: ${processes} API processes, delivery in the primary`
        : split
          ? 'serve --delivery-process: one API process, delivery in the primary'
          : 'one process: API and delivery on one event loop';
    const label = (processes > 1 ? ` x${processes}` : split ? ' x1+delivery' : '') + (opts.flowControl ? ' flow control' : '');
    const flow = opts.flowControl ? 'the default flow control (--outbox-max-lag 2s, --outbox-flow-delay 1s)' : 'no flow control (--outbox-max-lag 0)';
    const course = [...samples, atEnd].map((b) => `${b.waiting} (${(b.lagMs / 1000).toFixed(1)}s)`).join(', ');
    // Drained during the load: what is left when it stops is no more than delivery clears in 3 s, and at
    // no sample had the oldest due email waited more than 4 s (the flow control's 2 s lag and 1 s delay,
    // plus 1 s for a sample read late by a saturated event loop: in one process the sampling runs on the
    // loop under load). Without flow control the wait grows with the load's length; with it, it is held
    // (by design: this checks that the design holds under the real load, not more).
    const deliveredPerSecond = deliveredDuringLoad / loadSeconds;
    const longestWaitMs = Math.max(...[...samples, atEnd].map((b) => b.lagMs));
    const bounded = longestWaitMs <= 4000 && atEnd.waiting <= deliveredPerSecond * 3;
    const lines = [
      `ResendDCVEmail, HTTPS keep-alive, concurrency ${concurrency}, ${durationMs / 1000}s, outbox on ${opts.databaseUrl ? 'PostgreSQL' : 'SQLite'}, pooled SMTP to a counting sink process (resend interval 0, identical resends of one order per connection), ${shape}, ${flow}`,
      fmt(`dcvd ResendDCVEmail (queued)${label}`, queued, serverRss) + (split ? ' (RSS: all processes)' : ''),
      ...(opts.bareRps ? [`ratio dcvd/bare req/s: ${(queued.rps / opts.bareRps).toFixed(2)}  (target >= 0.4; bare from the address-list case of this run)`] : []),
      `dcvd CPU per resend, all its threads and processes (requests, outbox worker, WAL checkpoints): ${cpuPerResend.toFixed(0)} µs  (target <= 500)`,
      `outbox delivering during that load: ${deliveredPerSecond.toFixed(0)} emails/s, against ${queued.rps.toFixed(0)} queued/s`,
      `emails waiting each second of the load (the oldest due one's wait): ${course}`,
      ...(opts.flowControl ? [`calls that waited for delivery: ${flowLine(waits, queued.answered)}`] : []),
      `the queue during the load: ${bounded ? 'bounded' : 'grew'} (the oldest due email waited at most ${(longestWaitMs / 1000).toFixed(1)}s; ${atEnd.waiting} left at the end)  (target: drains during the load)`,
      `outbox draining a backlog of ${backlog}: ${(drained / drainSeconds).toFixed(0)} emails/s (${drained} in ${drainSeconds.toFixed(1)}s, ${cpuPerEmail.toFixed(0)} µs of server CPU per email; sink RSS ${sinkRss.toFixed(0)} MiB)`,
      `exactly once: ${states.delivered ?? 0} rows delivered, ${total} messages at the sink, ${waiting(states)} still waiting, ${states.failed ?? 0} failed`,
      `targets: >= 300 emails/s delivered during the load, >= 500 emails/s draining a backlog`,
    ];
    return { lines, queued, cpuPerResend };
  } catch (err) {
    await sink.stop().catch(() => undefined);
    throw err;
  }
}

/** How the flow control's waits ended (its metrics count the warm-up's calls too), and their mean. */
const FLOW_OUTCOMES: readonly FlowOutcome[] = ['caught-up', 'timed-out', 'aborted', 'unread'];

function flowLine(w: FlowWaits, answered: number): string {
  const outcomes = FLOW_OUTCOMES.map((o) => `${o} ${w[o] ?? 0}`).join(', ');
  const n = FLOW_OUTCOMES.reduce((sum, o) => sum + (w[o] ?? 0), 0);
  return `${n} calls, warm-up included, against ${answered} answered after it (${outcomes}), ${n ? ((1000 * (w.seconds ?? 0)) / n).toFixed(0) : 0} ms on average`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const line of (await bench({ durationMs: Number(process.env.DCVD_BENCH_SECONDS ?? 10) * 1000 })).lines) console.log(line);
  process.exit(0);
}

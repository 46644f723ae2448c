/**
 * `dcvd serve --processes N` (issue 20): N API processes (role api) share the HTTPS port through
 * node:cluster (one with `--delivery-process`), and the primary process delivers (role worker: the DCV email outbox, the webhooks, the
 * purges) and serves the internal API. All of them use the one database: lockouts, the 24-hour
 * registry, the orders and the outbox are rows there, so every process sees the same state (SQLite
 * transactions begin IMMEDIATE for this, src/store/database.ts).
 *
 * The primary migrates and makes the certificate first, then forks the API processes; each one tells
 * it when it queued an email or a webhook (one message per event-loop turn at most), so delivery starts
 * at once instead of at the next poll. The API processes run --api-nice lower in priority, so that a
 * saturated API leaves the primary the CPU it needs to deliver and to release the SQLite write lock it
 * holds while recording deliveries. /metrics on the primary sums the API processes' counters with
 * its own. An API process that dies is replaced after a second; on SIGTERM/SIGINT the primary stops
 * them (each finishes its requests in flight), then stops delivering.
 */
import cluster, { type ClusterSettings, type Worker } from 'node:cluster';
import { getPriority, setPriority } from 'node:os';
import type { AddressInfo } from 'node:net';
import { splitsDelivery, type ServeConfig } from './config.ts';
import { createLogger, type Logger } from './log.ts';
import { linksBase, prepareShared, startServer, startWorker, type RunningWorker } from './server.ts';
import { wakesPerTurn, type WakeQueue } from './store/wake.ts';

/** Messages between the primary and an API process. */
type ToChild = { dcvd: 'stop' } | { dcvd: 'metrics'; id: number };
type ToPrimary =
  | { dcvd: 'ready'; https: AddressInfo; http?: AddressInfo }
  | { dcvd: 'failed'; message: string }
  | { dcvd: 'wake'; queue: WakeQueue }
  | { dcvd: 'metrics'; id: number; metrics: object };

const isMessage = (m: unknown): m is { dcvd: string } => typeof m === 'object' && m !== null && typeof (m as { dcvd?: unknown }).dcvd === 'string';

/** How long the primary waits for an API process to finish its requests when stopping, and for its metrics. */
const STOP_GRACE_MS = 30_000;
const METRICS_WAIT_MS = 2_000;
/** An API process that died is replaced after this long (a crash loop does not spin). */
const RESPAWN_DELAY_MS = 1_000;
const MAX_RESPAWN_DELAY_MS = 30_000;

/**
 * V8's young generation in each API process: at most 2 × 8 MiB semi-spaces instead of node's 2 × 16.
 * Measured under 1,024 connections with `--processes 2` (issue 20, docs/PERFORMANCE.md, seventh round):
 * 15–50 MiB less at the peak of the three processes counted once, what keeps them under 400 MiB; the CPU
 * per request within a wide spread (once much higher). An operator's own `--max-semi-space-size` (node's
 * options of the primary, or NODE_OPTIONS) wins.
 */
export const API_PROCESS_SEMI_SPACE_MIB = 8;

/** The node options of an API process: the primary's (or those `setup` names), with the young generation capped unless they set it. */
export function apiProcessExecArgv(base: readonly string[], nodeOptions: string | undefined): string[] {
  const own = (flags: string) => /(^|\s)--max[-_]semi[-_]space[-_]size\b/.test(flags);
  if (own(base.join(' ')) || own(nodeOptions ?? '')) return [...base];
  return [...base, `--max-semi-space-size=${API_PROCESS_SEMI_SPACE_MIB}`];
}

export interface RunningCluster {
  https: AddressInfo;
  http?: AddressInfo;
  /** The primary: delivery, timers, the internal API. */
  worker: RunningWorker;
  /** The API processes' pids now. */
  pids(): number[];
  /** Stops the API processes (requests in flight finish), then delivery; resolves when all are gone. */
  close(): Promise<void>;
}

/**
 * The primary's side. `setup` is node:cluster's (tests and the benchmark name the script an API process
 * runs); by default an API process runs this process's own command line, and `runApiProcess` there.
 */
export async function startCluster(config: ServeConfig, options: { logger?: Logger; setup?: ClusterSettings } = {}): Promise<RunningCluster> {
  if (!cluster.isPrimary) throw new Error('startCluster runs in the primary process');
  if (!splitsDelivery(config)) throw new Error('a cluster has at least 2 API processes, or 1 with --delivery-process');
  if (config.role !== 'all') throw new Error('--processes and --delivery-process run API processes beside a delivering primary: use them with --role all');
  // Every line says which process wrote it.
  const logger = (options.logger ?? createLogger(config.logLevel)).child({ pid: process.pid });
  await prepareShared(config, logger);
  cluster.setupPrimary({ ...options.setup, execArgv: apiProcessExecArgv(options.setup?.execArgv ?? process.execArgv, process.env.NODE_OPTIONS) });

  const children = new Set<Worker>();
  let stopping = false;
  let worker: RunningWorker | undefined;
  let metricsId = 0;
  const metricsWaiting = new Map<number, (metrics: object) => void>();

  // A start failure is the fork's rejection (the start's error, or a replacement's logged failure).
  const onMessage = (m: unknown) => {
    if (!isMessage(m)) return;
    const msg = m as ToPrimary;
    if (msg.dcvd === 'wake') {
      // Before the primary delivers, its first look at start() finds what was queued.
      if (msg.queue === 'outbox') worker?.outbox.wake();
      else worker?.webhooks.wake();
    } else if (msg.dcvd === 'metrics') {
      metricsWaiting.get(msg.id)?.(msg.metrics);
    }
  };

  /** Forks one API process; resolves with its addresses once it listens, rejects with its start error. */
  const fork = (): Promise<{ https: AddressInfo; http?: AddressInfo }> =>
    new Promise((resolve, reject) => {
      const child = cluster.fork();
      children.add(child);
      lowerPriority(child);
      // settled: the start answered (ready, failed or gone); ready: it listened, so its exit is replaced here.
      let settled = false;
      let ready = false;
      child.on('message', (m: unknown) => {
        onMessage(m);
        if (!isMessage(m) || settled) return;
        const msg = m as ToPrimary;
        if (msg.dcvd === 'ready') {
          settled = ready = true;
          resolve({ https: msg.https, ...(msg.http ? { http: msg.http } : {}) });
        } else if (msg.dcvd === 'failed') {
          settled = true;
          reject(new Error(msg.message));
        }
      });
      child.on('exit', (code, signal) => {
        children.delete(child);
        if (!settled) {
          settled = true;
          reject(new Error(`an API process exited before it listened (${signal ?? `exit code ${code}`})`));
        }
        // One that never listened is the start's failure: at start-up the cluster fails, a replacement is tried again (replace).
        if (stopping || !ready) return;
        logger.error({ pid: child.process.pid, code, signal }, 'an API process exited; starting another');
        replace(RESPAWN_DELAY_MS);
      });
    });

  /**
   * A replacement after `delay`; one that fails to start (its start's error, or an exit before it
   * listened: killed, out of memory, a broken install) is tried again after twice as long, up to
   * MAX_RESPAWN_DELAY_MS, so that the port is never left without an API process for good.
   */
  const replace = (delay: number) => {
    setTimeout(() => {
      if (stopping) return;
      fork().catch((err: unknown) => {
        const next = Math.min(delay * 2, MAX_RESPAWN_DELAY_MS);
        logger.error({ err, retryInMs: next }, 'a replacement API process failed to start; trying again');
        replace(next);
      });
    }, delay).unref();
  };

  // The API processes yield the CPU to the primary when both want it (--api-nice): delivery keeps up under load.
  const lowerPriority = (child: Worker) => {
    const pid = child.process.pid;
    if (config.apiNice === 0 || pid === undefined) return;
    try {
      setPriority(pid, Math.min(19, getPriority() + config.apiNice));
    } catch (err) {
      logger.warn({ err, pid }, 'could not lower an API process\u2019s priority (--api-nice); it runs at the primary\u2019s');
    }
  };

  const stopChildren = async () => {
    stopping = true;
    await Promise.all(
      [...children].map(
        (child) =>
          new Promise<void>((done) => {
            if (child.isDead()) return done();
            const timer = setTimeout(() => child.process.kill('SIGKILL'), STOP_GRACE_MS);
            child.once('exit', () => {
              clearTimeout(timer);
              done();
            });
            try {
              child.send({ dcvd: 'stop' } satisfies ToChild);
            } catch {
              child.process.kill('SIGTERM');
            }
          }),
      ),
    );
  };

  const peers = async (): Promise<object[]> => {
    const answers = [...children].filter((c) => c.isConnected()).map(
      (child) =>
        new Promise<object | undefined>((done) => {
          const id = ++metricsId;
          const timer = setTimeout(() => {
            metricsWaiting.delete(id);
            done(undefined);
          }, METRICS_WAIT_MS);
          metricsWaiting.set(id, (metrics) => {
            clearTimeout(timer);
            metricsWaiting.delete(id);
            done(metrics);
          });
          child.send({ dcvd: 'metrics', id } satisfies ToChild);
        }),
    );
    return (await Promise.all(answers)).filter((m): m is object => m !== undefined);
  };

  try {
    const started = await Promise.all(Array.from({ length: config.processes }, () => fork()));
    const { https, http } = started[0]!;
    // The links of the emails point at --public-url, or at the port the API processes share.
    const publicUrl = linksBase(config, https);
    worker = await startWorker({ ...config, role: 'worker', dcvEmail: { ...config.dcvEmail, publicUrl } }, { logger, metricsPeers: peers });
    const running = worker;
    let closing: Promise<void> | undefined;
    return {
      https,
      ...(http ? { http } : {}),
      worker: running,
      pids: () => [...children].map((c) => c.process.pid!).filter((pid) => pid !== undefined),
      close() {
        closing ??= stopChildren().then(() => running.close());
        return closing;
      },
    };
  } catch (err) {
    await stopChildren();
    throw err;
  }
}

/**
 * An API process's side: the server in role api, its wakes and metrics sent to the primary. Stops on
 * the primary's word, on SIGTERM/SIGINT, or when the primary is gone.
 */
export async function runApiProcess(config: ServeConfig, options: { logger?: Logger } = {}): Promise<void> {
  if (!cluster.isWorker || !process.send) throw new Error('runApiProcess runs in a process forked by startCluster');
  const send = (m: ToPrimary) => {
    if (process.connected) process.send!(m);
  };
  // At most one wake message per queue and event-loop turn, however many emails a burst queued.
  const remoteWake = wakesPerTurn((queue) => send({ dcvd: 'wake', queue }));
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(
      { ...config, role: 'api', processes: 1, deliveryProcess: false, adminListen: undefined },
      { logger: (options.logger ?? createLogger(config.logLevel)).child({ pid: process.pid }), remoteWake },
    );
  } catch (err) {
    send({ dcvd: 'failed', message: err instanceof Error ? err.message : String(err) });
    process.exitCode = 1;
    process.disconnect();
    return;
  }
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        server.logger.error({ err }, 'API process: shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return;
    const msg = m as ToChild;
    if (msg.dcvd === 'stop') stop();
    else if (msg.dcvd === 'metrics') {
      server.metrics.registry.getMetricsAsJSON().then(
        (metrics) => send({ dcvd: 'metrics', id: msg.id, metrics }),
        (err: unknown) => server.logger.warn({ err }, 'API process: reading metrics failed'),
      );
    }
  });
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  send({ dcvd: 'ready', https: server.https, ...(server.http ? { http: server.http } : {}) });
}

/**
 * WAL checkpoints off the request thread. better-sqlite3 is synchronous, and
 * SQLite's automatic checkpoint runs inside the commit that crosses the
 * threshold: it copies pages back into the database file and fsyncs twice,
 * stalling every request of the process for that long (measured: it doubled
 * the cost of a commit on this machine's disk). The server instead gives the
 * checkpoints to a worker thread with its own connection, which runs a
 * PASSIVE checkpoint (never waits for, never blocks, the writer) every
 * `intervalMs`. The main connection keeps an automatic checkpoint at a much
 * higher threshold, so the WAL stays bounded even if the worker stopped.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** The worker: plain CommonJS, so that it runs without the TypeScript loader. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
const run = () => {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage({ busy: r.busy, log: r.log, checkpointed: r.checkpointed });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message) });
  }
};
const timer = setInterval(run, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  run();
  db.close();
  parentPort.close();
});
`;

export interface CheckpointResult {
  /** Frames in the WAL, and how many of them are now in the database file. */
  log: number;
  checkpointed: number;
  busy: number;
}

export interface Checkpointer {
  /** Runs a last checkpoint and ends the thread. */
  stop(): Promise<void>;
}

/** WAL pages at which the main connection checkpoints by itself (about 40 MiB): the worker normally keeps it far below. */
export const FALLBACK_AUTOCHECKPOINT_PAGES = 10_000;

const ERROR_REPORT_INTERVAL_MS = 60_000;

export function startCheckpointer(
  file: string,
  options: { intervalMs?: number; onResult?: (r: CheckpointResult) => void; onError?: (message: string) => void } = {},
): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, driver, intervalMs: options.intervalMs ?? 250 } });
  // The process may end without stopping it (a CLI, a crash): the main connection's close checkpoints anyway.
  worker.unref();
  // A lasting failure (a full disk, say) fails every round: report a message once, then at most once a minute.
  let reported: { message: string; at: number } | undefined;
  const failed = (message: string) => {
    const now = Date.now();
    if (reported?.message === message && now - reported.at < ERROR_REPORT_INTERVAL_MS) return;
    reported = { message, at: now };
    options.onError?.(message);
  };
  worker.on('message', (m: CheckpointResult | { error: string }) => {
    if ('error' in m) failed(m.error);
    else options.onResult?.(m);
  });
  worker.on('error', (err) => failed(err.message));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        // Keep the process up until the last checkpoint is done.
        worker.ref();
        worker.postMessage('stop');
        await exited;
      })();
      return stopping;
    },
  };
}

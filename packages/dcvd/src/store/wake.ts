/**
 * Wake-ups between processes: at most one per queue and event-loop turn (`wakesPerTurn`, also the
 * IPC wake of `--processes`, src/cluster.ts), and through PostgreSQL (LISTEN/NOTIFY) for `--role api` beside
 * `--role worker` on other hosts (issue 20): an API process that queued an email or a webhook
 * sends a notification; a worker listening on a connection of its own is woken at once instead of
 * at its next poll. The poll stays: a notification lost with a dropped connection delays an email
 * by one poll interval at most, and the queue itself is the database, never the notification.
 *
 * The payload is empty: a notification says "look at the queue", nothing about what is in it, so
 * a process that can send notifications to the channel can at most cause an extra look.
 */
import type pg from 'pg';
import { loadPg } from './database.ts';

/** The channel of each queue. Fixed names: every instance of one deployment shares one database. */
export const WAKE_CHANNELS = { outbox: 'dcvd_outbox', webhooks: 'dcvd_webhooks' } as const;
export type WakeQueue = keyof typeof WAKE_CHANNELS;

/** The listener's `application_name`, so that an operator sees it in pg_stat_activity. */
export const LISTENER_NAME = 'dcvd wake listener';

/** Sends one notification on a channel (`select pg_notify(channel, '')` on the caller's pool). */
export type Notify = (channel: string) => Promise<unknown>;

/**
 * A wake per queue that sends at most once per event-loop turn, however many emails or webhooks a
 * burst queued: `send` runs in the next turn for each queue woken in this one.
 */
export function wakesPerTurn(send: (queue: WakeQueue) => void): Record<WakeQueue, () => void> {
  const pending = new Set<WakeQueue>();
  const flush = () => {
    for (const queue of pending) send(queue);
    pending.clear();
  };
  const wake = (queue: WakeQueue) => () => {
    if (pending.size === 0) setImmediate(flush);
    pending.add(queue);
  };
  return { outbox: wake('outbox'), webhooks: wake('webhooks') };
}

/**
 * The sending side: one `pg_notify` per queue and event-loop turn at most (a statement per queued
 * email would be a second round trip on every resend). Failures are reported, never thrown: the
 * worker's poll still finds the work.
 */
export function notifier(notify: Notify, onError: (err: unknown, queue: WakeQueue) => void): Record<WakeQueue, () => void> {
  return wakesPerTurn((queue) => {
    notify(WAKE_CHANNELS[queue]).catch((err: unknown) => onError(err, queue));
  });
}

export interface WakeListener {
  /** Resolves once the first LISTEN is in place (or failed: the listener then retries on its own). */
  ready: Promise<void>;
  close(): Promise<void>;
}

export interface ListenOptions {
  /** Called for each notification of a queue, and for every queue after each (re)connection. */
  wake: Record<WakeQueue, () => void>;
  onError: (err: unknown) => void;
  /** First delay before reconnecting; doubles up to maxRetryMs (defaults 500 ms and 30 s). */
  retryMs?: number;
  maxRetryMs?: number;
}

/**
 * The listening side: a client of its own (a pooled connection would lose its LISTEN when
 * returned), reconnected with backoff when it drops. After every (re)connection each queue is
 * woken once, for what was queued while nobody listened.
 */
export function listenForWakes(connectionString: string, options: ListenOptions): WakeListener {
  const firstRetry = options.retryMs ?? 500;
  const maxRetry = options.maxRetryMs ?? 30_000;
  let client: pg.Client | undefined;
  let closed = false;
  let retry = firstRetry;
  let timer: NodeJS.Timeout | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const byChannel = new Map<string, () => void>(Object.entries(WAKE_CHANNELS).map(([queue, channel]) => [channel, options.wake[queue as WakeQueue]]));

  const reconnectLater = () => {
    if (closed || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, retry);
    timer.unref();
    retry = Math.min(maxRetry, retry * 2);
  };

  const connect = async () => {
    const c: pg.Client = new (loadPg().Client)({ connectionString, connectionTimeoutMillis: 5000, keepAlive: true, application_name: LISTENER_NAME });
    client = c;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      if (!closed) options.onError(err);
      c.removeAllListeners('notification');
      c.end().catch(() => undefined);
      reconnectLater();
    };
    c.on('error', fail);
    c.on('end', () => fail(new Error('the LISTEN connection ended')));
    c.on('notification', (n) => byChannel.get(n.channel)?.());
    try {
      await c.connect();
      for (const channel of Object.values(WAKE_CHANNELS)) await c.query(`listen ${channel}`);
      if (closed) {
        await c.end();
        return;
      }
      retry = firstRetry;
      for (const wake of Object.values(options.wake)) wake();
    } catch (err) {
      fail(err);
    } finally {
      markReady();
    }
  };

  void connect();
  return {
    ready,
    async close() {
      closed = true;
      clearTimeout(timer);
      const c = client;
      client = undefined;
      if (c) {
        c.removeAllListeners('end');
        c.on('error', () => undefined);
        await c.end().catch(() => undefined);
      }
    },
  };
}

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

/** How long the listener's connection and authentication may take (pg's connectionTimeoutMillis). */
const CONNECT_TIMEOUT_MS = 5000;

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
  /** First delay before reconnecting; doubles up to maxRetryMs (defaults 500 ms and 30 s), each wait drawn between half of it and all of it. */
  retryMs?: number;
  maxRetryMs?: number;
  /**
   * How long a connection must have been listening before its loss starts the backoff again from
   * retryMs (default 30 s). A successful LISTEN alone does not: a server or proxy that accepts the
   * connection and the LISTEN and drops it at once, again and again, would otherwise be reconnected
   * to every 0.25–0.5 s forever. A connection lost sooner keeps doubling the delay.
   */
  stableMs?: number;
  /**
   * How often the connection is checked with a `select 1` (default 30 s), and how long that may take
   * (default 10 s) before the connection counts as lost. A connection whose peer vanished without a
   * FIN or RST (a host gone, a NAT or firewall that forgot it) raises no error, and a listener on it
   * hears nothing: TCP keep-alive alone finds that only after the kernel's probes (minutes on Linux).
   */
  heartbeatMs?: number;
  heartbeatTimeoutMs?: number;
}

/**
 * The wait before a reconnection: between half of `delay` and all of it, so that workers which lost
 * PostgreSQL together (a restart, a failover) do not all come back in the same millisecond.
 */
export function jittered(delay: number, random: () => number = Math.random): number {
  return Math.round(delay / 2 + (delay / 2) * random());
}

/**
 * The listener's connection string with `application_name` set to LISTENER_NAME, replacing any
 * the operator's URL names: pg lets a name in the URL override the one in the client's options, and
 * an operator (and the tests) find the listener in pg_stat_activity by it. A string that is not a URL
 * (a bare socket directory, say) is passed on unchanged, with the name as an option.
 */
export function listenerConnection(connectionString: string): { connectionString: string; application_name: string } {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return { connectionString, application_name: LISTENER_NAME };
  }
  url.searchParams.set('application_name', LISTENER_NAME);
  return { connectionString: url.toString(), application_name: LISTENER_NAME };
}

/**
 * The listening side: a client of its own (a pooled connection would lose its LISTEN when
 * returned), reconnected with backoff when it drops (back to the first delay only after a
 * connection that stayed up for stableMs). After every (re)connection each queue is woken once,
 * for what was queued while nobody listened.
 */
export function listenForWakes(connectionString: string, options: ListenOptions): WakeListener {
  const firstRetry = options.retryMs ?? 500;
  const maxRetry = options.maxRetryMs ?? 30_000;
  const heartbeatMs = options.heartbeatMs ?? 30_000;
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 10_000;
  const stableMs = options.stableMs ?? 30_000;
  const target = listenerConnection(connectionString);
  let client: pg.Client | undefined;
  let closed = false;
  let retry = firstRetry;
  let timer: NodeJS.Timeout | undefined;
  /** The current connection's checks (one connection at a time). */
  let heartbeat: NodeJS.Timeout | undefined;
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const byChannel = new Map<string, () => void>(Object.entries(WAKE_CHANNELS).map(([queue, channel]) => [channel, options.wake[queue as WakeQueue]]));

  const reconnectLater = () => {
    if (closed || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, jittered(retry));
    timer.unref();
    retry = Math.min(maxRetry, retry * 2);
  };

  const connect = async () => {
    const c: pg.Client = new (loadPg().Client)({ ...target, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, keepAlive: true, keepAliveInitialDelayMillis: heartbeatMs });
    client = c;
    let failed = false;
    /** When this connection's LISTEN succeeded (performance.now(), monotonic); undefined before. */
    let listeningSince: number | undefined;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      clearInterval(heartbeat);
      markReady();
      if (!closed) options.onError(err);
      c.removeAllListeners('notification');
      void drop(c);
      if (listeningSince !== undefined && performance.now() - listeningSince >= stableMs) retry = firstRetry;
      reconnectLater();
    };
    // One `select 1` at a time; one that errs, or takes longer than heartbeatTimeoutMs, drops the connection.
    let checking = false;
    const check = () => {
      if (checking || failed || closed) return;
      checking = true;
      const late = setTimeout(() => fail(new Error(`the LISTEN connection did not answer a check within ${heartbeatTimeoutMs} ms`)), heartbeatTimeoutMs);
      late.unref();
      c.query('select 1')
        .catch(fail)
        .finally(() => {
          clearTimeout(late);
          checking = false;
        });
    };
    c.on('error', fail);
    c.on('end', () => fail(new Error('the LISTEN connection ended')));
    c.on('notification', (n) => byChannel.get(n.channel)?.());
    // connectionTimeoutMillis bounds the connection and its authentication; this, the LISTEN statements after it.
    const setupMs = CONNECT_TIMEOUT_MS + heartbeatTimeoutMs;
    const setup = setTimeout(() => fail(new Error(`the LISTEN connection was not listening within ${setupMs} ms`)), setupMs);
    setup.unref();
    try {
      await c.connect();
      for (const channel of Object.values(WAKE_CHANNELS)) await c.query(`listen ${channel}`);
      clearTimeout(setup);
      if (failed) return;
      if (closed) {
        await drop(c);
        return;
      }
      listeningSince = performance.now();
      heartbeat = setInterval(check, heartbeatMs);
      heartbeat.unref();
      for (const wake of Object.values(options.wake)) wake();
    } catch (err) {
      clearTimeout(setup);
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
      clearInterval(heartbeat);
      const c = client;
      client = undefined;
      if (c) {
        c.removeAllListeners('end');
        c.on('error', () => undefined);
        await drop(c);
      }
    },
  };
}

/**
 * Ends a client without depending on its peer: pg's end() resolves when the server closes the socket,
 * which a vanished server never does, so after a second the socket is destroyed (and end() resolves).
 */
function drop(c: pg.Client): Promise<void> {
  const socket = (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  const force = setTimeout(() => socket?.destroy(), 1000);
  force.unref();
  return c
    .end()
    .catch(() => undefined)
    .finally(() => clearTimeout(force));
}

/**
 * The worker's LISTEN connection (src/store/wake.ts) against a real PostgreSQL, through a TCP relay
 * on loopback that can fall silent the way a vanished host or a NAT that forgot the connection does:
 * the bytes stop, no FIN, no RST, no error on either side. The relay can also hang up right after the
 * LISTEN, the way a server or proxy that accepts connections and drops them at once does.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { jittered, listenerConnection, listenForWakes, LISTENER_NAME, WAKE_CHANNELS, type WakeListener } from '../src/store/wake.ts';
import { DEFAULT_TEST_POSTGRES_URL, postgresOrSkip } from './support/database.ts';
import { waitUntil } from './support/wait.ts';

test('a reconnection waits between half of the backoff and all of it', () => {
  assert.equal(jittered(1000, () => 0), 500);
  assert.equal(jittered(1000, () => 0.999999), 1000);
  const draws = Array.from({ length: 200 }, () => jittered(8000));
  assert.ok(draws.every((d) => d >= 4000 && d <= 8000));
  assert.ok(new Set(draws).size > 20, 'the waits differ');
});

test('the listener names itself whatever application_name the URL carries', () => {
  const named = listenerConnection('postgres://dcvd:secret@db.example:5432/dcvd?application_name=mine&sslmode=require');
  const url = new URL(named.connectionString);
  assert.equal(url.searchParams.get('application_name'), LISTENER_NAME);
  assert.equal(url.searchParams.get('sslmode'), 'require');
  assert.equal(url.password, 'secret');
  assert.equal(named.application_name, LISTENER_NAME);
  // Not a URL: passed on as it is.
  assert.deepEqual(listenerConnection('/var/run/postgresql'), { connectionString: '/var/run/postgresql', application_name: LISTENER_NAME });
});

/** One relayed connection's moments (performance.now()): accepted, its last LISTEN answered, hung up by the relay. */
interface RelayedTimes {
  acceptedAt: number;
  listeningAt?: number;
  hungUpAt?: number;
}

/**
 * Relays connections to PostgreSQL; `silence()` stops every relayed connection's bytes without closing
 * it, and a silent connection answers no FIN either (half-open sockets: only the listener's own side can
 * end it, by destroying its socket). `hangUp()` closes every relayed connection at once, and
 * `hangUpAfterListen(n)` the next n connections as soon as PostgreSQL has answered their last LISTEN.
 */
async function startRelay(target: URL) {
  type Pair = { client: net.Socket; server: net.Socket; silent: boolean; ended: boolean; times: RelayedTimes };
  const pairs = new Set<Pair>();
  /** Every connection accepted, in order, including those gone. */
  const history: RelayedTimes[] = [];
  /** New connections fall silent at their first simple query (after the start-up and authentication). */
  let silentAtFirstQuery = false;
  /** How many of the next connections are hung up once listening. */
  let hangUpsAfterListen = 0;
  const hangUp = (pair: Pair) => {
    pair.times.hungUpAt ??= performance.now();
    pair.client.destroy();
    pair.server.destroy();
  };
  const relay = net.createServer({ allowHalfOpen: true }, (client) => {
    const server = net.connect({ port: Number(target.port || 5432), host: target.hostname, allowHalfOpen: true });
    const pair: Pair = { client, server, silent: false, ended: false, times: { acceptedAt: performance.now() } };
    const atQuery = silentAtFirstQuery;
    const hangsUp = hangUpsAfterListen > 0;
    if (hangsUp) hangUpsAfterListen--;
    let listens = 0;
    history.push(pair.times);
    pairs.add(pair);
    client.on('data', (chunk: Buffer) => {
      if (atQuery && chunk[0] === 0x51) pair.silent = true; // 'Q': the protocol's simple query
      if (chunk[0] === 0x51 && chunk.includes('listen ')) listens++;
      if (!pair.silent) server.write(chunk);
    });
    server.on('data', (chunk) => {
      if (!pair.silent) client.write(chunk);
      // The answer to the last LISTEN: the listener counts as listening once it has read it.
      if (listens < Object.keys(WAKE_CHANNELS).length || pair.times.listeningAt !== undefined) return;
      pair.times.listeningAt = performance.now();
      // A moment later, so that the listener has surely taken the LISTEN as done before the FIN.
      if (hangsUp) setTimeout(() => hangUp(pair), 20);
    });
    client.on('end', () => {
      pair.ended = true;
      if (!pair.silent) server.end();
    });
    server.on('end', () => pair.silent || client.end());
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('close', close).on('error', close);
    server.on('close', close).on('error', close);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const port = (relay.address() as net.AddressInfo).port;
  return {
    port,
    /** Connections the listener's side has not ended. */
    connections: () => [...pairs].filter((p) => !p.ended).length,
    silence: () => pairs.forEach((p) => (p.silent = true)),
    silenceAtFirstQuery: (on: boolean) => (silentAtFirstQuery = on),
    hangUp: () => pairs.forEach(hangUp),
    hangUpAfterListen: (n: number) => (hangUpsAfterListen = n),
    history: () => history,
    /** The relay's own ports towards PostgreSQL, as pg_stat_activity's client_port shows them. */
    serverPorts: () => [...pairs].filter((p) => !p.ended).map((p) => p.server.localPort),
    close: async () => {
      for (const p of pairs) {
        p.client.destroy();
        p.server.destroy();
      }
      await new Promise((resolve) => relay.close(resolve));
    },
  };
}

const noPostgres = await postgresOrSkip();

describe('the LISTEN connection, through a relay that falls silent', { skip: noPostgres }, () => {
  const base = new URL(process.env.DCVD_TEST_DATABASE_URL ?? DEFAULT_TEST_POSTGRES_URL);
  let relay: Awaited<ReturnType<typeof startRelay>>;
  let admin: pg.Client;
  before(async () => {
    relay = await startRelay(base);
    admin = new pg.Client({ connectionString: base.toString() });
    await admin.connect();
  });
  after(async () => {
    await admin?.end();
    await relay?.close();
  });
  /** The test database's URL, through the relay. */
  const throughRelay = () => {
    const via = new URL(base);
    via.hostname = '127.0.0.1';
    via.port = String(relay.port);
    return via;
  };

  test('a connection that stops answering is found by the check, dropped and made again; notifications then arrive', async () => {
    const via = throughRelay();
    via.searchParams.set('application_name', 'an operator name');
    let wakes = 0;
    const errors: string[] = [];
    let listener: WakeListener | undefined;
    try {
      listener = listenForWakes(via.toString(), {
        wake: { outbox: () => wakes++, webhooks: () => undefined },
        onError: (err) => errors.push(String(err)),
        retryMs: 50,
        heartbeatMs: 300,
        heartbeatTimeoutMs: 2_000,
      });
      await listener.ready;
      assert.deepEqual(errors, []);
      const named = await admin.query('select application_name from pg_stat_activity where client_port = any($1::int[])', [relay.serverPorts()]);
      assert.deepEqual(
        named.rows.map((r: { application_name: string }) => r.application_name),
        [LISTENER_NAME],
        'this listener is named LISTENER_NAME despite the URL',
      );

      const afterConnect = wakes;
      await admin.query(`notify ${WAKE_CHANNELS.outbox}`);
      await waitUntil('a notification wakes the outbox', async () => wakes > afterConnect, 30_000);

      // The bytes stop; nothing errs at the socket. Only the check can find it.
      relay.silence();
      const beforeSilence = wakes;
      await admin.query(`notify ${WAKE_CHANNELS.outbox}`);
      await waitUntil('the check reports the silent connection', async () => errors.length > 0, 30_000);
      assert.match(errors[0] ?? '', /did not answer a check within 2000 ms/);
      // Made again through the relay (new connections are relayed again); the wake after it covers what was missed.
      await waitUntil('the reconnection wakes every queue', async () => wakes > beforeSilence, 30_000);
      await waitUntil('the silent connection is gone, one is left', async () => relay.connections() === 1, 30_000);
      const afterReconnect = wakes;
      await admin.query(`notify ${WAKE_CHANNELS.outbox}`);
      await waitUntil('a notification on the new connection wakes the outbox', async () => wakes > afterReconnect, 30_000);
    } finally {
      await listener?.close();
    }
    await waitUntil('close() ends the connection', async () => relay.connections() === 0, 30_000);
  });

  test('a connection that falls silent before its LISTEN is given up and made again', async () => {
    const via = throughRelay();
    const errors: string[] = [];
    let wakes = 0;
    relay.silenceAtFirstQuery(true);
    const listener = listenForWakes(via.toString(), {
      wake: { outbox: () => wakes++, webhooks: () => undefined },
      onError: (err) => {
        errors.push(String(err));
        relay.silenceAtFirstQuery(false);
      },
      retryMs: 50,
      heartbeatTimeoutMs: 500,
    });
    try {
      // Without a bound on the LISTEN statements `ready` would never resolve (and the worker's start would wait on it).
      const ready = await Promise.race([listener.ready.then(() => true), sleep(30_000, false, { ref: false })]);
      assert.ok(ready, 'ready resolved');
      assert.match(errors[0] ?? '', /was not listening within 5500 ms/);
      await waitUntil('the next connection listens and wakes the queues', async () => wakes > 0, 30_000);
      const before = wakes;
      await admin.query(`notify ${WAKE_CHANNELS.outbox}`);
      await waitUntil('a notification wakes the outbox', async () => wakes > before, 30_000);
    } finally {
      relay.silenceAtFirstQuery(false);
      await listener.close();
    }
  });

  test('close() returns on a silent connection', async () => {
    const via = throughRelay();
    const listener = listenForWakes(via.toString(), {
      wake: { outbox: () => undefined, webhooks: () => undefined },
      onError: () => undefined,
      heartbeatMs: 60_000,
    });
    await listener.ready;
    relay.silence();
    // pg's end() alone would wait for a FIN that never comes.
    const closed = await Promise.race([listener.close().then(() => true), sleep(30_000, false, { ref: false })]);
    assert.ok(closed, 'close() returned');
    await waitUntil('the socket is destroyed', async () => relay.connections() === 0, 30_000);
  });

  test('a connection dropped right after its LISTEN, again and again, is made again after longer and longer waits; one that stayed up starts again from the first', async () => {
    const from = relay.history().length;
    /** The connections of this test, and the wait before each one after a hang-up (ms). */
    const ours = () => relay.history().slice(from);
    const waitsBefore = (i: number) => ours()[i]!.acceptedAt - ours()[i - 1]!.hungUpAt!;
    const listening = (i: number) => async () => ours()[i]?.listeningAt !== undefined;
    // 8 connections hung up: 7 waits drawn from 50, 100, 200, 400, 800, 1600 and 2000 ms (the maximum).
    relay.hangUpAfterListen(8);
    const listener = listenForWakes(throughRelay().toString(), {
      wake: { outbox: () => undefined, webhooks: () => undefined },
      onError: () => undefined,
      retryMs: 50,
      maxRetryMs: 2_000,
      stableMs: 1_000,
    });
    try {
      await waitUntil('the ninth connection listens', listening(8), 60_000);
      const waits = [1, 2, 3, 4, 5, 6, 7].map(waitsBefore);
      // Drawn from 50 and 100 ms: at most 150 ms plus the machine's delays.
      assert.ok(waits[0]! + waits[1]! < 1_600, `the first waits are short: ${waits.map(Math.round).join(', ')} ms`);
      // At least 400 + 800 + 1000 ms, timers never firing early; without the growth about 3 × 50 ms.
      assert.ok(waits[4]! + waits[5]! + waits[6]! >= 1_500, `the waits grow: ${waits.map(Math.round).join(', ')} ms`);

      // The ninth stays up well past stableMs; when it drops, the backoff starts again from 50 ms
      // (the next two waits at most 50 + 100 ms plus delays, against at least 1000 + 1000 ms without the reset).
      await sleep(3_000);
      relay.hangUpAfterListen(2);
      relay.hangUp();
      await waitUntil('the twelfth connection listens', listening(11), 60_000);
      const again = [9, 10].map(waitsBefore);
      assert.ok(again[0]! + again[1]! < 1_600, `after a stable connection the waits are short again: ${again.map(Math.round).join(', ')} ms`);
    } finally {
      relay.hangUpAfterListen(0);
      await listener.close();
    }
    await waitUntil('close() ends the connection', async () => relay.connections() === 0, 30_000);
  });
});

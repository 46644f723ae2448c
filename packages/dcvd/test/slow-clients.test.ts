/**
 * Slow and oversized clients against a real server over real sockets (issue 8):
 * slowloris headers, slow bodies, idle and keep-alive connections, unfinished
 * TLS handshakes, oversized headers, and a crowd of slow connections beside a
 * normal client. The server runs with short timeouts (ServerDeps.timeouts);
 * production uses SERVER_TIMEOUTS, whose values the first test pins.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { baseServerOptions, LISTEN_BACKLOG, MAX_HEADER_BYTES, SERVER_TIMEOUTS, type ServerTimeouts } from '../src/http/listener.ts';
import { createLogger } from '../src/log.ts';
import { GET_PATH, startTestServer, type TestServer } from './support/server.ts';

/** Short bounds, checked every 100 ms (production: SERVER_TIMEOUTS). */
const FAST: ServerTimeouts = { headersMs: 1000, requestMs: 2000, keepAliveMs: 1000, idleSocketMs: 4000, handshakeMs: 1500, checkIntervalMs: 100 };
/** Timers never fire early; a loaded machine may be late. */
const EARLY_MS = 250;
const LATE_MS = 3000;
/** What an API call without parameters answers (CONTRACT §1: -3, HTTP 200). */
const MISSING_LOGIN = "-3\nThe 'loginName' argument is missing!\n";
const REQUEST_HEAD = `POST ${GET_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n`;

/** One raw client connection: what the server wrote, and when it closed the connection. */
class RawClient {
  private readonly chunks: Buffer[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** When the connection was usable (TCP connect, or the TLS handshake's end). */
  readonly start = performance.now();
  /** When the connection closed (performance.now()). */
  readonly closed: Promise<number>;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => this.chunks.push(c));
    // A reset after the server gave up is an outcome like a close; `closed` records it.
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        clearInterval(this.timer);
        resolve(performance.now());
      }),
    );
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }

  get open(): boolean {
    return !this.socket.destroyed;
  }

  /** Writes `next()` every `everyMs` until the connection closes. */
  trickle(next: () => string | Buffer, everyMs: number): void {
    this.timer = setInterval(() => {
      if (this.socket.writable) this.socket.write(next());
    }, everyMs);
  }
}

async function tlsClient(port: number, cert: string): Promise<RawClient> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: cert, servername: 'localhost' });
  await once(socket, 'secureConnect');
  return new RawClient(socket);
}

async function tcpClient(port: number): Promise<RawClient> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  return new RawClient(socket);
}

/** Starts a request and sends a header line's bytes one at a time, never ending the headers; when it started. */
function slowHeaders(c: RawClient, everyMs = 100): number {
  c.socket.write(`${REQUEST_HEAD}X-Slow: `);
  c.trickle(() => 'a', everyMs);
  return performance.now();
}

/** A test's context: what the test measured goes into its report. */
type Reporter = { diagnostic(message: string): void };

function assertWithin(ms: number, boundMs: number, what: string, t?: Reporter): void {
  t?.diagnostic(`${what}: closed after ${Math.round(ms)} ms (bound ${boundMs} ms)`);
  assert.ok(ms >= boundMs - EARLY_MS, `${what}: closed after ${Math.round(ms)} ms, before its ${boundMs} ms bound`);
  assert.ok(ms <= boundMs + LATE_MS, `${what}: closed after ${Math.round(ms)} ms, bound ${boundMs} ms + ${LATE_MS} ms`);
}

/** The server wrote nothing, or exactly one response with this status; never a 5xx or a stack trace. */
function assertOnlyStatus(text: string, status: number, what: string, t?: Reporter): void {
  t?.diagnostic(`${what}: the server wrote ${text === '' ? 'nothing' : JSON.stringify(text.split('\r\n')[0])}`);
  assert.match(text, new RegExp(`^(HTTP/1\\.1 ${status} [^\\r]*\\r\\n[\\s\\S]*)?$`), `${what}: ${JSON.stringify(text.slice(0, 80))}`);
  assert.ok(text.split('HTTP/1.1 ').length <= 2, `${what}: one response at most`);
  assert.doesNotMatch(text, /\n\s+at |Error:|node_modules|\.ts:\d/, `${what}: no stack trace`);
}

/** An answer written before any route (the parser's 400, 408, 431; 417) carries the headers every answer carries. */
function assertGuarded(text: string, what: string): void {
  const head = text.slice(0, text.indexOf('\r\n\r\n') + 2);
  assert.match(head, /\r\nX-Request-Id: [0-9a-f-]{36}\r\n/i, `${what}: ${JSON.stringify(head)}`);
  assert.match(head, /\r\nCache-Control: no-store\r\n/i, what);
  assert.match(head, /\r\nX-Content-Type-Options: nosniff\r\n/i, what);
}

/** A normal client still gets the contract's answer. */
async function assertServes(s: TestServer): Promise<void> {
  const res = await s.post(GET_PATH, '');
  assert.equal(res.status, 200);
  assert.equal(res.body, MISSING_LOGIN);
}

/** Stops a server whose log must have no error-level line: slow clients are not the server's errors. */
async function stopClean(s: TestServer): Promise<void> {
  const errors = s.logs.filter((l) => (l.level as number) >= 50);
  await s.stop();
  assert.deepEqual(errors, [], 'no error-level log lines');
}

test('production bounds: the documented values, handed to node', () => {
  assert.deepEqual(SERVER_TIMEOUTS, { requestMs: 15_000, headersMs: 10_000, keepAliveMs: 10_000, idleSocketMs: 30_000, handshakeMs: 30_000, checkIntervalMs: 1_000 });
  assert.equal(MAX_HEADER_BYTES, 16_384);
  const logger = createLogger('silent');
  const secure = baseServerOptions({ logger, bodyLimit: 1024, tls: { key: 'k', cert: 'c' } });
  assert.deepEqual(
    { connection: secure.connectionTimeout, request: secure.requestTimeout, keepAlive: secure.keepAliveTimeout },
    { connection: 30_000, request: 15_000, keepAlive: 10_000 },
  );
  assert.ok('https' in secure && secure.https);
  const { headersTimeout, connectionsCheckingInterval, maxHeaderSize, handshakeTimeout, requireHostHeader } = secure.https;
  // requireHostHeader: false, so that dcvd answers a missing Host itself, with the headers every answer carries.
  assert.deepEqual(
    { headersTimeout, connectionsCheckingInterval, maxHeaderSize, handshakeTimeout, requireHostHeader },
    { headersTimeout: 10_000, connectionsCheckingInterval: 1_000, maxHeaderSize: 16_384, handshakeTimeout: 30_000, requireHostHeader: false },
  );
  const plain = baseServerOptions({ logger, bodyLimit: 1024 });
  assert.ok('http' in plain);
  assert.deepEqual(plain.http, { headersTimeout: 10_000, connectionsCheckingInterval: 1_000, maxHeaderSize: 16_384, requireHostHeader: false });
});

describe('slow and idle clients (short bounds)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer(
      { httpListen: { host: '127.0.0.1', port: 0 }, adminListen: { host: '127.0.0.1', port: 0 }, adminToken: 'x'.repeat(40) },
      { timeouts: FAST },
    );
  });
  after(() => stopClean(s));

  test('headers sent a byte at a time: 408 and closed at the headers bound', async (t) => {
    const c = await tlsClient(s.https.port, s.cert);
    const started = slowHeaders(c);
    assertWithin((await c.closed) - started, FAST.headersMs, 'slowloris', t);
    assertOnlyStatus(c.text, 408, 'slowloris', t);
    assertGuarded(c.text, 'slowloris');
    await assertServes(s);
  });

  test('the same bound on every listener: plain HTTP and the internal API', async (t) => {
    const plain = await tcpClient(s.http!.port);
    const admin = await tlsClient(s.admin!.port, s.cert);
    const started = Math.min(slowHeaders(plain), slowHeaders(admin));
    for (const [c, what] of [[plain, 'plain HTTP'], [admin, 'internal API']] as const) {
      assertWithin((await c.closed) - started, FAST.headersMs, what, t);
      assertOnlyStatus(c.text, 408, what, t);
    }
    await assertServes(s);
  });

  test('a second request trickled on a keep-alive connection: the headers bound again', async (t) => {
    const c = await tlsClient(s.https.port, s.cert);
    c.socket.write(`${REQUEST_HEAD}Content-Length: 0\r\n\r\n`);
    while (!c.text.endsWith(MISSING_LOGIN)) await once(c.socket, 'data');
    const started = slowHeaders(c);
    assertWithin((await c.closed) - started, FAST.headersMs, 'second request', t);
    assertOnlyStatus(c.text.slice(c.text.indexOf(MISSING_LOGIN) + MISSING_LOGIN.length), 408, 'second request', t);
  });

  test('a body trickled forever (slow POST): 408 and closed at the request bound', async (t) => {
    const c = await tlsClient(s.https.port, s.cert);
    c.socket.write(`${REQUEST_HEAD}Content-Length: 60000\r\n\r\nloginName=`);
    const started = performance.now();
    c.trickle(() => 'a', 100);
    assertWithin((await c.closed) - started, FAST.requestMs, 'slow POST', t);
    assertOnlyStatus(c.text, 408, 'slow POST', t);
    await assertServes(s);
  });

  test('TCP connection that never starts TLS: closed at the handshake bound, nothing written', async (t) => {
    const c = await tcpClient(s.https.port);
    assertWithin((await c.closed) - c.start, FAST.handshakeMs, 'no ClientHello', t);
    assert.equal(c.text, '');
  });

  test('a ClientHello trickled byte by byte does not extend the handshake bound', async (t) => {
    const c = await tcpClient(s.https.port);
    // A handshake record header announcing 512 bytes, then one byte every 100 ms.
    c.socket.write(Buffer.from('160301020001', 'hex'));
    c.trickle(() => Buffer.from([0x03]), 100);
    assertWithin((await c.closed) - c.start, FAST.handshakeMs, 'slow ClientHello', t);
    assert.equal(c.text, '');
  });

  test('TLS connection that never sends a byte: 408 and closed at the headers bound', async (t) => {
    const c = await tlsClient(s.https.port, s.cert);
    assertWithin((await c.closed) - c.start, FAST.headersMs, 'idle after the handshake', t);
    assertOnlyStatus(c.text, 408, 'idle after the handshake', t);
  });

  test('idle keep-alive connection after a response: closed by the keep-alive bound, silently', async (t) => {
    const c = await tlsClient(s.https.port, s.cert);
    c.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    while (!c.text.endsWith('\r\n\r\nok\n')) await once(c.socket, 'data');
    const answered = performance.now();
    const response = c.text;
    assert.match(response, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(response, /\r\nKeep-Alive: timeout=1\r\n/i);
    // node keeps the socket 1 s longer than it announces.
    assertWithin((await c.closed) - answered, FAST.keepAliveMs + 1000, 'idle keep-alive', t);
    assert.equal(c.text, response, 'nothing written after the response');
  });

  // Found by fuzzing a live server (2026-12-04): fastify's and node's own answers went out without them.
  test('what the HTTP parser refuses before any route: 400 or 417 with the headers every answer carries, then closed', async (t) => {
    const refused: [string, string, number][] = [
      ['a method no parser knows', `FOO ${GET_PATH} HTTP/1.1\r\nHost: localhost\r\n\r\n`, 400],
      ['Transfer-Encoding beside Content-Length', `POST ${GET_PATH} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n`, 400],
      ['a negative Content-Length', `POST ${GET_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n`, 400],
      ['an Expect other than 100-continue', `POST ${GET_PATH} HTTP/1.1\r\nHost: localhost\r\nExpect: foo\r\nContent-Length: 0\r\n\r\n`, 417],
    ];
    for (const [listener, connect] of [
      ['HTTPS API', () => tlsClient(s.https.port, s.cert)],
      ['internal API', () => tlsClient(s.admin!.port, s.cert)],
    ] as const) {
      for (const [what, request, status] of refused) {
        const c = await connect();
        c.socket.write(request);
        await c.closed;
        assertOnlyStatus(c.text, status, `${listener}, ${what}`, t);
        assert.notEqual(c.text, '', `${listener}, ${what}: answered`);
        assertGuarded(c.text, `${listener}, ${what}`);
      }
    }
    await assertServes(s);
  });

  // Found by fuzzing a live server (2026-12-04): fastify's router errors and node's missing-Host 400 went out without them.
  test('a malformed or over-long URL (400, 414) and an HTTP/1.1 request without Host (400): the headers every answer carries', async (t) => {
    const long = 'A'.repeat(200);
    const cases: [string, () => Promise<RawClient>, string, number, RegExp][] = [
      ['HTTPS API', () => tlsClient(s.https.port, s.cert), `POST /products/%zz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, 400, /^Bad Request\n$/],
      ['HTTPS API', () => tlsClient(s.https.port, s.cert), `GET /dcv/confirm/${long} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, 414, /^URI Too Long\n$/],
      ['HTTPS API', () => tlsClient(s.https.port, s.cert), 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', 400, /^Bad Request\n$/],
      // Without Connection: close, and with a body that is never read: closed all the same.
      ['HTTPS API', () => tlsClient(s.https.port, s.cert), `POST ${GET_PATH} HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b`, 400, /^Bad Request\n$/],
      ['plain HTTP API', () => tcpClient(s.http!.port), 'GET /healthz HTTP/1.1\r\n\r\n', 400, /^Bad Request\n$/],
      // With an Expect header too: the missing Host's 400, not 417, and no interim 100 Continue before it (a review).
      ['HTTPS API', () => tlsClient(s.https.port, s.cert), `POST ${GET_PATH} HTTP/1.1\r\nExpect: foo\r\nContent-Length: 0\r\n\r\n`, 400, /^Bad Request\n$/],
      ['HTTPS API', () => tlsClient(s.https.port, s.cert), `POST ${GET_PATH} HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\n`, 400, /^Bad Request\n$/],
      ['internal API', () => tlsClient(s.admin!.port, s.cert), 'POST /v1/accounts HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n', 400, /^Bad Request\n$/],
      ['internal API', () => tlsClient(s.admin!.port, s.cert), 'GET /v1/accounts/%C3%28 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', 400, /"code":"invalid_request"/],
      ['internal API', () => tlsClient(s.admin!.port, s.cert), `GET /v1/accounts/${long} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, 414, /"code":"uri_too_long"/],
      ['internal API', () => tlsClient(s.admin!.port, s.cert), 'GET /v1/accounts HTTP/1.1\r\n\r\n', 400, /"message":"a Host header is required"/],
    ];
    for (const [listener, connect, request, status, body] of cases) {
      const what = `${listener}, ${JSON.stringify(request.split('\r\n')[0])}${request.includes('Host:') ? '' : ' without Host'}`;
      const c = await connect();
      c.socket.write(request);
      assert.ok((await c.closed) - c.start < FAST.keepAliveMs, `${what}: closed at once`);
      assertOnlyStatus(c.text, status, what, t);
      assertGuarded(c.text, what);
      assert.match(c.text.slice(c.text.indexOf('\r\n\r\n') + 4), body, what);
    }
    // HTTP/1.0 needs no Host.
    const old = await tlsClient(s.https.port, s.cert);
    old.socket.write('GET /healthz HTTP/1.0\r\n\r\n');
    await old.closed;
    assert.match(old.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok\n$/);
    await assertServes(s);
  });
});

describe('oversized headers', () => {
  let s: TestServer;
  before(async () => (s = await startTestServer({}, { timeouts: FAST })));
  after(() => stopClean(s));

  /** One request with `extra` header lines, `Connection: close`: what the server wrote. */
  async function send(extra: string, path = GET_PATH): Promise<string> {
    const c = await tlsClient(s.https.port, s.cert);
    c.socket.write(`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n${extra}\r\n`);
    assert.ok((await c.closed) - c.start < FAST.headersMs, 'answered at once, not by a timeout');
    return c.text;
  }

  const over: [string, () => string, string?][] = [
    ['one 20 KiB header value', () => `X-Big: ${'a'.repeat(20 * 1024)}\r\n`],
    ['40 headers of 500 bytes', () => Array.from({ length: 40 }, (_, i) => `X-H${i}: ${'b'.repeat(500)}\r\n`).join('')],
    ['10,000 tiny headers', () => Array.from({ length: 10_000 }, (_, i) => `a${i}:1\r\n`).join('')],
    ['a 20 KiB URL', () => '', `${GET_PATH}?${'c'.repeat(20 * 1024)}`],
  ];
  for (const [name, extra, path] of over) {
    test(`${name}: 431 or a closed connection, never a 5xx; the server keeps answering`, async (t) => {
      const text = await send(extra(), path);
      assertOnlyStatus(text, 431, name, t);
      if (text !== '') assertGuarded(text, name);
      await assertServes(s);
    });
  }

  test('just under the limit (15 KiB of headers, or 1,000 headers): answered normally', async () => {
    for (const extra of [`X-Big: ${'a'.repeat(15 * 1024)}\r\n`, Array.from({ length: 1000 }, (_, i) => `a${i}:1\r\n`).join('')]) {
      const text = await send(extra);
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
      assert.ok(text.endsWith(`\r\n\r\n${MISSING_LOGIN}`), JSON.stringify(text.slice(-80)));
    }
  });
});

describe('200 slow connections at once', () => {
  // Longer headers bound: all 200 handshakes must finish while the first ones still hold their sockets.
  const CROWD: ServerTimeouts = { ...FAST, headersMs: 5000, requestMs: 6000, idleSocketMs: 8000 };
  const N = 200;
  let s: TestServer;
  before(async () => (s = await startTestServer({}, { timeouts: CROWD })));
  after(() => stopClean(s));

  test('a normal client is answered while they are open; all of them are closed at the headers bound', async (t) => {
    const crowd = await Promise.all(Array.from({ length: N }, () => tlsClient(s.https.port, s.cert)));
    const started = performance.now();
    for (const c of crowd) slowHeaders(c, 500);

    const normal = performance.now();
    for (let i = 0; i < 5; i++) await assertServes(s);
    t.diagnostic(`5 normal calls answered in ${Math.round(performance.now() - normal)} ms with ${N} slow connections open`);
    assert.equal(crowd.filter((c) => c.open).length, N, 'every slow connection still open while the normal client was answered');

    const closedAfter = (await Promise.all(crowd.map((c) => c.closed))).map((at) => at - started);
    t.diagnostic(`${N} slow connections: closed after ${Math.round(Math.min(...closedAfter))}..${Math.round(Math.max(...closedAfter))} ms (bound ${CROWD.headersMs} ms)`);
    t.diagnostic(`${crowd.filter((c) => c.text.startsWith('HTTP/1.1 408 ')).length} of ${N} got a 408 before the close`);
    for (const [i, ms] of closedAfter.entries()) assertWithin(ms, CROWD.headersMs, `slow connection ${i}`);
    for (const c of crowd) assertOnlyStatus(c.text, 408, 'slow connection');
    await assertServes(s);
  });
});

test('every listener has an accept queue of LISTEN_BACKLOG (the kernel caps it at somaxconn), not node\u2019s 511', async () => {
  const { execFileSync } = await import('node:child_process');
  const { readFileSync } = await import('node:fs');
  const expected = Math.min(LISTEN_BACKLOG, Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8')));
  assert.ok(expected > 511, `net.core.somaxconn is ${expected}: raise it (docs/OPERATIONS.md, --listen)`);
  const s = await startTestServer({ httpListen: { host: '127.0.0.1', port: 0 }, adminListen: { host: '127.0.0.1', port: 0 }, adminToken: 'a'.repeat(40) });
  try {
    for (const port of [s.https.port, s.http!.port, s.admin!.port]) {
      // ss's Send-Q of a listening socket is its backlog (iproute2, installed by scripts/test-setup.sh).
      const line = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim();
      assert.equal(Number(line.split(/\s+/)[2]), expected, `listener on port ${port}: ${line}`);
    }
  } finally {
    await stopClean(s);
  }
});


/**
 * Signed webhooks (CONTRACT §6): a receiver on loopback checks the signature
 * of each event; events wait durably and are retried while it is down.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { systemClock } from '../src/deps.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, LOOPBACK, startTestServer, type TestServer } from './support/server.ts';
import { decideByMail } from './support/confirm.ts';
import { cryptoRandom } from '../src/deps.ts';
import { loadValueKeys } from '../src/orders/random-values.ts';
import { accountReceiver, issueWebhookSecret } from '../src/webhooks/secrets.ts';

const SECRET = 'whsec-test-0123456789abcdef';
/** olga's own receiver has its own secret (issue 14). */
let OLGA_SECRET = '';
let sink: SmtpSink;
let server: TestServer;
let receiver: http.Server;
let port = 0;
let status = 200;
/** While set, the receiver drops every connection at once: down, yet its port stays ours (a closed port can be taken by another test file's server meanwhile). */
let down = false;
const received: { headers: http.IncomingHttpHeaders; body: string; valid: boolean }[] = [];
let next = 5_000_000;

/** What a receiver does: recompute the HMAC over "<t>.<raw body>", compare in constant time, refuse old timestamps. */
function verify(header: string | undefined, raw: string, secret = SECRET): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return false;
  if (Math.abs(Date.now() / 1000 - Number(m[1])) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${m[1]}.${raw}`).digest();
  return timingSafeEqual(expected, Buffer.from(m[2]!, 'hex'));
}

function listen(): Promise<void> {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const secret = req.url === '/olga' ? OLGA_SECRET : SECRET;
      received.push({ headers: req.headers, body, valid: verify(req.headers['x-dcvd-signature'] as string | undefined, body, secret) });
      res.writeHead(status).end();
    });
  });
  receiver.on('connection', (socket) => {
    if (down) socket.destroy();
  });
  return new Promise((resolve) => receiver.listen(port, '127.0.0.1', () => {
    port = (receiver.address() as AddressInfo).port;
    resolve();
  }));
}

async function until(check: () => boolean | Promise<boolean>, ms = 8000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

before(async () => {
  await listen();
  sink = await startSmtpSink();
  server = await startTestServer({
    dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50, retryBaseMs: 100, retryMaxMs: 200, maxAttempts: 20 } }),
    webhooks: { url: `http://127.0.0.1:${port}/global`, secret: SECRET, allowNetworks: LOOPBACK },
  });
  await server.createAccount('alice');
  await server.createAccount('olga', { webhookUrl: `http://127.0.0.1:${port}/olga` });
  const olga = await server.store.db.selectFrom('accounts').select('id').where('login', '=', 'olga').executeTakeFirstOrThrow();
  const keys = loadValueKeys(server.dataDir);
  OLGA_SECRET = (await issueWebhookSecret(server.store.db, { keys, random: cryptoRandom }, accountReceiver(olga.id), Date.now()))!.secret;
});
after(async () => {
  await server.stop();
  await sink.close();
  await new Promise((r) => receiver.close(r));
});

async function decide(login: string, decision: 'approve' | 'decline') {
  const orderNumber = (next += 1);
  await decideByMail(server, sink, systemClock, { login, orderNumber, domain: `o${orderNumber}.example.com` }, decision);
  return orderNumber;
}

test('approve → a signed dcv.validated event at the global URL; decline → dcv.declined at the account\'s own URL', async () => {
  const a = await decide('alice', 'approve');
  await until(() => received.length >= 1);
  const [e] = received.splice(0);
  assert.ok(e!.valid, 'signature verifies');
  assert.equal(e!.headers['content-type'], 'application/json');
  assert.equal(e!.headers['x-dcvd-event'], 'dcv.validated');
  const body = JSON.parse(e!.body);
  assert.equal(body.id, e!.headers['x-dcvd-event-id']);
  assert.equal(body.type, 'dcv.validated');
  assert.deepEqual(body.order, { orderNumber: a, baseOrderNumber: a, account: 'alice', domain: `o${a}.example.com`, dcvStatus: 'validated' });
  assert.equal(body.evidence.decision, 'approved');
  assert.equal(body.evidence.recipient, 'admin@example.com');
  assert.equal(body.evidence.brSection, '3.2.2.4.4');
  // A tampered body or another secret does not verify.
  assert.equal(verify(e!.headers['x-dcvd-signature'] as string, e!.body.replace('validated', 'declined')), false);

  const d = await decide('olga', 'decline');
  await until(() => received.length >= 1);
  const [f] = received.splice(0);
  assert.ok(f!.valid, 'olga\u2019s event verifies with olga\u2019s secret');
  assert.equal(verify(f!.headers['x-dcvd-signature'] as string, f!.body, SECRET), false, 'and not with the global one');
  assert.equal(JSON.parse(f!.body).type, 'dcv.declined');
  assert.equal(JSON.parse(f!.body).order.orderNumber, d);
  await server.webhooks!.idle();
  const row = await server.store.db.selectFrom('webhook_outbox').selectAll().where('event_id', '=', JSON.parse(f!.body).id).executeTakeFirstOrThrow();
  assert.equal(row.url, `http://127.0.0.1:${port}/olga`);
  assert.equal(row.state, 'delivered');
});

test('while the receiver is down or answers 5xx the event waits and is retried, then delivered once', async () => {
  down = true;
  receiver.closeAllConnections();
  const n = await decide('alice', 'approve');
  const order = await server.store.db.selectFrom('orders').select('id').where('order_number', '=', n).executeTakeFirstOrThrow();
  const row = () => server.store.db.selectFrom('webhook_outbox').selectAll().where('order_id', '=', order.id).executeTakeFirstOrThrow();
  await until(async () => (await row()).attempts >= 2);
  const waiting = (await row()).state;
  assert.ok(waiting === 'pending' || waiting === 'sending', `state ${waiting}`);
  assert.match(String((await row()).last_error), /ECONNRESET|ECONNREFUSED/);
  status = 503;
  down = false;
  await until(() => received.length >= 1);
  assert.equal((await row()).state === 'delivered', false);
  assert.match(String((await row()).last_error ?? ''), /HTTP 503|ECONNRESET|ECONNREFUSED/);
  status = 204;
  await until(async () => (await row()).state === 'delivered');
  const events = received.splice(0);
  assert.ok(events.every((e) => e.valid));
  assert.ok(new Set(events.map((e) => e.headers['x-dcvd-event-id'])).size === 1, 'one event id across retries');
  assert.equal(events.at(-1)!.headers['x-dcvd-event'], 'dcv.validated');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(received.length, 0, 'no send after delivery');
});

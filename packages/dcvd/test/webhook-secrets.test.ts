/**
 * One signing secret per webhook receiver (issue 14 item 3): a reseller that
 * verifies its own account's webhook must not be able to verify (so forge)
 * events sent to the CA's global URL or to another account's URL.
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
import { form, LOOPBACK, PASSWORD, startTestServer, type TestServer } from './support/server.ts';
import { decideByMail } from './support/confirm.ts';
import { runDcvd } from './support/cli.ts';
import { parseWebhookSecretFile } from '../src/webhooks/webhooks.ts';

const GLOBAL_SECRET = 'whsec-global-0123456789abcdef';
const TOKEN = 'admin-token-0123456789abcdef0123';
let sink: SmtpSink;
let server: TestServer;
let receiver: http.Server;
let port = 0;
const received: { path: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
const logLines: string[] = [];
let next = 7_000_000;

/** A receiver's check: the header's t and every v1, HMAC-SHA256(secret, "<t>.<raw body>") in constant time. */
function verify(secret: string, header: string | undefined, raw: string): boolean {
  const parts = (header ?? '').split(',');
  const t = /^t=(\d+)$/.exec(parts[0] ?? '')?.[1];
  if (t === undefined || Math.abs(Date.now() / 1000 - Number(t)) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${raw}`).digest();
  return parts.slice(1).some((p) => {
    const m = /^v1=([0-9a-f]{64})$/.exec(p);
    return m !== null && timingSafeEqual(expected, Buffer.from(m[1]!, 'hex'));
  });
}

async function until(check: () => boolean | Promise<boolean>, ms = 20_000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await server.request({ admin: true, method, path, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: r.status, json: JSON.parse(r.body) };
}

function cli(args: string[], input?: string): any {
  const env: Record<string, string> = server.databaseUrl ? { DCVD_DATABASE_URL: server.databaseUrl } : {};
  const r = runDcvd(server.dataDir, [...args, '--json'], { env, ...(input === undefined ? {} : { input }) });
  assert.equal(r.code, 0, r.stderr);
  logLines.push(r.stderr);
  return JSON.parse(r.stdout);
}

before(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', () => resolve()));
  port = (receiver.address() as AddressInfo).port;
  sink = await startSmtpSink();
  server = await startTestServer({
    adminListen: { host: '127.0.0.1', port: 0 },
    adminToken: TOKEN,
    dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50, retryBaseMs: 100, retryMaxMs: 200, maxAttempts: 50 } }),
    webhooks: { url: `http://127.0.0.1:${port}/global`, secret: GLOBAL_SECRET, allowNetworks: LOOPBACK },
  });
});
after(async () => {
  await server?.stop();
  await sink?.close();
  receiver.closeAllConnections();
  await new Promise((r) => receiver.close(r));
});

async function decide(login: string, decision: 'approve' | 'decline') {
  const orderNumber = (next += 1);
  await decideByMail(server, sink, systemClock, { login, orderNumber, domain: `w${orderNumber}.example.com` }, decision);
  return orderNumber;
}

/** The event of an order, once delivered. */
async function eventOf(orderNumber: number) {
  let e: (typeof received)[number] | undefined;
  await until(() => (e = received.find((x) => JSON.parse(x.body).order.orderNumber === orderNumber)) !== undefined);
  return e!;
}

/** The secret a reseller holds for its own receiver: the one dcvd shows it (before the fix: the only one, the global). */
const secrets: Record<string, string> = {};

test('attack: a reseller verifying its own webhook cannot verify events sent to the global URL or another account\u2019s URL', async () => {
  for (const login of ['resa', 'resb']) {
    const created = await api('POST', '/v1/accounts', { login, password: PASSWORD, permissions: ['auto-apply'], webhookUrl: `http://127.0.0.1:${port}/${login}` });
    assert.equal(created.status, 201);
    secrets[login] = created.json.webhookSecret ?? GLOBAL_SECRET;
  }
  await server.createAccount('plain');
  const own = await eventOf(await decide('resa', 'approve'));
  assert.equal(own.path, '/resa');
  assert.ok(verify(secrets.resa!, own.headers['x-dcvd-signature'] as string, own.body), 'resa verifies its own events');

  const global = await eventOf(await decide('plain', 'approve'));
  assert.equal(global.path, '/global');
  assert.ok(verify(GLOBAL_SECRET, global.headers['x-dcvd-signature'] as string, global.body), 'the CA verifies the global event');
  assert.equal(verify(secrets.resa!, global.headers['x-dcvd-signature'] as string, global.body), false, 'resa\u2019s secret must not verify the global event');
  // Nor can resa forge one: a body it signs with its own secret does not verify at the CA.
  const forged = global.body.replace(/"account":"plain"/, '"account":"plain"');
  const t = Math.floor(Date.now() / 1000);
  const forgedSig = `t=${t},v1=${createHmac('sha256', secrets.resa!).update(`${t}.${forged}`).digest('hex')}`;
  assert.equal(verify(GLOBAL_SECRET, forgedSig, forged), false, 'an event signed with resa\u2019s secret does not verify at the global receiver');

  const other = await eventOf(await decide('resb', 'approve'));
  assert.equal(other.path, '/resb');
  assert.ok(verify(secrets.resb!, other.headers['x-dcvd-signature'] as string, other.body));
  assert.equal(verify(secrets.resa!, other.headers['x-dcvd-signature'] as string, other.body), false, 'resa\u2019s secret must not verify resb\u2019s events');
  assert.notEqual(secrets.resa, secrets.resb);
  assert.notEqual(secrets.resa, GLOBAL_SECRET);
});

/** Every value of the log lines and CLI standard error so far, as text. */
const allLogs = () => JSON.stringify(server.logs) + logLines.join('\n');

test('a secret is shown once (create/update/rotate), never by show/list, never in the log, and stored sealed', async () => {
  const shown = await api('GET', '/v1/accounts/resa');
  assert.equal(shown.status, 200);
  assert.equal(shown.json.webhookSecret, undefined);
  assert.ok(!JSON.stringify((await api('GET', '/v1/accounts')).json).includes(secrets.resa!));
  assert.ok(!JSON.stringify(cli(['account', 'list'])).includes('whsec_'));
  // 256 bits from the CSPRNG.
  assert.match(secrets.resa!, /^whsec_[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(secrets.resa!.slice(6), 'base64url').length, 32);
  // Update without a new URL: no new secret; with a URL on an account that has one: none either (rotation is explicit).
  assert.equal((await api('PATCH', '/v1/accounts/resa', { permissions: ['auto-apply'] })).json.webhookSecret, undefined);
  assert.equal((await api('PATCH', '/v1/accounts/resa', { webhookUrl: `http://127.0.0.1:${port}/resa` })).json.webhookSecret, undefined);
  // At rest: only sealed, bound to its receiver.
  const rows = await server.store.db.selectFrom('webhook_secrets').selectAll().execute();
  assert.ok(rows.length >= 2);
  const dump = JSON.stringify(rows) + JSON.stringify(await server.store.db.selectFrom('webhook_outbox').selectAll().execute()) + JSON.stringify(await server.store.db.selectFrom('accounts').selectAll().execute());
  for (const s of [secrets.resa!, secrets.resb!]) {
    assert.ok(!dump.includes(s) && !dump.includes(s.slice(6)), 'no secret in clear text in the database');
    assert.ok(!dump.includes(Buffer.from(s.slice(6), 'base64url').toString('hex')));
  }
  for (const r of rows) assert.match(r.sealed_secret, /^v1\./);
  // A sealed secret moved to another receiver does not open (the receiver is the additional authenticated data).
  const resa = rows.find((r) => r.receiver === rows[0]!.receiver)!;
  const other = rows.find((r) => r.receiver !== resa.receiver)!;
  await server.store.db.updateTable('webhook_secrets').set({ sealed_secret: resa.sealed_secret }).where('id', '=', other.id).execute();
  const n = await decide('resb', 'approve');
  const order = await server.store.db.selectFrom('orders').select('id').where('order_number', '=', n).executeTakeFirstOrThrow();
  await until(async () => {
    const row = await server.store.db.selectFrom('webhook_outbox').selectAll().where('order_id', '=', order.id).executeTakeFirstOrThrow();
    return row.attempts >= 1 && /cannot be opened/.test(row.last_error ?? '');
  });
  assert.equal(received.filter((e) => JSON.parse(e.body).order.orderNumber === n).length, 0, 'nothing sent with a secret of another receiver');
  await server.store.db.updateTable('webhook_secrets').set({ sealed_secret: other.sealed_secret }).where('id', '=', other.id).execute();
  const e = await eventOf(n);
  assert.ok(verify(secrets.resb!, e.headers['x-dcvd-signature'] as string, e.body));
  assert.ok(!allLogs().includes(secrets.resa!) && !allLogs().includes(secrets.resb!), 'no secret in the log');
});

test('rotation: during the overlap events carry both signatures; after it, only the new secret verifies', async () => {
  const old = secrets.resa!;
  const r = await api('POST', '/v1/accounts/resa/webhook-secret/rotate', { overlapSeconds: 3600 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const fresh = r.json.webhookSecret as string;
  assert.match(fresh, /^whsec_/);
  assert.notEqual(fresh, old);
  assert.ok(Date.parse(r.json.previousWebhookSecretExpiresAt) > Date.now() + 3000_000);
  const during = await eventOf(await decide('resa', 'approve'));
  const header = during.headers['x-dcvd-signature'] as string;
  assert.match(header, /^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
  assert.ok(verify(fresh, header, during.body), 'the new secret verifies during the overlap');
  assert.ok(verify(old, header, during.body), 'the old secret verifies during the overlap');
  assert.equal(verify(GLOBAL_SECRET, header, during.body), false);

  // The overlap ends (its end moved to the past, as time would).
  const receiver = (await server.store.db.selectFrom('webhook_secrets').select('receiver').where('expires_at', 'is not', null).executeTakeFirstOrThrow()).receiver;
  await server.store.db.updateTable('webhook_secrets').set({ expires_at: Date.now() - 1 }).where('receiver', '=', receiver).where('expires_at', 'is not', null).execute();
  const afterEnd = await eventOf(await decide('resa', 'approve'));
  assert.match(afterEnd.headers['x-dcvd-signature'] as string, /^t=\d+,v1=[0-9a-f]{64}$/);
  assert.ok(verify(fresh, afterEnd.headers['x-dcvd-signature'] as string, afterEnd.body));
  assert.equal(verify(old, afterEnd.headers['x-dcvd-signature'] as string, afterEnd.body), false, 'the old secret no longer verifies');

  // The CLI: rotate with no overlap; the previous secret stops at once.
  const rotated = cli(['account', 'rotate-webhook-secret', '--login', 'resa', '--overlap', '0']);
  assert.match(rotated.webhookSecret, /^whsec_/);
  assert.equal(rotated.previousWebhookSecretExpiresAt, null);
  const next = await eventOf(await decide('resa', 'approve'));
  assert.ok(verify(rotated.webhookSecret, next.headers['x-dcvd-signature'] as string, next.body));
  assert.equal(verify(fresh, next.headers['x-dcvd-signature'] as string, next.body), false);
  secrets.resa = rotated.webhookSecret;
  // An account without its own URL has no secret to rotate.
  assert.equal((await api('POST', '/v1/accounts/plain/webhook-secret/rotate', {})).status, 400);
  assert.ok(!allLogs().includes(fresh) && !allLogs().includes(rotated.webhookSecret), 'no secret in the log');
});

test('the CLI shows the secret once on create/update; an account URL without a secret waits and is never signed with the global secret; old events keep the global secret', async () => {
  const created = cli(['account', 'create', '--login', 'clia', '--password-stdin', '--permission', 'auto-apply', '--webhook-url', `http://127.0.0.1:${port}/clia`], PASSWORD);
  assert.match(created.webhookSecret, /^whsec_/);
  const human = runDcvd(server.dataDir, ['account', 'create', '--login', 'clib', '--password-stdin', '--webhook-url', `http://127.0.0.1:${port}/clib`], { env: server.databaseUrl ? { DCVD_DATABASE_URL: server.databaseUrl } : {}, input: PASSWORD });
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /webhook signing secret \(shown only now[^)]*\): whsec_/);
  logLines.push(human.stderr);
  const own = await eventOf(await decide('clia', 'approve'));
  assert.ok(verify(created.webhookSecret, own.headers['x-dcvd-signature'] as string, own.body));

  // An account given a URL behind dcvd's back (before this version): its events wait, unsigned by anyone else's secret.
  await server.createAccount('legacy', { webhookUrl: `http://127.0.0.1:${port}/legacy` });
  const n = await decide('legacy', 'approve');
  const order = await server.store.db.selectFrom('orders').select('id').where('order_number', '=', n).executeTakeFirstOrThrow();
  const row = () => server.store.db.selectFrom('webhook_outbox').selectAll().where('order_id', '=', order.id).executeTakeFirstOrThrow();
  // Claimed (attempts counts claims), then put back with the reason.
  await until(async () => /no signing secret for receiver account:\d+/.test((await row()).last_error ?? ''));
  assert.notEqual((await row()).state, 'delivered');
  assert.equal(received.filter((e) => JSON.parse(e.body).order.orderNumber === n).length, 0);
  // `account update --webhook-url` on it makes and shows its secret; the waiting event goes out signed with it.
  const updated = cli(['account', 'update', '--login', 'legacy', '--webhook-url', `http://127.0.0.1:${port}/legacy`]);
  assert.match(updated.webhookSecret, /^whsec_/);
  const late = await eventOf(n);
  assert.ok(verify(updated.webhookSecret, late.headers['x-dcvd-signature'] as string, late.body));
  assert.equal(verify(GLOBAL_SECRET, late.headers['x-dcvd-signature'] as string, late.body), false);

  // An event queued before migration 0007 (no receiver): signed with the one secret of that time, the global one.
  const m = await decide('plain', 'decline');
  const mOrder = await server.store.db.selectFrom('orders').select('id').where('order_number', '=', m).executeTakeFirstOrThrow();
  await eventOf(m);
  const template = await server.store.db.selectFrom('webhook_outbox').selectAll().where('order_id', '=', mOrder.id).executeTakeFirstOrThrow();
  const body = template.body.replace(template.event_id, 'legacy-event-0001');
  await server.store.db
    .insertInto('webhook_outbox')
    .values({ event_id: 'legacy-event-0001', order_id: mOrder.id, event: template.event, url: `http://127.0.0.1:${port}/old`, body, state: 'pending', next_attempt_at: Date.now(), lease_until: null, claim_token: null, last_error: null, response: null, created_at: Date.now(), updated_at: Date.now(), delivered_at: null, receiver: null })
    .execute();
  server.webhooks!.wake();
  let old: (typeof received)[number] | undefined;
  await until(() => (old = received.find((e) => e.path === '/old')) !== undefined);
  assert.ok(verify(GLOBAL_SECRET, old!.headers['x-dcvd-signature'] as string, old!.body));
  assert.ok(!allLogs().includes(created.webhookSecret) && !allLogs().includes(updated.webhookSecret), 'no secret in the log');
});

test('concurrent rotations leave exactly one current secret, and it is one of those shown', async () => {
  const results = await Promise.all(Array.from({ length: 8 }, () => api('POST', '/v1/accounts/resb/webhook-secret/rotate', { overlapSeconds: 0 })));
  for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.json));
  const id = (await server.store.db.selectFrom('accounts').select('id').where('login', '=', 'resb').executeTakeFirstOrThrow()).id;
  const current = await server.store.db.selectFrom('webhook_secrets').select('id').where('receiver', '=', `account:${id}`).where('expires_at', 'is', null).execute();
  assert.equal(current.length, 1);
  const e = await eventOf(await decide('resb', 'approve'));
  const header = e.headers['x-dcvd-signature'] as string;
  assert.match(header, /^t=\d+,v1=[0-9a-f]{64}$/, 'one signature: every other secret stopped at once');
  assert.equal(results.filter((r) => verify(r.json.webhookSecret, header, e.body)).length, 1);
  assert.equal(verify(secrets.resb!, header, e.body), false);
  // An empty object: the default overlap of 24 hours (the body is required JSON, like every POST with a body).
  const plain = await api('POST', '/v1/accounts/resb/webhook-secret/rotate', {});
  assert.equal(plain.status, 200, JSON.stringify(plain.json));
  assert.match(plain.json.webhookSecret, /^whsec_/);
  const ends = Date.parse(plain.json.previousWebhookSecretExpiresAt) - Date.now();
  assert.ok(ends > 23 * 3600_000 && ends <= 24 * 3600_000, String(ends));
  assert.ok(!allLogs().includes(plain.json.webhookSecret), 'no secret in the log');
});

test('the global secret rotates through --webhook-secret-file: a second line (the previous key) signs the global URL\u2019s events too', async () => {
  assert.deepEqual(parseWebhookSecretFile('new-global-secret-0001\n'), { secret: 'new-global-secret-0001' });
  assert.deepEqual(parseWebhookSecretFile('\nnew-global-secret-0001\r\nold-global-secret-0002\n\n'), { secret: 'new-global-secret-0001', previousSecret: 'old-global-secret-0002' });
  assert.throws(() => parseWebhookSecretFile('short\n'), /at least 16/);
  assert.throws(() => parseWebhookSecretFile('a-long-enough-secret-1\na-long-enough-secret-2\na-long-enough-secret-3'), /second line/);
  assert.throws(() => parseWebhookSecretFile('\n'), /must hold/);

  const NEW = 'whsec-global-new-0123456789abcdef';
  const second = await startTestServer({
    dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50, retryBaseMs: 100, retryMaxMs: 200, maxAttempts: 50 } }),
    webhooks: { url: `http://127.0.0.1:${port}/global2`, secret: NEW, previousSecret: GLOBAL_SECRET, allowNetworks: LOOPBACK },
  });
  try {
    await second.createAccount('plain2');
    const orderNumber = (next += 1);
    await decideByMail(second, sink, systemClock, { login: 'plain2', orderNumber, domain: `w${orderNumber}.example.com` }, 'approve');
    const e = await eventOf(orderNumber);
    assert.equal(e.path, '/global2');
    const header = e.headers['x-dcvd-signature'] as string;
    assert.match(header, /^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
    assert.ok(verify(NEW, header, e.body) && verify(GLOBAL_SECRET, header, e.body), 'both global keys verify during the rotation');
  } finally {
    await second.stop();
  }
});

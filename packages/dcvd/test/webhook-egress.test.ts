/**
 * Where accounts' webhook URLs may lead (src/webhooks/egress.ts): Internet addresses only, whatever the URL's
 * spelling, plain http:// only inside --webhook-allow-networks; names resolved over dcvd's DNS resolvers (a real
 * DNS server on loopback) and refused whole when any address is; the URL an event goes to is the account's
 * current one; an event without a signing secret waits without spending its attempts; one time limit per POST.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { cryptoRandom, systemClock } from '../src/deps.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { parseResolvers } from '../src/dns/resolvers.ts';
import { loadValueKeys } from '../src/orders/random-values.ts';
import { accountReceiver, issueWebhookSecret } from '../src/webhooks/secrets.ts';
import { literalTargetProblem } from '../src/webhooks/egress.ts';
import { checkWebhookUrl } from '../src/accounts/webhook-url.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import { LOOPBACK, startTestServer, type TestServer } from './support/server.ts';
import { decideByMail } from './support/confirm.ts';
import { waitUntil } from './support/wait.ts';
import { sampleOf } from './support/metrics.ts';

test('an account URL with an IP literal: Internet addresses only, in every spelling; http:// only inside the allowed networks', () => {
  const problem = (url: string, allow = '') => literalTargetProblem(new URL(url), allow);
  for (const url of [
    'http://127.0.0.1/', 'http://2130706433/', 'http://0x7f.1/', 'http://0177.0.0.1/', 'http://0/', 'http://[::1]/', 'http://[::]/',
    'http://[::ffff:127.0.0.1]/', 'http://[::ffff:7f00:1]/', 'https://169.254.169.254/latest/meta-data/', 'http://[fd00:ec2::254]/',
    'https://10.0.0.1/', 'https://100.64.0.1/', 'https://192.168.1.1/', 'https://[::ffff:192.168.1.1]/', 'https://[fe80::1]/',
    // NAT64, 6to4 and Teredo carry an IPv4 address a gateway would reach: refused whole.
    'https://[64:ff9b::a00:1]/', 'https://[2002:a00:1::]/', 'https://[2001:0:a00:1::]/',
    'https://224.0.0.1/', 'https://255.255.255.255/', 'https://[2001:db8::1]/', 'https://192.0.2.1/',
  ]) {
    assert.match(problem(url) ?? '', /is not an Internet address/, url);
  }
  assert.equal(problem('https://8.8.8.8/hook'), undefined);
  assert.equal(problem('https://[2606:4700:4700::1111]:8443/'), undefined);
  assert.match(problem('http://8.8.8.8/hook') ?? '', /need https:\/\//);
  // The operator's networks: reachable, over http:// too, in either spelling.
  assert.equal(problem('http://10.1.2.3:8080/', '10.0.0.0/8'), undefined);
  assert.equal(problem('http://[::ffff:10.1.2.3]/', '10.0.0.0/8'), undefined);
  assert.match(problem('http://10.1.2.3/', '192.168.0.0/16') ?? '', /not an Internet address/);
  // A name is checked where it is resolved.
  assert.equal(problem('http://hooks.example.com/'), undefined);
});

test('a webhook URL as it is set: http(s), no credentials, a port HTTP may use, at most 2,048 characters', () => {
  assert.equal(checkWebhookUrl('https://hooks.example.com:8443/dcv'), 'https://hooks.example.com:8443/dcv');
  assert.equal(checkWebhookUrl('http://10.0.0.1/x'), 'http://10.0.0.1/x');
  for (const [url, message] of [
    ['ftp://hooks.example.com/', /https:\/\//],
    ['https://user:pass@hooks.example.com/', /credentials/],
    ['not a url', /is not a URL/],
    ['https://hooks.example.com:25/', /port 25/],
    ['http://hooks.example.com:6667/', /port 6667/],
    ['https://hooks.example.com:0/', /port 0/],
    [`https://hooks.example.com/${'a'.repeat(2048)}`, /at most 2048 characters/],
  ] as const) {
    assert.throws(() => checkWebhookUrl(url), message, url);
  }
});

let dns: TestDnsServer;
let sink: SmtpSink;
let server: TestServer;
let receiver: http.Server;
let port = 0;
let next = 8_300_000;
const received: string[] = [];

before(async () => {
  dns = await startTestDnsServer();
  receiver = http.createServer((req, res) => {
    if (req.url === '/hang') return; // never answers
    received.push(req.url ?? '');
    req.resume();
    res.writeHead(req.url === '/old' ? 503 : 204).end();
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  port = (receiver.address() as AddressInfo).port;
  sink = await startSmtpSink();
  server = await startTestServer({
    dnsServers: parseResolvers(dns.address),
    dnsTimeoutMs: 500,
    dnsAttempts: 1,
    dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50, retryBaseMs: 100, retryMaxMs: 300, maxAttempts: 4 } }),
    // A global secret (no global URL): events of before migration 0007 are signed with it.
    webhooks: { allowNetworks: LOOPBACK, timeoutMs: 1000, secret: 'global-secret-0123456789' },
  });
});
after(async () => {
  await server.stop();
  await sink.close();
  receiver.closeAllConnections();
  await new Promise((r) => receiver.close(r));
  await dns.close();
});

/** An account with its own URL (and, unless told, its signing secret); its approved order's event row. */
async function approvedWith(login: string, url: string, opts: { secret?: boolean } = {}) {
  await server.createAccount(login, { webhookUrl: url });
  const { id } = await server.store.db.selectFrom('accounts').select('id').where('login', '=', login).executeTakeFirstOrThrow();
  if (opts.secret !== false) await issueWebhookSecret(server.store.db, { keys: loadValueKeys(server.dataDir), random: cryptoRandom }, accountReceiver(id), Date.now());
  const orderNumber = (next += 1);
  await decideByMail(server, sink, systemClock, { login, orderNumber, domain: `e${orderNumber}.example.com` }, 'approve');
  const order = await server.store.db.selectFrom('orders').select('id').where('order_number', '=', orderNumber).executeTakeFirstOrThrow();
  return { accountId: id, row: () => server.store.db.selectFrom('webhook_outbox').selectAll().where('order_id', '=', order.id).executeTakeFirstOrThrow() };
}

const failedWith = async (row: () => Promise<{ state: string; last_error: string | null }>, pattern: RegExp) => {
  await waitUntil(`an attempt failed with ${pattern}`, async () => pattern.test((await row()).last_error ?? ''));
};

test('a name is resolved over dcvd\u2019s resolvers and reached at an allowed address; one refused address refuses the name', async () => {
  dns.setAddresses('ok.egress.test', ['127.0.0.1']);
  const ok = await approvedWith('named', `http://ok.egress.test:${port}/named`);
  await waitUntil('delivered', async () => (await ok.row()).state === 'delivered');
  assert.ok(received.includes('/named'));
  assert.ok(dns.queries.some((q) => q.name === 'ok.egress.test'), 'asked the configured resolver');

  // A second address outside the allowed networks (a rebinding attacker's usual pair) refuses the name whole.
  dns.setAddresses('mixed.egress.test', ['127.0.0.1', '10.1.2.3']);
  const mixed = await approvedWith('mixed', `http://mixed.egress.test:${port}/mixed`);
  await failedWith(mixed.row, /mixed\.egress\.test \(10\.1\.2\.3\): 10\.1\.2\.3 is not an Internet address/);
  // IPv6 loopback as a literal is not in the allowed networks; localhost is not read from /etc/hosts.
  const v6 = await approvedWith('literal6', `http://[::1]:${port}/v6`);
  await failedWith(v6.row, /::1 is not an Internet address/);
  const local = await approvedWith('local', `http://localhost:${port}/local`);
  await failedWith(local.row, /ENODATA|ENOTFOUND/);
  assert.ok(!received.some((p) => ['/mixed', '/v6', '/local'].includes(p)), received.join(' '));
});

test('the event goes to the account\u2019s current URL; without a URL of its own any more it fails at once', async () => {
  const moved = await approvedWith('moving', `http://127.0.0.1:${port}/old`);
  await failedWith(moved.row, /HTTP 503/);
  await server.accounts.update('moving', { webhookUrl: `http://127.0.0.1:${port}/new` });
  await waitUntil('delivered at the new URL', async () => (await moved.row()).state === 'delivered');
  assert.equal((await moved.row()).url, `http://127.0.0.1:${port}/new`);
  assert.ok(received.includes('/new'));

  const gone = await approvedWith('leaving', `http://127.0.0.1:${port}/old`);
  await failedWith(gone.row, /HTTP 503/);
  await server.accounts.update('leaving', { webhookUrl: null });
  await waitUntil('failed', async () => (await gone.row()).state === 'failed');
  assert.match((await gone.row()).last_error ?? '', /no webhook URL of its own/);
});

test('URLs stored before these rules: a blocked port, and an event queued before receivers existed, are held to them too', async () => {
  // An account URL on port 25, written before the URL rules refused it.
  const smtp = await approvedWith('port25', `http://127.0.0.1:${port}/old`);
  await failedWith(smtp.row, /HTTP 503/);
  await server.store.db.updateTable('accounts').set({ webhook_url: 'https://hooks.example.com:25/x' }).where('login', '=', 'port25').execute();
  await failedWith(smtp.row, /cannot use port 25/);
  // An event of before migration 0007 (no receiver) with an address the global URL is not: the address rules hold.
  const old = await approvedWith('noreceiver', `http://127.0.0.1:${port}/old`);
  await failedWith(old.row, /HTTP 503/);
  const { id: oldOrder } = await server.store.db.selectFrom('accounts').select('id').where('login', '=', 'noreceiver').executeTakeFirstOrThrow();
  await server.store.db
    .updateTable('webhook_outbox')
    .set({ receiver: null, url: `http://[::1]:${port}/old-event`, attempts: 0 })
    .where('receiver', '=', accountReceiver(oldOrder))
    .execute();
  await failedWith(old.row, /::1 is not an Internet address/);
  // An account without a URL of its own and without a secret: its waiting event fails at once, not for want of a secret.
  const neither = await approvedWith('neither', `http://127.0.0.1:${port}/neither`, { secret: false });
  await failedWith(neither.row, /no signing secret/);
  await server.accounts.update('neither', { webhookUrl: null });
  await waitUntil('failed', async () => (await neither.row()).state === 'failed');
  assert.match((await neither.row()).last_error ?? '', /no webhook URL of its own/);
});

test('an event without a signing secret waits, its attempts unspent, and goes once one is issued', async () => {
  const waiting = await approvedWith('unsigned', `http://127.0.0.1:${port}/unsigned`, { secret: false });
  await failedWith(waiting.row, /no signing secret/);
  // Longer than maxAttempts × the retry interval: it would have failed for good if the attempts counted.
  await new Promise((r) => setTimeout(r, 2000));
  const row = await waiting.row();
  assert.equal(row.state === 'pending' || row.state === 'sending', true, row.state);
  assert.equal(row.attempts <= 1, true, `attempts ${row.attempts}`);
  await issueWebhookSecret(server.store.db, { keys: loadValueKeys(server.dataDir), random: cryptoRandom }, accountReceiver(waiting.accountId), Date.now());
  await waitUntil('delivered', async () => (await waiting.row()).state === 'delivered');
  assert.ok(received.includes('/unsigned'));
});

test('a receiver that never answers holds its slot for --webhook-timeout, no longer', async () => {
  const hung = await approvedWith('hung', `http://127.0.0.1:${port}/hang`);
  await failedWith(hung.row, /no answer within 1000 ms/);
});

test('the metrics count each attempt by outcome, and show the queue and its oldest event', async () => {
  // The tests above made each outcome at least once (maxAttempts 4 fails the refused and hung events for good).
  const text = await server.metrics.render();
  for (const outcome of ['delivered', 'retry', 'refused', 'no-secret', 'failed']) {
    assert.ok(sampleOf(text, 'dcvd_webhook_attempts_total', `outcome="${outcome}"`) >= 1, outcome);
  }
  // An event that waits for ever (a receiver that never answers and many attempts left): the gauges see it.
  await server.store.db.updateTable('webhook_outbox').set({ state: 'pending', attempts: 0, created_at: Date.now() - 90_000 }).where('url', 'like', '%/hang').execute();
  const now = await server.metrics.render();
  const rows = await server.store.db.selectFrom('webhook_outbox').select('state').where('state', 'in', ['pending', 'sending']).execute();
  const count = (state: string) => rows.filter((r) => r.state === state).length;
  assert.equal(sampleOf(now, 'dcvd_webhooks_waiting', 'state="pending"') + sampleOf(now, 'dcvd_webhooks_waiting', 'state="sending"'), count('pending') + count('sending'));
  assert.ok(count('pending') + count('sending') >= 1);
  const age = Number(/^dcvd_webhooks_oldest_pending_seconds (\S+)$/m.exec(now)?.[1]);
  assert.ok(age >= 90 && age < 200, String(age));
});

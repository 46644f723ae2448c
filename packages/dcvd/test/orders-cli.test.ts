/** `dcvd order|template|outbox` as an operator runs them (CONTRACT §9): real processes, --json, env variables. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { OfferedAddressRegistry } from '../src/registry/offered.ts';
import { runDcvd } from './support/cli.ts';

let dir: string;
const dcvd = (args: string[], opts: { input?: string; env?: Record<string, string> } = {}) => runDcvd(dir, args, opts);

function json(args: string[], env: Record<string, string> = {}) {
  const r = dcvd([...args, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** What GetDCVEmailAddressList records (CONTRACT §4), written straight into the registry. */
async function offer(login: string, domain: string, address: string, level: number, at = Date.now()) {
  const store = openStore({ dataDir: dir });
  try {
    await migrateToLatest(store.db, store.dialect);
    const account = await store.db.selectFrom('accounts').select('id').where('login', '=', login).executeTakeFirstOrThrow();
    await new OfferedAddressRegistry(store.db).record(account.id, domain, [{ address, level, source: 'constructed' }], at);
  } finally {
    await store.close();
  }
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dcvd-orders-cli-'));
  for (const login of ['alice', 'bob']) {
    const r = dcvd(['account', 'create', '--login', login, '--password-stdin', '--permission', 'auto-apply'], { input: 'a long enough password' });
    assert.equal(r.code, 0, r.stderr);
  }
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('order create prints the order; numbers are assigned, unique, and chains resolve', () => {
  const o = json(['order', 'create', '--account', 'alice', '--domain', 'WWW.Example.COM.']);
  assert.deepEqual(
    { domain: o.domain, dcvStatus: o.dcvStatus, dcvEmailAddress: o.dcvEmailAddress, dcvMethod: o.dcvMethod, voucher: o.voucher, account: o.account },
    { domain: 'www.example.com', dcvStatus: 'awaiting', dcvEmailAddress: null, dcvMethod: 'email', voucher: false, account: 'alice' },
  );
  assert.ok(Number.isSafeInteger(o.orderNumber) && o.orderNumber >= 10_000_000);
  assert.equal(o.baseOrderNumber, o.orderNumber, 'an order that starts a chain is its own base');

  const numbers = new Set<number>([o.orderNumber]);
  for (let i = 0; i < 5; i++) numbers.add(json(['order', 'create', '--account', 'alice', '--domain', 'example.org']).orderNumber);
  assert.equal(numbers.size, 6);

  // A product is one of the catalogue's, and a wildcard needs a wildcard product (as AutoApplyOrder holds them); nothing is written otherwise.
  const unknown = dcvd(['order', 'create', '--account', 'alice', '--domain', 'shop.example.net', '--order-number', '7000001', '--product', '999']);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /no product 999 in the catalogue/);
  const single = dcvd(['order', 'create', '--account', 'alice', '--domain', '*.shop.example.net', '--order-number', '7000001', '--product', '801']);
  assert.notEqual(single.code, 0);
  assert.match(single.stderr, /product 801 is not a wildcard product/);
  assert.equal(dcvd(['product', 'create', '--code', '35', '--name', 'DV wildcard', '--wildcard', '--days', '365']).code, 0);

  // Options from the environment too (CONTRACT §9).
  const given = json(['order', 'create'], { DCVD_ACCOUNT: 'alice', DCVD_DOMAIN: '*.shop.example.net', DCVD_ORDER_NUMBER: '7000001', DCVD_PRODUCT: '35', DCVD_VOUCHER: '1' });
  assert.deepEqual([given.orderNumber, given.domain, given.product, given.voucher], [7000001, '*.shop.example.net', 35, true]);

  const renewal = json(['order', 'create', '--account', 'alice', '--domain', 'shop.example.net', '--base-order-number', '7000001', '--order-number', '7000002']);
  assert.equal(renewal.baseOrderNumber, 7000001);
  const dup = dcvd(['order', 'create', '--account', 'alice', '--domain', 'example.org', '--order-number', '7000001']);
  assert.equal(dup.code, 1);
  assert.equal(dup.stderr, 'dcvd: order 7000001 already exists\n');
  // A chain never spans accounts, and a renewal names the chain's base, not a member.
  assert.match(dcvd(['order', 'create', '--account', 'bob', '--domain', 'example.org', '--base-order-number', '7000001']).stderr, /belongs to another account/);
  assert.match(dcvd(['order', 'create', '--account', 'alice', '--domain', 'example.org', '--base-order-number', '7000002']).stderr, /not the base of its chain; its base order number is 7000001/);
  assert.match(dcvd(['order', 'create', '--account', 'bob', '--domain', 'example.org', '--order-number', '7000001']).stderr, /already exists/);
});

test('order create refuses what the API would refuse', () => {
  for (const [domain, reason] of [
    ['localhost', /special-use, API code -37/],
    ['co.uk', /public-suffix, API code -4/],
    ['8.8.8.8', /public-ip, API code -19/],
  ] as const) {
    const r = dcvd(['order', 'create', '--account', 'alice', '--domain', domain]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, reason);
  }
  assert.match(dcvd(['order', 'create', '--account', 'nobody', '--domain', 'example.com']).stderr, /no account "nobody"/);
  const negative = dcvd(['order', 'create', '--account', 'alice', '--domain', 'example.com', '--order-number', '-5']);
  assert.deepEqual([negative.code, negative.stdout, negative.stderr], [1, '', `error: option '--order-number <n>' argument '-5' is invalid. expected a whole number from 1 to 2^53-1, got "-5"\n`]);
  assert.match(dcvd(['order', 'create', '--account', 'alice', '--domain', 'example.com', '--order-number', '9007199254740992']).stderr, /expected a whole number/);
  assert.match(dcvd(['order', 'create', '--account', 'alice', '--domain', 'example.com', '--template-id', '99']).stderr, /no template 99/);
  assert.match(dcvd(['order', 'create', '--account', 'alice', '--domain', 'example.com', '--random-value-ttl', '31d']).stderr, /at most 30d/);
});

test('order create --dcv-email: the 24-hour rule, then the first DCV email is queued', async () => {
  const refused = dcvd(['order', 'create', '--account', 'alice', '--domain', 'www.example.com', '--order-number', '8000001', '--dcv-email', 'admin@example.com']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /admin@example.com was not returned to account "alice" by GetDCVEmailAddressList for www.example.com in the last 24 hours/);
  const unwritten = dcvd(['order', 'show', '8000001']);
  assert.deepEqual([unwritten.code, unwritten.stderr], [1, 'dcvd: no order 8000001\n'], 'nothing was written');

  // Offered to bob, or to alice 25 hours ago: still refused.
  await offer('bob', 'www.example.com', 'admin@example.com', 2);
  await offer('alice', 'www.example.com', 'hostmaster@example.com', 2, Date.now() - 25 * 3600_000);
  for (const address of ['admin@example.com', 'hostmaster@example.com']) {
    const r = dcvd(['order', 'create', '--account', 'alice', '--domain', 'www.example.com', '--dcv-email', address]);
    assert.equal(r.code, 1, address);
    assert.equal(r.stdout, '', address);
    assert.match(r.stderr, new RegExp(`^dcvd: ${address.replace('.', '\\.')} was not returned to account "alice" by GetDCVEmailAddressList for www\\.example\\.com in the last 24 hours`), address);
  }

  await offer('alice', 'www.example.com', 'admin@example.com', 2);
  const o = json(['order', 'create', '--account', 'alice', '--domain', 'www.example.com', '--order-number', '8000001', '--dcv-email', 'admin@EXAMPLE.com']);
  assert.equal(o.dcvEmailAddress, 'admin@example.com');
  assert.match(o.queuedEmail, /^<[0-9a-f]{32}@localhost>$/, 'no --mail-from or --public-url: dcvd@localhost');
  assert.ok(o.lastDcvEmailAt);

  const shown = json(['order', 'show', '8000001']);
  assert.equal(shown.emails.length, 1);
  assert.deepEqual([shown.emails[0].messageId, shown.emails[0].state, shown.emails[0].to], [o.queuedEmail, 'pending', 'admin@example.com']);
  const pending = json(['outbox', 'list', '--state', 'pending']);
  assert.ok(pending.some((e: { messageId: string }) => e.messageId === o.queuedEmail));
  assert.match(dcvd(['outbox', 'list']).stdout, /order 8000001 {2}to admin@example.com {2}pending/);
  assert.match(dcvd(['order', 'create', '--account', 'alice', '--domain', 'www.example.com', '--dcv-method', 'http', '--dcv-email', 'admin@example.com']).stderr, /needs --dcv-method email/);

  // Cancelling: the order is cancelled and its unsent email is not sent.
  const cancelled = json(['order', 'cancel', '8000001']);
  assert.equal(cancelled.dcvStatus, 'cancelled');
  const after = json(['order', 'show', '8000001']);
  assert.deepEqual([after.emails[0].state, after.emails[0].lastError], ['cancelled', 'order cancelled']);
  assert.match(dcvd(['order', 'cancel', '8000001']).stderr, /already cancelled/);
});

test('order list and show, with and without --json', () => {
  const all = json(['order', 'list']);
  const mine = json(['order', 'list', '--account', 'bob']);
  assert.ok(all.length > 5);
  assert.deepEqual(mine, []);
  assert.match(dcvd(['order', 'show', '7000002']).stdout, /^order 7000002 {2}\(awaiting\)\n {2}base order number: 7000001\n/);
  assert.match(dcvd(['order', 'show', '123']).stderr, /no order 123/);
});

test('template create and list: per account and global, validated when created', () => {
  const text = join(dir, 't.txt');
  const html = join(dir, 't.html');
  writeFileSync(text, 'Order {{orderNumber}}: code {{validationCode}}, {{confirmationUrl}}\n');
  writeFileSync(html, '<p>{{domain}}: <b>{{validationCode}}</b></p>\n');
  const g = json(['template', 'create', '--global', '--id', '10', '--subject', 'Validate {{domain}}', '--text-file', text, '--html-file', html]);
  assert.deepEqual(g, { ...g, id: 10, account: null, hasHtml: true, subject: 'Validate {{domain}}' });
  const a = json(['template', 'create', '--account', 'alice', '--id', '10', '--subject', 'Alice {{domain}}', '--text-file', text]);
  assert.deepEqual([a.account, a.hasHtml], ['alice', false]);
  assert.match(dcvd(['template', 'create', '--account', 'alice', '--id', '10', '--subject', 'x', '--text-file', text]).stderr, /already exists for this account/);
  assert.match(dcvd(['template', 'create', '--id', '11', '--subject', 'x', '--text-file', text]).stderr, /exactly one of --account NAME and --global/);

  writeFileSync(join(dir, 'bad.txt'), 'no code here\n');
  assert.match(dcvd(['template', 'create', '--global', '--id', '12', '--subject', 'x', '--text-file', join(dir, 'bad.txt')]).stderr, /must contain \{\{validationCode\}\}/);
  writeFileSync(join(dir, 'raw.html'), '<p>{{{validationCode}}}</p>\n');
  assert.match(dcvd(['template', 'create', '--global', '--id', '12', '--subject', 'x', '--text-file', text, '--html-file', join(dir, 'raw.html')]).stderr, /unescaped variable/);

  const list = json(['template', 'list']);
  assert.deepEqual(list.map((t: { id: number; account: string | null }) => [t.id, t.account]), [[10, null], [10, 'alice']]);
  assert.equal(json(['template', 'list', '--account', 'bob']).length, 0);
  assert.match(dcvd(['template', 'list']).stdout, /template 10 \(global\) text\+HTML: Validate \{\{domain\}\}/);
  // An order may name a template.
  assert.equal(json(['order', 'create', '--account', 'bob', '--domain', 'example.com', '--template-id', '10']).templateId, 10);
});

test('serve --help names the DCV email options and their variables', () => {
  const help = dcvd(['serve', '--help']).stdout;
  for (const v of ['DCVD_SMTP_URL', 'DCVD_MAIL_FROM', 'DCVD_PUBLIC_URL', 'DCVD_RESEND_INTERVAL', 'DCVD_RANDOM_VALUE_TTL', 'DCVD_SECRET_KEY_FILE', 'DCVD_OUTBOX_LEASE', 'DCVD_OUTBOX_MAX_ATTEMPTS']) {
    assert.ok(help.includes(v), v);
  }
});

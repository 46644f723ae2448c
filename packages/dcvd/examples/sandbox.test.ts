/**
 * An integration test against `dcvd sandbox`, as docs/SANDBOX.md shows it:
 * offer addresses (one published in DNS through an override), place an order,
 * read the DCV email from the mail viewer's API, confirm it as a browser
 * would, and see the order validated. Run it with the sandbox's block of
 * settings in a file and its certificate trusted:
 *
 *   DCVD_SANDBOX_INFO=sandbox.txt NODE_EXTRA_CA_CERTS=<ca certificate> node --import tsx --test examples/sandbox.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { DcvClient } from '@dcvd/client';

// The block `dcvd sandbox` prints: `key: value` per line.
const info: Record<string, string> = {};
for (const line of readFileSync(process.env.DCVD_SANDBOX_INFO ?? 'sandbox.txt', 'utf8').split('\n')) {
  const at = line.indexOf(': ');
  if (at > 0) info[line.slice(0, at)] = line.slice(at + 2);
}

/** The sandbox's internal API (JSON, bearer token). */
async function admin(method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(`${info['admin api']}${path}`, {
    method,
    headers: { authorization: `Bearer ${info['admin token']}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/** The newest captured email of an order, once the outbox has delivered it. */
async function latestEmail(orderNumber: number, after?: string): Promise<{ id: string; code: string; confirmationUrl: string }> {
  for (let i = 0; i < 200; i++) {
    const [mail] = await admin('GET', `/v1/sandbox/mail?order=${orderNumber}&limit=1`);
    if (mail && mail.id !== after) return mail;
    await sleep(100);
  }
  throw new Error(`no email for order ${orderNumber}`);
}

test('a certificate order is confirmed by email', async () => {
  const client = new DcvClient({ baseUrl: info.api!, loginName: info.login!, loginPassword: info.password! });
  const domain = 'www.example.com';

  // The domain publishes a contact in DNS: an override answers before the real resolvers.
  await admin('POST', '/v1/sandbox/dns', { name: '_validation-contactemail.example.com', type: 'TXT', records: ['hostmaster@example.com'] });
  const list = await client.getDcvEmailAddressList({ domainName: domain, responseFormat: 2 });
  assert.ok(list.emails.includes('admin@example.com'), 'constructed addresses');
  assert.ok(list.emails.includes('hostmaster@example.com'), 'the DNS contact');

  // The order, with its first DCV email (today through the internal API; `!AutoApplyOrder` is coming).
  const orderNumber = 1_000_000 + Math.floor(Math.random() * 1_000_000);
  await admin('POST', '/v1/orders', { account: info.login, domain, orderNumber, dcvEmailAddress: 'hostmaster@example.com' });
  const first = await latestEmail(orderNumber);

  // A resend within the minimum interval answers -160; an hour later on the sandbox clock it works.
  await assert.rejects(client.resendDcvEmail({ orderNumber }), (err: { code?: number }) => err.code === -160);
  await admin('POST', '/v1/sandbox/clock/advance', { by: '1h' });
  await client.resendDcvEmail({ orderNumber });
  const mail = await latestEmail(orderNumber, first.id);

  // Confirm as a browser does: open the link, send the page's form with its token.
  const page = await (await fetch(mail.confirmationUrl)).text();
  const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1];
  assert.ok(csrf, 'the confirmation page has its form');
  const done = await fetch(new URL('/dcv/confirm', info.api), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ code: mail.code, csrf, decision: 'approve' }),
  });
  assert.equal(done.status, 200);

  const order = await admin('GET', `/v1/orders/${orderNumber}`);
  assert.equal(order.dcvStatus, 'validated');
  assert.equal(order.evidence[0].recipient, 'hostmaster@example.com');
});

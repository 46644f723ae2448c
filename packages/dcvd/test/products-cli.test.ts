/** `dcvd product create|list` and the domains of `dcvd order show` (CONTRACT §9, §12), as a user runs them. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDcvd } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'dcvd-products-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('801 and 803 by default; create a multi-domain product; bad input is refused with a message', () => {
  const list = runDcvd(dir, ['product', 'list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(JSON.parse(list.stdout).map((p: { code: number }) => p.code), [801, 803]);
  const made = runDcvd(dir, ['product', 'create', '--json', '--code', '361', '--name', 'DV multi', '--multi-domain', '--max-domains', '100', '--wildcard', '--days', '365,730']);
  assert.equal(made.code, 0, made.stderr);
  assert.deepEqual(JSON.parse(made.stdout), { code: 361, name: 'DV multi', multiDomain: true, maxDomains: 100, wildcard: true, allowedDays: [365, 730] });
  const again = runDcvd(dir, ['product', 'create', '--code', '361', '--name', 'x', '--days', '365']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists/);
  const single = runDcvd(dir, ['product', 'create', '--code', '25', '--name', 'x', '--max-domains', '3', '--days', '365']);
  assert.equal(single.code, 1);
  assert.match(single.stderr, /single-domain product has a maximum of 1 domain/);
});

test('order show lists the order\u2019s domains with their own DCV state', () => {
  const alice = runDcvd(dir, ['account', 'create', '--login', 'alice', '--password-stdin'], { input: 'correct horse battery staple\n' });
  assert.equal(alice.code, 0, alice.stderr);
  assert.match(alice.stdout, /^created account\nalice {2}\(active\)\n/);
  const created = runDcvd(dir, ['order', 'create', '--json', '--account', 'alice', '--domain', 'www.example.com', '--order-number', '5000001']);
  assert.equal(created.code, 0, created.stderr);
  const shown = runDcvd(dir, ['order', 'show', '5000001', '--json']);
  const order = JSON.parse(shown.stdout);
  assert.deepEqual(order.domains.map((d: { domain: string; dcvMethod: string; dcvStatus: string }) => [d.domain, d.dcvMethod, d.dcvStatus]), [['www.example.com', 'email', 'awaiting']]);
  assert.match(runDcvd(dir, ['order', 'show', '5000001']).stdout, /domain 1: www\.example\.com {2}email awaiting/);
});

/**
 * The 24-hour rule (CONTRACT §4, src/registry/offer-window.ts) with a fake
 * registry lookup at the narrow `OfferLookup` interface. The rule against the
 * real registry on SQLite/PostgreSQL: get-list.test.ts ("the 24-hour
 * registry"), resend.test.ts, order-flow.test.ts, orders-cli.test.ts.
 * Run: node --import tsx --test test/offer-window.test.ts
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { OFFER_WINDOW_MS, offeredRecipient, windowStart, type OfferLookup, type OfferRecord } from '../src/registry/offer-window.ts';

const NOW = Date.UTC(2026, 10, 23, 12);

/** Answers from a list of offers (as the registry stores them), inside the window at `now`; records every question. */
function lookup(offers: (OfferRecord & { accountId: number })[]): OfferLookup & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async find(accountId, domain, address, now) {
      asked.push(`${accountId} ${domain} ${address}`);
      return offers.find((o) => o.accountId === accountId && o.domain === domain && o.address === address && o.offeredAt > windowStart(now));
    },
  };
}

const offer = (over: Partial<OfferRecord & { accountId: number }> = {}) => ({
  accountId: 1,
  domain: 'www.example.com',
  address: 'admin@example.com',
  level: 2,
  source: 'constructed' as const,
  offeredAt: NOW - 1000,
  ...over,
});

describe('offeredRecipient', () => {
  test('an offer inside the window gives the recipient with its ADN (the suffix of the offer\u2019s level) and source', async () => {
    const registry = lookup([offer(), offer({ address: 'owner@example.net', level: 3, source: 'dns-txt', dns: { name: '_validation-contactemail.www.example.com', type: 'TXT', rcode: 'NOERROR', authenticatedData: true, extendedErrors: [], resolver: '192.0.2.53:53' } })]);
    assert.deepEqual(await offeredRecipient(registry, { account_id: 1, domain: 'www.example.com' }, 'admin@example.com', NOW), {
      address: 'admin@example.com',
      adn: 'example.com',
      source: 'constructed',
      dnsDetail: null,
    });
    const txt = await offeredRecipient(registry, { account_id: 1, domain: 'www.example.com' }, 'owner@example.net', NOW);
    assert.equal(txt?.adn, 'www.example.com');
    assert.equal(txt?.source, 'dns-txt');
    assert.equal(JSON.parse(txt!.dnsDetail!).name, '_validation-contactemail.www.example.com');
  });

  test('the window is 24 hours: an offer exactly 24 hours old no longer counts, one a millisecond younger does', async () => {
    assert.equal(OFFER_WINDOW_MS, 24 * 60 * 60 * 1000);
    const registry = lookup([offer({ offeredAt: NOW - OFFER_WINDOW_MS })]);
    assert.equal(await offeredRecipient(registry, { account_id: 1, domain: 'www.example.com' }, 'admin@example.com', NOW), undefined);
    assert.ok(await offeredRecipient(registry, { account_id: 1, domain: 'www.example.com' }, 'admin@example.com', NOW - 1));
  });

  test('another account, another domain: not offered', async () => {
    const registry = lookup([offer()]);
    assert.equal(await offeredRecipient(registry, { account_id: 2, domain: 'www.example.com' }, 'admin@example.com', NOW), undefined);
    assert.equal(await offeredRecipient(registry, { account_id: 1, domain: 'example.com' }, 'admin@example.com', NOW), undefined);
  });

  test('a wildcard order is looked up without its *.', async () => {
    const registry = lookup([offer()]);
    const r = await offeredRecipient(registry, { account_id: 1, domain: '*.www.example.com' }, 'admin@example.com', NOW);
    assert.equal(r?.adn, 'example.com');
    assert.deepEqual(registry.asked, ['1 www.example.com admin@example.com']);
  });

  test('a value that is not one bare address never reaches the registry', async () => {
    const registry = lookup([offer()]);
    for (const bad of ['admin@example.com\r\nBcc: x@evil.example', 'Admin <admin@example.com>', '', 'admin', `${'a'.repeat(250)}@example.com`]) {
      assert.equal(await offeredRecipient(registry, { account_id: 1, domain: 'www.example.com' }, bad, NOW), undefined, JSON.stringify(bad));
    }
    assert.deepEqual(registry.asked, []);
  });

  test('a recorded level the domain does not have gives no recipient', async () => {
    const registry = lookup([offer({ level: 4 }), offer({ address: 'webmaster@example.com', level: 0 })]);
    assert.equal(await offeredRecipient(registry, { account_id: 1, domain: 'www.example.com' }, 'admin@example.com', NOW), undefined);
    assert.equal(await offeredRecipient(registry, { account_id: 1, domain: 'www.example.com' }, 'webmaster@example.com', NOW), undefined);
  });
});

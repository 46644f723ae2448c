/** Prometheus metrics (issue 8): what the API, DNS, lockouts and the outbox report. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseResolvers } from '../src/dns/client.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import { GET_PATH, PASSWORD, RESEND_PATH, form, startTestServer, type TestServer } from './support/server.ts';

let dns: TestDnsServer;
let s: TestServer;
before(async () => {
  dns = await startTestDnsServer();
  s = await startTestServer({ dnsServers: parseResolvers(dns.address), dnsTimeoutMs: 200, dnsAttempts: 1 });
  await s.createAccount('alice');
});
after(async () => {
  await s.stop();
  await dns.close();
});

/** The value of one sample line, e.g. `dcvd_api_requests_total{endpoint="…",code="0"}`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(',').filter(Boolean);
    if (want.every((w) => have.includes(w)) && have.length === want.length) return Number(m[3]);
  }
  return undefined;
}

test('API calls, -16 causes, lockouts, DNS outcomes and the outbox are counted', async () => {
  const creds = { loginName: 'alice', loginPassword: PASSWORD };
  dns.setServfail('_validation-contactemail.example.com');
  await s.post(GET_PATH, form({ ...creds, domainName: 'example.com', product: '801', responseFormat: '2' }));
  await s.post(GET_PATH, form({ ...creds, domainName: '8.8.8.8', product: '801' }));
  for (let i = 0; i < 5; i++) await s.post(RESEND_PATH, form({ loginName: 'alice', loginPassword: 'wrong password', orderNumber: '1' }));
  await s.post(RESEND_PATH, form({ loginName: 'nobody', loginPassword: 'x', orderNumber: '1' }));

  const text = await s.metrics.render();
  assert.equal(sample(text, 'dcvd_api_requests_total', { endpoint: 'GetDCVEmailAddressList', code: '0' }), 1);
  assert.equal(sample(text, 'dcvd_api_requests_total', { endpoint: 'GetDCVEmailAddressList', code: '-19' }), 1);
  assert.equal(sample(text, 'dcvd_api_requests_total', { endpoint: 'ResendDCVEmail', code: '-16' }), 6);
  assert.equal(sample(text, 'dcvd_auth_failures_total', { reason: 'wrong-password' }), 5);
  assert.equal(sample(text, 'dcvd_auth_failures_total', { reason: 'unknown-login' }), 1);
  assert.equal(sample(text, 'dcvd_lockouts_total'), 1);
  assert.equal(sample(text, 'dcvd_dns_lookups_total', { type: 'TXT', outcome: 'servfail' }), 1);
  assert.equal(sample(text, 'dcvd_dns_lookups_total', { type: 'CAA', outcome: 'ok' }), 2);
  assert.equal(sample(text, 'dcvd_api_request_duration_seconds_count', { endpoint: 'ResendDCVEmail' }), 6);
  assert.equal(sample(text, 'dcvd_outbox_oldest_pending_seconds'), 0);
  assert.ok(text.includes('# HELP dcvd_outbox_emails '));
  // Every state has its line, 0 for none (nothing was queued: every resend above was refused).
  for (const state of ['pending', 'sending', 'delivered', 'failed', 'cancelled']) assert.equal(sample(text, 'dcvd_outbox_emails', { state }), 0, state);
  assert.ok(sample(text, 'dcvd_process_resident_memory_bytes')! > 0);
});

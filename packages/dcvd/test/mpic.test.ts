/**
 * Multi-Perspective Issuance Corroboration of DNS-found contacts, end to end
 * (issue 19): a real dcvd over HTTPS with its own loopback DNS server (the
 * Primary Network Perspective), the Open MPIC test peer over HTTPS whose six
 * perspectives each resolve through their own loopback DNS server, SQLite or
 * PostgreSQL (DCVD_TEST_DATABASE=postgres).
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { defaultMpicConfig, type MpicConfig } from '../src/mpic/corroborate.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import { startTestMpicServer, type TestMpicServer } from './support/mpic-server.ts';
import { form, GET_PATH, PASSWORD, startTestServer, type TestServer } from './support/server.ts';
import { createOrder, createTemplate, errorBody, OK, resend } from './support/dcv.ts';
import { metric } from './support/metrics.ts';
import { parseResolvers } from '../src/dns/client.ts';
import { ManualClock } from '../src/deps.ts';

const ADMIN_TOKEN = 'mpic-test-admin-token-0123456789abcdef';
const clock = new ManualClock(Date.now());
let primary: TestDnsServer;
let peer: TestMpicServer;
let dir: string;
let orderNumber = 7_100_000;

before(async () => {
  primary = await startTestDnsServer();
  peer = await startTestMpicServer();
  dir = mkdtempSync(join(tmpdir(), 'dcvd-mpic-'));
  writeFileSync(join(dir, 'mpic.key'), `${peer.apiKey}\n`);
  writeFileSync(join(dir, 'mpic-ca.pem'), peer.ca);
});
after(async () => {
  await peer.close();
  await primary.close();
  rmSync(dir, { recursive: true, force: true });
});

function mpicWith(overrides: Partial<MpicConfig> = {}): MpicConfig {
  return defaultMpicConfig({ url: peer.url, apiKeyFile: join(dir, 'mpic.key'), caFile: join(dir, 'mpic-ca.pem'), timeoutMs: 8000, ...overrides });
}

async function dcvd(mpic: MpicConfig): Promise<TestServer> {
  const s = await startTestServer(
    {
      dnsServers: parseResolvers(primary.address),
      adminListen: { host: '127.0.0.1', port: 0 },
      adminToken: ADMIN_TOKEN,
      dcvEmail: defaultDcvEmailConfig({ resendIntervalMs: 0 }),
      mpic,
    },
    { clock },
  );
  await s.createAccount('alice');
  return s;
}

/** Publishes `address` as the TXT contact of `domain` at the primary and at every perspective. */
function publishTxt(domain: string, address: string) {
  primary.setTxt(`_validation-contactemail.${domain}`, [[address]]);
  peer.setTxtEverywhere(`_validation-contactemail.${domain}`, [[address]]);
}

/** GetDCVEmailAddressList in JSON (DNS contacts included): records the offers of the 24-hour rule. */
async function offer(s: TestServer, domain: string): Promise<Record<string, unknown>> {
  const r = await s.post(GET_PATH, form({ loginName: 'alice', loginPassword: PASSWORD, domainName: domain, product: '801', responseFormat: '2' }));
  const json = JSON.parse(r.body) as Record<string, unknown>;
  assert.equal(json.errorCode, 0, r.body);
  return json;
}

/** A new order for `domain`, offered, then ResendDCVEmail to `address`: the response body. */
async function selectFor(s: TestServer, domain: string, address: string, extra: Record<string, string> = {}): Promise<{ body: string; order: number }> {
  const order = ++orderNumber;
  await createOrder(s, clock, 'alice', { domain, orderNumber: order });
  const list = await offer(s, domain);
  assert.ok(JSON.stringify(list).includes(address), `${address} is offered: ${JSON.stringify(list)}`);
  const r = await resend(s, 'alice', { orderNumber: order, dcvEmailAddress: address, ...extra });
  return { body: r.body, order };
}

async function evidenceOf(s: TestServer, order: number) {
  const row = await s.store.db.selectFrom('orders').select('id').where('order_number', '=', order).executeTakeFirstOrThrow();
  return s.store.db.selectFrom('mpic_evidence').selectAll().where('order_id', '=', row.id).orderBy('id', 'desc').execute();
}

async function emailsOf(s: TestServer, order: number): Promise<number> {
  const row = await s.store.db.selectFrom('orders').select('id').where('order_number', '=', order).executeTakeFirstOrThrow();
  const rows = await s.store.db.selectFrom('outbox').select('id').where('order_id', '=', row.id).execute();
  return rows.length;
}

const corroborations = (s: TestServer, outcome: string): Promise<number> => metric(s, 'dcvd_mpic_corroborations_total', `outcome="${outcome}"`);

const REFUSED = errorBody(-160);

describe('with an MPIC service of six perspectives (N = 6)', () => {
  let s: TestServer;
  before(async () => {
    s = await dcvd(mpicWith());
  });
  after(async () => {
    await s.stop();
  });
  beforeEach(() => {
    peer.reset();
    primary.reset();
  });

  test('corroborated: the email is queued, the request follows the specification, the evidence keeps every perspective', async () => {
    publishTxt('corroborated.example.com', 'owner@contact.example');
    const sent = peer.requests.length;
    const { body, order } = await selectFor(s, 'corroborated.example.com', 'owner@contact.example');
    assert.equal(body, OK);
    assert.equal(await emailsOf(s, order), 1);
    assert.equal(peer.requests.length, sent + 1);
    const req = peer.requests.at(-1)!;
    assert.equal(req.headers['x-api-key'], peer.apiKey);
    assert.equal(req.body.check_type, 'dcv');
    assert.equal(req.body.domain_or_ip_target, 'corroborated.example.com');
    assert.deepEqual(req.body.dcv_check_parameters, { validation_method: 'contact-email-txt', challenge_value: 'owner@contact.example' });
    assert.deepEqual(req.body.orchestration_parameters, { perspective_count: 6, quorum_count: 4, max_attempts: 1 });
    const [ev] = await evidenceOf(s, order);
    assert.ok(ev);
    assert.equal(ev.outcome, 'corroborated');
    assert.equal(ev.corroborated, 1);
    assert.equal(ev.request_id, req.body.trace_identifier);
    assert.equal(ev.perspectives, 6);
    assert.equal(ev.corroborating, 6);
    assert.equal(ev.rirs, 'APNIC,ARIN,RIPE NCC');
    assert.notEqual(ev.random_value_id, null, 'linked to the value the email carries');
    const results = JSON.parse(ev.perspective_results) as { code: string; rir: string; corroborates: boolean }[];
    assert.deepEqual(
      results.map((r) => [r.code, r.rir, r.corroborates]),
      peer.perspectives.map((p) => [p.code, { arin: 'ARIN', ripe: 'RIPE NCC', apnic: 'APNIC' }[p.code.split('.')[0]!], true]),
    );
    // Each perspective's answer is logged.
    const logged = s.logs.filter((l) => (l.mpic as { requestId?: string } | undefined)?.requestId === req.body.trace_identifier && l.msg === 'MPIC perspective answer');
    assert.equal(logged.length, 6);
  });

  for (const k of [1, 2, 3]) {
    test(`${k} of 6 perspectives see another address → ${k <= 2 ? 'corroborated' : '-160, no email'}`, async () => {
      const domain = `k${k}-n6.example.com`;
      publishTxt(domain, 'owner@contact.example');
      // The first k (ARIN) see another address: the RIR spread of the rest stays wide.
      for (const p of peer.perspectives.slice(0, k)) p.dns.setTxt(`_validation-contactemail.${domain}`, [['mallory@attacker.example']]);
      const { body, order } = await selectFor(s, domain, 'owner@contact.example');
      const [ev] = await evidenceOf(s, order);
      assert.equal(ev?.corroborating, 6 - k);
      if (k <= 2) {
        assert.equal(body, OK);
        assert.equal(ev?.outcome, 'corroborated');
      } else {
        assert.equal(body, REFUSED);
        assert.equal(ev?.outcome, 'quorum-not-met');
        assert.equal(await emailsOf(s, order), 0);
      }
    });
  }

  test('corroborating perspectives in a single RIR → -160', async () => {
    const domain = 'one-rir.example.com';
    publishTxt(domain, 'owner@contact.example');
    for (const p of peer.perspectives.filter((p) => !p.code.startsWith('arin.'))) p.dns.setTxt(`_validation-contactemail.${domain}`, [['other@contact.example']]);
    const { body, order } = await selectFor(s, domain, 'owner@contact.example');
    assert.equal(body, REFUSED);
    const [ev] = await evidenceOf(s, order);
    assert.equal(ev?.outcome, 'rir-diversity-not-met');
    assert.equal(ev?.rirs, 'ARIN');
    assert.equal(await emailsOf(s, order), 0);
  });

  test('a perspective that times out or is down is a non-corroboration; two of them are still within the quorum', async () => {
    const domain = 'flaky.example.com';
    publishTxt(domain, 'owner@contact.example');
    peer.perspectives[0]!.dns.setNoAnswer(`_validation-contactemail.${domain}`);
    peer.perspectives[1]!.down = true;
    const { body, order } = await selectFor(s, domain, 'owner@contact.example');
    assert.equal(body, OK);
    const [ev] = await evidenceOf(s, order);
    const results = JSON.parse(ev!.perspective_results) as { corroborates: boolean; reason: string }[];
    assert.equal(results.filter((r) => !r.corroborates).length, 2);
    assert.match(results[0]!.reason, /lookup/);
    assert.match(results[1]!.reason, /communication/);
  });

  test('the service\u2019s summary flag is not trusted: is_valid true with failing perspectives → -160', async () => {
    const domain = 'liar.example.com';
    publishTxt(domain, 'owner@contact.example');
    for (const p of peer.perspectives.slice(0, 4)) p.dns.setTxt(`_validation-contactemail.${domain}`, [['other@contact.example']]);
    peer.isValid = true;
    const { body, order } = await selectFor(s, domain, 'owner@contact.example');
    assert.equal(body, REFUSED);
    assert.equal((await evidenceOf(s, order))[0]?.outcome, 'quorum-not-met');
  });

  test('the flat answer shape of the reference implementation is read too', async () => {
    publishTxt('flat.example.com', 'owner@contact.example');
    peer.shape = 'flat';
    assert.equal((await selectFor(s, 'flat.example.com', 'owner@contact.example')).body, OK);
  });

  test('a malformed answer or an error status fails closed', async () => {
    publishTxt('garbage.example.com', 'owner@contact.example');
    peer.rawAnswer = () => ({ status: 200, body: '{"check_type":"dcv","is_valid":true}' });
    const a = await selectFor(s, 'garbage.example.com', 'owner@contact.example');
    assert.equal(a.body, REFUSED);
    assert.equal((await evidenceOf(s, a.order))[0]?.outcome, 'bad-answer');
    peer.rawAnswer = () => ({ status: 502, body: 'Bad Gateway' });
    const b = await selectFor(s, 'garbage.example.com', 'owner@contact.example');
    assert.equal(b.body, REFUSED);
    assert.match((await evidenceOf(s, b.order))[0]!.detail, /HTTP 502/);
  });

  test('CAA contactemail: the perspectives climb from the FQDN (contact-email-caa)', async () => {
    primary.setCaa('caa-contact.example.com', [{ tag: 'issue', value: 'ca.example' }, { tag: 'contactemail', value: 'caa-owner@contact.example' }]);
    peer.setCaaEverywhere('caa-contact.example.com', [{ tag: 'issue', value: 'ca.example' }, { tag: 'contactemail', value: 'caa-owner@contact.example' }]);
    const { body, order } = await selectFor(s, 'www.caa-contact.example.com', 'caa-owner@contact.example');
    assert.equal(body, OK);
    const req = peer.requests.at(-1)!;
    assert.equal(req.body.domain_or_ip_target, 'www.caa-contact.example.com');
    assert.deepEqual(req.body.dcv_check_parameters, { validation_method: 'contact-email-caa', challenge_value: 'caa-owner@contact.example' });
    const [ev] = await evidenceOf(s, order);
    const results = JSON.parse(ev!.perspective_results) as { foundAt: string }[];
    assert.ok(results.every((r) => r.foundAt === 'caa-contact.example.com'));
  });

  test('a resend of the same email in its entirety needs no new corroboration; a changed one does', async () => {
    publishTxt('again.example.com', 'owner@contact.example');
    const { body, order } = await selectFor(s, 'again.example.com', 'owner@contact.example');
    assert.equal(body, OK);
    const calls = peer.requests.length;
    const unchanged = await corroborations(s, 'unchanged-resend');
    // Same address (named, then omitted): the value is reused, no MPIC call.
    assert.equal((await resend(s, 'alice', { orderNumber: order, dcvEmailAddress: 'owner@contact.example' })).body, OK);
    assert.equal((await resend(s, 'alice', { orderNumber: order })).body, OK);
    assert.equal(peer.requests.length, calls);
    assert.equal(await corroborations(s, 'unchanged-resend'), unchanged + 2);
    assert.equal(await emailsOf(s, order), 3);
    // Another template is another content: a new value, so a new corroboration — which now fails.
    await createTemplate(s, clock, 'alice', 4242, { subject: 'DCV for {{domain}}', text: 'Code: {{validationCode}}' });
    for (const p of peer.perspectives.slice(0, 3)) p.dns.setTxt('_validation-contactemail.again.example.com', [['gone@contact.example']]);
    assert.equal((await resend(s, 'alice', { orderNumber: order, dcvTemplateID: '4242' })).body, REFUSED);
    assert.equal(peer.requests.length, calls + 1);
    assert.equal(await emailsOf(s, order), 3);
  });

  test('an unchanged resend of a value that was never corroborated (made under --mpic off) is corroborated now', async () => {
    publishTxt('was-off.example.com', 'owner@contact.example');
    const { body, order } = await selectFor(s, 'was-off.example.com', 'owner@contact.example');
    assert.equal(body, OK);
    // As if the value had been made by an instance running --mpic off.
    const [ev] = await evidenceOf(s, order);
    await s.store.db.updateTable('mpic_evidence').set({ corroborated: 0, outcome: 'off' }).where('id', '=', ev!.id).execute();
    const calls = peer.requests.length;
    assert.equal((await resend(s, 'alice', { orderNumber: order })).body, OK);
    assert.equal(peer.requests.length, calls + 1);
    const [again] = await evidenceOf(s, order);
    assert.equal(again?.outcome, 'corroborated');
    assert.equal(again?.random_value_id, ev!.random_value_id, 'the same value, now corroborated');
  });

  test('a constructed address needs no MPIC call', async () => {
    const calls = peer.requests.length;
    const { body } = await selectFor(s, 'constructed.example.com', 'admin@constructed.example.com');
    assert.equal(body, OK);
    assert.equal(peer.requests.length, calls);
  });

  test('an order that would be refused anyway costs no MPIC call', async () => {
    publishTxt('cancelled.example.com', 'owner@contact.example');
    const order = ++orderNumber;
    await createOrder(s, clock, 'alice', { domain: 'cancelled.example.com', orderNumber: order });
    await offer(s, 'cancelled.example.com');
    await s.store.db.updateTable('orders').set({ dcv_status: 'cancelled' }).where('order_number', '=', order).execute();
    const calls = peer.requests.length;
    assert.equal((await resend(s, 'alice', { orderNumber: order, dcvEmailAddress: 'owner@contact.example' })).body, REFUSED);
    assert.equal(peer.requests.length, calls);
  });

  test('order creation over the internal API corroborates before it writes anything', async () => {
    const api = async (domain: string, number: number) => {
      const r = await s.request({
        admin: true,
        path: '/v1/orders',
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ account: 'alice', domain, orderNumber: number, dcvEmailAddress: 'owner@contact.example' }),
      });
      return { status: r.status, json: JSON.parse(r.body) as Record<string, unknown> };
    };
    publishTxt('admin-ok.example.com', 'owner@contact.example');
    await offer(s, 'admin-ok.example.com');
    const ok = await api('admin-ok.example.com', ++orderNumber);
    assert.equal(ok.status, 201, JSON.stringify(ok.json));
    assert.equal(typeof ok.json.queuedEmail, 'string');
    const detail = await s.request({ admin: true, path: `/v1/orders/${orderNumber}`, method: 'GET', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const corroborations = (JSON.parse(detail.body) as { corroborations: { outcome: string; used: boolean; perspectiveResults: unknown[] }[] }).corroborations;
    assert.equal(corroborations.length, 1);
    assert.equal(corroborations[0]!.outcome, 'corroborated');
    assert.equal(corroborations[0]!.used, true);
    assert.equal(corroborations[0]!.perspectiveResults.length, 6);

    publishTxt('admin-no.example.com', 'owner@contact.example');
    for (const p of peer.perspectives.slice(0, 3)) p.dns.setTxt('_validation-contactemail.admin-no.example.com', [['x@contact.example']]);
    await offer(s, 'admin-no.example.com');
    const refused = await api('admin-no.example.com', ++orderNumber);
    assert.ok(refused.status >= 400 && refused.status < 500, JSON.stringify(refused.json));
    assert.match(JSON.stringify(refused.json), /Multi-Perspective Issuance Corroboration/);
    const row = await s.store.db.selectFrom('orders').select('id').where('order_number', '=', orderNumber).executeTakeFirst();
    assert.equal(row, undefined, 'no order was created');
    const kept = await s.store.db.selectFrom('mpic_evidence').selectAll().where('target', '=', 'admin-no.example.com').execute();
    assert.equal(kept.length, 1, 'the failed corroboration is kept as evidence');
    assert.equal(kept[0]!.outcome, 'quorum-not-met');
  });

  test('metrics count corroborations by outcome', async () => {
    assert.ok((await corroborations(s, 'corroborated')) >= 5);
    assert.ok((await corroborations(s, 'quorum-not-met')) >= 2);
    assert.equal(await corroborations(s, 'rir-diversity-not-met'), 1);
    assert.equal(await corroborations(s, 'bad-answer'), 2);
  });
});

describe('with N = 5', () => {
  let s: TestServer;
  before(async () => {
    s = await dcvd(mpicWith({ perspectives: 5 }));
  });
  after(async () => {
    await s.stop();
  });
  beforeEach(() => {
    peer.reset();
    primary.reset();
  });

  for (const k of [1, 2, 3]) {
    test(`${k} of 5 perspectives see another address → ${k <= 1 ? 'corroborated' : '-160'}`, async () => {
      const domain = `k${k}-n5.example.com`;
      publishTxt(domain, 'owner@contact.example');
      for (const p of peer.perspectives.slice(0, k)) p.dns.setTxt(`_validation-contactemail.${domain}`, [['mallory@attacker.example']]);
      const { body, order } = await selectFor(s, domain, 'owner@contact.example');
      assert.equal(peer.requests.at(-1)!.body.orchestration_parameters && (peer.requests.at(-1)!.body.orchestration_parameters as { quorum_count: number }).quorum_count, 4);
      const [ev] = await evidenceOf(s, order);
      assert.equal(ev?.perspectives, 5);
      assert.equal(ev?.corroborating, 5 - k);
      assert.equal(body, k <= 1 ? OK : REFUSED);
      assert.equal(await emailsOf(s, order), k <= 1 ? 1 : 0);
    });
  }
});

describe('failing closed', () => {
  beforeEach(() => {
    peer.reset();
    primary.reset();
  });

  test('MPIC unreachable → -160, the constructed addresses still work', async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, '127.0.0.1', () => {
        const port = (probe.address() as { port: number }).port;
        probe.close(() => resolve(port));
      });
    });
    const s = await dcvd(mpicWith({ url: `https://127.0.0.1:${closed}/` }));
    try {
      publishTxt('unreachable.example.com', 'owner@contact.example');
      const { body, order } = await selectFor(s, 'unreachable.example.com', 'owner@contact.example');
      assert.equal(body, REFUSED);
      assert.equal((await evidenceOf(s, order))[0]?.outcome, 'unreachable');
      assert.equal(await emailsOf(s, order), 0);
      assert.equal((await selectFor(s, 'unreachable.example.com', 'admin@unreachable.example.com')).body, OK);
    } finally {
      await s.stop();
    }
  });

  test('slow perspectives: the call is bounded by --mpic-timeout and answers -160', async () => {
    const s = await dcvd(mpicWith({ timeoutMs: 1000 }));
    try {
      publishTxt('slow.example.com', 'owner@contact.example');
      for (const p of peer.perspectives) p.delayMs = 120_000;
      const { body, order } = await selectFor(s, 'slow.example.com', 'owner@contact.example');
      assert.equal(body, REFUSED);
      const [ev] = await evidenceOf(s, order);
      assert.equal(ev?.outcome, 'timeout');
      // Bounded: the evidence's own duration (wide margin for a busy machine; the peer would take 120 s).
      assert.ok(Number(ev!.finished_at) - Number(ev!.started_at) < 60_000);
    } finally {
      await s.stop();
    }
  });

  test('a wrong API key is refused by the service → -160 (bad-answer)', async () => {
    writeFileSync(join(dir, 'wrong.key'), 'not-the-key-but-same-length-x');
    const s = await dcvd(mpicWith({ apiKeyFile: join(dir, 'wrong.key') }));
    try {
      publishTxt('wrongkey.example.com', 'owner@contact.example');
      const { body, order } = await selectFor(s, 'wrongkey.example.com', 'owner@contact.example');
      assert.equal(body, REFUSED);
      assert.match((await evidenceOf(s, order))[0]!.detail, /HTTP 403/);
    } finally {
      await s.stop();
    }
  });

  test('no MPIC service configured: DNS-found addresses are listed, selecting one answers -160', async () => {
    const s = await dcvd(defaultMpicConfig());
    try {
      publishTxt('nompic.example.com', 'owner@contact.example');
      const list = await offer(s, 'nompic.example.com');
      assert.ok(JSON.stringify(list).includes('owner@contact.example'));
      const { body, order } = await selectFor(s, 'nompic.example.com', 'owner@contact.example');
      assert.equal(body, REFUSED);
      assert.equal(await emailsOf(s, order), 0);
      assert.equal(await corroborations(s, 'not-configured'), 1);
      assert.ok(s.mpicWarning?.includes('-160'));
    } finally {
      await s.stop();
    }
  });

  test('--mpic off: selecting a DNS-found address works, with a warning at start and in the evidence', async () => {
    const s = await dcvd(defaultMpicConfig({ mode: 'off' }));
    try {
      assert.match(s.mpicWarning ?? '', /NOT compliant with BR 3\.2\.2\.9/);
      assert.ok(s.logs.some((l) => l.level === 40 && String(l.msg).includes('NOT compliant')));
      publishTxt('off.example.com', 'owner@contact.example');
      const { body, order } = await selectFor(s, 'off.example.com', 'owner@contact.example');
      assert.equal(body, OK);
      const [ev] = await evidenceOf(s, order);
      assert.equal(ev?.outcome, 'off');
      assert.equal(ev?.corroborated, 0);
    } finally {
      await s.stop();
    }
  });
});

/** Accounts and credentials over real HTTPS (CONTRACT §7): lockout, expiry, networks, per-IP limits, the remembered-credential cache. */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/deps.ts';
import { isAllowedSource, normalizeNetworks } from '../src/accounts/networks.ts';
import { PASSWORD, RESEND_PATH, form, startTestServer, type TestServer } from './support/server.ts';

const AUTH_FAIL = 'errorCode=-16&errorMessage=Incorrect+login+details%2C+account+is+locked%2C+password+has+expired+or+your+source+IP+is+blocked.';

/** A resend with valid credentials passes authentication: anything but -16. */
async function authenticates(s: TestServer, login: string, password = PASSWORD, localAddress?: string): Promise<boolean> {
  const res = await s.post(RESEND_PATH, form({ loginName: login, loginPassword: password, orderNumber: '1' }), localAddress ? { localAddress } : {});
  return res.body !== AUTH_FAIL;
}

describe('lockout and expiry', () => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1));
  let s: TestServer;
  before(async () => {
    s = await startTestServer({}, { clock });
  });
  after(() => s.stop());

  test('five consecutive failures lock the account for 15 minutes', async () => {
    await s.createAccount('dave');
    for (let i = 0; i < 4; i++) assert.equal(await authenticates(s, 'dave', 'wrong password'), false);
    assert.equal(await authenticates(s, 'dave'), true, 'four failures do not lock');
    // The success reset the count: five more are needed.
    for (let i = 0; i < 5; i++) assert.equal(await authenticates(s, 'dave', 'wrong password'), false);
    assert.equal(await authenticates(s, 'dave'), false, 'locked: even the right password is refused');
    assert.equal((await s.accounts.view('dave')).lockedUntil, new Date(clock.now() + 15 * 60_000).toISOString());
    clock.advance(15 * 60_000 - 1);
    assert.equal(await authenticates(s, 'dave'), false);
    clock.advance(1);
    assert.equal(await authenticates(s, 'dave'), true, 'the lockout is over');
  });

  test('an operator lock and unlock take effect at once, also on a remembered credential', async () => {
    await s.createAccount('erin');
    assert.equal(await authenticates(s, 'erin'), true);
    await s.accounts.lock('erin');
    assert.equal(await authenticates(s, 'erin'), false);
    await s.accounts.unlock('erin');
    assert.equal(await authenticates(s, 'erin'), true);
  });

  test('a password change voids the remembered old password at once', async () => {
    await s.createAccount('frank');
    assert.equal(await authenticates(s, 'frank'), true);
    await s.accounts.update('frank', { password: 'a brand new password' });
    assert.equal(await authenticates(s, 'frank'), false, 'the old password no longer works');
    assert.equal(await authenticates(s, 'frank', 'a brand new password'), true);
  });

  test('an expired password is refused; clearing the expiry restores access', async () => {
    await s.createAccount('gina', { passwordExpiresAt: clock.now() + 60_000 });
    assert.equal(await authenticates(s, 'gina'), true);
    clock.advance(60_000);
    assert.equal(await authenticates(s, 'gina'), false, 'expired, even though remembered');
    await s.accounts.update('gina', { passwordExpiresAt: null });
    assert.equal(await authenticates(s, 'gina'), true);
  });

  test('login names are case-sensitive', async () => {
    await s.createAccount('Hank');
    assert.equal(await authenticates(s, 'hank'), false);
    assert.equal(await authenticates(s, 'Hank'), true);
  });

  test('an unknown login costs as much as a wrong password (it verifies a dummy hash)', async () => {
    await s.createAccount('ivy');
    const time = async (login: string) => {
      const t0 = process.hrtime.bigint();
      await authenticates(s, login, 'not the password');
      return Number(process.hrtime.bigint() - t0);
    };
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const unknown: number[] = [];
    const wrong: number[] = [];
    for (let i = 0; i < 3; i++) {
      unknown.push(await time(`nobody-${i}`));
      wrong.push(await time('ivy'));
    }
    await s.accounts.unlock('ivy');
    // argon2 dominates both; without the dummy verification the unknown login would be ~50x faster.
    assert.ok(median(unknown) > median(wrong) / 3, `unknown ${median(unknown)}ns vs wrong ${median(wrong)}ns`);
  });

  test('passwords never reach the log', async () => {
    await s.createAccount('judy');
    await authenticates(s, 'judy');
    await authenticates(s, 'judy', 'judys-wrong-password');
    const text = JSON.stringify(s.logs);
    assert.ok(!text.includes(PASSWORD));
    assert.ok(!text.includes('judys-wrong-password'));
    // And the request lines are there, with the outcome.
    assert.ok(s.logs.some((l) => l.msg === 'request' && l.endpoint === 'ResendDCVEmail' && l.code === -16 && l.reason === 'wrong-password'));
  });
});

describe('source addresses', () => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1));
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ auth: { lockoutFailures: 1000, lockoutMs: 60_000, ipFailures: 3, ipWindowMs: 60_000, ipBlockMs: 120_000, credentialCacheMs: 60_000, credentialCacheSize: 100 } }, { clock });
    await s.createAccount('kim', { allowedNetworks: ['127.0.0.1/32', '10.0.0.0/8'] });
    await s.createAccount('lee');
  });
  after(() => s.stop());

  test('allowed networks', async () => {
    assert.equal(await authenticates(s, 'kim', PASSWORD, '127.0.0.1'), true);
    assert.equal(await authenticates(s, 'kim', PASSWORD, '127.0.0.9'), false);
  });

  test('failures from one source IP block it, also for valid credentials; others are unaffected', async () => {
    const ip = '127.0.0.20';
    for (let i = 0; i < 3; i++) assert.equal(await authenticates(s, 'unknown-user', 'x', ip), false);
    assert.equal(await authenticates(s, 'lee', PASSWORD, ip), false, 'blocked IP');
    assert.equal(await authenticates(s, 'lee', PASSWORD, '127.0.0.21'), true, 'another IP');
    clock.advance(120_000);
    assert.equal(await authenticates(s, 'lee', PASSWORD, ip), true, 'the block is over');
  });

  test('guessing against a locked account still counts against the source IP', async () => {
    await s.createAccount('mia');
    await s.accounts.lock('mia');
    const ip = '127.0.0.40';
    for (let i = 0; i < 3; i++) assert.equal(await authenticates(s, 'mia', 'wrong guess', ip), false);
    const blocked = s.logs.filter((l) => l.msg === 'request' && l.ip === ip).map((l) => l.reason);
    assert.deepEqual(blocked, ['locked', 'locked', 'locked']);
    assert.equal(await authenticates(s, 'lee', PASSWORD, ip), false, 'the IP is blocked after 3 failures');
    assert.equal(s.logs.filter((l) => l.msg === 'request' && l.ip === ip).at(-1)!.reason, 'ip-blocked');
  });

  test('a remembered credential does not get past a blocked source IP (its block and the account are read in one statement)', async () => {
    await s.createAccount('noor');
    const ip = '127.0.0.50';
    assert.equal(await authenticates(s, 'noor', PASSWORD, ip), true, 'now remembered');
    for (let i = 0; i < 3; i++) assert.equal(await authenticates(s, 'unknown-user', 'x', ip), false);
    assert.equal(await authenticates(s, 'noor', PASSWORD, ip), false, 'blocked IP');
    assert.equal(s.logs.filter((l) => l.msg === 'request' && l.ip === ip).at(-1)!.reason, 'ip-blocked');
    assert.equal(await authenticates(s, 'noor', PASSWORD, '127.0.0.51'), true, 'the remembered credential from another IP');
    await s.accounts.lock('noor');
    assert.equal(await authenticates(s, 'noor', PASSWORD, '127.0.0.51'), false, 'a lock voids it at once');
  });

  test('failures outside the window do not add up', async () => {
    const ip = '127.0.0.30';
    for (let i = 0; i < 2; i++) await authenticates(s, 'nobody', 'x', ip);
    clock.advance(60_001);
    for (let i = 0; i < 2; i++) await authenticates(s, 'nobody', 'x', ip);
    assert.equal(await authenticates(s, 'lee', PASSWORD, ip), true);
  });

  test('CIDR helpers', () => {
    assert.equal(normalizeNetworks(['10.0.0.0/8, 192.0.2.1', '2001:db8::/32']), '10.0.0.0/8,192.0.2.1/32,2001:db8::/32');
    assert.throws(() => normalizeNetworks(['10.0.0.0/33']), /not an IP network/);
    assert.throws(() => normalizeNetworks(['example.com']), /not an IP network/);
    // An empty entry would leave nothing, which allows every source: an error, not a silent widening.
    for (const slip of [[''], [' '], [','], ['10.0.0.0/8,'], ['10.0.0.0/8', '']]) assert.throws(() => normalizeNetworks(slip), /an empty entry/, JSON.stringify(slip));
    assert.equal(normalizeNetworks([]), '');
    // A zone matches no client address; an IPv4-mapped network is kept as the IPv4 network it matches.
    assert.throws(() => normalizeNetworks(['fe80::1%eth0/64']), /zone/);
    assert.equal(normalizeNetworks(['::ffff:127.0.0.1/128', '::ffff:10.0.0.0/104', '::ffff:192.0.2.9']), '127.0.0.1/32,10.0.0.0/8,192.0.2.9/32');
    assert.throws(() => normalizeNetworks(['::ffff:0:0/95']), /96 bits or more/);
    assert.equal(isAllowedSource('127.0.0.1', normalizeNetworks(['::ffff:127.0.0.1/128'])), true);
    // A list stored before that normalization, mapped form and all, matches the same clients.
    for (const client of ['127.0.0.1', '::ffff:127.0.0.1']) assert.equal(isAllowedSource(client, '::ffff:127.0.0.1/128'), true, client);
    assert.equal(isAllowedSource('10.9.8.7', '192.0.2.0/24,::ffff:10.0.0.0/104'), true);
    assert.equal(isAllowedSource('11.0.0.1', '::ffff:10.0.0.0/104'), false);
    assert.equal(isAllowedSource('::ffff:10.1.2.3', '10.0.0.0/8'), true);
    assert.equal(isAllowedSource('2001:db8::1', '10.0.0.0/8,2001:db8::/32'), true);
    assert.equal(isAllowedSource('192.0.2.1', '10.0.0.0/8'), false);
    assert.equal(isAllowedSource('anything', ''), true);
  });
});

describe('account administration rules', () => {
  let s: TestServer;
  beforeEach(async () => {
    s = await startTestServer();
  });
  test('refuses weak passwords, bad logins, duplicates, unknown accounts', async () => {
    await assert.rejects(s.accounts.create('a', { password: 'short' }), /at least 12/);
    await assert.rejects(s.accounts.create('a', { password: 'x'.repeat(129) }), /at most 128/);
    await assert.rejects(s.accounts.create('x'.repeat(65), { password: PASSWORD }), /1 to 64/);
    await assert.rejects(s.accounts.create('bad\nlogin', { password: PASSWORD }), /control/);
    await s.accounts.create('ok', { password: PASSWORD });
    await assert.rejects(s.accounts.create('ok', { password: PASSWORD }), /already exists/);
    await assert.rejects(s.accounts.lock('missing'), /no account/);
    await s.stop();
  });
});

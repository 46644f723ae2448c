/**
 * First-run friction and the CA's identity (issue 13): a busy port names the option and variable
 * that move it; --ca-name, and the default sender and Message-ID domain from --public-url.
 * (The email and page sides are in resend.test.ts and confirm.test.ts.)
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultMailFrom, mailDomain } from '../src/config.ts';
import { dcvEmailConfigFrom, type DcvEmailFlags } from '../src/cli/orders.ts';
import { DEFAULT_TEMPLATE, renderTemplate } from '../src/mail/templates.ts';
import { runDcvd } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'dcvd-identity-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function occupied(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

for (const [option, env, extra] of [
  ['--listen', 'DCVD_LISTEN', []],
  ['--http-listen', 'DCVD_HTTP_LISTEN', []],
  ['--admin-listen', 'DCVD_ADMIN_LISTEN', ['--admin-token', 'x'.repeat(40)]],
] as const) {
  test(`a port in use on ${option}: one line naming ${option} and ${env}, no stack trace, exit 1`, async () => {
    const { server, port } = await occupied();
    try {
      // The other listeners on free ports, so only the one under test collides.
      const args = ['serve', '--listen', '127.0.0.1:0', '--log-level', 'error', ...extra, option, `127.0.0.1:${port}`];
      const r = runDcvd(join(dir, option.slice(2)), args);
      assert.equal(r.code, 1, r.stderr);
      const message = `cannot listen on 127.0.0.1:${port}: it is already in use (another dcvd, or another server); choose another address with ${option} <host:port> or ${env}=<host:port>`;
      assert.equal(r.stderr, `dcvd: ${message}\n`);
      assert.doesNotMatch(r.stdout, /\bat .*\.(js|ts):\d+/, 'no stack trace in the log either');
    } finally {
      server.close();
    }
  });
}

test('the default sender and Message-ID domain: --mail-from, else dcvd@ the host of --public-url, else dcvd@localhost', () => {
  assert.equal(defaultMailFrom('https://dcv.example.net:8443/prefix/'), 'dcvd@dcv.example.net');
  assert.equal(defaultMailFrom(undefined), 'dcvd@localhost');
  assert.equal(defaultMailFrom('https://192.0.2.7/'), 'dcvd@localhost', 'no IP literal as a mail domain');
  assert.equal(defaultMailFrom('https://[2001:db8::1]/'), 'dcvd@localhost');
  assert.equal(mailDomain('dcv@ca.example'), 'ca.example');
  assert.equal(mailDomain('odd@ex_ample!'), 'dcvd', 'never a Message-ID the transports refuse');

  const flags = { dataDir: dir, caName: '  Example Trust CA ', resendInterval: 60_000, randomValueTtl: 86_400_000 } as DcvEmailFlags & { dataDir: string };
  const derived = dcvEmailConfigFrom({ ...flags, publicUrl: 'https://dcv.example.net/' });
  assert.deepEqual([derived.mailFrom, derived.caName], ['dcvd@dcv.example.net', 'Example Trust CA']);
  assert.equal(dcvEmailConfigFrom({ ...flags, publicUrl: 'https://dcv.example.net/', mailFrom: 'validation@ca.example' }).mailFrom, 'validation@ca.example');
  for (const bad of ['', '   ', 'x'.repeat(65)]) assert.throws(() => dcvEmailConfigFrom({ ...flags, caName: bad }), /--ca-name must be 1 to 64 characters$/);
  for (const bad of ['a\r\nBcc: x@evil.test', 'CA\n', 'CA\u2028']) assert.throws(() => dcvEmailConfigFrom({ ...flags, caName: bad }), /--ca-name must be one line without control characters/);
  // A name that shows as another in the Subject and on the page: a bidi override.
  assert.throws(() => dcvEmailConfigFrom({ ...flags, caName: 'Trust \u202eAC' }), /--ca-name must not contain invisible characters/);
  // 64 characters counted as characters, not UTF-16 units.
  assert.equal(dcvEmailConfigFrom({ ...flags, caName: '🔒'.repeat(64) }).caName, '🔒'.repeat(64));
});

test('templates may use {{caName}}; an old caller without it renders "dcvd"', () => {
  const view = { orderNumber: '1', domain: 'www.example.com', adn: 'example.com', validationCode: 'C', confirmationUrl: 'https://x.example/c', expiresAt: 'soon' };
  assert.equal(renderTemplate(DEFAULT_TEMPLATE, { ...view, caName: 'Example CA' }).subject, 'Example CA: domain control validation for www.example.com (order 1)');
  assert.equal(renderTemplate(DEFAULT_TEMPLATE, view).subject, 'dcvd: domain control validation for www.example.com (order 1)');
});

test('serve --help names --ca-name and DCVD_CA_NAME; --mail-from and --public-url also on order create', () => {
  const serve = runDcvd(dir, ['serve', '--help']).stdout;
  assert.match(serve, /--ca-name <name>[\s\S]*?default: "dcvd"[\s\S]*?env:\s+DCVD_CA_NAME/);
  const create = runDcvd(dir, ['order', 'create', '--help']).stdout;
  assert.match(create, /--mail-from <address>[\s\S]*?env:\s+DCVD_MAIL_FROM/);
  assert.match(create, /--public-url <url>[\s\S]*?env:\s+DCVD_PUBLIC_URL/);
});

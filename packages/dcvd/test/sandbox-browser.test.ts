/**
 * The sandbox's mail viewer in a real browser (issue 17, done-when): chromium
 * opens the viewer, the email, its confirmation link, approves, and the
 * order shows validated over the internal API. JavaScript off: neither the
 * viewer nor the pages need it. Screenshots go to .tmp/screenshots/.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { startTestSandbox, type TestSandbox } from './support/sandbox.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import { parseResolvers } from '../src/dns/client.ts';
import { waitUntil } from './support/wait.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = fileURLToPath(new URL('../.tmp/screenshots/', import.meta.url));
let dns: TestDnsServer;
let sb: TestSandbox;
let browser: Browser;
let context: BrowserContext;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  mkdirSync(SHOTS, { recursive: true });
  dns = await startTestDnsServer();
  sb = await startTestSandbox({ serve: { dnsServers: parseResolvers(dns.address), dnsTimeoutMs: 1000, dnsAttempts: 1 } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  // The sandbox's certificate is self-signed: trusted here, in the test only.
  context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false, viewport: { width: 1024, height: 900 } });
});
after(async () => {
  await context?.close();
  await browser?.close();
  await sb?.stop();
  await dns?.close();
});

test('open the mail viewer, open the email, click its link, approve: the order is validated', async () => {
  const domain = 'browser-test.com';
  assert.equal((await sb.call('GetDCVEmailAddressList', { domainName: domain, responseFormat: 2 })).json.errorCode, 0);
  const orderNumber = 8_000_001;
  const created = await sb.admin('POST', '/v1/orders', { account: sb.info.login, domain, orderNumber, dcvEmailAddress: `admin@${domain}` });
  assert.equal(created.status, 201, created.body);
  let mail: { code: string } | undefined;
  await waitUntil('the captured email', async () => (mail = (await sb.admin('GET', `/v1/sandbox/mail?order=${orderNumber}`)).json[0]) !== undefined);

  const page = await context.newPage();
  assert.equal((await page.goto(sb.info.mailViewer))?.status(), 200);
  assert.match(await page.locator('p.sandbox').innerText(), /^Sandbox:/);
  const row = page.locator('tbody tr', { hasText: `admin@${domain}` });
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), new RegExp(`${orderNumber}\\s+${domain.replace('.', '\\.')}\\s+delivered\\s+awaiting`));
  await page.screenshot({ path: `${SHOTS}sandbox-viewer-list.png`, fullPage: true });

  await row.locator('a').click();
  await page.waitForLoadState();
  assert.match(await page.locator('h1').innerText(), new RegExp(domain.replace('.', '\\.')));
  assert.match(await page.locator('pre').innerText(), /Validation code:/);
  // The HTML body, in its sandboxed frame: shown, with the code; no script could run there.
  const frame = page.frameLocator('iframe');
  const shown = await frame.locator('body').innerText();
  assert.ok(shown.includes(mail!.code), shown);
  await page.screenshot({ path: `${SHOTS}sandbox-viewer-email.png`, fullPage: true });

  await page.locator('#confirmation-link').click();
  await page.waitForLoadState();
  assert.equal(await page.title(), `Approve the certificate request for ${domain}?`);
  assert.match(await page.locator('p.sandbox').innerText(), /^Sandbox:/);
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.waitForLoadState();
  assert.equal(await page.locator('h1').innerText(), 'Approved');
  await page.screenshot({ path: `${SHOTS}sandbox-approved.png`, fullPage: true });

  const order = await sb.admin('GET', `/v1/orders/${orderNumber}`);
  assert.equal(order.json.dcvStatus, 'validated');
  assert.equal(order.json.evidence[0].recipient, `admin@${domain}`);

  // Back in the viewer, the email's order shows validated.
  await page.goto(sb.info.mailViewer);
  assert.match(await page.locator('tbody tr', { hasText: `admin@${domain}` }).innerText(), /validated/);
});

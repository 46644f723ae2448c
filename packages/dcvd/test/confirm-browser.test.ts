/**
 * The confirmation pages in a real browser (CONTRACT §6): Debian's chromium
 * driven by playwright-core, on a phone-sized screen, JavaScript off (the
 * pages must not need it). Links come from emails the test SMTP server
 * received. Screenshots of every page go to .tmp/screenshots/.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { ManualClock } from '../src/deps.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { startTestServer, type TestServer } from './support/server.ts';
import { mailedCode } from './support/confirm.ts';
import { waitUntil } from './support/wait.ts';

const CHROMIUM = '/usr/bin/chromium';
const BROWSER_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHOTS = fileURLToPath(new URL('../.tmp/screenshots/', import.meta.url));
const DAY = 24 * 3600_000;
const clock = new ManualClock(Date.UTC(2026, 3, 1, 9, 0, 0));
let sink: SmtpSink;
let server: TestServer;
let browser: Browser;
let context: BrowserContext;
let next = 4_000_000;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  mkdirSync(SHOTS, { recursive: true });
  sink = await startSmtpSink();
  server = await startTestServer(
    { dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, randomValueTtlMs: 7 * DAY, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50 } }) },
    { clock },
  );
  await server.createAccount('alice');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: BROWSER_ARGS,
  });
  // The test server's certificate is self-signed: trusted here, in the test only.
  context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false, viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
});
after(async () => {
  await context?.close();
  await browser?.close();
  await server?.stop();
  await sink?.close();
});

async function mailed(domain: string) {
  const orderNumber = (next += 1);
  return { orderNumber, ...(await mailedCode(server, sink, clock, { login: 'alice', orderNumber, domain, address: `admin@${domain.split('.').slice(-2).join('.')}` })) };
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });
}

async function status(orderNumber: number): Promise<string> {
  return (await server.store.db.selectFrom('orders').select('dcv_status').where('order_number', '=', orderNumber).executeTakeFirstOrThrow()).dcv_status;
}

/** The text of the definition list: term → value. */
async function details(page: Page): Promise<Record<string, string>> {
  const terms = await page.locator('dt').allTextContents();
  const values = await page.locator('dd').allTextContents();
  return Object.fromEntries(terms.map((t, i) => [t, values[i]!]));
}

test('open the emailed link, see the order, approve, see the result', async () => {
  const m = await mailed('www.example.com');
  const page = await context.newPage();
  const response = await page.goto(m.link);
  assert.equal(response?.status(), 200);
  assert.equal(await page.title(), 'Approve the certificate request for www.example.com?');
  const d = await details(page);
  assert.equal(d['Order number'], String(m.orderNumber));
  assert.equal(d['Domain'], 'www.example.com');
  assert.equal(d['Authorization domain'], 'example.com');
  // The stylesheet is ours and loaded: the approve button is coloured.
  const bg = await page.evaluate('getComputedStyle(document.querySelector("button.approve")).backgroundColor');
  assert.equal(bg, 'rgb(11, 107, 46)');
  await shot(page, '1-details');
  assert.equal(await status(m.orderNumber), 'awaiting', 'opening the link changed nothing');

  // Keyboard: Tab reaches Approve, Enter submits.
  await page.getByRole('button', { name: 'Approve' }).focus();
  await Promise.all([page.waitForLoadState('load'), page.waitForURL(/\/dcv\/confirm$/), page.keyboard.press('Enter')]);
  assert.equal(await page.locator('h1').textContent(), 'Approved');
  await shot(page, '2-approved');
  assert.equal(await status(m.orderNumber), 'validated');

  // The same link again.
  const again = await page.goto(m.link);
  assert.equal(again?.status(), 409);
  assert.equal(await page.locator('h1').textContent(), 'This code was already used');
  await shot(page, '3-already-used');
  await page.close();
});

test('decline', async () => {
  const m = await mailed('decline.example.org');
  const page = await context.newPage();
  await page.goto(m.link);
  await page.getByRole('button', { name: 'Decline' }).click();
  assert.equal(await page.locator('h1').textContent(), 'Declined');
  await shot(page, '4-declined');
  assert.equal(await status(m.orderNumber), 'declined');
  await page.close();
});

test('type a code: a wrong one is refused with a message, the right one shows the order', async () => {
  const m = await mailed('typed.example.net');
  const page = await context.newPage();
  const base = new URL(m.link).origin;
  await page.goto(`${base}/dcv/confirm`);
  await shot(page, '5-enter-code');
  const field = page.getByLabel('Validation code');
  await field.fill('0000 0000 0000 0000 0000 0000 00');
  await page.getByRole('button', { name: 'Continue' }).click();
  assert.equal(await page.getByRole('alert').textContent(), 'That code was not recognised. Check it and try again.');
  await shot(page, '6-unknown-typed');
  await page.getByLabel('Validation code').fill(`${m.code.slice(0, 13).toLowerCase()}-${m.code.slice(13)}`);
  await page.getByRole('button', { name: 'Continue' }).click();
  assert.equal((await details(page))['Order number'], String(m.orderNumber));
  await page.getByRole('button', { name: 'Approve' }).click();
  assert.equal(await page.locator('h1').textContent(), 'Approved');
  assert.equal(await status(m.orderNumber), 'validated');
  await page.close();
});

test('an expired, a superseded and an unknown code', async () => {
  const old = await mailed('late.example.com');
  clock.advance(61_000);
  const fresh = await mailedCode(server, sink, clock, { login: 'alice', orderNumber: old.orderNumber, domain: 'late.example.com', address: 'webmaster@example.com', create: false });
  const page = await context.newPage();
  assert.equal((await page.goto(old.link))?.status(), 410);
  assert.equal(await page.locator('h1').textContent(), 'This code was replaced');
  await shot(page, '7-superseded');
  // The page was opened half an hour before the code ran out (7 days); the approval comes an hour later, too late.
  clock.advance(7 * DAY - 30 * 60_000);
  await page.goto(fresh.link);
  clock.advance(3600_000);
  await page.getByRole('button', { name: 'Approve' }).click();
  assert.equal(await page.locator('h1').textContent(), 'This code has expired');
  await shot(page, '8-expired');
  assert.equal(await status(old.orderNumber), 'awaiting');
  const unknown = await page.goto(new URL(`/dcv/confirm/${'1'.repeat(26)}`, fresh.link).toString());
  assert.equal(unknown?.status(), 404);
  assert.equal(await page.locator('h1').textContent(), 'Code not recognised');
  await shot(page, '9-unknown');
  await page.close();
});

test('the pages fit a phone screen (no horizontal scrolling) and on a desktop', async () => {
  const m = await mailed('a-rather-long-subdomain-name.of-a-long-domain.example.com');
  const page = await context.newPage();
  await page.goto(m.link);
  const widths = (await page.evaluate('[document.documentElement.scrollWidth, window.innerWidth]')) as number[];
  assert.ok(widths[0]! <= widths[1]!, `page is ${widths[0]}px wide on a ${widths[1]}px screen`);
  await shot(page, '10-long-domain-phone');
  await page.setViewportSize({ width: 1280, height: 800 });
  await shot(page, '11-details-desktop');
  await page.close();
});

// Issue 14 item 8: a hostile page in the recipient's browser must not lock them out of their real code.
test('a hostile page loading 30 unknown codes as images does not block the recipient’s real link', async () => {
  const m = await mailed('victim.example.org');
  const base = new URL(m.link).origin;
  const imgs = Array.from({ length: 30 }, (_, i) => `<img src="${base}/dcv/confirm/${String(i).padStart(26, 'H')}" alt="">`).join('\n');
  // Another site (http://127.0.0.1:PORT, not https://localhost:PORT) serving the attack.
  const hostile = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html><title>cats</title>\n${imgs}\n`));
  await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
  const seen: string[] = [];
  const page = await context.newPage();
  const track = (url: string) => void (url.includes('/dcv/confirm/HH') ? seen.push(url) : undefined);
  page.on('requestfinished', (r) => track(r.url()));
  page.on('requestfailed', (r) => track(r.url()));
  const guesses = async () => (await server.store.db.selectFrom('code_failures').select('failures').execute()).reduce((n, r) => n + r.failures, 0);
  const before = await guesses();
  try {
    await page.goto(`http://127.0.0.1:${(hostile.address() as AddressInfo).port}/`, { waitUntil: 'load' });
    assert.equal(seen.length, 30, 'the browser requested every image');
    assert.equal(await guesses(), before, 'no guess was counted');
    const blocked = await server.store.db.selectFrom('code_failures').select('ip').where('blocked_until', '>', clock.now()).execute();
    assert.deepEqual(blocked, [], 'no address blocked');
    const response = await page.goto(m.link);
    assert.equal(response?.status(), 200);
    assert.equal((await details(page))['Order number'], String(m.orderNumber));
  } finally {
    await page.close();
    await new Promise((resolve) => hostile.close(resolve));
  }
});

// A page's speculation rules make Chromium prefetch links as top-level navigations (Sec-Fetch-Mode navigate,
// Sec-Purpose prefetch), with no user action: a hostile page's prefetches of random codes must not count as
// guesses, and a webmail's prefetch of the real link must not stand in for the page when the link is clicked.
test('speculation rules prefetching 25 unknown codes and the real link: no guess counted, and clicking the link shows the page', async () => {
  const m = await mailed('prefetched.example.org');
  const base = new URL(m.link).origin;
  const urls = [...Array.from({ length: 25 }, (_, i) => `${base}/dcv/confirm/${String(i).padStart(26, 'P')}`), m.link];
  const rules = JSON.stringify({ prefetch: [{ source: 'list', urls, eagerness: 'immediate' }] });
  // Another site (http://127.0.0.1:PORT, not https://localhost:PORT) with the rules and the emailed link.
  const hostile = createServer((_req, res) =>
    res
      .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      .end(`<!doctype html><title>mail</title>\n<p><a id="link" href="${m.link}">Confirm</a></p>\n<script type="speculationrules">${rules}</script>\n`),
  );
  await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
  // Chromium prefetches only from a server whose certificate it trusts (a context's ignoreHTTPSErrors is not
  // enough): a browser of its own that trusts the test server's key, with scripting on for the speculation
  // rules (the confirmation pages themselves need none).
  const spki = createHash('sha256').update(new X509Certificate(server.cert).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  const trusting = await chromium.launch({ executablePath: CHROMIUM, args: [...BROWSER_ARGS, `--ignore-certificate-errors-spki-list=${spki}`] });
  const page = await trusting.newPage();
  const fetched = () => server.logs.filter((l) => l.path === '/dcv/confirm/[redacted]');
  // The guessing counters, as they stand (a block resets a source's failures: a sum would not show it).
  const counters = () => server.store.db.selectFrom('code_failures').selectAll().orderBy('ip').execute();
  const before = { fetched: fetched().length, counters: await counters() };
  try {
    await page.goto(`http://127.0.0.1:${(hostile.address() as AddressInfo).port}/`, { waitUntil: 'load' });
    await waitUntil('the browser prefetched every link', async () => fetched().length - before.fetched >= urls.length, 20_000);
    assert.deepEqual(await counters(), before.counters, 'no guess was counted or reserved, no address blocked');
    assert.deepEqual(new Set(fetched().slice(before.fetched).map((l) => l.status)), new Set([503]), 'every prefetch answered 503');
    // The recipient clicks the link on the page that prefetched it: fetched again, the page with its form.
    await Promise.all([page.waitForURL(m.link), page.click('#link')]);
    assert.equal((await details(page))['Order number'], String(m.orderNumber));
    assert.equal(fetched().length - before.fetched, urls.length + 1, 'the click fetched the page');
    await page.getByRole('button', { name: 'Approve' }).click();
    assert.equal(await page.locator('h1').textContent(), 'Approved');
    assert.equal(await status(m.orderNumber), 'validated');
    // And the same link typed into (or opened from a mail client in) the same browser, once decided.
    assert.equal((await page.goto(m.link))?.status(), 409);
  } finally {
    await trusting.close();
    await new Promise((resolve) => hostile.close(resolve));
  }
});

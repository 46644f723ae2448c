/**
 * `npm run soak`: mixed traffic at a fixed rate against a real `dcvd serve`
 * (issue 8) — address lists with DNS contacts, resends whose emails go to an
 * SMTP sink, and views of the confirmation pages of the codes that arrive —
 * while the server's RSS and event-loop delay are sampled from its own
 * `process stats` log lines. Fails on any error, on an email not delivered
 * exactly once, or on a rising RSS trend over the second half of the run.
 *
 * DCVD_SOAK_MINUTES (default 20; CI runs 2), DCVD_SOAK_RATE (requests/s,
 * default 100), DCVD_SOAK_MAX_SLOPE (MiB per minute, default 2).
 */
import https from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStore } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { AccountRepository } from '../src/accounts/repository.ts';
import { OrderRepository } from '../src/orders/orders.ts';
import { cryptoRandom, systemClock } from '../src/deps.ts';
import { startServe } from '../test/support/instance.ts';
import { startSmtpSink } from '../test/support/smtp-sink.ts';
import { codeIn } from '../test/support/dcv.ts';
import { startChild } from './lib.ts';

const minutes = Number(process.env.DCVD_SOAK_MINUTES ?? 20);
const rate = Number(process.env.DCVD_SOAK_RATE ?? 100);
const maxSlope = Number(process.env.DCVD_SOAK_MAX_SLOPE ?? 2);
const LOGIN = 'soak';
const PASSWORD = 'soak password 123456';
const ORDERS = 500;
const FIRST_ORDER = 8_000_001;

interface Sample {
  t: number;
  rssMiB: number;
  heapUsedMiB: number;
  loopP99: number;
  loopMax: number;
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const dir = mkdtempSync(join(tmpdir(), 'dcvd-soak-'));
const store = openStore({ dataDir: dir });
await migrateToLatest(store.db, store.dialect);
await new AccountRepository(store.db, systemClock).create(LOGIN, { password: PASSWORD, permissions: ['auto-apply'] });
const accountId = (await store.db.selectFrom('accounts').select('id').where('login', '=', LOGIN).executeTakeFirstOrThrow()).id;
const orderRepo = new OrderRepository(store.db, systemClock, cryptoRandom);
for (let i = 0; i < ORDERS; i++) await orderRepo.create({ accountId, domain: 'www.example.com', orderNumber: FIRST_ORDER + i });
await store.close();

const dns = await startChild('dns');
const sink = await startSmtpSink();
const samples: Sample[] = [];
const started = Date.now();
const server = await startServe(
  dir,
  ['--dns-servers', String(dns.info.address), '--smtp-url', sink.url, '--resend-interval', '0s', '--stats-interval', '5s', '--log-level', 'info'],
  {
    onLogLine(line) {
      if (line.msg !== 'process stats') return;
      const loop = line.eventLoopDelayMs as { p99: number; max: number };
      samples.push({ t: (Date.now() - started) / 60_000, rssMiB: line.rssMiB as number, heapUsedMiB: line.heapUsedMiB as number, loopP99: loop.p99, loopMax: loop.max });
    },
  },
);

const agent = new https.Agent({ ca: server.ca, keepAlive: true, maxSockets: 64 });
/**
 * Requests sent again because the kept-alive socket they were written to had just been closed by the server's
 * idle timeout (`--keep-alive`, 10 s): the request never reached dcvd, and node's documentation gives this retry
 * for it (`req.reusedSocket` and ECONNRESET). Any other reset is an error.
 */
let keepAliveRaces = 0;
function request(method: string, path: string, body?: string, retried = false): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) };
    const req = https.request({ host: '127.0.0.1', port: server.port, method, path, agent, servername: 'localhost', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve([res.statusCode ?? 0, text]));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!retried && req.reusedSocket && err.code === 'ECONNRESET') {
        keepAliveRaces += 1;
        request(method, path, body, true).then(resolve, reject);
      } else reject(err);
    });
    req.end(body);
  });
}

const creds = { loginName: LOGIN, loginPassword: PASSWORD };
const listBody = new URLSearchParams({ ...creds, domainName: 'www.example.com', product: '801', responseFormat: '2' }).toString();
const counts = { list: 0, resend: 0, queued: 0, confirm: 0, errors: 0 };
let firstError: string | undefined;
let nextOrder = 0;
let seenMessages = 0;
const codes: string[] = [];

async function one(kind: number): Promise<void> {
  let ok: boolean;
  let detail = '';
  try {
    if (kind < 5 || (kind >= 9 && codes.length === 0)) {
      const [status, body] = await request('POST', '/products/!GetDCVEmailAddressList', listBody);
      ok = status === 200 && body.startsWith('{"errorCode":0') && body.includes('caa@example.org');
      detail = body.slice(0, 100);
      counts.list++;
    } else if (kind < 9) {
      const order = FIRST_ORDER + (nextOrder++ % ORDERS);
      const body = new URLSearchParams({ ...creds, orderNumber: String(order), dcvEmailAddress: 'admin@example.com' }).toString();
      const [status, text] = await request('POST', '/products/!ResendDCVEmail', body);
      ok = status === 200 && text === 'errorCode=0';
      detail = text;
      counts.resend++;
      if (ok) counts.queued++;
    } else {
      // The page a recipient opens from the email: it shows the order and changes nothing.
      const code = codes[Math.floor(Math.random() * codes.length)]!;
      const [status, text] = await request('GET', `/dcv/confirm/${code}`);
      ok = status === 200 || status === 410; // 410: superseded by a later resend of the same order
      detail = `${status} ${text.slice(0, 80)}`;
      counts.confirm++;
    }
  } catch (err) {
    ok = false;
    detail = String(err);
  }
  if (!ok) {
    counts.errors++;
    firstError ??= detail;
  }
}

// The 24-hour rule: the address must have been offered before the first resend.
const [firstStatus, firstList] = await request('POST', '/products/!GetDCVEmailAddressList', listBody);
if (firstStatus !== 200 || !firstList.startsWith('{"errorCode":0')) throw new Error(`the first address list failed: ${firstList}`);
console.log(`soak: ${minutes} min at ${rate} req/s (50% address lists with DNS, 40% resends, 10% confirmation pages)`);
const endAt = started + minutes * 60_000;
const inFlight = new Set<Promise<void>>();
let tick = 0;
const interval = 1000 / rate;
while (Date.now() < endAt) {
  // Collect codes of delivered emails for the confirmation views.
  for (; seenMessages < sink.messages.length; seenMessages++) {
    const text = sink.messages[seenMessages]!.parsed.text;
    codes.push(codeIn(text));
    if (codes.length > 200) codes.shift();
  }
  const p = one(tick++ % 10).finally(() => inFlight.delete(p));
  inFlight.add(p);
  const due = started + tick * interval;
  const wait = due - Date.now();
  if (wait > 0) await sleep(wait);
}
await Promise.all(inFlight);

// Every queued email is delivered once.
const deadline = Date.now() + 60_000;
while (sink.messages.length < counts.queued && Date.now() < deadline) await sleep(200);
await sleep(1000);
const ids = sink.messages.map((m) => m.parsed.messageId);
const duplicates = ids.length - new Set(ids).size;

server.child.kill('SIGTERM');
const exitCode = await server.exited;
agent.destroy();
await sink.close();
await dns.stop();
rmSync(dir, { recursive: true, force: true });

const second = samples.filter((s) => s.t >= minutes / 2);
const rssSlope = second.length >= 3 ? slope(second.map((s) => s.t), second.map((s) => s.rssMiB)) : 0;
const heapSlope = second.length >= 3 ? slope(second.map((s) => s.t), second.map((s) => s.heapUsedMiB)) : 0;
const max = (xs: number[]) => Math.max(...xs);
console.log(`requests: ${counts.list} lists, ${counts.resend} resends, ${counts.confirm} confirmation pages; errors ${counts.errors}${firstError ? ` (first: ${JSON.stringify(firstError)})` : ''}; sent again after a kept-alive socket's idle close ${keepAliveRaces}`);
console.log(`emails: ${sink.messages.length} delivered for ${counts.queued} queued resends, ${duplicates} duplicates`);
console.log(`RSS MiB: first ${samples[0]?.rssMiB}, last ${samples.at(-1)?.rssMiB}, max ${max(samples.map((s) => s.rssMiB))}; trend over the second half ${rssSlope.toFixed(2)} MiB/min (heap ${heapSlope.toFixed(2)} MiB/min; limit ${maxSlope})`);
console.log(`event-loop delay: p99 up to ${max(samples.map((s) => s.loopP99)).toFixed(1)} ms, max ${max(samples.map((s) => s.loopMax)).toFixed(1)} ms (${samples.length} samples)`);
console.log(`serve exited with ${exitCode} after SIGTERM`);
const failed = counts.errors > 0 || sink.messages.length !== counts.queued || duplicates > 0 || rssSlope > maxSlope || exitCode !== 0;
console.log(failed ? 'soak: FAILED' : 'soak: passed');
process.exit(failed ? 1 : 0);

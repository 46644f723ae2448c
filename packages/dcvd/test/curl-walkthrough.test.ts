/**
 * docs/PROTOCOL.md's walk-through with curl (issue 16), run as written: the
 * doc's code block is parsed into its numbered steps and each step's
 * commands go, unchanged, to one bash process (so `ORDER` carries from step
 * to step), with the real `curl` and `openssl` against a real dcvd over
 * HTTPS trusting its self-signed certificate. Only step 0's four variables
 * take this server's values. Step 4 (the recipient approves) is done as a
 * browser would, with the code the real SMTP test peer received.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, PASSWORD, startTestServer, type TestServer } from './support/server.ts';
import { codeIn } from './support/dcv.ts';
import { csrfOf } from './support/confirm.ts';

const DOC = new URL('../../../docs/PROTOCOL.md', import.meta.url);
const MARKER = '<!-- walk-through: test/curl-walkthrough.test.ts runs the block below -->';

interface Step {
  number: number;
  title: string;
  /** Shell lines, continuations joined. */
  commands: string[];
}

/** The numbered steps of the doc's block: `# N. title`, then commands; `#` lines after them are sample output. */
export function walkthroughSteps(markdown: string): Step[] {
  const at = markdown.indexOf(MARKER);
  assert.ok(at >= 0, 'PROTOCOL.md has no walk-through marker');
  const block = /```sh\n([\s\S]*?)```/.exec(markdown.slice(at));
  assert.ok(block, 'no sh block after the marker');
  const steps: Step[] = [];
  let pending = '';
  for (const line of block[1]!.split('\n')) {
    const head = /^# (\d+)\. (.*)$/.exec(line);
    if (head) {
      steps.push({ number: Number(head[1]), title: head[2]!, commands: [] });
      continue;
    }
    if (line.startsWith('#') || (line.trim() === '' && pending === '')) continue;
    pending += line.endsWith('\\') ? `${line.slice(0, -1)} ` : line;
    if (!line.endsWith('\\')) {
      steps.at(-1)!.commands.push(pending.replace(/\s+/g, ' ').trim());
      pending = '';
    }
  }
  return steps;
}

/** One bash process fed step by step; each step answers its stdout, stderr and exit status. */
class Shell {
  private readonly child: ChildProcessWithoutNullStreams;
  private out = '';
  private err = '';
  private seq = 0;

  constructor(cwd: string) {
    this.child = spawn('bash', ['--noprofile', '--norc'], { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd } });
    this.child.stdout.on('data', (c: Buffer) => (this.out += c.toString('utf8')));
    this.child.stderr.on('data', (c: Buffer) => (this.err += c.toString('utf8')));
  }

  run(lines: readonly string[]): Promise<{ stdout: string; stderr: string; status: number }> {
    const marker = `__step_${++this.seq}_done__`;
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = new RegExp(`${marker} (\\d+)\\n`).exec(this.out);
        if (!m) return;
        this.child.stdout.off('data', check);
        this.child.off('exit', onExit);
        const result = { stdout: this.out.slice(0, m.index), stderr: this.err, status: Number(m[1]) };
        this.out = this.out.slice(m.index + m[0].length);
        this.err = '';
        resolve(result);
      };
      const onExit = (code: number | null) => reject(new Error(`bash exited (${code}): ${this.err}`));
      this.child.stdout.on('data', check);
      this.child.once('exit', onExit);
      // A step's status is its last failing command's, so `set -e` semantics without ending the shell.
      this.child.stdin.write(`__s=0\n${lines.map((l) => `${l} || __s=$?`).join('\n')}\necho\necho "${marker} $__s"\n`);
    });
  }

  close(): void {
    this.child.stdin.end();
  }
}

let sink: SmtpSink;
let server: TestServer;
let workDir: string;

before(async () => {
  sink = await startSmtpSink();
  server = await startTestServer({
    // The resend interval is the only wait of the walk-through; this server has none.
    dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, resendIntervalMs: 0, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50 } }),
  });
  await server.createAccount('alice');
  workDir = mkdtempSync(join(tmpdir(), 'dcvd-curl-'));
});
after(async () => {
  await server?.stop();
  await sink?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test('the walk-through of docs/PROTOCOL.md, step by step with curl: list → order → resend → confirm → details', async () => {
  const steps = walkthroughSteps(readFileSync(DOC, 'utf8'));
  assert.deepEqual(steps.map((s) => s.number), [0, 1, 2, 3, 4, 5]);

  // Step 0 sets exactly the four variables; they take this server's values.
  assert.deepEqual(steps[0]!.commands.map((c) => c.split('=')[0]), ['H', 'CA', 'LOGIN', 'PASSWORD']);
  const caFile = join(server.dataDir, 'tls', 'localhost.crt');
  assert.ok(existsSync(caFile), 'dcvd keeps its self-signed certificate where the doc says');
  const shell = new Shell(workDir);
  try {
    const setup = await shell.run([
      `H=https://localhost:${server.https!.port}/products`,
      `CA='${caFile}'`,
      'LOGIN=alice',
      `PASSWORD='${PASSWORD}'`,
    ]);
    assert.equal(setup.status, 0);

    // 1. GetDCVEmailAddressList: text, admin@example.com among the addresses.
    const list = await shell.run(steps[1]!.commands);
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /^0\ndomain_name\twww\.example\.com\n/);
    assert.match(list.stdout, /\tadmin@example\.com\n/);

    // 2. The CSR and the order.
    const mailsBefore = sink.messages.length;
    const order = await shell.run(steps[2]!.commands);
    assert.equal(order.status, 0, order.stderr);
    assert.match(order.stdout, /^errorCode=0&orderNumber=[0-9]+&certificateID=[0-9]+&totalCost=0\.00&expectedDeliveryTime=0\n/);
    const orderNumber = Number(/orderNumber=([0-9]+)/.exec(order.stdout)![1]);
    const stored = await server.store.db.selectFrom('orders').select(['domain', 'product', 'dcv_email_address']).where('order_number', '=', orderNumber).executeTakeFirstOrThrow();
    assert.deepEqual(stored, { domain: 'www.example.com', product: 801, dcv_email_address: 'admin@example.com' });

    // 3. The resend: the same code again, to the same address.
    await sink.waitFor(mailsBefore + 1, 60_000);
    const resent = await shell.run(steps[3]!.commands);
    assert.equal(resent.status, 0, resent.stderr);
    assert.equal(resent.stdout, 'errorCode=0\n');
    const mails = (await sink.waitFor(mailsBefore + 2, 60_000)).slice(mailsBefore);
    await server.outbox!.idle();
    assert.equal(sink.messages.length, mailsBefore + 2, 'each email delivered once');
    assert.deepEqual(mails.map((m) => m.envelope.rcptTo[0]), ['admin@example.com', 'admin@example.com']);
    const code = codeIn(mails[0]!.parsed.text);
    assert.equal(codeIn(mails[1]!.parsed.text), code, 'a resend re-sends the email in its entirety');

    // 4. The recipient follows the link and approves (what a browser sends).
    assert.equal(steps[4]!.commands.length, 0, 'step 4 is the recipient\u2019s, not a command');
    const link = new RegExp(`https?://\\S+/dcv/confirm/${code}`).exec(mails[0]!.parsed.text ?? '');
    assert.ok(link, 'the email carries the confirmation link');
    const page = await server.request({ method: 'GET', path: `/dcv/confirm/${code}` });
    const approved = await server.post('/dcv/confirm', form({ code, csrf: csrfOf(page.body), decision: 'approve' }), {
      headers: { 'sec-fetch-site': 'same-origin', origin: 'null', 'user-agent': 'curl-walkthrough/1' },
    });
    assert.equal(approved.status, 200);

    // 5. GetMDCDomainDetails: Validated; three fields a domain in this form, also with showStatusDetails=Y.
    const details = await shell.run(steps[5]!.commands);
    assert.equal(details.status, 0, details.stderr);
    assert.equal(details.stdout.trim(), 'errorCode=0&1_domainName=www.example.com&1_dcvMethod=EMAIL&1_dcvStatus=Validated');
  } finally {
    shell.close();
  }
});

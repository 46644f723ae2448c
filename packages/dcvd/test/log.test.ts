/**
 * The logger's redaction (src/log.ts, CONTRACT §7): secrets named at the top level of a line, one
 * level below it, in a child's bindings and in request headers never reach the output, and the
 * objects the caller logged are left as they were. Paths as logged (src/http/listener.ts) keep no code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { censorSecrets, createLogger, SECRET_KEYS } from '../src/log.ts';
import { redactUrl } from '../src/store/database.ts';
import { loggedPath } from '../src/http/listener.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  return { log: createLogger('debug', 1, sink), lines, raw };
}

test('every secret key is censored at the top level and one level down, the caller’s objects untouched', () => {
  const { log, lines, raw } = capture();
  for (const key of SECRET_KEYS) {
    const nested = { [key]: `secret-${key}-nested`, keep: 'visible' };
    log.info({ [key]: `secret-${key}-top`, input: nested, list: [{ [key]: 'deeper is not promised' }] }, 'line');
    assert.equal(nested[key], `secret-${key}-nested`, 'the logged object was not changed');
  }
  assert.equal(lines.length, SECRET_KEYS.length);
  for (const [i, key] of SECRET_KEYS.entries()) {
    const line = lines[i]!;
    assert.equal(line[key], '[redacted]');
    assert.deepEqual(line.input, { [key]: '[redacted]', keep: 'visible' });
  }
  assert.ok(!raw.some((l) => /secret-/.test(l)), raw.join('\n'));
});

test('an Error carrying a secret stays an Error: its message and stack are logged, the secret is not', () => {
  const { log, lines } = capture();
  const err = Object.assign(new Error('the database refused'), { body: 'loginPassword=hunter2', code: 'E1' });
  log.error({ err }, 'failed');
  const logged = lines[0]!.err as Record<string, unknown>;
  assert.equal(logged.message, 'the database refused');
  assert.equal(logged.type, 'Error');
  assert.match(String(logged.stack), /the database refused\n\s+at /);
  assert.equal(logged.code, 'E1');
  assert.equal(logged.body, '[redacted]');
  assert.equal(err.body, 'loginPassword=hunter2');
});

test('a child logger’s bindings (and a grandchild’s, and setBindings) and request headers are censored too', () => {
  const { log, lines, raw } = capture();
  const grandchild = log.child({ pid: 1 }).child({ ctx: { loginPassword: 'grand-secret' } });
  grandchild.setBindings({ later: { body: 'set-secret' } });
  grandchild.info('bound');
  log.child({ reqId: 'r1', password: 'bound-secret', ctx: { password: 'nested-bound-secret' } }).info({ req: { headers: { authorization: 'Basic c2VjcmV0', cookie: 'sid=1', host: 'h' } } }, 'req');
  log.info({ headers: { authorization: 'Bearer t' } }, 'headers');
  const bound = lines.shift()!;
  assert.deepEqual(bound.ctx, { loginPassword: '[redacted]' });
  assert.deepEqual(bound.later, { body: '[redacted]' });
  assert.equal(lines[0]!.password, '[redacted]');
  assert.deepEqual(lines[0]!.ctx, { password: '[redacted]' });
  assert.equal(lines[0]!.reqId, 'r1');
  assert.deepEqual(lines[0]!.req, { headers: { authorization: '[redacted]', cookie: '[redacted]', host: 'h' } });
  assert.deepEqual(lines[1]!.headers, { authorization: '[redacted]' });
  assert.ok(!raw.some((l) => /secret|c2VjcmV0|Bearer t|sid=1/.test(l)), raw.join('\n'));
});

test('a frozen object, or one whose secret cannot be redefined, is censored in a copy, and the call does not throw', () => {
  const { log, lines } = capture();
  const frozen = Object.freeze({ password: 'frozen-secret', keep: 1 });
  const locked = Object.defineProperty({}, 'body', { value: 'locked-secret', enumerable: true, writable: false, configurable: false });
  log.info({ frozen, locked }, 'line');
  assert.deepEqual(lines[0]!.frozen, { password: '[redacted]', keep: 1 });
  assert.deepEqual(lines[0]!.locked, { body: '[redacted]' });
  assert.equal(frozen.password, 'frozen-secret');
});

test('a line with nothing to censor is passed on as it is, not copied', () => {
  const line = { endpoint: 'GetDCVEmailAddressList', code: 0, status: 200, nested: { ok: true }, none: null, absent: { password: undefined } };
  assert.equal(censorSecrets(line), line);
});

test('the database URL as printed: no password in its user part or in a query parameter', () => {
  assert.equal(redactUrl('postgres://dcvd:s3cret@db.example:5432/dcvd'), 'postgres://dcvd:***@db.example:5432/dcvd');
  const socket = redactUrl('postgres://dcvd@localhost/dcvd?host=/var/run/postgresql&password=s3cret&sslpassword=k3y');
  assert.doesNotMatch(socket, /s3cret|k3y/);
  assert.match(socket, /host=%2Fvar%2Frun%2Fpostgresql/);
  assert.equal(redactUrl('not a url'), 'postgres://(unparseable URL)');
});

test('paths as logged: runs that could hold a validation code are redacted wherever they are, shorter ones kept', () => {
  const code = '0Q7ZK3M9TB1W5XGJ8D2RCA6NVE';
  const kept = ['/healthz', '/v1/orders/3000001', '/products/!GetDCVEmailAddressList', '/sandbox/style.css', '/%E0%A4%A', `/x/${code.slice(1)}`];
  for (const path of kept) assert.equal(loggedPath(path), path);
  assert.equal(loggedPath('/v1/sandbox/mail?order=1&limit=2'), '/v1/sandbox/mail?order=[redacted]&limit=[redacted]');
  assert.equal(loggedPath(`/dcv/confirm/${code.slice(0, 4)}`), '/dcv/confirm/[redacted]');
  const redacted: [string, string][] = [
    [`/${code}`, '/[redacted]'],
    [`/dcv/confirm;${code}.html`, '/dcv/confirm;[redacted].html'],
    [`/a%2F${code}%2Fb`, '/a%2F[redacted]%2Fb'],
    [`/${code.slice(0, 9)}-${code.slice(9, 18)}%20${code.slice(18)}`, '/[redacted]'],
    [`/${code.toLowerCase()}`, '/[redacted]'],
    // `ﬀ` (one code point, three bytes) upper-cases to FF: two of the 26.
    [`/${code.slice(2)}%EF%AC%80`, '/[redacted]'],
    [`/q?${code}`, '/q?[redacted]'],
    [`/q?${code}+x`, '/q?[redacted]'],
  ];
  for (const [path, logged] of redacted) assert.equal(loggedPath(path), logged, path);
});

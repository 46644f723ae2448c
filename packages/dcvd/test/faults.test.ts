/**
 * The database busy or locked (issue 8): a call that cannot get its write
 * answers a clear -14 with a request id within the statement timeout, the
 * server stays up, and the next call succeeds once the lock is gone.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { GET_PATH, PASSWORD, form, startTestServer, type TestServer } from './support/server.ts';

let s: TestServer;
before(async () => {
  s = await startTestServer();
  await s.createAccount('alice');
});
after(() => s.stop());

/** Takes the write lock of the registry table from another connection; returns its release. */
async function lockRegistry(): Promise<() => Promise<void>> {
  if (s.store.dialect === 'sqlite') {
    const other = new SQLite(s.store.location);
    other.exec('BEGIN IMMEDIATE');
    return async () => {
      other.exec('ROLLBACK');
      other.close();
    };
  }
  const client = new pg.Client({ connectionString: s.databaseUrl });
  await client.connect();
  await client.query('BEGIN');
  await client.query('LOCK TABLE offered_addresses IN EXCLUSIVE MODE');
  return async () => {
    await client.query('ROLLBACK');
    await client.end();
  };
}

test('a locked database gives -14 with a request id, then service resumes', async () => {
  const ok = form({ loginName: 'alice', loginPassword: PASSWORD, domainName: 'www.example.com', product: '801' });
  assert.match((await s.post(GET_PATH, ok)).body, /^0\n/);
  // Another name: an answer this process wrote a moment ago is not written again (issue 20), so it would not wait.
  const body = form({ loginName: 'alice', loginPassword: PASSWORD, domainName: 'www.example.org', product: '801' });
  const release = await lockRegistry();
  let res;
  try {
    // The answer written a moment ago needs no write: it is served under the lock.
    assert.match((await s.post(GET_PATH, ok)).body, /^0\n/);
    res = await s.post(GET_PATH, body);
  } finally {
    await release();
  }
  assert.equal(res.status, 200);
  assert.equal(res.body, '-14\nAn unknown error occurred!\n');
  const id = res.headers['x-request-id'];
  const logged = s.logs.find((l) => l.reqId === id && l.msg === 'unexpected error');
  assert.ok(logged, 'the cause is logged under the request id');
  assert.match((await s.post(GET_PATH, body)).body, /^0\n/);
  // The failed write was not taken for a written answer: the retry's offers are on record.
  const row = await s.store.db.selectFrom('offered_addresses').select('address').where('domain', '=', 'www.example.org').where('address', '=', 'admin@example.org').executeTakeFirst();
  assert.ok(row, 'recorded after the lock');
});

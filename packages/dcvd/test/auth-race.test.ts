/**
 * A change to an account committed while its password is being checked (CONTRACT §7: changing, locking or
 * expiring takes effect at once). Calls with one login, password and source that find no remembered pair share
 * one argon2 verification; before 2026-12-04 its success was settled with the row read before argon2, so a call
 * that joined it after an operator's lock (or a new password) was let in. Found by a review of check-then-act races.
 * On the database the tests run on (SQLite, or PostgreSQL with DCVD_TEST_DATABASE=postgres).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Authenticator, type AuthResult } from '../src/accounts/auth.ts';
import { AccountRepository } from '../src/accounts/repository.ts';
import { systemClock } from '../src/deps.ts';
import { postgresTestStore, sqliteTestStore, testDatabaseKind } from './support/database.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups) await cleanup();
});

const PASSWORD = 'correct horse battery staple 1';
const SOURCE = '192.0.2.1';

for (const [change, apply] of [
  ['an operator lock', (accounts: AccountRepository, login: string) => accounts.lock(login)],
  ['a new password', (accounts: AccountRepository, login: string) => accounts.update(login, { password: 'another long password 2' })],
  ['a new permission set', (accounts: AccountRepository, login: string) => accounts.update(login, { permissions: [] })],
] as const) {
  test(`${change} committed while the password is being checked: that call and every call that shares the check are refused`, async () => {
    const { store } = testDatabaseKind() === 'postgres' ? await postgresTestStore(cleanups) : await sqliteTestStore(cleanups);
    const accounts = new AccountRepository(store.db, systemClock);
    await accounts.create('alice', { password: PASSWORD, permissions: ['auto-apply'] });
    // The change starts when argon2 does (the hook runs right before it), and commits while it runs.
    let changed: Promise<unknown> | undefined;
    let verifying!: () => void;
    const verifyStarted = new Promise<void>((resolve) => (verifying = resolve));
    const auth = new Authenticator(store.db, systemClock, undefined, {
      onVerify: (kind) => {
        if (kind !== 'account' || changed) return;
        changed = apply(accounts, 'alice');
        verifying();
      },
    });
    const first = auth.authenticate('alice', PASSWORD, SOURCE);
    let firstDone = false;
    void first.then(() => (firstDone = true));
    await verifyStarted;
    await changed;
    const committedWhileChecking = !firstDone;
    // A call made after the change committed, with the same login, password and source: it shares the check in flight.
    const second = await auth.authenticate('alice', PASSWORD, SOURCE);
    const result = await first;
    assert.equal(second.ok, false, `the call after the change: ${JSON.stringify(second)}`);
    if (committedWhileChecking) assert.deepEqual(result, { ok: false, reason: 'changed' });
    // Nothing is left reserved (a refused success releases its attempt, and counts no failure).
    const row = await store.db.selectFrom('accounts').select(['auth_pending']).where('login', '=', 'alice').executeTakeFirstOrThrow();
    assert.equal(Number(row.auth_pending), 0);
  });
}

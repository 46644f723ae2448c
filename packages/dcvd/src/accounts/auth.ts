/**
 * Credential checks of CONTRACT §7: argon2id, a short-lived in-memory memory
 * of verified credentials, lockout per account, a failure limit per source IP,
 * allowed networks and password expiry. Every failure is one outcome for the
 * caller (-16); the reason is only for the log.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import type { Clock } from '../deps.ts';
import type { AccountRow } from './repository.ts';
import { dummyHash, verifyPassword } from './passwords.ts';
import { isAllowedSource } from './networks.ts';
import { FailureCounter } from './failure-counter.ts';
import { prepared } from '../store/prepared.ts';

const accountByLogin = prepared((db, p: { login: string }) => db.selectFrom('accounts').selectAll().where('login', '=', p.login));

export interface AuthPolicy {
  /** Consecutive failures that lock an account. */
  lockoutFailures: number;
  lockoutMs: number;
  /** Failures from one source IP within the window that block it. */
  ipFailures: number;
  ipWindowMs: number;
  ipBlockMs: number;
  /** How long a verified credential is remembered (0 = never). */
  credentialCacheMs: number;
  /** At most this many remembered credentials. */
  credentialCacheSize: number;
}

export const DEFAULT_AUTH_POLICY: AuthPolicy = {
  lockoutFailures: 5,
  lockoutMs: 15 * 60_000,
  ipFailures: 50,
  ipWindowMs: 15 * 60_000,
  ipBlockMs: 15 * 60_000,
  credentialCacheMs: 60_000,
  credentialCacheSize: 10_000,
};

export type AuthFailure =
  | 'ip-blocked'
  | 'unknown-login'
  | 'wrong-password'
  | 'locked'
  | 'password-expired'
  | 'source-not-allowed';

export type AuthResult = { ok: true; account: AccountRow } | { ok: false; reason: AuthFailure };

interface Remembered {
  accountId: number;
  credentialVersion: number;
  expiresAt: number;
}

export class Authenticator {
  /** Keyed hashes of verified login+password pairs; the key lives only in this process. */
  private readonly remembered = new Map<string, Remembered>();
  private readonly key = randomBytes(32);
  private readonly ipCounter: FailureCounter;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly policy: AuthPolicy = DEFAULT_AUTH_POLICY,
    /** Told of each lockout (metrics). */
    private readonly onLockout?: () => void,
  ) {
    this.ipCounter = new FailureCounter(db, 'ip_failures', { limit: policy.ipFailures, windowMs: policy.ipWindowMs, blockMs: policy.ipBlockMs });
  }

  async authenticate(login: string, password: string, sourceIp: string): Promise<AuthResult> {
    const now = this.clock.now();
    if (await this.ipCounter.blocked(sourceIp, now)) return { ok: false, reason: 'ip-blocked' };

    const account = await accountByLogin.first(this.db, { login });
    if (!account) {
      // Same work as a wrong password, so timing does not tell the two apart.
      await verifyPassword(await dummyHash(), password);
      await this.ipCounter.record(sourceIp, now);
      return { ok: false, reason: 'unknown-login' };
    }

    const cacheKey = this.cacheKey(login, password);
    const hit = this.remembered.get(cacheKey);
    let verified =
      hit !== undefined &&
      hit.accountId === account.id &&
      hit.credentialVersion === account.credential_version &&
      hit.expiresAt > now;
    if (!verified) {
      if (hit) this.remembered.delete(cacheKey);
      verified = await verifyPassword(account.password_hash, password);
    }

    // Locked accounts still pay for the verification above: no timing tells locked from unknown.
    // A wrong password still counts against the source IP, so hammering a locked account gets
    // the IP blocked (and spares the server its argon2 work) like any other guessing.
    if (account.locked === 1 || (account.locked_until !== null && account.locked_until > now)) {
      if (!verified) await this.ipCounter.record(sourceIp, now);
      return { ok: false, reason: 'locked' };
    }
    if (!verified) {
      await this.recordAccountFailure(account.id, now);
      await this.ipCounter.record(sourceIp, now);
      return { ok: false, reason: 'wrong-password' };
    }
    if (account.password_expires_at !== null && account.password_expires_at <= now) {
      return { ok: false, reason: 'password-expired' };
    }
    if (!isAllowedSource(sourceIp, account.allowed_networks)) return { ok: false, reason: 'source-not-allowed' };

    if (account.failed_attempts > 0) {
      await this.db.updateTable('accounts').set({ failed_attempts: 0 }).where('id', '=', account.id).execute();
    }
    this.remember(cacheKey, account, now);
    return { ok: true, account };
  }

  private cacheKey(login: string, password: string): string {
    return createHmac('sha256', this.key).update(login).update('\0').update(password).digest('base64');
  }

  private remember(key: string, account: AccountRow, now: number): void {
    if (this.policy.credentialCacheMs <= 0) return;
    if (this.remembered.size >= this.policy.credentialCacheSize) {
      // Drop the oldest entry (Map keeps insertion order).
      const oldest = this.remembered.keys().next().value;
      if (oldest !== undefined) this.remembered.delete(oldest);
    }
    this.remembered.set(key, {
      accountId: account.id,
      credentialVersion: account.credential_version,
      expiresAt: now + this.policy.credentialCacheMs,
    });
  }

  /** One atomic statement per step, so that several instances on one database count together (CONTRACT §10). */
  private async recordAccountFailure(accountId: number, now: number): Promise<void> {
    const row = await this.db
      .updateTable('accounts')
      .set((eb) => ({ failed_attempts: eb('failed_attempts', '+', 1) }))
      .where('id', '=', accountId)
      .returning('failed_attempts')
      .executeTakeFirst();
    if (row && row.failed_attempts >= this.policy.lockoutFailures) {
      await this.db
        .updateTable('accounts')
        .set((eb) => ({
          locked_until: now + this.policy.lockoutMs,
          failed_attempts: 0,
          credential_version: eb('credential_version', '+', 1),
        }))
        .where('id', '=', accountId)
        .execute();
      this.onLockout?.();
    }
  }

  /** Deletes per-IP rows whose window and block are both over; returns how many. */
  purgeIpFailures(): Promise<number> {
    return this.ipCounter.purge(this.clock.now());
  }
}

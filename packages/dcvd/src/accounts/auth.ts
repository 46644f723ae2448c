/**
 * Credential checks of CONTRACT §7: argon2id, a short-lived in-memory memory
 * of verified credentials, lockout per account, a failure limit per source IP,
 * allowed networks and password expiry. Every failure is one outcome for the
 * caller (-16); the reason is only for the log.
 */
import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { sql, type ExpressionBuilder, type Kysely, type RawBuilder } from 'kysely';
import type { Database } from '../store/schema.ts';
import type { Clock } from '../deps.ts';
import type { AccountRow } from './repository.ts';
import { dummyHash, verifyPassword } from './passwords.ts';
import { isAllowedSource } from './networks.ts';
import { FailureCounter, RESERVATION_TTL_MS, untilNotBusy } from './failure-counter.ts';
import { prepared } from '../store/prepared.ts';
import { FreshReads } from '../store/fresh-reads.ts';
import { STATEMENT_TIMEOUT_MS } from '../store/database.ts';
import { DEFAULT_AUTH_POLICY, type AuthPolicy } from './auth-policy.ts';

const accountByLogin = prepared((db, p: { login: string }) => db.selectFrom('accounts').selectAll().where('login', '=', p.login));

/**
 * The hot path's one round trip (issue 20): the source's block and the account's row in one
 * statement, a row even when neither exists (PostgreSQL otherwise paid two round trips).
 */
const blockAndAccount = prepared((db, p: { ip: string; login: string }) =>
  db
    .selectFrom(sql<{ one: number }>`(select 1 as one)`.as('q'))
    .leftJoin('ip_failures', (join) => join.on('ip_failures.ip', '=', p.ip))
    .leftJoin('accounts', (join) => join.on('accounts.login', '=', p.login))
    .selectAll('accounts')
    .select('ip_failures.blocked_until as ip_blocked_until'),
);

type BlockAndAccountRow = Awaited<ReturnType<typeof blockAndAccount.first>>;

export { DEFAULT_AUTH_POLICY, type AuthPolicy } from './auth-policy.ts';

export type AuthFailure =
  | 'ip-blocked'
  | 'unknown-login'
  | 'wrong-password'
  | 'locked'
  | 'password-expired'
  | 'source-not-allowed'
  /** Every attempt was taken by verifications in flight for longer than a caller waits (a burst). */
  | 'busy'
  /** The account was changed (password, lock, permissions, networks, expiry) while its password was being checked. */
  | 'changed';

export type AuthResult = { ok: true; account: AccountRow } | { ok: false; reason: AuthFailure };

const lockedNow = (account: AccountRow, now: number) => account.locked === 1 || (account.locked_until !== null && account.locked_until > now);

/** One verification in flight fewer (never below 0). */
const onePendingLess = sql<number>`(case when auth_pending > 0 then auth_pending - 1 else 0 end)`;

/** The account is not locked, by the operator or by a lockout, at `now` (the SQL of lockedNow). */
const notLockedAt = (now: number) => (eb: ExpressionBuilder<Database, 'accounts'>) =>
  eb.and([eb('locked', '=', 0), eb.or([eb('locked_until', 'is', null), eb('locked_until', '<=', now)])]);

/** Verifications in flight that still count (an unsettled one from a dead process stops after RESERVATION_TTL_MS). */
const livePending = (now: number): RawBuilder<number> =>
  sql<number>`(case when auth_pending_at is null or auth_pending_at <= ${now - RESERVATION_TTL_MS} then 0 else auth_pending end)`;

interface Remembered {
  accountId: number;
  credentialVersion: number;
  expiresAt: number;
}

export interface AuthHooks {
  /** Told of each lockout (metrics). */
  onLockout?: () => void;
  /** Told of each argon2 verification: against an account's hash, or the dummy one (metrics). */
  onVerify?: (kind: 'account' | 'dummy') => void;
  /** Per-IP limits count IPv6 sources by their network of this many bits. */
  ipv6Prefix?: number;
}

/** Settles a reserved verification: a failure, or neither (a success is settleSuccess). */
type Settle = 'failure' | 'release';

export class Authenticator {
  /** Keyed hashes of verified login+password pairs; the key lives only in this process. */
  private readonly remembered = new Map<string, Remembered>();
  /** A KeyObject: createHmac imports a Buffer key anew on every call. */
  private readonly key = createSecretKey(randomBytes(32));
  private readonly ipCounter: FailureCounter;
  /** Verifications in progress in this process, by credential and source: identical concurrent calls share one. */
  private readonly inFlight = new Map<string, Promise<AuthResult>>();
  /** The hot path's statement, shared by concurrent calls of one source and login (store/fresh-reads.ts: never an answer older than the call). */
  private readonly blockAndAccountReads = new FreshReads<BlockAndAccountRow | undefined>({ staleAfterMs: STATEMENT_TIMEOUT_MS + 1000 });
  private readonly hooks: AuthHooks;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly policy: AuthPolicy = DEFAULT_AUTH_POLICY,
    /** Told of each lockout (metrics), or the hooks. */
    hooks?: (() => void) | AuthHooks,
  ) {
    this.hooks = typeof hooks === 'function' ? { onLockout: hooks } : (hooks ?? {});
    this.ipCounter = new FailureCounter(db, 'ip_failures', { limit: policy.ipFailures, windowMs: policy.ipWindowMs, blockMs: policy.ipBlockMs }, this.hooks.ipv6Prefix);
  }

  /**
   * The hot path (a remembered credential) reads the IP's block and the
   * account's row in one statement. Anything else reserves an attempt, for
   * the source IP and then for the account, with one atomic statement each
   * before argon2 runs (issue 14): a burst of any size, on any number of
   * instances, reaches at most `lockoutFailures` verifications per account per
   * lock window and `ipFailures` per source. Calls that find every attempt
   * taken by verifications in flight wait for them to settle.
   */
  async authenticate(login: string, password: string, sourceIp: string): Promise<AuthResult> {
    const now = this.clock.now();
    // PostgreSQL cannot store or compare NUL; no login holds one (checkLogin), so it is just unknown.
    if (login.includes('\0')) {
      if (await this.ipCounter.blocked(sourceIp, now)) return { ok: false, reason: 'ip-blocked' };
      return this.verifyFresh(login, password, sourceIp);
    }

    const cacheKey = this.cacheKey(login, password);
    const hit = this.remembered.get(cacheKey);
    if (hit !== undefined && hit.expiresAt > now) {
      const ip = this.ipCounter.key(sourceIp);
      const row = await this.blockAndAccountReads.read(`${ip}\0${login}`, () => blockAndAccount.first(this.db, { ip, login }));
      if (row?.ip_blocked_until != null && row.ip_blocked_until > now) return { ok: false, reason: 'ip-blocked' };
      if (row?.id != null && hit.accountId === row.id && hit.credentialVersion === row.credential_version) {
        const { ip_blocked_until: _, ...account } = row as AccountRow & { ip_blocked_until: unknown };
        if (lockedNow(account, now)) return { ok: false, reason: 'locked' };
        return this.accept(account, sourceIp, now, cacheKey, false);
      }
    } else if (await this.ipCounter.blocked(sourceIp, now)) {
      return { ok: false, reason: 'ip-blocked' };
    }
    if (hit) this.remembered.delete(cacheKey);

    const flightKey = `${cacheKey}|${sourceIp}`;
    const shared = this.inFlight.get(flightKey);
    if (shared) return shared;
    const attempt = this.verifyFresh(login, password, sourceIp, cacheKey).finally(() => this.inFlight.delete(flightKey));
    this.inFlight.set(flightKey, attempt);
    return attempt;
  }

  private async verifyFresh(login: string, password: string, sourceIp: string, cacheKey?: string): Promise<AuthResult> {
    const outcome = await untilNotBusy(async () => {
      const now = this.clock.now();
      const ip = await this.ipCounter.reserve(sourceIp, now);
      if (ip === 'blocked') return { ok: false, reason: 'ip-blocked' } as const;
      if (ip === 'busy') return 'busy';
      let account: AccountRow | undefined;
      try {
        account = cacheKey === undefined ? undefined : await this.reserveAccount(login, now);
        if (account === undefined) {
          const row = cacheKey === undefined ? undefined : await accountByLogin.first(this.db, { login });
          if (row && !lockedNow(row, now)) {
            // Every attempt of this account is taken by verifications in flight: wait for them.
            await this.ipCounter.release(sourceIp);
            return 'busy';
          }
          // Unknown or locked: the same work as a wrong password, so timing tells none of them apart,
          // and the failure counts against the source IP (hammering a locked account blocks the IP).
          this.hooks.onVerify?.('dummy');
          await verifyPassword(await dummyHash(), password);
          await this.ipCounter.fail(sourceIp, this.clock.now());
          return { ok: false, reason: row ? 'locked' : 'unknown-login' } as const;
        }
      } catch (err) {
        await this.ipCounter.release(sourceIp).catch(() => undefined);
        throw err;
      }
      this.hooks.onVerify?.('account');
      // verifyPassword never throws: a hash it cannot read is a wrong password.
      if (!(await verifyPassword(account.password_hash, password))) {
        await this.settleAccount(account.id, 'failure', this.clock.now());
        await this.ipCounter.fail(sourceIp, this.clock.now());
        return { ok: false, reason: 'wrong-password' } as const;
      }
      await this.ipCounter.release(sourceIp);
      return this.accept(account, sourceIp, this.clock.now(), cacheKey!, true);
    });
    if (outcome === 'busy') return { ok: false, reason: 'busy' };
    return outcome;
  }

  /** After a correct password: expiry, allowed networks, then success (settling the reservation if there is one). */
  private async accept(read: AccountRow, sourceIp: string, now: number, cacheKey: string, reserved: boolean): Promise<AuthResult> {
    let account = read;
    const expired = account.password_expires_at !== null && account.password_expires_at <= now;
    const refused = expired ? 'password-expired' : !isAllowedSource(sourceIp, account.allowed_networks) ? 'source-not-allowed' : undefined;
    if (refused) {
      if (reserved) await this.settleAccount(account.id, 'release', now);
      return { ok: false, reason: refused };
    }
    if (reserved) {
      // The row was read when the attempt was reserved, before argon2; a change committed since (a new password,
      // a lock, other permissions) must hold for this answer too, and for every call that joined this verification
      // after the change (inFlight): the success counts only while the account is as it was read.
      const current = await this.settleSuccess(account, now);
      if (!current) return { ok: false, reason: 'changed' };
      account = current;
    } else if (account.failed_attempts > 0) await this.db.updateTable('accounts').set({ failed_attempts: 0 }).where('id', '=', account.id).execute();
    this.remember(cacheKey, account, now);
    return { ok: true, account };
  }

  /**
   * Settles a reserved verification that found the password right: one statement that succeeds only while the
   * account has the credential version it was read with and is not locked. The row then, or undefined (the
   * reservation released, nothing else changed).
   */
  private async settleSuccess(account: AccountRow, now: number): Promise<AccountRow | undefined> {
    const row = await this.db
      .updateTable('accounts')
      .set({ auth_pending: onePendingLess, failed_attempts: 0 })
      .where('id', '=', account.id)
      .where('credential_version', '=', account.credential_version)
      .where(notLockedAt(now))
      .returningAll()
      .executeTakeFirst();
    if (!row) await this.settleAccount(account.id, 'release', now);
    return row;
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

  /**
   * Reserves one verification of `login`'s password: one atomic statement that
   * succeeds only while the account is not locked and its failures plus the
   * verifications in flight are under the lockout threshold. The row, or
   * undefined (unknown, locked, or every attempt taken).
   */
  private async reserveAccount(login: string, now: number): Promise<AccountRow | undefined> {
    const pending = livePending(now);
    return this.db
      .updateTable('accounts')
      .set({ auth_pending: sql<number>`${pending} + 1`, auth_pending_at: now })
      .where('login', '=', login)
      .where(notLockedAt(now))
      .where(sql<boolean>`failed_attempts + ${pending} < ${this.policy.lockoutFailures}`)
      .returningAll()
      .executeTakeFirst();
  }

  /**
   * One atomic statement, so that several instances on one database count
   * together (CONTRACT §10): the failure that reaches the threshold locks the
   * account at once (and voids remembered credentials).
   */
  private async settleAccount(accountId: number, how: Settle, now: number): Promise<void> {
    if (how === 'release') {
      await this.db.updateTable('accounts').set({ auth_pending: onePendingLess }).where('id', '=', accountId).execute();
      return;
    }
    const until = now + this.policy.lockoutMs;
    const reaches = sql<boolean>`failed_attempts + 1 >= ${this.policy.lockoutFailures}`;
    const row = await this.db
      .updateTable('accounts')
      .set({
        auth_pending: onePendingLess,
        failed_attempts: sql<number>`(case when ${reaches} then 0 else failed_attempts + 1 end)`,
        locked_until: sql<number>`(case when ${reaches} then ${until} else locked_until end)`,
        credential_version: sql<number>`(case when ${reaches} then credential_version + 1 else credential_version end)`,
      })
      .where('id', '=', accountId)
      .returning(['failed_attempts', 'locked_until'])
      .executeTakeFirst();
    if (row && row.failed_attempts === 0 && Number(row.locked_until) === until) this.hooks.onLockout?.();
  }

  /** Deletes per-IP rows whose window and block are both over; returns how many. */
  purgeIpFailures(): Promise<number> {
    return this.ipCounter.purge(this.clock.now());
  }
}

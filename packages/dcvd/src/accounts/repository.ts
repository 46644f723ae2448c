/** Account administration (CONTRACT §7, §9): the operations behind `dcvd account …`. */
import type { Kysely, Selectable } from 'kysely';
import type { AccountTable, Database } from '../store/schema.ts';
import type { Clock } from '../deps.ts';
import { hashPassword } from './passwords.ts';
import { normalizeNetworks } from './networks.ts';
import { OperatorError } from '../errors.ts';
import { checkWebhookUrl as checkUrl } from './webhook-url.ts';
import { insertedOnce } from '../store/database.ts';
import { INVISIBLE, INVISIBLE_TEXT } from '../text.ts';

function checkWebhookUrl(url: string): string {
  try {
    return checkUrl(url);
  } catch (err) {
    throw new AccountError((err as Error).message);
  }
}

export type Permission = 'auto-apply' | 'voucher';
export const PERMISSIONS: readonly Permission[] = ['auto-apply', 'voucher'];

export type AccountRow = Selectable<AccountTable>;

/** What an operator sees of an account: never the hash. */
export interface AccountView {
  login: string;
  permissions: Permission[];
  allowedNetworks: string[];
  passwordExpiresAt: string | null;
  locked: boolean;
  lockedUntil: string | null;
  failedAttempts: number;
  /** Where this account's DCV decisions are POSTed; null = the global one. */
  webhookUrl: string | null;
  createdAt: string;
  updatedAt: string;
}

export class AccountError extends OperatorError {
  override name = 'AccountError';
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function accountView(row: AccountRow, now: number): AccountView {
  const permissions: Permission[] = [];
  if (row.perm_auto_apply) permissions.push('auto-apply');
  if (row.perm_voucher) permissions.push('voucher');
  return {
    login: row.login,
    permissions,
    allowedNetworks: row.allowed_networks === '' ? [] : row.allowed_networks.split(','),
    passwordExpiresAt: iso(row.password_expires_at),
    locked: row.locked === 1,
    lockedUntil: row.locked_until !== null && row.locked_until > now ? iso(row.locked_until) : null,
    failedAttempts: row.failed_attempts,
    webhookUrl: row.webhook_url,
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

export interface AccountInput {
  password?: string;
  permissions?: Permission[];
  allowedNetworks?: string[];
  /** null clears the expiry. */
  passwordExpiresAt?: number | null;
  /** null clears it (the global webhook URL applies). */
  webhookUrl?: string | null;
}

function checkLogin(login: string): void {
  // The API limits loginName to 64 characters (seed); a login the API could never send is useless.
  if (login === '' || [...login].length > 64) throw new AccountError('login must be 1 to 64 characters');
  if (/\p{Cc}/u.test(login)) throw new AccountError('login must not contain control characters');
  // Names that differ only invisibly must not coexist (issue 14); the check at login stays exact.
  if (login !== login.normalize('NFC')) throw new AccountError('login must be in Unicode normalization form NFC');
  if (/^\p{White_Space}|\p{White_Space}$/u.test(login)) throw new AccountError('login must not begin or end with whitespace');
  if (/(?! )\p{White_Space}/u.test(login)) throw new AccountError('login must not contain whitespace other than the space');
  if (INVISIBLE.test(login)) throw new AccountError(`login must not contain ${INVISIBLE_TEXT}`);
}

function checkPassword(password: string): void {
  const length = [...password].length;
  if (length < 12) throw new AccountError('password must be at least 12 characters');
  if (length > 128) throw new AccountError('password must be at most 128 characters (the API limit)');
}

export class AccountRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  async create(login: string, input: AccountInput & { password: string }): Promise<AccountView> {
    checkLogin(login);
    checkPassword(input.password);
    const now = this.clock.now();
    const existing = await this.find(login);
    const taken = () => new AccountError(`account ${JSON.stringify(login)} already exists`, 'conflict');
    if (existing) throw taken();
    const perms = input.permissions ?? [];
    // Checked above, and again by the insert: another create of the login may come between (the hash takes a while).
    await insertedOnce(
      this.db
        .insertInto('accounts')
        .values({
          login,
          password_hash: await hashPassword(input.password),
          perm_auto_apply: perms.includes('auto-apply') ? 1 : 0,
          perm_voucher: perms.includes('voucher') ? 1 : 0,
          allowed_networks: normalizeNetworks(input.allowedNetworks ?? []),
          password_expires_at: input.passwordExpiresAt ?? null,
          webhook_url: input.webhookUrl == null ? null : checkWebhookUrl(input.webhookUrl),
          created_at: now,
          updated_at: now,
        })
        .execute(),
      taken,
    );
    return this.view(login);
  }

  /** Changes only what is given; any change voids remembered credentials. */
  async update(login: string, input: AccountInput): Promise<AccountView> {
    const row = await this.require(login);
    const changes: Partial<Record<keyof AccountTable, unknown>> = {};
    if (input.password !== undefined) {
      checkPassword(input.password);
      changes.password_hash = await hashPassword(input.password);
    }
    if (input.permissions !== undefined) {
      changes.perm_auto_apply = input.permissions.includes('auto-apply') ? 1 : 0;
      changes.perm_voucher = input.permissions.includes('voucher') ? 1 : 0;
    }
    if (input.allowedNetworks !== undefined) changes.allowed_networks = normalizeNetworks(input.allowedNetworks);
    if (input.passwordExpiresAt !== undefined) changes.password_expires_at = input.passwordExpiresAt;
    if (input.webhookUrl !== undefined) changes.webhook_url = input.webhookUrl === null ? null : checkWebhookUrl(input.webhookUrl);
    await this.bump(row.id, changes);
    return this.view(login);
  }

  async lock(login: string): Promise<AccountView> {
    const row = await this.require(login);
    await this.bump(row.id, { locked: 1 });
    return this.view(login);
  }

  /** Clears both the operator's lock and the lockout rule's, and the failure count. */
  async unlock(login: string): Promise<AccountView> {
    const row = await this.require(login);
    await this.bump(row.id, { locked: 0, locked_until: null, failed_attempts: 0 });
    return this.view(login);
  }

  async list(): Promise<AccountView[]> {
    const rows = await this.db.selectFrom('accounts').selectAll().orderBy('login').execute();
    const now = this.clock.now();
    return rows.map((r) => accountView(r, now));
  }

  find(login: string): Promise<AccountRow | undefined> {
    return this.db.selectFrom('accounts').selectAll().where('login', '=', login).executeTakeFirst();
  }

  async view(login: string): Promise<AccountView> {
    return accountView(await this.require(login), this.clock.now());
  }

  private async require(login: string): Promise<AccountRow> {
    const row = await this.find(login);
    if (!row) throw new AccountError(`no account ${JSON.stringify(login)}`, 'not-found');
    return row;
  }

  private async bump(id: number, changes: Partial<Record<keyof AccountTable, unknown>>): Promise<void> {
    await this.db
      .updateTable('accounts')
      .set((eb) => ({
        ...(changes as object),
        credential_version: eb('credential_version', '+', 1),
        updated_at: this.clock.now(),
      }))
      .where('id', '=', id)
      .execute();
  }
}

/**
 * Table types for Kysely. Times are integer milliseconds since the epoch
 * (bigint columns), booleans are 0/1 integers: one representation that
 * SQLite and PostgreSQL both store and return the same way.
 */
import type { ColumnType, Generated } from 'kysely';

type Millis = number;

export interface AccountTable {
  id: Generated<number>;
  login: string;
  password_hash: string;
  /** Bumped by every password change, lock, unlock and expiry change: voids remembered credentials (CONTRACT §7). */
  credential_version: ColumnType<number, number | undefined, number>;
  perm_auto_apply: ColumnType<number, number | undefined, number>;
  perm_voucher: ColumnType<number, number | undefined, number>;
  /** Comma-separated CIDR list; empty = any source. */
  allowed_networks: ColumnType<string, string | undefined, string>;
  password_expires_at: Millis | null;
  /** Locked by an operator until unlocked. */
  locked: ColumnType<number, number | undefined, number>;
  /** Consecutive failures since the last success or lockout. */
  failed_attempts: ColumnType<number, number | undefined, number>;
  /** Set by the lockout rule. */
  locked_until: Millis | null;
  created_at: Millis;
  updated_at: Millis;
}

export interface IpFailureTable {
  ip: string;
  window_start: Millis;
  failures: number;
  blocked_until: Millis | null;
}

/** The 24-hour registry (CONTRACT §4): one row per account, domain and address, refreshed on every offer. */
export interface OfferedAddressTable {
  id: Generated<number>;
  account_id: number;
  /** The normalized domain the list was asked for (without `*.`). */
  domain: string;
  /** Local part as offered, domain part lower-cased. */
  address: string;
  level: number;
  /** How the address was found: constructed, dns-txt or dns-caa (evidence, CONTRACT §6). */
  source: string;
  /** JSON of the DNS answer that gave a DNS contact: name, rcode, AD bit, EDE, resolver. */
  dns_detail: string | null;
  offered_at: Millis;
}

export interface Database {
  accounts: AccountTable;
  ip_failures: IpFailureTable;
  offered_addresses: OfferedAddressTable;
}

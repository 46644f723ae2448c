/**
 * Random Values of BR 3.2.2.4.4 (CONTRACT §5): 128 bits from a CSPRNG, shown
 * to people as a 26-character Crockford base32 validation code, stored only
 * as a keyed hash (HMAC-SHA256 under the instance's secret key), valid at most
 * 30 days. The outbox keeps the code sealed (AES-256-GCM) until the value
 * stops working, because a queued email must survive a restart.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { sql, type ExpressionBuilder, type Kysely, type Selectable } from 'kysely';
import type { RandomSource } from '../deps.ts';
import type { Database, RandomValueTable } from '../store/schema.ts';
import { prepared } from '../store/prepared.ts';
import { dialectOf, unindexedState } from '../store/database.ts';

export const RANDOM_VALUE_BITS = 128;
export const MAX_RANDOM_VALUE_TTL_MS = 30 * 24 * 60 * 60 * 1000;

// Crockford's base32: no I, L, O, U, so a code read aloud or retyped survives.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const CODE_LENGTH = Math.ceil(RANDOM_VALUE_BITS / 5); // 26

/** A new validation code: 128 random bits as 26 Crockford base32 characters (the top 2 bits of the first character are 0). */
export function newValidationCode(random: RandomSource): string {
  const bytes = random.bytes(RANDOM_VALUE_BITS / 8);
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = '';
  for (let i = 0; i < CODE_LENGTH; i += 1) {
    out = ALPHABET[Number(n & 31n)]! + out;
    n >>= 5n;
  }
  return out;
}

/**
 * The canonical form of a code as a person may type it: case-insensitive,
 * spaces and hyphens ignored, I/L read as 1 and O as 0. Undefined when it
 * cannot be a code (confirmation pages answer "unknown" without a lookup).
 */
export function canonicalCode(input: string): string | undefined {
  const s = input
    .toUpperCase()
    .replace(/[\s-]/g, '')
    .replace(/[IL]/g, '1')
    .replace(/O/g, '0');
  if (s.length !== CODE_LENGTH) return undefined;
  for (const ch of s) if (!ALPHABET.includes(ch)) return undefined;
  // 26 characters carry 130 bits; a real code has the top two at zero.
  if (ALPHABET.indexOf(s[0]!) > 7) return undefined;
  return s;
}

/** The instance's keys, derived from one secret (the secret key file). */
export interface ValueKeys {
  /** Keys the stored hashes of codes. */
  hash: Buffer;
  /** Seals codes in the outbox. */
  seal: Buffer;
  /** Signs the confirmation pages' anti-CSRF tokens. */
  form: Buffer;
}

export function deriveKeys(secret: Buffer): ValueKeys {
  const derive = (label: string) => createHmac('sha256', secret).update(label).digest();
  return { hash: derive('dcvd/random-value-hash/v1'), seal: derive('dcvd/outbox-seal/v1'), form: derive('dcvd/confirm-form/v1') };
}

/** The keyed hash a code is stored and looked up under (hex). */
export function hashCode(keys: ValueKeys, canonical: string): string {
  return createHmac('sha256', keys.hash).update(canonical).digest('hex');
}

/** Seals a code for the outbox, bound to its value's hash (so a sealed code cannot be moved to another value). */
export function sealCode(keys: ValueKeys, code: string, valueHash: string, random: RandomSource): string {
  const iv = random.bytes(12);
  const cipher = createCipheriv('aes-256-gcm', keys.seal, iv);
  cipher.setAAD(Buffer.from(valueHash));
  const body = Buffer.concat([cipher.update(code, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `v1.${iv.toString('base64url')}.${body.toString('base64url')}`;
}

/** Opens a sealed code; throws when the key is not the one that sealed it or the text was altered. */
export function openSealedCode(keys: ValueKeys, sealed: string, valueHash: string): string {
  const [version, iv, body] = sealed.split('.');
  if (version !== 'v1' || iv === undefined || body === undefined) throw new Error('sealed code: unknown format');
  const data = Buffer.from(body, 'base64url');
  if (data.length < 17) throw new Error('sealed code: too short');
  const decipher = createDecipheriv('aes-256-gcm', keys.seal, Buffer.from(iv, 'base64url'));
  decipher.setAAD(Buffer.from(valueHash));
  decipher.setAuthTag(data.subarray(data.length - 16));
  try {
    return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]).toString('utf8');
  } catch {
    throw new Error('sealed code: cannot be opened with this secret key (is --secret-key-file the one that queued it?)');
  }
}

/**
 * Reads the secret key file, or creates it (32 random bytes, hex, mode 0600)
 * when it does not exist. Creation is atomic (a temp file linked into place),
 * so a CLI command and a server starting together agree on one key. Every
 * instance sharing a database must share this file.
 */
export function loadOrCreateSecretKey(path: string): Buffer {
  const read = (): Buffer => {
    const text = readFileSync(path, 'utf8').trim();
    if (!/^[0-9a-f]{64,}$/i.test(text)) throw new Error(`secret key file ${path} must hold at least 64 hex digits`);
    return Buffer.from(text, 'hex');
  };
  try {
    return read();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600);
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  return read();
}

/** The keys of an instance: from `secretKeyFile`, or `<dataDir>/secret.key` (created on first use). */
export function loadValueKeys(dataDir: string, secretKeyFile?: string): ValueKeys {
  return deriveKeys(loadOrCreateSecretKey(secretKeyFile ?? join(dataDir, 'secret.key')));
}

export type RandomValueRow = Selectable<RandomValueTable>;

/** Where a code stands, for the confirmation pages (issue 5) and the evidence. */
export type CodeState = 'active' | 'expired' | 'superseded' | 'cancelled' | 'spent';

export function codeState(row: RandomValueRow, now: number): CodeState {
  if (row.spent_at !== null) return 'spent';
  if (row.revoked_at !== null) return row.revoked_reason === 'cancelled' ? 'cancelled' : 'superseded';
  if (row.expires_at <= now) return 'expired';
  return 'active';
}

/** Looks codes up by their keyed hash and spends them; the confirmation step builds on this. */
export class RandomValueStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly keys: ValueKeys,
  ) {}

  /** The value a typed or linked code belongs to, or undefined (also for text that cannot be a code). */
  async findByCode(input: string): Promise<RandomValueRow | undefined> {
    const canonical = canonicalCode(input);
    if (canonical === undefined) return undefined;
    return this.db.selectFrom('random_values').selectAll().where('value_hash', '=', hashCode(this.keys, canonical)).executeTakeFirst();
  }

  /**
   * Spends an active value exactly once: true for the one call that spends it,
   * false when it was already spent, revoked or expired. The sealed copies in
   * the outbox are erased with it.
   */
  async spend(valueId: number, now: number): Promise<boolean> {
    return this.db.transaction().execute((trx) => spendValue(trx, valueId, now));
  }
}

/**
 * The conditional update that spends a value: of two concurrent calls one
 * changes the row and the other finds it spent (CONTRACT §6). Emails still
 * waiting with it are not sent; finished ones lose their sealed copies. Call
 * inside the transaction that records what the spending decided.
 */
export async function spendValue(trx: Kysely<Database>, valueId: number, now: number): Promise<boolean> {
  const result = await trx
    .updateTable('random_values')
    .set({ spent_at: now })
    .where('id', '=', valueId)
    .where('spent_at', 'is', null)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) !== 1) return false;
  // Emails still waiting would carry a dead code: they are not sent. One in flight keeps its copy until it ends.
  await cancelPendingOfValue.execute(trx, { valueId, now, lastError: 'validation code already used' });
  await trx.updateTable('outbox').set({ sealed_code: null }).where('random_value_id', '=', valueId).where('state', '!=', 'sending').execute();
  return true;
}

/**
 * Cancels the emails still waiting among those the caller's condition finds (a value's, an order's, a
 * domain's values'), found by that condition's index: the state only as a guard (unindexedState), or
 * a backlog of pending emails would be walked instead.
 */
const cancelPending = (db: Kysely<Database>, p: { now: number; lastError: string }) =>
  db
    .updateTable('outbox')
    .set({ state: 'cancelled', last_error: p.lastError, sealed_code: null, updated_at: p.now })
    .where(unindexedState(dialectOf(db)), '=', 'pending');

/** Exported for test/query-plans.test.ts, which checks the plans. */
export const cancelPendingOfValue = prepared((db, p: { valueId: number; now: number; lastError: string }) =>
  cancelPending(db, p).where('random_value_id', '=', p.valueId),
);

export const cancelPendingOfOrder = prepared((db, p: { orderId: number; now: number; lastError: string }) =>
  cancelPending(db, p).where('order_id', '=', p.orderId),
);

/**
 * Every value of an order that still works stops working (a new value
 * supersedes them, or the order is cancelled); emails still waiting with them
 * are not sent, and finished emails lose their sealed copies. One in flight
 * keeps its copy until it ends. Call inside the transaction that makes the change.
 */
export async function revokeValuesOfOrder(db: Kysely<Database>, orderId: number, reason: 'superseded' | 'cancelled', now: number): Promise<void> {
  await db
    .updateTable('random_values')
    .set({ revoked_at: now, revoked_reason: reason })
    .where('order_id', '=', orderId)
    .where('revoked_at', 'is', null)
    .where('spent_at', 'is', null)
    .execute();
  await cancelPendingOfOrder.execute(db, { orderId, now, lastError: reason === 'cancelled' ? 'order cancelled' : 'superseded by a newer DCV email' });
  await eraseSealedOfOrder.execute(db, { orderId });
}

/**
 * Finished emails of an order lose their sealed copies. No `sealed_code is not null` condition: with
 * statistics that knew no email keeping a code, PostgreSQL read migration 0013's partial index of those
 * emails whole for it instead of the order's few (a helper's plan sweep: 13 ms at 100,000); an order
 * has few emails, so writing a null again costs nothing.
 */
export const eraseSealedOfOrder = prepared((db, p: { orderId: number }) =>
  db.updateTable('outbox').set({ sealed_code: null }).where('order_id', '=', p.orderId).where('state', '!=', 'sending'),
);

/**
 * The values of a domain: its own, and the shared ones that cover it. A union, not `order_domain_id = ? or id
 * in (…)`: SQLite answers that OR with both indexes and a temporary B-tree to sort the rows it merged (about
 * 80 µs on the resend path, issue 20); the union reads the two indexes and the rows by primary key, newest first.
 */
export const valuesOfDomain = (db: Kysely<Database>, domainId: number) =>
  db
    .selectFrom('random_values')
    .select('id')
    .where('order_domain_id', '=', domainId)
    .unionAll(db.selectFrom('random_value_domains').select('random_value_id as id').where('order_domain_id', '=', domainId));

/**
 * An outbox row's value is one of the domain's. On PostgreSQL as `= any(array(…))`: the values are an
 * init plan, read once, and the emails found by their value's index. With `in (…)` and statistics that
 * knew no email keeping a sealed code, PostgreSQL read migration 0013's partial index whole and ran the
 * union again for each of its rows (a helper's plan sweep: 110–130 ms at 100,000 such emails, on every
 * new value). SQLite plans the `in` list by the value's index.
 */
const amongValuesOfDomain = (db: Kysely<Database>, domainId: number) => (eb: ExpressionBuilder<Database, 'outbox'>) =>
  dialectOf(db) === 'postgres'
    ? eb('random_value_id', '=', eb.fn.any(sql<number[]>`array${valuesOfDomain(db, domainId)}`))
    : eb('random_value_id', 'in', valuesOfDomain(db, domainId));

const revokeOfDomain = prepared((db, p: { domainId: number; now: number; reason: string }) =>
  db
    .updateTable('random_values')
    .set({ revoked_at: p.now, revoked_reason: p.reason })
    .where('id', 'in', valuesOfDomain(db, p.domainId))
    .where('revoked_at', 'is', null)
    .where('spent_at', 'is', null),
);

export const cancelPendingOfDomain = prepared((db, p: { domainId: number; now: number; lastError: string }) =>
  cancelPending(db, p).where(amongValuesOfDomain(db, p.domainId)),
);

export const eraseSealedOfDomain = prepared((db, p: { domainId: number }) =>
  db
    .updateTable('outbox')
    .set({ sealed_code: null })
    .where(amongValuesOfDomain(db, p.domainId))
    .where('state', '!=', 'sending')
    .where('sealed_code', 'is not', null),
);

/**
 * Every value of one domain of an order that still works stops working (a
 * new value supersedes them, or the domain left email DCV); emails still
 * waiting with them are not sent. Call inside the transaction that makes the change.
 */
export async function revokeValuesOfDomain(db: Kysely<Database>, domainId: number, reason: 'superseded' | 'method-changed', now: number): Promise<void> {
  // The domain's own values and the shared ones that cover it (a shared email's code stops working for every domain it lists).
  await revokeOfDomain.execute(db, { domainId, now, reason });
  await cancelPendingOfDomain.execute(db, { domainId, now, lastError: reason === 'superseded' ? 'superseded by a newer DCV email' : 'the domain left email DCV' });
  await eraseSealedOfDomain.execute(db, { domainId });
}

/**
 * One signing secret per webhook receiver (issue 14, CONTRACT §6): each
 * account with its own webhook URL has secrets that dcvd generates (256 bits
 * from the CSPRNG), shows once, and keeps only sealed (AES-256-GCM under the
 * instance's secret key, the receiver id as additional authenticated data, so
 * a sealed secret cannot be moved to another receiver). The global receiver is
 * the operator's own and keeps --webhook-secret / --webhook-secret-file; no
 * account's event is ever signed with it.
 *
 * Rotation: the new secret becomes current and the previous one keeps signing
 * until the end of the overlap, so events carry one signature per valid secret
 * while the receiver switches over.
 */
import type { Kysely } from 'kysely';
import type { RandomSource } from '../deps.ts';
import type { Database } from '../store/schema.ts';
import { openSealedCode, sealCode, type ValueKeys } from '../orders/random-values.ts';

export const GLOBAL_RECEIVER = 'global';
export const WEBHOOK_SECRET_BYTES = 32;

/** The receiver id of an account's own webhook URL. */
export const accountReceiver = (accountId: number): string => `account:${accountId}`;

/** The account of an account's receiver id; undefined for the global receiver (or none). */
export const accountOfReceiver = (receiver: string | null): number | undefined => {
  const id = receiver === null ? undefined : /^account:(\d+)$/.exec(receiver)?.[1];
  return id === undefined ? undefined : Number(id);
};

/** Additional authenticated data of a sealed secret: never equal to a code's value hash (hex). */
const aad = (receiver: string) => `webhook-secret:${receiver}`;

/** A new secret: 256 bits from the CSPRNG, `whsec_` + base64url. */
export function newWebhookSecret(random: RandomSource): string {
  return `whsec_${Buffer.from(random.bytes(WEBHOOK_SECRET_BYTES)).toString('base64url')}`;
}

export interface IssuedSecret {
  /** Shown once; only its sealed form is stored. */
  secret: string;
  /** When the previous secret stops signing (null: there was none, or it stopped at once). */
  previousExpiresAt: number | null;
}

/**
 * Makes a new current secret for `receiver`; the current one, if any, keeps
 * signing for `overlapMs` (0: it stops at once). Secrets past their end are
 * erased. With `onlyIfNone`, nothing is made (undefined) when the receiver
 * already has a valid secret. Concurrent calls for one account are serialized
 * on its accounts row, so there is never more than one current secret.
 */
export async function issueWebhookSecret(
  db: Kysely<Database>,
  deps: { keys: ValueKeys; random: RandomSource },
  receiver: string,
  now: number,
  overlapMs = 0,
  opts: { onlyIfNone?: boolean } = {},
): Promise<IssuedSecret | undefined> {
  const secret = newWebhookSecret(deps.random);
  const run = async (trx: Kysely<Database>): Promise<IssuedSecret | undefined> => {
    // A row lock on PostgreSQL (SQLite serializes writers): the account's row, touched without a change.
    const accountId = accountOfReceiver(receiver);
    if (accountId !== undefined) await trx.updateTable('accounts').set((eb) => ({ updated_at: eb.ref('updated_at') })).where('id', '=', accountId).execute();
    if (opts.onlyIfNone && (await hasWebhookSecret(trx, receiver, now))) return undefined;
    const end = now + Math.max(0, overlapMs);
    const current = await trx.updateTable('webhook_secrets').set({ expires_at: end }).where('receiver', '=', receiver).where('expires_at', 'is', null).executeTakeFirst();
    // An older secret still in its overlap ends no later than the one just replaced.
    await trx.updateTable('webhook_secrets').set({ expires_at: end }).where('receiver', '=', receiver).where('expires_at', '>', end).execute();
    await trx.deleteFrom('webhook_secrets').where('receiver', '=', receiver).where('expires_at', '<=', now).execute();
    await trx
      .insertInto('webhook_secrets')
      .values({ receiver, sealed_secret: sealCode(deps.keys, secret, aad(receiver), deps.random), created_at: now, expires_at: null })
      .execute();
    return { secret, previousExpiresAt: Number(current.numUpdatedRows) > 0 && overlapMs > 0 ? end : null };
  };
  return db.isTransaction ? run(db) : db.transaction().execute(run);
}

/** Whether `receiver` has a secret that signs at `now`. */
export async function hasWebhookSecret(db: Kysely<Database>, receiver: string, now: number): Promise<boolean> {
  const row = await db
    .selectFrom('webhook_secrets')
    .select('id')
    .where('receiver', '=', receiver)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .executeTakeFirst();
  return row !== undefined;
}

/** The secrets that sign `receiver`'s events at `now`, newest first (two during a rotation's overlap). */
export async function validWebhookSecrets(db: Kysely<Database>, keys: ValueKeys, receiver: string, now: number): Promise<string[]> {
  const rows = await db
    .selectFrom('webhook_secrets')
    .select('sealed_secret')
    .where('receiver', '=', receiver)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .orderBy('id', 'desc')
    .execute();
  return rows.map((r) => openSealedCode(keys, r.sealed_secret, aad(receiver)));
}

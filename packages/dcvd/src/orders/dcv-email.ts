/**
 * Queueing one DCV email (CONTRACT §5), shared by ResendDCVEmail and
 * `dcvd order create --dcv-email`: the order's new DCV state, the random
 * value and the outbox row are written in one transaction (a transactional
 * outbox), and the minimum resend interval is enforced by that same write.
 */
import { sql, type Insertable, type Kysely } from 'kysely';
import type { RandomSource } from '../deps.ts';
import type { Database, OutboxTable, RandomValueTable } from '../store/schema.ts';
import { columns, prepared } from '../store/prepared.ts';
import type { DcvRecipient } from '../registry/offer-window.ts';
import type { OrderDomainRow, OrderRow } from './orders.ts';
import { hashCode, newValidationCode, revokeValuesOfDomain, sealCode, valuesOfDomain, type ValueKeys } from './random-values.ts';
import { writeTransaction } from '../store/database.ts';

/** The order's current address, as recorded when it was set. */
export function currentRecipient(order: Pick<OrderRow, 'dcv_email_address' | 'dcv_adn' | 'dcv_address_source' | 'dcv_dns_detail'>): DcvRecipient | undefined {
  if (order.dcv_email_address === null || order.dcv_adn === null) return undefined;
  return {
    address: order.dcv_email_address,
    adn: order.dcv_adn,
    source: order.dcv_address_source ?? 'constructed',
    dnsDetail: order.dcv_dns_detail,
  };
}

/** What queueing an email reads of a domain of the order. */
export type DomainRef = Pick<OrderDomainRow, 'id' | 'position'>;

export interface DcvEmailSettings {
  keys: ValueKeys;
  random: RandomSource;
  /** How long a new random value stays valid (at most 30 days). */
  randomValueTtlMs: number;
  /** Minimum time between two DCV emails of one order. */
  resendIntervalMs: number;
  /** Right side of the Message-IDs: the domain of the sender (--mail-from, or the host of --public-url); "dcvd" when absent. */
  messageIdDomain?: string;
}

export interface QueueRequest {
  order: OrderRow;
  /** The domain the email validates (its id and position are all the queueing reads); the order's first domain when omitted. */
  domain?: DomainRef;
  /**
   * Further domains of the order the same email validates with the same random value (BR
   * 3.2.2.4.4: the recipient is an address of an Authorization Domain Name of each); see `shareEmails`.
   */
  alsoCovers?: readonly DomainRef[];
  recipient: DcvRecipient;
  /** dcv_templates row id, or null for the built-in default. */
  templateRef: number | null;
  now: number;
  /**
   * Queue only a resend of the email in its entirety (same recipient and content, value still
   * valid): a DNS-found address sent to without a new corroboration (src/mpic/corroborate.ts).
   */
  requireReuse?: boolean;
  /** The mpic_evidence rows that corroborated the recipient (one per domain): linked to the value in the same transaction. */
  corroborationId?: number | null | readonly (number | null)[];
  /**
   * The order and its domains were inserted in this same transaction (AutoApplyOrder): no other transaction
   * can see them, and none of the domains has a value yet, so there is no live value to reuse and none to
   * revoke (four statements fewer per email). Only with `domain`; never with `requireReuse`.
   */
  newOrder?: boolean;
}

export type QueueResult =
  | { queued: true; messageId: string; randomValueId: number; reusedValue: boolean }
  | { queued: false; reason: 'not-awaiting-email' | 'too-soon' | 'needs-corroboration' };

/** Thrown inside the transaction to roll back a requireReuse queueing whose value is no longer reusable. */
class NeedsCorroboration extends Error {}

// The statements of every queued email, precompiled (src/store/prepared.ts).

/**
 * Takes the order's row lock first (CONTRACT: always `orders` before
 * `random_values`), changing nothing: the statement only locks.
 */
const lockOrder = prepared((db, p: { id: number }) =>
  db
    .updateTable('orders')
    .set((eb) => ({ updated_at: eb.ref('updated_at') }))
    .where('id', '=', p.id)
    // A cancelled, declined or wholly validated order sends no email, whatever its domains say.
    .where('dcv_status', '=', 'awaiting'),
);

// A type, not an interface: prepared() takes inputs with an index signature.
type SentTo = {
  address: string;
  adn: string;
  source: string;
  dnsDetail: string | null;
  now: number;
};

/** What an email to a recipient records: on the domain's row, and on the order row that mirrors its first domain. */
const sentTo = (p: SentTo) => ({
  dcv_email_address: p.address,
  dcv_adn: p.adn,
  dcv_address_source: p.source,
  dcv_dns_detail: p.dnsDetail,
  last_dcv_email_at: p.now,
  updated_at: p.now,
});

/** The domain's new DCV state; its conditions make "awaiting email DCV" and the interval race-free. */
const claimDomain = prepared(
  (db, p: SentTo & { id: number; lastBefore: number }) =>
    db
      .updateTable('order_domains')
      .set(sentTo(p))
      .where('id', '=', p.id)
      .where('dcv_status', '=', 'awaiting')
      .where('dcv_method', '=', 'email')
      .where((eb) => eb.or([eb('last_dcv_email_at', 'is', null), eb('last_dcv_email_at', '<=', p.lastBefore)])),
);

/**
 * The order row mirrors its first domain's address (views and older readers of `orders`). An email that
 * covers the first domain takes the order's lock with this write instead of `lockOrder` (one statement fewer
 * per queued email); when a claim then fails, `queueDcvEmailIn` refuses and its caller rolls the transaction
 * back (`queueDcvEmail`, every caller of `queueEmailsIn`), which undoes the mirror.
 */
const lockAndMirrorOrder = prepared(
  (db, p: SentTo & { id: number }) =>
    db
      .updateTable('orders')
      .set(sentTo(p))
      .where('id', '=', p.id)
      .where('dcv_status', '=', 'awaiting'),
);

/** The domains of an order, first (the order's own domain) first. */
export const domainsOfOrder = prepared((db, p: { orderId: number }) =>
  db.selectFrom('order_domains').selectAll().where('order_id', '=', p.orderId).orderBy('position'),
);

/**
 * The column `shared` of a select over a value: how many domains it covers by `random_value_domains` (0 for a
 * one-domain value, nearly every one), so that their list is read only when there are any (`sharesDomains`).
 */
export function sharedDomainCount(valueId: 'random_values.id' | 'rv.id') {
  return sql<number | string>`(select count(*) from random_value_domains as rvd where rvd.random_value_id = ${sql.ref(valueId)})`.as('shared');
}

/** Whether a value read with `sharedDomainCount` covers shared domains (a PostgreSQL count may come as a string: `Number`). */
export const sharesDomains = (row: { shared: unknown }): boolean => Number(row.shared) > 0;

/**
 * The domain's newest value that still works, if any (its own, or a shared one that covers it), with what a
 * reuse needs in the same statement: how many domains it shares (0 for a one-domain value) and the sealed
 * code its newest email kept (three statements before issue 20).
 */
export const liveValue = prepared((db, p: { domainId: number }) =>
  db
    .selectFrom('random_values')
    .select(['id', 'recipient', 'adn', 'template_ref', 'expires_at', 'order_domain_id'])
    .select((eb) => [
      sharedDomainCount('random_values.id'),
      eb
        .selectFrom('outbox')
        .select('outbox.sealed_code')
        .whereRef('outbox.random_value_id', '=', 'random_values.id')
        .where('outbox.sealed_code', 'is not', null)
        .orderBy('outbox.id', 'desc')
        .limit(sql.lit(1))
        .as('sealed_code'),
    ])
    .where('id', 'in', valuesOfDomain(db, p.domainId))
    .where('revoked_at', 'is', null)
    .where('spent_at', 'is', null)
    .orderBy('id', 'desc')
    // Literal limits: SQLite plans `limit ?` for any count (a bound limit took 3 times as long here).
    .limit(sql.lit(1)),
);

type NewValue = Required<Omit<Insertable<RandomValueTable>, 'id'>>;
const VALUE_COLUMNS = [
  'order_id', 'value_hash', 'recipient', 'adn', 'address_source', 'dns_detail', 'template_ref',
  'created_at', 'expires_at', 'revoked_at', 'revoked_reason', 'spent_at', 'order_domain_id',
] as const satisfies readonly (keyof NewValue)[];
const insertValue = prepared((db, p: NewValue) => db.insertInto('random_values').values(columns(p, VALUE_COLUMNS)).returning('id'));

type NewEmail = Required<Omit<Insertable<OutboxTable>, 'id'>>;
const EMAIL_COLUMNS = [
  'message_id', 'order_id', 'random_value_id', 'recipient', 'state', 'attempts', 'next_attempt_at', 'lease_until',
  'claim_token', 'sealed_code', 'mail_from', 'subject', 'last_error', 'response', 'created_at', 'updated_at', 'delivered_at',
] as const satisfies readonly (keyof NewEmail)[];
const insertEmail = prepared((db, p: NewEmail) => db.insertInto('outbox').values(columns(p, EMAIL_COLUMNS)));

/** The order_domains ids a value validates: its shared domains, else its own one. */
export async function coveredDomainIds(db: Kysely<Database>, value: { id: number; order_domain_id: number | null }): Promise<number[]> {
  const shared = await sharedDomainsOf.rows(db, { valueId: value.id });
  if (shared.length > 0) return shared.map((r) => r.order_domain_id);
  return value.order_domain_id === null ? [] : [value.order_domain_id];
}

/** The names and states of the domains a shared value covers, first position first; empty for a one-domain value. */
export function sharedDomainsOfValue(db: Kysely<Database>, valueId: number): Promise<{ domain: string; dcv_status: string }[]> {
  return sharedDomainStates.rows(db, { valueId });
}

const sharedDomainStates = prepared((db, p: { valueId: number }) =>
  db
    .selectFrom('random_value_domains as rvd')
    .innerJoin('order_domains as od', 'od.id', 'rvd.order_domain_id')
    .select(['od.domain', 'od.dcv_status'])
    .where('rvd.random_value_id', '=', p.valueId)
    .orderBy('od.position'),
);

const sharedDomainsOf = prepared((db, p: { valueId: number }) =>
  db.selectFrom('random_value_domains').select('order_domain_id').where('random_value_id', '=', p.valueId).orderBy('order_domain_id'),
);

/**
 * BR 3.2.2.4.4 (and .13/.14 for DNS contacts): one email MAY confirm several
 * FQDNs when its recipient is an address of an Authorization Domain Name of
 * each. Groups one operation's emails by recipient: the same address, at the
 * same ADN, found the same way (and, for a DNS contact, by the same DNS
 * answer) is one email; the first domain of a group is the value's own.
 * Every recipient here already passed the 24-hour rule for its domain.
 */
export function shareEmails<T extends { domain: OrderDomainRow; recipient: DcvRecipient }>(plan: readonly T[]): T[][] {
  const groups = new Map<string, T[]>();
  for (const item of plan) {
    const r = item.recipient;
    const key = JSON.stringify([r.address.toLowerCase(), r.adn, r.source, r.dnsDetail]);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return [...groups.values()];
}

/** One domain's email of an operation's plan, and the MPIC evidence of its recipient. */
export interface PlannedEmail {
  domain: OrderDomainRow;
  recipient: DcvRecipient;
  corroborationId?: number | null;
}

/**
 * Queues an operation's emails inside the caller's transaction, one per
 * recipient (`shareEmails`). `settingsOf` may set a group's settings (a
 * corrected address is not a resend). The number of emails queued, or the
 * first refusal: the caller rolls its transaction back then.
 */
export async function queueEmailsIn(
  trx: Kysely<Database>,
  settings: DcvEmailSettings,
  req: {
    order: OrderRow;
    plan: readonly PlannedEmail[];
    templateRef: number | null;
    now: number;
    settingsOf?: (group: readonly PlannedEmail[]) => DcvEmailSettings;
    /** The order and its domains were inserted in this transaction (`QueueRequest.newOrder`). */
    newOrder?: boolean;
  },
): Promise<{ queued: number } | { refused: Extract<QueueResult, { queued: false }>['reason'] }> {
  const groups = shareEmails(req.plan);
  for (const group of groups) {
    const [first, ...rest] = group;
    const result = await queueDcvEmailIn(trx, req.settingsOf?.(group) ?? settings, {
      order: req.order,
      domain: first!.domain,
      alsoCovers: rest.map((g) => g.domain),
      recipient: first!.recipient,
      templateRef: req.templateRef,
      now: req.now,
      corroborationId: group.map((g) => g.corroborationId ?? null),
      ...(req.newOrder ? { newOrder: true } : {}),
    });
    if (!result.queued) return { refused: result.reason };
  }
  return { queued: groups.length };
}

/** A Message-ID that is also the email's idempotency key. */
function newMessageId(random: RandomSource, domain = 'dcvd'): string {
  return `<${random.bytes(16).toString('hex')}@${domain}>`;
}

/**
 * BR 3.2.2.4.4/.13/.14: the domain's live value may be reused only when recipient and content are
 * unchanged and it has not expired; then its id and the sealed code its earlier email kept.
 */
export async function reusableValue(
  db: Kysely<Database>,
  orderId: number,
  recipient: Pick<DcvRecipient, 'address' | 'adn'>,
  templateRef: number | null,
  now: number,
  /** The order's domain the email is for; its first domain when omitted. */
  domainId?: number,
  /** Every further domain the email covers: the live value must cover exactly these with the first (same content). */
  alsoCovers: readonly { id: number }[] = [],
): Promise<{ valueId: number; sealed: string } | undefined> {
  const id = domainId ?? (await domainsOfOrder.first(db, { orderId }))?.id;
  if (id === undefined) return undefined;
  const live = await liveValue.first(db, { domainId: id });
  if (!live || live.expires_at <= now || live.recipient !== recipient.address || live.adn !== recipient.adn || live.template_ref !== templateRef) return undefined;
  // A one-domain value (no shared domains) covers its own domain: no further read.
  const covered = sharesDomains(live) ? await coveredDomainIds(db, live) : live.order_domain_id === null ? [] : [live.order_domain_id];
  const wanted = [id, ...alsoCovers.map((d) => d.id)];
  if (covered.length !== wanted.length || !wanted.every((w) => covered.includes(w))) return undefined;
  return live.sealed_code ? { valueId: live.id, sealed: live.sealed_code } : undefined;
}

const linkCorroboration = prepared((db, p: { id: number; orderId: number; valueId: number }) =>
  db.updateTable('mpic_evidence').set({ order_id: p.orderId, random_value_id: p.valueId }).where('id', '=', p.id).where('random_value_id', 'is', null),
);

/** Thrown inside the transaction to roll back a refused queueing (`queueDcvEmailIn` may have written before it refused). */
class Refused extends Error {
  constructor(readonly result: Extract<QueueResult, { queued: false }>) {
    super(result.reason);
  }
}

export async function queueDcvEmail(db: Kysely<Database>, settings: DcvEmailSettings, req: QueueRequest): Promise<QueueResult> {
  try {
    // On SQLite a member of the group commit; on PostgreSQL deadlocks and serialization failures are retried.
    return await writeTransaction(db, async (trx) => {
      const result = await queueDcvEmailIn(trx, settings, req);
      if (!result.queued) throw new Refused(result);
      return result;
    });
  } catch (err) {
    if (err instanceof NeedsCorroboration) return { queued: false, reason: 'needs-corroboration' };
    if (err instanceof Refused) return err.result;
    throw err;
  }
}

/**
 * Queues one DCV email for one domain of an order inside the caller's
 * transaction (AutoApplyOrder queues its emails with the order it inserts).
 * Without `req.domain`, the order's first domain. A refusal may leave writes
 * behind (the order's mirror written with its lock, or with `req.alsoCovers` the
 * domains claimed before the refused one), so the caller rolls its transaction
 * back on any refusal (`queueDcvEmail` and every caller of `queueEmailsIn` do).
 */
export async function queueDcvEmailIn(trx: Kysely<Database>, settings: DcvEmailSettings, req: QueueRequest): Promise<QueueResult> {
  const { order, recipient, templateRef, now } = req;
  // Skipping the reuse and the revocation is right only for domains this transaction inserted.
  if (req.newOrder && (req.domain === undefined || req.requireReuse)) throw new Error('newOrder needs the new domain and excludes requireReuse');
  const sent: SentTo = { address: recipient.address, adn: recipient.adn, source: recipient.source, dnsDetail: recipient.dnsDetail, now };
  // The domain is read without a lock (its id and position never change), so the lock below is still the first one taken.
  const domain = req.domain ?? (await domainsOfOrder.first(trx, { orderId: order.id }));
  if (!domain) return { queued: false, reason: 'not-awaiting-email' };
  const also = req.alsoCovers ?? [];
  // Lock order first: `orders`, then the domain, then `random_values` and `outbox`. An email that covers the
  // first domain writes the order's mirror with the lock; a refused claim below rolls it back with the rest.
  // A new order, inserted in this transaction, is seen by no other one: it needs no lock.
  const mirrored = [domain, ...also].some((d) => d.position === 1);
  const locked = mirrored ? await lockAndMirrorOrder.affected(trx, { ...sent, id: order.id }) : req.newOrder ? 1 : await lockOrder.affected(trx, { id: order.id });
  if (locked !== 1) return { queued: false, reason: 'not-awaiting-email' };
  // Every domain the email covers is claimed; a refusal of one rolls the caller's transaction back.
  for (const d of [domain, ...also]) {
    const claimed = await claimDomain.affected(trx, { ...sent, id: d.id, lastBefore: now - settings.resendIntervalMs });
    if (claimed !== 1) {
      const fresh = await trx.selectFrom('order_domains').select(['dcv_status', 'dcv_method']).where('id', '=', d.id).executeTakeFirst();
      return { queued: false, reason: fresh?.dcv_status === 'awaiting' && fresh.dcv_method === 'email' ? 'too-soon' : 'not-awaiting-email' };
    }
  }

  // BR 3.2.2.4.4: the value may be reused only when recipient and content (the domains it lists) are unchanged and it has not expired.
  const reusable = req.newOrder ? undefined : await reusableValue(trx, order.id, recipient, templateRef, now, domain.id, also);
  if (!reusable && req.requireReuse) throw new NeedsCorroboration();
  let valueId = reusable?.valueId;
  let sealed = reusable?.sealed;
  const reusedValue = valueId !== undefined;

  if (valueId === undefined || sealed === undefined) {
    // A new value: every older one of the domains stops working (a new order's domains have none).
    if (!req.newOrder) for (const d of [domain, ...also]) await revokeValuesOfDomain(trx, d.id, 'superseded', now);

    const code = newValidationCode(settings.random);
    const valueHash = hashCode(settings.keys, code);
    const inserted = await insertValue.first(trx, {
      order_id: order.id,
      value_hash: valueHash,
      recipient: recipient.address,
      adn: recipient.adn,
      address_source: recipient.source,
      dns_detail: recipient.dnsDetail,
      template_ref: templateRef,
      created_at: now,
      expires_at: now + settings.randomValueTtlMs,
      revoked_at: null,
      revoked_reason: null,
      spent_at: null,
      order_domain_id: domain.id,
    });
    if (!inserted) throw new Error('inserting a random value returned no id');
    valueId = inserted.id;
    sealed = sealCode(settings.keys, code, valueHash, settings.random);
    if (also.length > 0) {
      await trx.insertInto('random_value_domains').values([domain, ...also].map((d) => ({ random_value_id: valueId!, order_domain_id: d.id }))).execute();
    }
  }
  const corroborations = Array.isArray(req.corroborationId) ? req.corroborationId : [req.corroborationId];
  for (const id of corroborations as (number | null | undefined)[]) {
    if (id != null) await linkCorroboration.execute(trx, { id, orderId: order.id, valueId });
  }

  const messageId = newMessageId(settings.random, settings.messageIdDomain);
  await insertEmail.execute(trx, {
    message_id: messageId,
    order_id: order.id,
    random_value_id: valueId,
    recipient: recipient.address,
    state: 'pending',
    attempts: 0,
    next_attempt_at: now,
    lease_until: null,
    claim_token: null,
    sealed_code: sealed,
    mail_from: null,
    subject: null,
    last_error: null,
    response: null,
    created_at: now,
    updated_at: now,
    delivered_at: null,
  });
  return { queued: true, messageId, randomValueId: valueId, reusedValue };
}

/**
 * The confirmation step (CONTRACT §6): a validation code is looked up (which
 * changes nothing), then approved or declined, which spends the code, decides
 * the order and writes the evidence in one transaction. Unknown codes count
 * against the source IP, in the database, so every instance counts together.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../deps.ts';
import type { Database } from '../store/schema.ts';
import { codeState, RandomValueStore, spendValue, type CodeState, type ValueKeys } from './random-values.ts';
import { coveredDomainIds } from './dcv-email.ts';
import { FailureCounter, untilNotBusy } from '../accounts/failure-counter.ts';
import { retryTransaction } from '../store/database.ts';
import { emailDcvRefusalOfAny, emailValidationUsable, type EmailDcvPolicy, type EmailDcvRefusal } from './email-dcv-policy.ts';
import { BR_VERSION, DEFAULT_CODE_GUESS_POLICY, type CodeGuessPolicy } from './confirmation-policy.ts';
import { visibleText } from '../text.ts';

export { BR_VERSION, DEFAULT_CODE_GUESS_POLICY, type CodeGuessPolicy } from './confirmation-policy.ts';

/** The BR methods' names, by section. */
export const BR_METHOD_NAMES: Readonly<Record<string, string>> = {
  '3.2.2.4.4': 'Email to a Constructed Address',
  '3.2.2.4.13': 'Email to DNS CAA Contact',
  '3.2.2.4.14': 'Email to DNS TXT Contact',
};

/** The BR method by how the address was found: constructed (3.2.2.4.4), DNS CAA (3.2.2.4.13), DNS TXT (3.2.2.4.14). */
export const BR_SECTIONS: Readonly<Record<string, string>> = {
  constructed: '3.2.2.4.4',
  'dns-caa': '3.2.2.4.13',
  'dns-txt': '3.2.2.4.14',
};


export type Decision = 'approve' | 'decline';

/** What a code opens: the order's facts for an active one, only its state otherwise. */
export type CodeLookup =
  | { state: 'active'; valueId: number; orderNumber: number; domain: string; adn: string; recipient: string; expiresAt: number }
  | { state: Exclude<CodeState, 'active'> | 'unknown' }
  /** Too many unknown codes from the source: blocked until then (ms). */
  | { state: 'blocked'; until: number }
  /** An active code the email DCV policy no longer lets confirm (cut-off passed, domain blocklisted). */
  | { state: 'refused'; refusal: EmailDcvRefusal };

export type DecisionOutcome = 'approved' | 'declined' | Exclude<CodeLookup['state'], 'active'>;

export interface DecidedEvent {
  decision: 'approved' | 'declined';
  orderId: number;
  accountId: number;
  orderNumber: number;
  baseOrderNumber: number;
  /** The domain this event decided (one per event; a code covering several domains makes one event each). */
  domain: string;
  /** The order's own domain (its first), and its DCV status after the decision: `awaiting` while other domains of a multi-domain order still are. */
  orderDomain: string;
  orderDcvStatus: 'validated' | 'declined' | 'awaiting';
  evidenceId: number;
  decidedAt: number;
}

export interface ConfirmationDeps {
  db: Kysely<Database>;
  clock: Clock;
  keys: ValueKeys;
  policy: CodeGuessPolicy;
  /** Guesses from IPv6 sources count by their network of this many bits. */
  ipv6Prefix?: number;
  /** Cut-off and blocklist of email DCV: a refused order's code cannot approve (CONTRACT §6). */
  emailPolicy?: EmailDcvPolicy;
  /** The BR version the evidence names; BR_VERSION when absent. */
  brVersion?: string;
  /** Called inside the deciding transaction (the webhook outbox row is written there). */
  onDecided?: (trx: Transaction<Database>, event: DecidedEvent) => Promise<void>;
  /** Called after that transaction committed (wakes the webhook worker). */
  afterDecided?: () => void;
}

/** Thrown inside the transaction to undo a spend whose order could not be decided. */
class NotDecided extends Error {}

export class ConfirmationService {
  private readonly values: RandomValueStore;
  /** Unknown codes per source IP; the block lasts one window. */
  private readonly failures: FailureCounter;

  constructor(private readonly deps: ConfirmationDeps) {
    this.values = new RandomValueStore(deps.db, deps.keys);
    this.failures = new FailureCounter(deps.db, 'code_failures', { limit: deps.policy.failureLimit, windowMs: deps.policy.windowMs, blockMs: deps.policy.windowMs }, deps.ipv6Prefix);
  }

  /** Looks a code up for the page that shows it (GET): changes nothing but the guessing counter. */
  async lookup(input: string, ip: string): Promise<CodeLookup> {
    const now = this.deps.clock.now();
    const until = await this.failures.blockEnd(ip, now);
    if (until !== undefined) return { state: 'blocked', until };
    // A guess is reserved before the lookup (one atomic upsert), so that concurrent guesses cannot
    // all pass the check above: at most `failureLimit` lookups per source per window (issue 14).
    const reserved = await untilNotBusy(() => this.failures.reserve(ip, this.deps.clock.now()));
    if (reserved !== 'ok') {
      // Blocked meanwhile; or the limit stayed taken by guesses in flight (`busy`): wait a window.
      const later = this.deps.clock.now();
      return { state: 'blocked', until: (await this.failures.blockEnd(ip, later)) ?? later + this.deps.policy.windowMs };
    }
    let row: Awaited<ReturnType<RandomValueStore['findByCode']>>;
    try {
      row = await this.values.findByCode(input);
    } catch (err) {
      await this.failures.release(ip).catch(() => undefined);
      throw err;
    }
    if (!row) {
      await this.failures.fail(ip, this.deps.clock.now());
      return { state: 'unknown' };
    }
    await this.failures.release(ip);
    return this.describe(row, now);
  }

  /** What the code of `row` opens at `now`. */
  private async describe(row: NonNullable<Awaited<ReturnType<RandomValueStore['findByCode']>>>, now: number): Promise<CodeLookup> {
    const order = await this.deps.db.selectFrom('orders').select(['order_number', 'domain', 'dcv_status']).where('id', '=', row.order_id).executeTakeFirst();
    const state = codeState(row, now);
    if (!order) return { state: 'unknown' };
    // The code validates one domain of the order, or several when its email covered them (CONTRACT §12,
    // BR 3.2.2.4.4): those domains' names and states count.
    if (row.order_domain_id !== null) {
      const ids = await coveredDomainIds(this.deps.db, row);
      const domains = await this.deps.db.selectFrom('order_domains').select(['domain', 'dcv_status']).where('id', 'in', ids).orderBy('position').execute();
      if (domains.length === 0) return { state: 'unknown' };
      if (state === 'active' && order.dcv_status === 'awaiting' && domains.every((d) => d.dcv_status !== 'awaiting')) return { state: 'spent' };
      order.domain = domains.map((d) => d.domain).join(', ');
    }
    if (state !== 'active') return { state };
    // An active value of an order that is no longer awaiting cannot decide it.
    if (order.dcv_status === 'cancelled') return { state: 'cancelled' };
    if (order.dcv_status !== 'awaiting') return { state: 'spent' };
    const refusal = this.deps.emailPolicy && emailDcvRefusalOfAny(this.deps.emailPolicy, order.domain.split(', '), now);
    if (refusal) return { state: 'refused', refusal };
    return { state, valueId: row.id, orderNumber: order.order_number, domain: order.domain, adn: row.adn, recipient: row.recipient, expiresAt: row.expires_at };
  }

  /**
   * Looks up a code that dcvd itself holds (the sandbox's auto-approval decides the codes it captured):
   * not a guess, so neither counted nor refused by the guessing limit of its source.
   */
  private async lookupKnown(input: string): Promise<CodeLookup> {
    const now = this.deps.clock.now();
    const row = await this.values.findByCode(input);
    return row ? this.describe(row, now) : { state: 'unknown' };
  }

  /**
   * Approves or declines with a code: the code is spent, the order decided and
   * the evidence written atomically; of two concurrent calls one wins and the
   * other sees `spent`. The code counts as a guess of `who.ip` unless `guess` is false (a code dcvd
   * holds itself, not one a client sent).
   */
  async decide(
    input: string,
    decision: Decision,
    who: { ip: string; userAgent: string | undefined },
    { guess = true }: { guess?: boolean } = {},
  ): Promise<{ outcome: DecisionOutcome; lookup: CodeLookup }> {
    const found = guess ? await this.lookup(input, who.ip) : await this.lookupKnown(input);
    if (found.state !== 'active') return { outcome: found.state, lookup: found };
    const { db, clock, onDecided } = this.deps;
    const now = clock.now();
    const status = decision === 'approve' ? 'validated' : 'declined';
    try {
      // Lock order (store/database.ts): the orders row first, then the order's domain row, then the
      // value; a spend that fails undoes it all.
      await retryTransaction(() => db.transaction().execute(async (trx) => {
        const order = await trx
          .updateTable('orders')
          .set({ updated_at: now })
          .where('order_number', '=', found.orderNumber)
          .where('dcv_status', '=', 'awaiting')
          .returningAll()
          .executeTakeFirst();
        if (!order) throw new NotDecided();
        // A plain read: which domain the code is for (the value is locked by its spend below).
        const value = await trx.selectFrom('random_values').selectAll().where('id', '=', found.valueId).executeTakeFirstOrThrow();
        // The code's domains (one, or every domain its email covered) are decided; the order is declined
        // with them, or validated once every domain is.
        let orderStatus: 'validated' | 'declined' | 'awaiting' = status;
        let decidedDomains = [found.domain];
        if (value.order_domain_id !== null) {
          const ids = await coveredDomainIds(trx, value);
          const decided = await trx
            .updateTable('order_domains')
            .set({ dcv_status: status, dcv_decided_at: now, updated_at: now })
            .where('id', 'in', ids)
            .where('dcv_status', '=', 'awaiting')
            .returning(['domain', 'position'])
            .execute();
          if (decided.length === 0) throw new NotDecided();
          decidedDomains = decided.sort((a, b) => a.position - b.position).map((d) => d.domain);
          if (status === 'validated') {
            const open = await trx.selectFrom('order_domains').select('id').where('order_id', '=', value.order_id).where('dcv_status', '!=', 'validated').limit(1).executeTakeFirst();
            if (open) orderStatus = 'awaiting';
          }
        }
        if (!(await spendValue(trx, found.valueId, now))) throw new NotDecided();
        if (orderStatus !== 'awaiting') {
          await trx.updateTable('orders').set({ dcv_status: orderStatus, dcv_decided_at: now }).where('id', '=', order.id).execute();
        }
        const sent = await trx
          .selectFrom('outbox')
          .select(['message_id', 'delivered_at'])
          .where('random_value_id', '=', value.id)
          .where('state', '=', 'delivered')
          .orderBy('delivered_at', 'desc')
          .limit(1)
          .executeTakeFirst();
        // One evidence row per decided domain, each naming the (shared) random value.
        for (const domain of decidedDomains) {
        const evidence = await trx
          .insertInto('dcv_evidence')
          .values({
            order_id: order.id,
            random_value_id: value.id,
            decision: decision === 'approve' ? 'approved' : 'declined',
            br_section: BR_SECTIONS[value.address_source] ?? BR_SECTIONS.constructed!,
            br_version: this.deps.brVersion ?? BR_VERSION,
            domain,
            adn: value.adn,
            recipient: value.recipient,
            address_source: value.address_source,
            dns_detail: value.dns_detail,
            value_hash: value.value_hash,
            value_created_at: value.created_at,
            message_id: sent?.message_id ?? null,
            email_sent_at: sent?.delivered_at ?? null,
            decided_at: now,
            source_ip: who.ip.slice(0, 64),
            // Shown by `dcvd order show` and the internal API: no control or invisible character reaches a terminal.
            user_agent: who.userAgent === undefined ? null : visibleText(who.userAgent.slice(0, 512)),
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        await onDecided?.(trx, {
          decision: decision === 'approve' ? 'approved' : 'declined',
          orderId: order.id,
          accountId: order.account_id,
          orderNumber: order.order_number,
          baseOrderNumber: order.base_order_number,
          domain,
          orderDomain: order.domain,
          orderDcvStatus: orderStatus,
          evidenceId: evidence.id,
          decidedAt: now,
        });
        }
      }));
    } catch (err) {
      if (!(err instanceof NotDecided)) throw err;
      // Someone else decided first (or the order changed): say where the code stands now.
      const again = await this.values.findByCode(input);
      const state = again ? codeState(again, clock.now()) : 'unknown';
      const outcome = state === 'active' || state === 'expired' ? 'spent' : state;
      return { outcome, lookup: { state: outcome } };
    }
    this.deps.afterDecided?.();
    return { outcome: decision === 'approve' ? 'approved' : 'declined', lookup: found };
  }

  /** Deletes counters whose window and block are over. */
  purgeFailures(): Promise<number> {
    return this.failures.purge(this.deps.clock.now());
  }
}

/** A validation's evidence as the operator interface shows it (CONTRACT §6, §9). */
export interface EvidenceView {
  decision: string;
  /** "BR 3.2.2.4.14 Email to DNS TXT Contact, version 2.2.6". */
  method: string;
  brSection: string;
  brVersion: string;
  orderNumber: number;
  domain: string;
  adn: string;
  recipient: string;
  addressSource: string;
  dns: unknown;
  randomValueHash: string;
  randomValueCreatedAt: string;
  emailMessageId: string | null;
  emailSentAt: string | null;
  decidedAt: string;
  sourceIp: string;
  userAgent: string | null;
  /**
   * Whether a certificate may still be issued on this validation now: false
   * for a declined one and, from the email DCV cut-off on, for every one (BR:
   * prior validations with the email methods MUST NOT be used).
   */
  usable: boolean;
  unusableReason: string | null;
  /** The cut-off after which no email validation is usable (--email-dcv-cutoff). */
  emailMethodsUsableUntil: string | null;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** With `policy`, `usable` is judged at `now` against its cut-off; without, only a declined validation is unusable. */
export async function listEvidence(
  db: Kysely<Database>,
  filter: { orderId?: number; domain?: string; limit?: number } = {},
  judge?: { policy: EmailDcvPolicy | undefined; now: number },
): Promise<EvidenceView[]> {
  let q = db.selectFrom('dcv_evidence as e').innerJoin('orders as o', 'o.id', 'e.order_id').selectAll('e').select('o.order_number');
  if (filter.orderId !== undefined) q = q.where('e.order_id', '=', filter.orderId);
  if (filter.domain !== undefined) q = q.where('e.domain', '=', filter.domain);
  const rows = await q.orderBy('e.id', 'desc').limit(filter.limit ?? 100).execute();
  return rows.map((r) => {
    const verdict = judge?.policy ? emailValidationUsable(judge.policy, r.decision, judge.now) : { usable: r.decision === 'approved', reason: r.decision === 'approved' ? null : 'declined' };
    return {
    decision: r.decision,
    method: `BR ${r.br_section} ${BR_METHOD_NAMES[r.br_section] ?? 'email'}, version ${r.br_version}`,
    brSection: r.br_section,
    brVersion: r.br_version,
    orderNumber: r.order_number,
    domain: r.domain,
    adn: r.adn,
    recipient: r.recipient,
    addressSource: r.address_source,
    dns: r.dns_detail === null ? null : (JSON.parse(r.dns_detail) as unknown),
    randomValueHash: r.value_hash,
    randomValueCreatedAt: iso(r.value_created_at)!,
    emailMessageId: r.message_id,
    emailSentAt: iso(r.email_sent_at),
    decidedAt: iso(r.decided_at)!,
    sourceIp: r.source_ip,
    // Rows written before 2026-12-04 kept the header raw: cleaned as they are shown, as new rows are stored.
    userAgent: r.user_agent === null ? null : visibleText(r.user_agent),
    usable: verdict.usable,
    unusableReason: verdict.reason,
    emailMethodsUsableUntil: judge?.policy ? iso(judge.policy.cutoff) : null,
    };
  });
}

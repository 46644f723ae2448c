/**
 * The outbox worker (CONTRACT §5, §10): delivers queued DCV emails in the
 * background with retries and exponential backoff, records each outcome, and
 * never sends one email twice on purpose.
 *
 * States: `pending` (waiting for its next attempt) → `sending` (claimed by a
 * worker, under a lease) → `delivered` | `failed` (permanent error or retry
 * limit) | back to `pending` (transient error). `cancelled`: not sent because
 * its code stopped working first (superseded, order cancelled, code used), or
 * because the email DCV policy refuses the order's domain when its turn comes
 * (cut-off date passed, domain blocklisted: `last_error` says which).
 *
 * A claim is one statement (`UPDATE … WHERE id IN (SELECT … [FOR UPDATE SKIP
 * LOCKED]) RETURNING`), so several workers on one database never take the
 * same email; only the claim's holder (its token) may record the outcome. An
 * email whose worker died is taken over when its lease runs out (workers look
 * for those once a poll interval); the SMTP
 * timeouts are a third of the lease, so a live worker always finishes first.
 * The email's idempotency key is its Message-ID: the file transport writes
 * each id once. SMTP leaves two windows in which a server may see a message
 * twice, both with the same Message-ID (receivers can deduplicate on it):
 * the process dies after the server accepted the message but before the
 * delivery was recorded (outcomes of one event-loop turn share a commit, and
 * an email holds its slot until then, so at most `concurrency` of them), or an attempt times out after the server accepted
 * it but before its reply arrived (RFC 5321 §6.1).
 */
import { sql, type Kysely, type Selectable } from 'kysely';
import type { Clock } from '../deps.ts';
import { dialectOf, unindexedNumber, unindexedState, type Dialect } from '../store/database.ts';
import type { Database, OutboxTable } from '../store/schema.ts';
import type { Logger } from '../log.ts';
import { emailTemplate, TemplateRepository } from '../orders/templates.ts';
import { openSealedCode, type ValueKeys } from '../orders/random-values.ts';
import { sharedDomainCount, sharedDomainsOfValue, sharesDomains } from '../orders/dcv-email.ts';
import { emailDcvRefusalOfAny, refusalText, type EmailDcvPolicy } from '../orders/email-dcv-policy.ts';
import { MailDeliveryError, TemplateError } from '../mail/errors.ts';
import type { OutgoingEmail } from '../mail/message.ts';
import { DEFAULT_TEMPLATE, renderTemplate, type EmailTemplate } from '../mail/templates.ts';
import { prepared } from '../store/prepared.ts';
import { LeasedQueueWorker, deliveryView, type DeliveryView, type OutboxPolicy } from '../queue/leased.ts';
import type { MailTransport } from '../mail/transport.ts';
import { WAITING_STATES } from './states.ts';

export type OutboxRow = Selectable<OutboxTable>;
export { OUTBOX_STATES } from './states.ts';

/** SMTP timeouts that let a live worker finish well within its lease. */
export function smtpTimeoutsFor(policy: OutboxPolicy): { connectionTimeoutMs: number; greetingTimeoutMs: number; socketTimeoutMs: number } {
  const third = Math.max(1000, Math.floor(policy.leaseMs / 3));
  return { connectionTimeoutMs: Math.min(10_000, third), greetingTimeoutMs: Math.min(10_000, third), socketTimeoutMs: Math.min(60_000, third) };
}

export interface OutboxWorkerDeps {
  db: Kysely<Database>;
  dialect: Dialect;
  clock: Clock;
  transport: MailTransport;
  keys: ValueKeys;
  /** Envelope and From address. */
  mailFrom: string;
  /** Base of the confirmation links. */
  publicUrl: string;
  /** The CA's name in the emails (--ca-name); "dcvd" when absent. */
  caName?: string;
  policy: OutboxPolicy;
  /** Cut-off and blocklist of email DCV, checked again when an email's turn comes (CONTRACT §6). */
  emailPolicy: EmailDcvPolicy;
  log: Logger;
}

/** `2026-01-31 12:00:00 UTC`: unambiguous for every reader of the email. */
function readableTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC');
}

export function confirmationUrl(publicUrl: string, code: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/dcv/confirm/${code}`;
}

/** What an email needs from its order and value when its turn comes. */
const factsOf = prepared((db, p: { id: number }) =>
  db
    .selectFrom('outbox as o')
    .innerJoin('orders as ord', 'ord.id', 'o.order_id')
    .innerJoin('random_values as rv', 'rv.id', 'o.random_value_id')
    .leftJoin('order_domains as od', 'od.id', 'rv.order_domain_id')
    .select([
      'ord.order_number',
      'ord.domain',
      // The domain this email validates (one of a multi-domain order's), and its own state.
      'od.domain as value_domain',
      'od.dcv_status as domain_status',
      'ord.dcv_status',
      'rv.id as value_id',
      'rv.value_hash',
      'rv.adn',
      'rv.expires_at',
      'rv.revoked_at',
      'rv.spent_at',
      'rv.template_ref',
    ])
    .select(sharedDomainCount('rv.id'))
    .where('o.id', '=', p.id),
);

export class OutboxWorker extends LeasedQueueWorker<OutboxRow> {
  private readonly templates: TemplateRepository;
  private readonly templateCache = new Map<number, EmailTemplate>();

  constructor(private readonly deps: OutboxWorkerDeps) {
    super({ ...deps, table: 'outbox', what: 'emails', noun: 'dcv email' });
    this.templates = new TemplateRepository(deps.db, deps.clock);
  }

  protected override async close(): Promise<void> {
    await this.deps.transport.close();
  }

  /** The email template of a value (its row read once per worker), frozen so that rendering validates it once. */
  private async template(ref: number | null): Promise<EmailTemplate> {
    if (ref === null) return DEFAULT_TEMPLATE;
    let template = this.templateCache.get(ref);
    if (!template) {
      template = Object.freeze(emailTemplate(await this.templates.byRowId(ref)));
      this.templateCache.set(ref, template);
    }
    return template;
  }

  protected async deliver(row: OutboxRow): Promise<void> {
    const { db, clock, keys, log, transport } = this.deps;
    const facts = await factsOf.first(db, { id: row.id });
    const where = { messageId: row.message_id, orderNumber: facts?.order_number, to: row.recipient, attempt: row.attempts };
    const now = clock.now();
    // An email that covers several domains of the order (BR 3.2.2.4.4) lists them all, and is sent while one of them awaits.
    const shared = facts && sharesDomains(facts) ? await sharedDomainsOfValue(db, facts.value_id) : [];
    if (facts && shared.length > 0) {
      facts.value_domain = shared.map((d) => d.domain).join(', ');
      facts.domain_status = shared.some((d) => d.dcv_status === 'awaiting') ? 'awaiting' : shared[0]!.dcv_status;
    }
    if (!facts || facts.dcv_status !== 'awaiting' || (facts.domain_status !== null && facts.domain_status !== 'awaiting') || facts.revoked_at !== null || facts.spent_at !== null || facts.expires_at <= now) {
      await this.finish(row, { state: 'cancelled', last_error: 'validation code no longer valid when its turn came', sealed_code: null });
      log.info({ ...where, state: 'cancelled' }, 'dcv email not sent: its code stopped working');
      return;
    }
    // Every domain the email validates (a multi-domain order's own, or those it covers), not only the order's first.
    const refusal = emailDcvRefusalOfAny(this.deps.emailPolicy, (facts.value_domain ?? facts.domain).split(', '), now);
    if (refusal) {
      await this.finish(row, { state: 'cancelled', last_error: `not sent: ${refusalText(refusal, this.deps.emailPolicy)}`, sealed_code: null });
      log.warn({ ...where, state: 'cancelled', policy: refusal }, 'dcv email not sent: email DCV refused by policy');
      return;
    }
    let email: OutgoingEmail;
    try {
      if (row.sealed_code === null) throw new MailDeliveryError(true, 'the sealed validation code was erased');
      const code = openSealedCode(keys, row.sealed_code, facts.value_hash);
      const rendered = renderTemplate(await this.template(facts.template_ref), {
        orderNumber: String(facts.order_number),
        domain: facts.value_domain ?? facts.domain,
        adn: facts.adn,
        validationCode: code,
        confirmationUrl: confirmationUrl(this.deps.publicUrl, code),
        expiresAt: readableTime(facts.expires_at),
        caName: this.deps.caName ?? 'dcvd',
      });
      email = { messageId: row.message_id, from: this.deps.mailFrom, to: row.recipient, ...rendered };
      const result = await transport.send(email);
      await this.finish(row, {
        state: 'delivered',
        delivered_at: clock.now(),
        response: result.response.slice(0, 1000),
        mail_from: email.from,
        subject: email.subject,
        last_error: null,
      });
      log.info({ ...where, state: 'delivered' }, 'dcv email delivered');
    } catch (err) {
      const permanent = err instanceof MailDeliveryError ? err.permanent : err instanceof TemplateError;
      const reason = (err instanceof MailDeliveryError ? err.reason : err instanceof Error ? err.message : String(err)).slice(0, 1000);
      // A failed email's code is erased with it: nothing will send it any more.
      await this.failedAttempt(row, reason, { permanent, where, onFailed: { sealed_code: null } });
    }
  }
}

/**
 * Erases sealed codes whose value no longer works (expired, superseded, cancelled, used) from finished emails.
 * Driven by the emails that still keep a code (migration 0013's partial index, about the last 30 days'), each
 * value found by primary key: not by the list of dead values, which grows with every value ever made.
 */
export async function purgeSealedCodes(db: Kysely<Database>, now: number): Promise<number> {
  const result = await sealedOfDeadValues.execute(db, { now });
  return Number(result.numAffectedRows ?? 0n);
}

/** Exported for test/query-plans.test.ts, which checks its plan. */
export const sealedOfDeadValues = prepared((db, p: { now: number }) =>
  db
    .updateTable('outbox')
    .set({ sealed_code: null })
    .where('sealed_code', 'is not', null)
    .where('state', 'not in', WAITING_STATES)
    .where(({ exists, selectFrom }) =>
      exists(
        selectFrom('random_values as rv')
          .select('rv.id')
          .whereRef('rv.id', '=', 'outbox.random_value_id')
          .where((w) => w.or([w('rv.expires_at', '<=', p.now), w('rv.revoked_at', 'is not', null), w('rv.spent_at', 'is not', null)])),
      ),
    ),
);

export interface OutboxView extends DeliveryView {
  messageId: string;
  orderNumber: number;
  to: string;
}

/** How `listOutbox` reads a final state on SQLite (a parameter only for tests, which use small ones). */
export interface ListWalk {
  /** Below this many emails of the state, they are found by the state's index and sorted by id. */
  sortAtMost: number;
  /** From it on, the ids are walked back from the newest, this many at a time… */
  chunk: number;
  /** …for at most this many chunks; the rest, if the limit is not reached, as before: by the state's index, sorted. */
  chunks: number;
}
export const LIST_WALK: ListWalk = { sortAtMost: 20_000, chunk: 10_000, chunks: 10 };

/**
 * Whether a final state has at least `atLeast` emails: a count of the state's index, stopped there
 * (exported for test/outbox-list.test.ts).
 */
export const manyOfState = (db: Kysely<Database>, state: string, atLeast = LIST_WALK.sortAtMost) =>
  db
    .selectFrom((eb) => eb.selectFrom('outbox').select('id').where('state', '=', state).limit(sql.lit(atLeast)).as('s'))
    .select((eb) => eb.fn.countAll().as('n'));

/** The newest emails of a state among ids in (from, to], by the primary key (the state a guard no index serves; exported for the plan checks). */
export const listChunk = (db: Kysely<Database>, state: string, from: number, to: number, limit: number) =>
  listQuery(db).where('o.id', '>', from).where('o.id', '<=', to).where(unindexedState(dialectOf(db), 'o.state'), '=', state).orderBy('o.id', 'desc').limit(limit);

/** The newest emails of a state at or below an id, by the state's index, sorted (the id a guard no index serves; exported for the plan checks). */
export const listBelow = (db: Kysely<Database>, state: string, to: number, limit: number) =>
  listQuery(db).where('o.state', '=', state).where(unindexedNumber('o.id'), '<=', to).orderBy('o.id', 'desc').limit(limit);

const listQuery = (db: Kysely<Database>) =>
  db
    .selectFrom('outbox as o')
    .innerJoin('orders as ord', 'ord.id', 'o.order_id')
    .select(['o.message_id', 'ord.order_number', 'o.recipient', 'o.state', 'o.attempts', 'o.next_attempt_at', 'o.last_error', 'o.response', 'o.created_at', 'o.delivered_at']);

/**
 * The newest emails first, optionally of one state or order (`dcvd outbox list`, `dcvd order show`, the
 * internal API). No email is ever deleted, so a final state (delivered, above all) may hold most of the
 * history, and SQLite, without statistics, sorted all its emails by id: 140–176 ms for the newest 100 of
 * 200,000, in the server's event loop (bench/background.ts, issue 20, thirteenth round). There a final
 * state with many emails is read by walking the ids back from the newest, a chunk at a time, each chunk one
 * bounded statement; if its newest emails lie deeper than `walk.chunks` chunks (a state whose emails are
 * all old), the rest is read as before, so the walk never costs more than those chunks beyond the old
 * statement. A state with few emails (a count of its index, stopped there), a waiting state (the queue) or
 * one order's emails: one statement by their index. PostgreSQL's statistics choose between the state's
 * index and the primary key themselves (2.4–3.7 ms at 200,000 delivered, where the walk's count alone cost
 * more), and its statements do not hold dcvd's event loop: there the one statement.
 */
export async function listOutbox(db: Kysely<Database>, filter: { state?: string; orderId?: number; limit?: number } = {}, walk: ListWalk = LIST_WALK): Promise<OutboxView[]> {
  const limit = filter.limit ?? 100;
  const { state } = filter;
  let rows: Awaited<ReturnType<ReturnType<typeof listQuery>['execute']>>;
  const walked =
    dialectOf(db) === 'sqlite' &&
    state !== undefined &&
    filter.orderId === undefined &&
    !(WAITING_STATES as readonly string[]).includes(state) &&
    Number((await manyOfState(db, state, walk.sortAtMost).executeTakeFirstOrThrow()).n) >= walk.sortAtMost;
  if (walked) {
    rows = [];
    let to = Number((await db.selectFrom('outbox').select((eb) => eb.fn.max('id').as('m')).executeTakeFirstOrThrow()).m ?? 0);
    for (let read = 0; to > 0 && rows.length < limit && read < walk.chunks; read += 1) {
      const from = Math.max(0, to - walk.chunk);
      rows.push(...(await listChunk(db, state, from, to, limit - rows.length).execute()));
      to = from;
    }
    if (to > 0 && rows.length < limit) rows.push(...(await listBelow(db, state, to, limit - rows.length).execute()));
  } else {
    let q = listQuery(db);
    if (state !== undefined) q = q.where('o.state', '=', state);
    if (filter.orderId !== undefined) q = q.where('o.order_id', '=', filter.orderId);
    rows = await q.orderBy('o.id', 'desc').limit(limit).execute();
  }
  return rows.map((r) => ({
    messageId: r.message_id,
    orderNumber: r.order_number,
    to: r.recipient,
    ...deliveryView(r),
  }));
}

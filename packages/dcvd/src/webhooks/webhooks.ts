/**
 * Signed webhooks (CONTRACT §6): when an order is validated or declined, a
 * JSON event is written to the webhook outbox in the deciding transaction and
 * POSTed in the background to the account's URL (else the global one), with
 * retries and backoff, by the same leased-queue machinery as the emails.
 *
 * Signature: `X-Dcvd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`,
 * computed at each attempt, so receivers can refuse old timestamps (replays).
 * Each receiver has its own secrets (issue 14, secrets.ts); during a
 * rotation's overlap the header carries one `v1=` per valid secret, newest first.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Database, WebhookOutboxTable } from '../store/schema.ts';
import { LeasedQueueWorker, deliveryView, type ClaimInput, type DeliveryView, type QueueDeps } from '../queue/leased.ts';
import { listEvidence, type DecidedEvent } from '../orders/confirmation.ts';
import type { EmailDcvPolicy } from '../orders/email-dcv-policy.ts';
import type { Dialect } from '../store/database.ts';
import type { ValueKeys } from '../orders/random-values.ts';
import { accountOfReceiver, accountReceiver, GLOBAL_RECEIVER, validWebhookSecrets } from './secrets.ts';
import { WebhookTargetRefused, webhookPoster, type WebhookEgressPolicy, type WebhookPost } from './egress.ts';
import { busySince, claimFairShare, defaultGlobalConcurrency, defaultReceiverConcurrency } from './fair-claim.ts';

export type WebhookRow = Selectable<WebhookOutboxTable>;

/** One attempt's outcome, for the metrics (`dcvd_webhook_attempts_total`). */
export type WebhookOutcome = 'delivered' | 'retry' | 'failed' | 'refused' | 'no-secret';

export interface WebhookConfig {
  /** Global URL for accounts without their own. */
  url?: string | undefined;
  /** HMAC key of the global URL only (accounts' URLs have their own secrets); without it no event is queued for the global URL. */
  secret?: string | undefined;
  /** The global URL's previous key while the operator rotates it (second line of --webhook-secret-file): it signs too. */
  previousSecret?: string | undefined;
  /** Networks accounts' own URLs may reach besides Internet addresses, over http:// too (a normalized CIDR list; egress.ts). */
  allowNetworks?: string | undefined;
  /** The time limit of one POST, lookup to status line (config.ts's DEFAULT_WEBHOOK_TIMEOUT_MS; at most a third of the lease). */
  timeoutMs?: number | undefined;
  /** Events one account's receiver (or the events without one) may have in `sending` at once, over every instance (--webhook-receiver-concurrency; default: fair-claim.ts's defaultReceiverConcurrency). */
  receiverConcurrency?: number | undefined;
  /** Events the global receiver may have in `sending` at once, over every instance (--webhook-global-concurrency; default: fair-claim.ts's defaultGlobalConcurrency). */
  globalConcurrency?: number | undefined;
}

/**
 * The global key from --webhook-secret-file's text: the first non-empty line;
 * a second one is the previous key, which keeps signing (a second `v1=`)
 * until the operator removes it and restarts. Each at least 16 characters.
 */
export function parseWebhookSecretFile(text: string): { secret: string; previousSecret?: string } {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length === 0 || lines.length > 2) throw new Error('the webhook secret file must hold the secret, optionally followed by the previous one on a second line');
  if (lines.some((l) => l.length < 16)) throw new Error('the webhook secret must be at least 16 characters');
  return lines.length === 2 ? { secret: lines[0]!, previousSecret: lines[1]! } : { secret: lines[0]! };
}

export const SIGNATURE_HEADER = 'x-dcvd-signature';

/** The signature header's value for a body sent at `unixSeconds`: one `v1=` per secret, in the order given. */
export function signWebhook(secrets: string | readonly string[], unixSeconds: number, body: string): string {
  const list = typeof secrets === 'string' ? [secrets] : secrets;
  return [`t=${unixSeconds}`, ...list.map((secret) => `v1=${createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex')}`)].join(',');
}

/**
 * Queues the event of a decision inside its transaction (ConfirmationService's
 * onDecided). The account's own URL gets its own receiver (signed with the
 * account's secrets, never the global one); else the global URL, which needs
 * the global secret. Returns false when nothing is queued.
 */
export async function queueDecisionWebhook(trx: Transaction<Database>, config: WebhookConfig, event: DecidedEvent, emailPolicy?: EmailDcvPolicy): Promise<boolean> {
  const account = await trx.selectFrom('accounts').select(['login', 'webhook_url']).where('id', '=', event.accountId).executeTakeFirstOrThrow();
  const receiver = account.webhook_url !== null ? accountReceiver(event.accountId) : GLOBAL_RECEIVER;
  const url = account.webhook_url ?? config.url;
  if (url === undefined || (receiver === GLOBAL_RECEIVER && config.secret === undefined)) return false;
  const type = event.decision === 'approved' ? 'dcv.validated' : 'dcv.declined';
  const decided = { name: event.domain, dcvStatus: event.decision === 'approved' ? 'validated' : 'declined' };
  await insertEvent(trx, { ...event, type, url, receiver, login: account.login, domain: event.orderDomain, dcvStatus: event.orderDcvStatus, decided, at: event.decidedAt }, emailPolicy);
  return true;
}

/**
 * Writes one event to the webhook outbox: the order (its own domain and DCV status), the domain the event is
 * about with its status (`decided`: the one a decision decided; the order's own for `dcv.unusable`), and that
 * domain's newest evidence, judged at `at`.
 */
async function insertEvent(
  trx: Transaction<Database>,
  e: {
    type: string; url: string; receiver: string; login: string; orderId: number; orderNumber: number; baseOrderNumber: number; domain: string; dcvStatus: string;
    decided: { name: string; dcvStatus: string }; at: number;
  },
  emailPolicy: EmailDcvPolicy | undefined,
): Promise<void> {
  const [evidence] = await listEvidence(trx, { orderId: e.orderId, domain: e.decided.name, limit: 1 }, { policy: emailPolicy, now: e.at });
  const id = randomUUID();
  const event = { type: e.type, orderId: e.orderId, decidedAt: e.at, url: e.url };
  const body = JSON.stringify({
    id,
    type: e.type,
    createdAt: new Date(e.at).toISOString(),
    order: {
      orderNumber: e.orderNumber,
      baseOrderNumber: e.baseOrderNumber,
      account: e.login,
      domain: e.domain,
      dcvStatus: e.dcvStatus,
    },
    domain: e.decided,
    evidence,
  });
  const url = event.url;
  await trx
    .insertInto('webhook_outbox')
    .values({
      event_id: id,
      order_id: event.orderId,
      event: event.type,
      url,
      body,
      state: 'pending',
      next_attempt_at: event.decidedAt,
      lease_until: null,
      claim_token: null,
      last_error: null,
      response: null,
      created_at: event.decidedAt,
      updated_at: event.decidedAt,
      delivered_at: null,
      receiver: e.receiver,
    })
    .execute();
}

/** The event that tells the ordering system an email validation may no longer be relied upon. */
export const UNUSABLE_EVENT = 'dcv.unusable';

/**
 * Validated orders without their `dcv.unusable` event, oldest first (exported for test/query-plans.test.ts).
 * On PostgreSQL the event's check stays a subquery probing the events by order (`offset 0` keeps the
 * planner from turning it into a join): statistics taken before the cut-off know no such event, and the
 * anti-join PostgreSQL then chose rescanned every event for each validated order (a helper's plan sweep:
 * 2.2–3.0 s with 12,000–16,000 events queued, past the statement timeout near 20,000, after which nothing
 * more was queued; 17 ms as a subquery).
 */
export function unusableCandidates(db: Kysely<Database>, dialect: Dialect, withGlobalUrl: boolean, limit: number) {
  let q = db
    .selectFrom('orders as o')
    .innerJoin('accounts as a', 'a.id', 'o.account_id')
    .select(['o.id'])
    .where('o.dcv_status', '=', 'validated')
    .where((eb) => {
      const event = eb.selectFrom('webhook_outbox as w').select('w.id').whereRef('w.order_id', '=', 'o.id').where('w.event', '=', UNUSABLE_EVENT);
      return eb.not(eb.exists(dialect === 'postgres' ? event.offset(sql.lit(0)) : event));
    });
  if (!withGlobalUrl) q = q.where('a.webhook_url', 'is not', null);
  return q.orderBy('o.id').limit(limit);
}

/**
 * From the email DCV cut-off on, queues one `dcv.unusable` event per validated
 * order (all validations dcvd makes are by email): BR 3.2.2.4.4/.13/.14 forbid
 * relying on prior validations with these methods. Each order gets one event,
 * also with several instances (the order row is locked while its event is
 * checked and written). Returns how many were queued; at most `limit` per call.
 */
export async function queueUnusableWebhooks(
  db: Kysely<Database>,
  dialect: Dialect,
  config: WebhookConfig,
  emailPolicy: EmailDcvPolicy,
  now: number,
  limit = 200,
): Promise<number> {
  if (now < emailPolicy.cutoff) return 0;
  // The global URL only with its secret; accounts' own URLs with theirs (issue 14).
  const globalUrl = config.secret === undefined ? undefined : config.url;
  const candidates = await unusableCandidates(db, dialect, globalUrl !== undefined, limit).execute();
  let queued = 0;
  for (const { id } of candidates) {
    const done = await db.transaction().execute(async (trx) => {
      let lock = trx
        .selectFrom('orders as o')
        .innerJoin('accounts as a', 'a.id', 'o.account_id')
        .select(['o.id', 'o.account_id', 'o.order_number', 'o.base_order_number', 'o.domain', 'o.dcv_status', 'a.login', 'a.webhook_url'])
        .where('o.id', '=', id);
      if (dialect === 'postgres') lock = lock.forUpdate('o');
      const order = await lock.executeTakeFirst();
      if (!order || order.dcv_status !== 'validated') return false;
      const sent = await trx.selectFrom('webhook_outbox').select('id').where('order_id', '=', id).where('event', '=', UNUSABLE_EVENT).executeTakeFirst();
      const url = order.webhook_url ?? globalUrl;
      if (sent || url === undefined) return false;
      const receiver = order.webhook_url !== null ? accountReceiver(order.account_id) : GLOBAL_RECEIVER;
      await insertEvent(
        trx,
        {
          type: UNUSABLE_EVENT, url, receiver, login: order.login, orderId: order.id, orderNumber: order.order_number, baseOrderNumber: order.base_order_number,
          domain: order.domain, dcvStatus: 'validated', decided: { name: order.domain, dcvStatus: 'validated' }, at: now,
        },
        emailPolicy,
      );
      return true;
    });
    if (done) queued += 1;
  }
  return queued;
}

/**
 * What can make a validated order a new candidate for its `dcv.unusable` event once the cut-off has passed
 * (exported for tests): a validation (its only path, ConfirmationService.decide, writes the evidence row in
 * the same transaction, so the evidence's largest id moves); an account's webhook URL set (written only by
 * the accounts' repository, at creation, which raises the largest id, and by `bump`, which raises its
 * credential_version); and events lost from the webhook outbox (a restored database, a failover to a
 * replica behind: its largest id goes down). Nothing else dcvd does: no email validation is made after the
 * cut-off, and the global URL is fixed for a process. Each by its primary key, the accounts (a few rows per
 * reseller) read whole.
 */
export async function unusableChanges(db: Kysely<Database>): Promise<string> {
  const row = await db
    .selectFrom('accounts')
    .select((eb) => [
      eb.fn.countAll().as('n'),
      eb.fn.sum('credential_version').as('versions'),
      eb.fn.max('id').as('newest'),
      eb.selectFrom('dcv_evidence').select((e) => e.fn.max('id').as('m')).as('evidence'),
      eb.selectFrom('webhook_outbox').select((e) => e.fn.max('id').as('m')).as('events'),
    ])
    .executeTakeFirstOrThrow();
  return [row.n, row.versions, row.newest, row.evidence, row.events].map((x) => String(x ?? '')).join(' ');
}

export interface UnusableScanTiming {
  /** How long the changes must have stood still before a scan that finds nothing lets the next ones be skipped (default 50 s: the second minute's run after a change, whatever the timer's jitter). */
  settleMs?: number;
  /** How often the orders are scanned all the same (default 1 h). */
  rescanMs?: number;
  /** A monotonic clock in ms (default performance.now). */
  monotonic?: () => number;
}

/**
 * The minute's `dcv.unusable` scan after the cut-off (queueUnusableWebhooks), skipped while nothing that
 * could make a new candidate has changed (issue 20, thirteenth round). The scan reads every validated order
 * (80 ms at 200,000 orders on SQLite, in the event loop, bench/background.ts) and, once each has its event, finds nothing; so
 * after a scan that found nothing, the next ones only read `unusableChanges`, and scan again when it moves
 * or every `rescanMs`. A scan lets the next ones be skipped only when the changes stood still for
 * `settleMs` before it (an evidence id below the largest seen was drawn before this process saw that one,
 * and dcvd's transactions last seconds): a validation committed late (PostgreSQL shows an evidence id after a larger one; a
 * code confirmed just before the cut-off by a transaction that commits after it; another instance's
 * clock a little behind) is then visible to it. Before the cut-off nothing is read.
 */
export class UnusableWebhookScan {
  private readonly settleMs: number;
  private readonly rescanMs: number;
  private readonly monotonic: () => number;
  private changes: string | undefined;
  private changedAt = 0;
  /** When a scan that found nothing, after the changes stood still long enough, ran. */
  private quietSince: number | undefined;
  private running = false;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: Dialect,
    private readonly config: WebhookConfig,
    private readonly emailPolicy: EmailDcvPolicy,
    timing: UnusableScanTiming = {},
  ) {
    this.settleMs = timing.settleMs ?? 50_000;
    this.rescanMs = timing.rescanMs ?? 3_600_000;
    this.monotonic = timing.monotonic ?? (() => performance.now());
  }

  /** Events queued by this run (0 when it was skipped, or another run was still going). */
  async run(now: number): Promise<number> {
    if (now < this.emailPolicy.cutoff || this.running) return 0;
    this.running = true;
    try {
      const t = this.monotonic();
      const changes = await unusableChanges(this.db);
      if (changes !== this.changes) {
        this.changes = changes;
        this.changedAt = t;
        this.quietSince = undefined;
      }
      if (this.quietSince !== undefined && t - this.quietSince < this.rescanMs) return 0;
      const queued = await queueUnusableWebhooks(this.db, this.dialect, this.config, this.emailPolicy, now);
      this.quietSince = queued === 0 && t - this.changedAt >= this.settleMs ? t : undefined;
      return queued;
    } finally {
      this.running = false;
    }
  }
}

export class WebhookWorker extends LeasedQueueWorker<WebhookRow> {
  constructor(
    private readonly deps: Omit<QueueDeps, 'table' | 'what' | 'noun'> & {
      secret: string | undefined;
      previousSecret?: string | undefined;
      keys: ValueKeys;
      /** Where accounts' URLs may lead, and the requests' time limit (egress.ts). */
      egress: WebhookEgressPolicy;
      /** Each attempt's outcome, for the metrics. */
      onAttempt?: (outcome: WebhookOutcome) => void;
      /** The operator's --webhook-url, the one target the address rules leave alone. */
      globalUrl?: string | undefined;
      /** Events one account's receiver (or the events without one) may have in `sending` at once, over every worker sharing the database (default: a quarter of the concurrency). */
      receiverConcurrency?: number | undefined;
      /** Events the global receiver may have in `sending` at once, likewise (default: the concurrency less the other receivers' share). */
      globalConcurrency?: number | undefined;
    },
  ) {
    // A claim as soon as one slot is free, not a batch of a quarter: with the fair share, slots may stay held by
    // receivers at their share for a whole time limit (the global receiver's 12 leave exactly 4), and waiting for
    // 4 free ones let a single slow account's POST hold back every other account's events (found by a review).
    // A webhook's claim costs less than the POST it starts (a connection of its own each).
    super({ ...deps, table: 'webhook_outbox', what: 'webhooks', noun: 'webhook', claimBatch: 1 });
    this.post = webhookPoster(deps.egress);
    this.receiverConcurrency = deps.receiverConcurrency ?? defaultReceiverConcurrency(deps.policy.concurrency);
    this.globalConcurrency = deps.globalConcurrency ?? defaultGlobalConcurrency(deps.policy.concurrency, this.receiverConcurrency);
  }

  private readonly post: WebhookPost;
  private readonly receiverConcurrency: number;
  private readonly globalConcurrency: number;

  /**
   * Due events are claimed with a fair share per receiver (fair-claim.ts): none beyond the receiver's cap is
   * claimed, so none is put back. Events whose lease ran out are taken over as the emails are; they count
   * toward their receiver's cap once taken.
   */
  protected override claimRows(input: ClaimInput): Promise<WebhookRow[]> {
    if (input.state !== 'pending') return super.claimRows(input);
    const { db, dialect } = this.deps;
    const { now, limit, leaseUntil, token } = input;
    return claimFairShare(db, dialect, {
      now, limit, leaseUntil, token, cap: this.receiverConcurrency, globalCap: this.globalConcurrency, claimedSince: busySince(now, this.deps.egress.timeoutMs),
    });
  }

  /**
   * Where the row's event goes now: an account's current URL (an event queued before the reseller moved its
   * receiver goes to the new one, never to an endpoint it gave up), null when the account has no URL of its own
   * any more; the global URL as queued.
   */
  private async urlOf(row: WebhookRow): Promise<string | null> {
    const accountId = accountOfReceiver(row.receiver);
    if (accountId === undefined) return row.url;
    const account = await this.deps.db.selectFrom('accounts').select('webhook_url').where('id', '=', accountId).executeTakeFirst();
    return account?.webhook_url ?? null;
  }

  /**
   * The secrets of the row's receiver: an account's own (sealed in
   * webhook_secrets), or the global one. Events queued before migration 0007
   * (no receiver) were meant for the one secret of that time: the global one.
   */
  private async secretsOf(row: WebhookRow): Promise<string[]> {
    const receiver = row.receiver ?? GLOBAL_RECEIVER;
    if (receiver === GLOBAL_RECEIVER) return this.deps.secret === undefined ? [] : [this.deps.secret, ...(this.deps.previousSecret === undefined ? [] : [this.deps.previousSecret])];
    return validWebhookSecrets(this.deps.db, this.deps.keys, receiver, this.deps.clock.now());
  }

  protected async deliver(row: WebhookRow): Promise<void> {
    const { clock, policy, log, db } = this.deps;
    const where = { eventId: row.event_id, event: row.event, attempt: row.attempts };
    const t = Math.floor(clock.now() / 1000);
    let reason: string;
    let refused = false;
    try {
      // The URL first: an event whose account gave up its own URL fails at once, secret or none.
      const url = await this.urlOf(row);
      if (url === null) {
        await this.failedAttempt(row, 'the account has no webhook URL of its own any more', { permanent: true, where });
        this.deps.onAttempt?.('failed');
        return;
      }
      const secrets = await this.secretsOf(row);
      if (secrets.length === 0) {
        // Kept, and the attempt not counted: the event waits (at the longest retry interval) until the operator
        // issues a secret (`dcvd account rotate-webhook-secret`, or --webhook-secret for the global URL).
        const reason = `no signing secret for receiver ${row.receiver ?? GLOBAL_RECEIVER} (dcvd account rotate-webhook-secret, or --webhook-secret for the global URL)`;
        const next = clock.now() + policy.retryMaxMs;
        await this.finish(row, { state: 'pending', attempts: row.attempts - 1, next_attempt_at: next, last_error: reason });
        this.deps.onAttempt?.('no-secret');
        log.warn({ ...where, state: 'pending', reason, retryAt: new Date(next).toISOString() }, 'webhook waits for a signing secret');
        return;
      }
      if (url !== row.url) await db.updateTable('webhook_outbox').set({ url }).where('id', '=', row.id).where('claim_token', '=', row.claim_token).execute();
      const status = await this.post(url, {
        body: row.body,
        // An account's receiver; and an event queued before migration 0007 (no receiver) unless it goes to the global URL.
        restricted: row.receiver === null ? url !== this.deps.globalUrl : row.receiver !== GLOBAL_RECEIVER,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'dcvd-webhook/1',
          'x-dcvd-event': row.event,
          'x-dcvd-event-id': row.event_id,
          [SIGNATURE_HEADER]: signWebhook(secrets, t, row.body),
        },
      });
      if (status >= 200 && status < 300) {
        await this.finish(row, { state: 'delivered', delivered_at: clock.now(), response: `HTTP ${status}`, last_error: null });
        log.info({ ...where, state: 'delivered', status }, 'webhook delivered');
        this.deps.onAttempt?.('delivered');
        return;
      }
      reason = `HTTP ${status}`;
    } catch (err) {
      reason = (err instanceof Error ? (err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message) : String(err)).slice(0, 500);
      if (err instanceof WebhookTargetRefused) refused = true;
    }
    await this.failedAttempt(row, reason, { permanent: false, where });
    this.deps.onAttempt?.(row.attempts >= policy.maxAttempts ? 'failed' : refused ? 'refused' : 'retry');
  }
}

export interface WebhookView extends DeliveryView {
  eventId: string;
  event: string;
  orderNumber: number;
  url: string;
}

/** Webhook events, newest first (`dcvd order show`). */
export async function listWebhooks(db: Kysely<Database>, filter: { orderId?: number; limit?: number } = {}): Promise<WebhookView[]> {
  let q = db.selectFrom('webhook_outbox as w').innerJoin('orders as o', 'o.id', 'w.order_id').selectAll('w').select('o.order_number');
  if (filter.orderId !== undefined) q = q.where('w.order_id', '=', filter.orderId);
  const rows = await q.orderBy('w.id', 'desc').limit(filter.limit ?? 100).execute();
  return rows.map((r) => ({
    eventId: r.event_id,
    event: r.event,
    orderNumber: r.order_number,
    url: r.url,
    ...deliveryView(r),
  }));
}

/**
 * The one gate every selection of a contact address for a DCV email passes
 * (issue 19): `corroborateSelectedContact`. A constructed address (BR
 * 3.2.2.4.4) passes as it is. A DNS TXT or CAA contact (3.2.2.4.14, .13)
 * passes only when Multi-Perspective Issuance Corroboration (3.2.2.9) of that
 * address succeeds now — or, for a resend of the same email in its entirety
 * (same recipient and content, value still valid), when it was corroborated
 * for that value before. Without an MPIC service it passes only under an
 * explicit `--mpic off`. Each corroboration attempt is logged and kept in
 * `mpic_evidence`; the caller answers -160 when the gate refuses.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Kysely } from 'kysely';
import type { FastifyBaseLogger } from 'fastify';
import type { Database } from '../store/schema.ts';
import { queueDcvEmail, reusableValue, type DcvEmailSettings, type QueueRequest, type QueueResult } from '../orders/dcv-email.ts';
import type { DcvRecipient } from '../registry/offer-window.ts';
import { providerOf, type ContactMethod } from '../contacts/index.ts';
import { MpicClient, MpicError, type MpicService } from './client.ts';
import { decideQuorum, MIN_REMOTE_PERSPECTIVES, type PerspectiveResult } from './quorum.ts';
import { type MpicMode, type MpicConfig } from './config.ts';

export { DEFAULT_MPIC_PERSPECTIVES, DEFAULT_MPIC_TIMEOUT_MS, defaultMpicConfig, type MpicMode, type MpicConfig } from './config.ts';

/** Outcomes, also the metric's label values. */
export type GateOutcome =
  | 'corroborated'
  | 'quorum-not-met'
  | 'rir-diversity-not-met'
  | 'too-few-perspectives'
  | 'service-disagrees'
  | 'timeout'
  | 'unreachable'
  | 'bad-answer'
  | 'not-configured'
  | 'off'
  | 'unchanged-resend';

export interface ContactGate {
  db: Kysely<Database>;
  mode: MpicMode;
  /** Undefined: no MPIC service configured. */
  service: MpicService | undefined;
  perspectives: number;
  /** Counts each DNS-contact selection by outcome (the metrics). */
  onOutcome?: ((outcome: GateOutcome) => void) | undefined;
}

/** Checks the settings; throws with a message for the operator. */
export function checkMpicConfig(config: MpicConfig): void {
  if (config.mode === 'off' && config.url !== undefined) throw new Error('--mpic off and --mpic-url contradict each other: give one');
  if (config.url === undefined && (config.apiKeyFile !== undefined || config.caFile !== undefined)) {
    throw new Error('--mpic-api-key-file and --mpic-ca-file need --mpic-url');
  }
  if (!Number.isInteger(config.perspectives) || config.perspectives < MIN_REMOTE_PERSPECTIVES || config.perspectives > 50) {
    throw new Error(`--mpic-perspectives must be from ${MIN_REMOTE_PERSPECTIVES} (BR 3.2.2.9 from 2026-12-15) to 50`);
  }
  if (config.timeoutMs < 100 || config.timeoutMs > 120_000) throw new Error('--mpic-timeout must be from 100ms to 120s');
}

/** The gate of a process, from its configuration (reads the key and CA files once). */
export function createContactGate(db: Kysely<Database>, config: MpicConfig, onOutcome?: (outcome: GateOutcome) => void): ContactGate {
  checkMpicConfig(config);
  let service: MpicService | undefined;
  if (config.url !== undefined) {
    const apiKey = config.apiKeyFile === undefined ? undefined : readFileSync(config.apiKeyFile, 'utf8').trim();
    if (apiKey === '') throw new Error(`--mpic-api-key-file ${config.apiKeyFile} is empty`);
    const ca = config.caFile === undefined ? undefined : readFileSync(config.caFile, 'utf8');
    service = new MpicClient({ url: config.url, apiKey, ca, timeoutMs: config.timeoutMs });
  }
  return { db, mode: config.mode, service, perspectives: config.perspectives, onOutcome };
}

/** What the start-up log says about the gate (a warning unless an MPIC service is configured). */
export function describeGate(gate: ContactGate): { level: 'info' | 'warn'; message: string } {
  if (gate.service) return { level: 'info', message: `DNS-found contact addresses are corroborated by MPIC (${gate.perspectives} remote perspectives)` };
  if (gate.mode === 'off') {
    return {
      level: 'warn',
      message: '--mpic off: DNS-found contact addresses are used on this resolver\u2019s word alone, without Multi-Perspective Issuance Corroboration; this is NOT compliant with BR 3.2.2.9',
    };
  }
  return { level: 'warn', message: 'no --mpic-url: selecting a DNS-found contact address answers -160 (give --mpic-url, or --mpic off where BR 3.2.2.9 does not apply)' };
}

export interface SelectedContact {
  accountId: number;
  /** Null when the order does not exist yet (order creation checks before it writes). */
  orderId: number | null;
  /** The order's domain, `*.` kept for a wildcard. */
  domain: string;
  recipient: DcvRecipient;
  /** The template of the email about to be queued: a resend of the live value with it unchanged needs no new corroboration. */
  templateRef: number | null;
  now: number;
  log: FastifyBaseLogger;
}

export type GateDecision =
  | { allowed: true; via: 'constructed' | 'unchanged-resend' | 'off' | 'corroborated'; evidenceId: number | null }
  | { allowed: false; outcome: GateOutcome; evidenceId: number | null };

interface EvidenceRow {
  requestId: string;
  sel: SelectedContact;
  target: string;
  method: ContactMethod;
  outcome: GateOutcome;
  corroborated: boolean;
  corroborating: number;
  rirs: string[];
  serviceValid: boolean | null;
  results: PerspectiveResult[];
  detail: string;
  startedAt: number;
}

async function record(gate: ContactGate, row: EvidenceRow, perspectives: number, elapsedMs = 0): Promise<number> {
  const inserted = await gate.db
    .insertInto('mpic_evidence')
    .values({
      request_id: row.requestId,
      account_id: row.sel.accountId,
      order_id: row.sel.orderId,
      random_value_id: null,
      domain: row.sel.domain,
      target: row.target,
      method: row.method,
      address: row.sel.recipient.address,
      outcome: row.outcome,
      corroborated: row.corroborated ? 1 : 0,
      perspectives,
      corroborating: row.corroborating,
      rirs: row.rirs.join(','),
      service_valid: row.serviceValid === null ? null : row.serviceValid ? 1 : 0,
      perspective_results: JSON.stringify(row.results),
      detail: row.detail.slice(0, 2000),
      started_at: row.startedAt,
      finished_at: row.startedAt + Math.round(elapsedMs),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return Number(inserted.id);
}

/** Whether a random value was sent on a successful corroboration. */
async function corroboratedValue(db: Kysely<Database>, valueId: number): Promise<boolean> {
  const row = await db.selectFrom('mpic_evidence').select('id').where('random_value_id', '=', valueId).where('corroborated', '=', 1).limit(1).executeTakeFirst();
  return row !== undefined;
}

/**
 * THE gate (issue 19): call it wherever a contact address is selected for a DCV email —
 * ResendDCVEmail, order creation with an address, AutoApplyOrder, AutoUpdateDCV — after the
 * 24-hour rule and before queueing; refused → answer -160 and queue nothing. When it allows,
 * pass `evidenceId` as the queue request's `corroborationId` (it links the evidence to the order
 * and the value). With `orderId` null (the order is created after the check) no reuse applies.
 * For an existing order use queueCorroboratedEmail below, which also handles an unchanged
 * resend (via 'unchanged-resend' must be queued with `requireReuse`, and corroborated after all
 * if the queue answers 'needs-corroboration').
 */
export async function corroborateSelectedContact(gate: ContactGate, sel: SelectedContact, opts: { allowReuse?: boolean } = {}): Promise<GateDecision> {
  // How the address's contact provider (src/contacts/) has it corroborated; a constructed address needs nothing.
  const corroboration = providerOf(sel.recipient.source)?.corroboration;
  if (corroboration === undefined) return { allowed: true, via: 'constructed', evidenceId: null };
  const method = corroboration.method;
  const count = (outcome: GateOutcome) => gate.onOutcome?.(outcome);
  const log = sel.log;
  const to = sel.recipient.address;

  // BR 3.2.2.4.13/.14: an email re-sent in its entirety needs no new corroboration within the value's validity —
  // provided that value was corroborated (not made under --mpic off) when MPIC is required now.
  if (opts.allowReuse !== false && sel.orderId !== null) {
    const live = await reusableValue(gate.db, sel.orderId, sel.recipient, sel.templateRef, sel.now);
    if (live && (gate.mode === 'off' || (await corroboratedValue(gate.db, live.valueId)))) {
      count('unchanged-resend');
      return { allowed: true, via: 'unchanged-resend', evidenceId: null };
    }
  }

  const fqdn = sel.domain.startsWith('*.') ? sel.domain.slice(2) : sel.domain;
  const target = corroboration.target(fqdn, sel.recipient.adn);
  const requestId = randomUUID();
  const startedAt = sel.now;
  const t0 = performance.now();
  const base = { requestId, sel, target, method, startedAt };

  if (!gate.service) {
    if (gate.mode === 'off') {
      count('off');
      log.warn({ mpic: { outcome: 'off', to, method } }, 'DNS-found contact used without MPIC (--mpic off; not BR 3.2.2.9-compliant)');
      const evidenceId = await record(
        gate,
        { ...base, outcome: 'off', corroborated: false, corroborating: 0, rirs: [], serviceValid: null, results: [], detail: '--mpic off: no corroboration was attempted' },
        0,
      );
      return { allowed: true, via: 'off', evidenceId };
    }
    count('not-configured');
    log.warn({ mpic: { outcome: 'not-configured', to, method } }, 'DNS-found contact refused: no MPIC service configured (--mpic-url)');
    return { allowed: false, outcome: 'not-configured', evidenceId: null };
  }

  let outcome: GateOutcome;
  let row: EvidenceRow;
  try {
    const answer = await gate.service.check({ target, method, address: to, requestId, perspectives: gate.perspectives });
    const decision = decideQuorum(gate.perspectives, answer.results, answer.isValid);
    outcome = decision.outcome;
    row = {
      ...base,
      outcome,
      corroborated: decision.corroborated,
      corroborating: decision.corroborating,
      rirs: decision.rirs,
      serviceValid: answer.isValid,
      results: answer.results,
      detail: decision.detail,
    };
    for (const p of answer.results) {
      log.info({ mpic: { requestId, perspective: p.code, rir: p.rir ?? null, checkPassed: p.checkPassed, corroborates: p.corroborates, reason: p.reason || undefined, foundAt: p.foundAt } }, 'MPIC perspective answer');
    }
  } catch (err) {
    if (!(err instanceof MpicError)) throw err;
    outcome = err.kind;
    row = { ...base, outcome, corroborated: false, corroborating: 0, rirs: [], serviceValid: null, results: [], detail: `${err.kind}: ${err.message}` };
  }
  const evidenceId = await record(gate, row, gate.perspectives, performance.now() - t0);
  count(outcome);
  const entry = { mpic: { requestId, evidenceId, outcome, to, method, target, detail: row.detail } };
  if (row.corroborated) {
    log.info(entry, 'DNS-found contact corroborated by MPIC');
    return { allowed: true, via: 'corroborated', evidenceId };
  }
  log.warn(entry, 'DNS-found contact not corroborated by MPIC; no email is sent');
  return { allowed: false, outcome, evidenceId };
}

export type CorroboratedQueueResult = QueueResult | { queued: false; reason: 'not-corroborated'; outcome: GateOutcome };

/**
 * corroborateSelectedContact, then queueDcvEmail, for an existing order: what ResendDCVEmail does
 * (and AutoUpdateDCV should). An order the queue would refuse anyway (not awaiting email DCV, or
 * the last email less than the interval ago) costs no MPIC call. An unchanged resend is queued
 * only if its value is still reusable inside the queue's transaction; else it is corroborated.
 */
export async function queueCorroboratedEmail(
  gate: ContactGate,
  db: Kysely<Database>,
  settings: DcvEmailSettings,
  req: QueueRequest,
  log: FastifyBaseLogger,
): Promise<CorroboratedQueueResult> {
  const { order, now } = req;
  const last = order.last_dcv_email_at;
  const refusedAnyway = order.dcv_status !== 'awaiting' || order.dcv_method !== 'email' || (last !== null && last > now - settings.resendIntervalMs);
  if (refusedAnyway) return queueDcvEmail(db, settings, req);
  const sel: SelectedContact = { accountId: order.account_id, orderId: order.id, domain: order.domain, recipient: req.recipient, templateRef: req.templateRef, now, log };
  let decision = await corroborateSelectedContact(gate, sel);
  if (decision.allowed && decision.via === 'unchanged-resend') {
    const result = await queueDcvEmail(db, settings, { ...req, requireReuse: true });
    if (result.queued || result.reason !== 'needs-corroboration') return result;
    decision = await corroborateSelectedContact(gate, sel, { allowReuse: false });
  }
  if (!decision.allowed) return { queued: false, reason: 'not-corroborated', outcome: decision.outcome };
  return queueDcvEmail(db, settings, { ...req, corroborationId: decision.evidenceId });
}

/**
 * BR 3.2.2.9: a DNS-found recipient is corroborated from several network perspectives before its
 * email is queued (src/mpic/corroborate.ts; constructed addresses pass at once). The evidence id
 * to link to the new value, or undefined when not corroborated (the call answers -160).
 */
export async function corroborateRecipient(
  gate: ContactGate,
  ctx: { account: { id: number }; log: FastifyBaseLogger },
  sel: { orderId: number | null; domain: string; recipient: DcvRecipient; templateRef: number | null; now: number },
): Promise<{ evidenceId: number | null } | undefined> {
  // No "unchanged resend" shortcut here: these paths make a new value (or may), so they corroborate afresh.
  const decision = await corroborateSelectedContact(gate, { ...sel, accountId: ctx.account.id, log: ctx.log }, { allowReuse: false });
  if (decision.allowed) return { evidenceId: decision.evidenceId };
  ctx.log.info({ to: sel.recipient.address, mpic: decision.outcome }, 'DNS-found address not corroborated');
  return undefined;
}

/** The evidence of an order's corroborations, newest first (`dcvd order show`, the internal API). */
export interface MpicEvidenceView {
  requestId: string;
  address: string;
  method: string;
  target: string;
  outcome: string;
  corroborated: boolean;
  perspectives: number;
  corroborating: number;
  rirs: string[];
  serviceValid: boolean | null;
  perspectiveResults: PerspectiveResult[];
  detail: string;
  /** Whether an email was queued on it. */
  used: boolean;
  at: string;
}

export async function listCorroborations(db: Kysely<Database>, orderId: number): Promise<MpicEvidenceView[]> {
  const rows = await db.selectFrom('mpic_evidence').selectAll().where('order_id', '=', orderId).orderBy('id', 'desc').limit(100).execute();
  return rows.map((r) => ({
    requestId: r.request_id,
    address: r.address,
    method: r.method,
    target: r.target,
    outcome: r.outcome,
    corroborated: r.corroborated === 1,
    perspectives: r.perspectives,
    corroborating: r.corroborating,
    rirs: r.rirs === '' ? [] : r.rirs.split(','),
    serviceValid: r.service_valid === null ? null : r.service_valid === 1,
    perspectiveResults: JSON.parse(r.perspective_results) as PerspectiveResult[],
    detail: r.detail,
    used: r.random_value_id !== null,
    at: new Date(Number(r.finished_at)).toISOString(),
  }));
}

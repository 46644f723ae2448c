/**
 * ResendDCVEmail (seed and CONTRACT §1, §4, §5). Checks, first failure answers:
 * the order (orderNumber, else baseOrderNumber; another account's order is
 * answered exactly like a missing one) → -4; a voucher order without the
 * voucher permission → -90; dcvTemplateID unknown to the account → -4
 * (ignored for 801/803); dcvEmailAddress not offered to the account for the
 * order's domain in the last 24 hours → -4, or omitted when the order never
 * had an address → -3; the operator's email DCV policy (cut-off date,
 * blocklist) refuses the order's domain, or any domain of a multi-domain order
 * still awaiting email DCV → -160, checked right after the permissions; the order not awaiting email DCV, or the
 * previous DCV email less than the minimum interval ago → -160; a DNS-found address that Multi-Perspective
 * Issuance Corroboration does not corroborate (src/mpic/corroborate.ts) → -160. Success: the email is
 * durably queued (transactional outbox).
 */
import type { Kysely } from 'kysely';
import { ErrorCode } from '@dcvd/client';
import type { Clock } from '../deps.ts';
import type { Database } from '../store/schema.ts';
import type { OfferedAddressRegistry } from '../registry/offered.ts';
import { MARK_CERTIFICATE_PRODUCTS, type OrderDomainRow, type OrderRepository, type OrderRow, type OrderWithDomains } from '../orders/orders.ts';
import type { TemplateRepository } from '../orders/templates.ts';
import { currentRecipient, domainsOfOrder, queueEmailsIn, type DcvEmailSettings } from '../orders/dcv-email.ts';
import { offeredRecipient, type DcvRecipient } from '../registry/offer-window.ts';
import { corroborateRecipient, queueCorroboratedEmail, type ContactGate } from '../mpic/corroborate.ts';
import { fail, type CallContext, type Outcome, type ResendDcvEmailParams } from './types.ts';
import { emailDcvRefusalOfAny, type EmailDcvPolicy } from '../orders/email-dcv-policy.ts';
import { writeTransaction } from '../store/database.ts';

export interface ResendDeps {
  db: Kysely<Database>;
  clock: Clock;
  orders: OrderRepository;
  templates: TemplateRepository;
  registry: OfferedAddressRegistry;
  settings: DcvEmailSettings;
  /** Cut-off date and blocklist of email DCV (CONTRACT §6): a refused order's resend answers -160. */
  policy: EmailDcvPolicy;
  /** Multi-Perspective Issuance Corroboration of DNS-found addresses (issue 19). */
  contactGate: ContactGate;
  /** Called after an email was queued (wakes the outbox worker of this process). */
  onQueued?: () => void;
}

/** The order with how many domains it has and its first one's id, in one statement (issue 20). */
async function findOrder(deps: ResendDeps, ctx: CallContext, params: ResendDcvEmailParams): Promise<Outcome<OrderWithDomains>> {
  if (params.orderNumber !== undefined) {
    const order = await deps.orders.findByNumberWithDomains(params.orderNumber);
    // Another account's order is answered exactly like a missing one (CONTRACT §5).
    if (!order || order.account_id !== ctx.account.id) return fail(ErrorCode.InvalidArgument, 'orderNumber');
    // Both given: they must name the same chain, or the call is ambiguous.
    if (params.baseOrderNumber !== undefined && order.base_order_number !== params.baseOrderNumber) {
      return fail(ErrorCode.InvalidArgument, 'baseOrderNumber');
    }
    return { ok: true, value: order };
  }
  const order = await deps.orders.newestOfChainWithDomains(ctx.account.id, params.baseOrderNumber!);
  return order ? { ok: true, value: order } : fail(ErrorCode.InvalidArgument, 'baseOrderNumber');
}

/**
 * The template of an order's new DCV emails (ResendDCVEmail, AutoUpdateDCV): `dcvTemplateID`,
 * else the order's own, else null (the built-in default). `dcvTemplateID` is "not relevant"
 * for VMC/CMC orders, and -4 when the account can use no template of that id.
 */
export async function templateOf(deps: Pick<ResendDeps, 'templates'>, ctx: CallContext, order: OrderRow, dcvTemplateID: number | undefined): Promise<Outcome<number | null>> {
  const markCertificate = order.product !== null && MARK_CERTIFICATE_PRODUCTS.has(order.product);
  const templateId = dcvTemplateID !== undefined && !markCertificate ? dcvTemplateID : order.template_id;
  if (templateId === null) return { ok: true, value: null };
  const row = await deps.templates.resolve(ctx.account.id, templateId);
  return row ? { ok: true, value: row.id } : fail(ErrorCode.InvalidArgument, 'dcvTemplateID');
}

export async function resendDcvEmail(deps: ResendDeps, ctx: CallContext, params: ResendDcvEmailParams): Promise<Outcome<void>> {
  const now = deps.clock.now();
  const found = await findOrder(deps, ctx, params);
  if (!found.ok) return found;
  const order = found.value;
  const log = ctx.log;
  const orderNumber = order.order_number;

  // Step 8: permissions.
  if (order.voucher === 1 && !ctx.account.perm_voucher) return fail(ErrorCode.VoucherPermissionDenied, 'ResendDCVEmail');

  // Step 10: the operator's policy, as for GetDCVEmailAddressList (no email after the cut-off or for a blocklisted
  // domain): for a multi-domain order, every domain the resend would email (those awaiting email DCV).
  const domains = order.domain_count > 1 ? await domainsOfOrder.rows(deps.db, { orderId: order.id }) : undefined;
  const names = domains ? domains.filter(awaitsEmail).map((d) => d.domain) : [order.domain];
  const refusal = emailDcvRefusalOfAny(deps.policy, names, now);
  if (refusal) {
    log.info({ orderNumber, policy: refusal }, 'email DCV refused by policy');
    return fail(ErrorCode.RequestUnsuccessful);
  }

  const template = await templateOf(deps, ctx, order, params.dcvTemplateID);
  if (!template.ok) return template;
  const templateRef = template.value;

  // A multi-domain order (CONTRACT §12): every domain still awaiting email DCV gets its email.
  if (domains) return resendEveryDomain(deps, ctx, params, order, domains, templateRef, now);

  // The recipient: a newly named address must pass the 24-hour rule (CONTRACT §4).
  let recipient: DcvRecipient | undefined;
  if (params.dcvEmailAddress !== undefined) {
    recipient = await offeredRecipient(deps.registry, order, params.dcvEmailAddress, now);
    if (!recipient) {
      log.info({ orderNumber }, 'dcvEmailAddress was not offered to this account for the domain in the last 24 hours');
      return fail(ErrorCode.InvalidArgument, 'dcvEmailAddress');
    }
  } else {
    recipient = currentRecipient(order);
    if (!recipient) return fail(ErrorCode.MissingArgument, 'dcvEmailAddress');
  }

  // Step 10: the operation.
  // A DNS-found address is corroborated from multiple perspectives first (BR 3.2.2.9): not corroborated → -160.
  // The order's one domain as read with it: its id and position never change, so the transaction need not read it again.
  const domain = order.first_domain_id === null ? undefined : { id: order.first_domain_id, position: 1 };
  const result = await queueCorroboratedEmail(deps.contactGate, deps.db, deps.settings, { order, domain, recipient, templateRef, now }, log);
  if (!result.queued) {
    log.info({ orderNumber, refusal: result.reason }, 'dcv email not resent');
    return fail(ErrorCode.RequestUnsuccessful);
  }
  log.info({ orderNumber, messageId: result.messageId, to: recipient.address, reusedValue: result.reusedValue }, 'dcv email queued');
  deps.onQueued?.();
  return { ok: true, value: undefined };
}

const awaitsEmail = (d: OrderDomainRow): boolean => d.dcv_status === 'awaiting' && d.dcv_method === 'email';

/**
 * A resend without a domain of a multi-domain order: each domain awaiting
 * email DCV gets an email, to `dcvEmailAddress` where it passes the 24-hour
 * rule for that domain, else to its current address. All in one
 * transaction; -4 when the named address fits none of them, -160 when no
 * domain awaits email DCV or one of them was sent an email too recently.
 */
async function resendEveryDomain(
  deps: ResendDeps,
  ctx: CallContext,
  params: ResendDcvEmailParams,
  order: OrderRow,
  domains: readonly OrderDomainRow[],
  templateRef: number | null,
  now: number,
): Promise<Outcome<void>> {
  const pending = domains.filter(awaitsEmail);
  const plan: { domain: OrderDomainRow; recipient: DcvRecipient }[] = [];
  let named = 0;
  for (const domain of pending) {
    let recipient: DcvRecipient | undefined;
    if (params.dcvEmailAddress !== undefined) {
      recipient = await offeredRecipient(deps.registry, { account_id: order.account_id, domain: domain.domain }, params.dcvEmailAddress, now);
      if (recipient) named += 1;
    }
    recipient ??= currentRecipient(domain);
    if (recipient) plan.push({ domain, recipient });
  }
  if (params.dcvEmailAddress !== undefined && named === 0) return fail(ErrorCode.InvalidArgument, 'dcvEmailAddress');
  if (plan.length === 0) {
    if (pending.length > 0) return fail(ErrorCode.MissingArgument, 'dcvEmailAddress');
    ctx.log.info({ orderNumber: order.order_number }, 'no domain of the order awaits email DCV');
    return fail(ErrorCode.RequestUnsuccessful);
  }
  // BR 3.2.2.9 for every DNS-found recipient, before the transaction.
  const corroborations: (number | null)[] = [];
  for (const { domain, recipient } of plan) {
    const ok = await corroborateRecipient(deps.contactGate, ctx, { orderId: order.id, domain: domain.domain, recipient, templateRef, now });
    if (!ok) return fail(ErrorCode.RequestUnsuccessful);
    corroborations.push(ok.evidenceId);
  }
  let emails = 0;
  try {
    await writeTransaction(deps.db, async (trx) => {
      // One email per recipient: domains sharing an ADN address share one email and one value (BR 3.2.2.4.4).
      const planned = plan.map((p, i) => ({ ...p, corroborationId: corroborations[i] ?? null }));
      const result = await queueEmailsIn(trx, deps.settings, { order, plan: planned, templateRef, now });
      if ('refused' in result) throw new NotResent(result.refused);
      emails = result.queued;
    });
  } catch (err) {
    if (!(err instanceof NotResent)) throw err;
    ctx.log.info({ orderNumber: order.order_number, refusal: err.message }, 'dcv emails not resent');
    return fail(ErrorCode.RequestUnsuccessful);
  }
  ctx.log.info({ orderNumber: order.order_number, domains: plan.length, emails }, 'dcv emails queued');
  deps.onQueued?.();
  return { ok: true, value: undefined };
}

/** Undoes a multi-domain resend of which one email could not be queued. */
class NotResent extends Error {}

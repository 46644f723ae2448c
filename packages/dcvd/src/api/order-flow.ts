/**
 * The rest of the email-DCV flow (CONTRACT §12, issue 16): AutoApplyOrder /
 * AutoApplySSL place an order over the API, AutoUpdateDCV changes a domain's
 * method or address, GetMDCDomainDetails reports each domain's DCV state.
 * Checks after authentication, first failure answers: permission (-91) or
 * voucher (-90), the product and days (-4), the CSR (-4 csr), every domain's
 * rules (-4/-19/-37), the email-DCV policy (-160), each address's 24-hour
 * rule (-4), then the operation (-160). Every DCV address is chosen by
 * `offeredRecipient` (registry/offer-window.ts), the one function ResendDCVEmail
 * uses too; emails are queued in the transaction that writes the order.
 */
import { DCV_METHOD_NAMES, ErrorCode, listItems, type DcvMethodName, type MdcDomainDetail, type MdcDcvStatus } from '@dcvd/client';
import { checkDomainName } from '../domains/index.ts';
import { emailDcvRefusal, emailValidationUsable } from '../orders/email-dcv-policy.ts';
import { corroborateRecipient } from '../mpic/corroborate.ts';
import { templateOf, type ResendDeps } from './resend-dcv-email.ts';
import {
  domainsByOrder,
  insertOrderDomains,
  newOrderValues,
  type DcvMethod,
  type NewOrderDomain,
  type OrderDomainRow,
  type OrderRepository,
  type OrderRow,
} from '../orders/orders.ts';
import { allowedDays, type ProductRepository } from '../orders/products.ts';
import { checkCsr } from '../orders/csr.ts';
import { queueEmailsIn, type PlannedEmail } from '../orders/dcv-email.ts';
import { offeredRecipient, type DcvRecipient } from '../registry/offer-window.ts';
import { revokeValuesOfDomain } from '../orders/random-values.ts';
import { isUniqueViolation, writeTransaction } from '../store/database.ts';
import {
  fail,
  type AutoApplyOrderParams,
  type AutoUpdateDcvParams,
  type CallContext,
  type CollectedStatus,
  type CollectSslParams,
  type GetMdcDomainDetailsParams,
  type Outcome,
  type PlacedOrderResult,
  type UpdatedDcvResult,
} from './types.ts';

/** ResendDCVEmail's services (store, clock, registry, policy, MPIC gate, outbox wake-up) and the product catalogue. */
export interface OrderFlowDeps extends ResendDeps {
  products: ProductRepository;
}

const METHOD_OF: Readonly<Record<DcvMethodName, DcvMethod>> = {
  EMAIL: 'email',
  HTTP_CSR_HASH: 'http',
  HTTPS_CSR_HASH: 'https',
  CNAME_CSR_HASH: 'cname',
};
const NAME_OF: Readonly<Record<string, DcvMethodName>> = { email: 'EMAIL', http: 'HTTP_CSR_HASH', https: 'HTTPS_CSR_HASH', cname: 'CNAME_CSR_HASH' };
const STATUS_OF: Readonly<Record<string, MdcDcvStatus>> = { awaiting: 'Awaiting', validated: 'Validated', declined: 'Declined', cancelled: 'Cancelled' };

/** Thrown inside a transaction to undo it: an email that could not be queued. */
class NotQueued extends Error {}

/** The order's domains as the 24-hour registry keys them (no `*.`). */
const bare = (domain: string) => (domain.startsWith('*.') ? domain.slice(2) : domain);

/** A name through the domain rules (CONTRACT §2): the stored form (`*.` kept) or the error, with `item` for -4. */
function domainOf(name: string, item: string, wildcardAllowed: boolean): Outcome<string> {
  const check = checkDomainName(name);
  if (!check.ok) return check.code === ErrorCode.InvalidArgument ? fail(ErrorCode.InvalidArgument, item) : fail(check.code);
  if (check.wildcard && !wildcardAllowed) return fail(ErrorCode.InvalidArgument, item);
  return { ok: true, value: check.wildcard ? `*.${check.domain}` : check.domain };
}

/** The address for one domain: the 24-hour rule (CONTRACT §4), by the one function resends use too. */
async function recipientFor(deps: OrderFlowDeps, accountId: number, domain: string, address: string, now: number): Promise<DcvRecipient | undefined> {
  return offeredRecipient(deps.registry, { account_id: accountId, domain }, address, now);
}

// ---------------------------------------------------------------- AutoApplyOrder / AutoApplySSL

/**
 * An item of `dcvEmailAddresses` that names its domain's method instead of an address, as public clients of
 * the real host send them for the domains they validate by file or DNS (docs/PROTOCOL.md). Any case.
 */
const KEYWORD_METHOD: ReadonlyMap<string, DcvMethod> = new Map([
  ['HTTPCSRHASH', 'http'],
  ['HTTPSCSRHASH', 'https'],
  ['CNAMECSRHASH', 'cname'],
]);

/**
 * The method a keyword item names, in any ASCII case; a non-ASCII item is never one (`toUpperCase()` alone made
 * `httpſcsrhaſh`, with U+017F, the HTTPS keyword; found by a review).
 */
function keywordMethod(item: string): DcvMethod | undefined {
  return /^[\x21-\x7e]+$/.test(item) ? KEYWORD_METHOD.get(item.toUpperCase()) : undefined;
}

/**
 * The items of `dcvEmailAddresses` in the order of `names` (CN, the CSR's other names, then `domainNames`'
 * own). A client that sends every name of the order in `domainNames` (`listed`: its names as the domain
 * rules read them, without repeats) lists the items in that order (the real host's rule: "the number and
 * order … must match domainNames"), whatever order the CSR has; any other request lists them in the order
 * of `names`, as before.
 */
function itemsInDomainOrder(items: readonly string[], names: readonly string[], listed: readonly string[]): string[] {
  if (listed.length !== names.length || !names.every((n) => listed.includes(n))) return [...items];
  return names.map((n) => items[listed.indexOf(n)]!);
}

export async function autoApplyOrder(deps: OrderFlowDeps, ctx: CallContext, params: AutoApplyOrderParams): Promise<Outcome<PlacedOrderResult>> {
  const now = deps.clock.now();
  // Step 8.
  if (!ctx.account.perm_auto_apply) return fail(ErrorCode.AutoApplyPermissionDenied);
  const product = await deps.products.get(params.product);
  if (!product) return fail(ErrorCode.InvalidArgument, 'product');
  // `days` when given (the real host prefers it), else `years` of 365 days: the validity must be one the product allows.
  const days = params.days ?? (params.years ?? 0) * 365;
  if (!allowedDays(product).includes(days)) return fail(ErrorCode.InvalidArgument, params.days !== undefined ? 'days' : 'years');

  const csr = await checkCsr(params.csr);
  if (!csr.ok) {
    ctx.log.info({ csr: csr.reason }, 'csr refused');
    return fail(ErrorCode.InvalidArgument, 'csr');
  }
  // Step 9: the CSR's names, then domainNames (multi-domain products), each through the domain rules.
  const wildcard = product.wildcard === 1;
  const names: string[] = [];
  for (const name of csr.names) {
    const d = domainOf(name, 'csr', wildcard);
    if (!d.ok) return d;
    if (!names.includes(d.value)) names.push(d.value);
  }
  // domainNames' own names in its order, repeats dropped: the order of dcvEmailAddresses' items when it lists every name.
  const listed: string[] = [];
  if (params.domainNames !== undefined) {
    if (product.multi_domain !== 1) return fail(ErrorCode.InvalidArgument, 'domainNames');
    for (const name of listItems(params.domainNames)) {
      const d = domainOf(name, 'domainNames', wildcard);
      if (!d.ok) return d;
      if (!names.includes(d.value)) names.push(d.value);
      if (!listed.includes(d.value)) listed.push(d.value);
    }
  }
  if (names.length > product.max_domains) return fail(ErrorCode.InvalidArgument, product.multi_domain === 1 && params.domainNames !== undefined ? 'domainNames' : 'csr');

  const method = METHOD_OF[(params.dcvMethod ?? 'EMAIL') as DcvMethodName];
  const domains: NewOrderDomain[] = names.map((domain) => ({ domain, dcvMethod: method }));

  // The addresses: one item per domain (dcvEmailAddresses), or dcvEmailAddress for every domain. An item
  // may instead name another method for its domain, as the real host's clients send it (KEYWORD_METHOD).
  const recipients: { index: number; recipient: DcvRecipient }[] = [];
  if (method === 'email') {
    let addresses: string[];
    let item: string;
    if (params.dcvEmailAddresses !== undefined) {
      const items = listItems(params.dcvEmailAddresses);
      item = 'dcvEmailAddresses';
      if (items.length !== names.length || items.some((a) => a.length > 255)) return fail(ErrorCode.InvalidArgument, item);
      addresses = itemsInDomainOrder(items, names, listed);
    } else if (params.dcvEmailAddress !== undefined) {
      addresses = names.map(() => params.dcvEmailAddress!);
      item = 'dcvEmailAddress';
    } else {
      return fail(ErrorCode.MissingArgument, 'dcvEmailAddress');
    }
    // Step 10 comes after the addresses' checks in the wire order, but policy is checked per domain first: it answers for the name.
    for (let i = 0; i < names.length; i += 1) {
      // Keywords are items of the list only: `dcvEmailAddress` names an address.
      const other = item === 'dcvEmailAddresses' ? keywordMethod(addresses[i]!) : undefined;
      if (other) {
        domains[i]!.dcvMethod = other;
        continue;
      }
      const refusal = emailDcvRefusal(deps.policy, bare(names[i]!), now);
      if (refusal) {
        ctx.log.info({ policy: refusal }, 'email DCV refused by policy');
        return fail(ErrorCode.RequestUnsuccessful);
      }
      const recipient = await recipientFor(deps, ctx.account.id, names[i]!, addresses[i]!, now);
      if (!recipient) {
        ctx.log.info({ position: i + 1 }, 'DCV address was not offered to this account for the domain in the last 24 hours');
        return fail(ErrorCode.InvalidArgument, item);
      }
      recipients.push({ index: i, recipient });
    }
  }
  // BR 3.2.2.9 for every DNS-found address, before anything is written.
  const corroborations: (number | null)[] = [];
  for (const { index, recipient } of recipients) {
    const ok = await corroborateRecipient(deps.contactGate, ctx, { orderId: null, domain: names[index]!, recipient, templateRef: null, now });
    if (!ok) return fail(ErrorCode.RequestUnsuccessful);
    corroborations.push(ok.evidenceId);
  }

  // The order, its domains and their first DCV emails: one transaction.
  let emails = 0;
  for (let attempt = 0; ; attempt += 1) {
    const orderNumber = await deps.orders.unusedOrderNumber();
    const certificateID = await deps.orders.unusedOrderNumber();
    try {
      await writeTransaction(deps.db, async (trx) => {
        const inserted = await trx
          .insertInto('orders')
          .values({
            ...newOrderValues({
              accountId: ctx.account.id,
              orderNumber,
              baseOrderNumber: orderNumber,
              product: product.code,
              domain: names[0]!,
              // The order row mirrors its first domain.
              method: domains[0]!.dcvMethod,
              voucher: false,
              templateId: null,
              now,
            }),
            certificate_id: certificateID,
            days,
            csr: csr.pem,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        const rows = await insertOrderDomains(trx, inserted.id, domains, now);
        // One email per recipient: domains sharing an ADN address share one email and one value (BR 3.2.2.4.4).
        const plan = recipients.map(({ index, recipient }, i) => ({ domain: rows[index]!, recipient, corroborationId: corroborations[i] ?? null }));
        const result = await queueEmailsIn(trx, deps.settings, { order: inserted, plan, templateRef: null, now, newOrder: true });
        if ('refused' in result) throw new NotQueued(result.refused);
        emails = result.queued;
      });
    } catch (err) {
      if (err instanceof NotQueued) return fail(ErrorCode.RequestUnsuccessful);
      // Another writer took the order number or the certificate id (unique since migration 0016) between the draw
      // and the insert: draw both again.
      if (attempt < 5 && isUniqueViolation(err)) continue;
      throw err;
    }
    ctx.log.info({ orderNumber, domains: names.length, emails }, 'order placed');
    if (recipients.length > 0) deps.onQueued?.();
    return {
      ok: true,
      value: { orderNumber, certificateID, totalCost: '0.00', expectedDeliveryTime: 0, showCertificateID: params.showCertificateID === 'Y' },
    };
  }
}

// ---------------------------------------------------------------- finding an order of the account

/**
 * orderNumber, else certificateID (CollectSSL), else the newest of the chain baseOrderNumber; another account's
 * order is answered as a missing one (-4). Each further reference given must name the same order (-4 on it).
 */
export async function ownOrder(
  orders: OrderRepository,
  ctx: CallContext,
  ref: { orderNumber?: number; baseOrderNumber?: number; certificateID?: number },
): Promise<Outcome<OrderRow>> {
  let order: OrderRow | undefined;
  if (ref.orderNumber !== undefined) {
    order = await orders.findByNumber(ref.orderNumber);
    if (!order || order.account_id !== ctx.account.id) return fail(ErrorCode.InvalidArgument, 'orderNumber');
  } else if (ref.certificateID !== undefined) {
    order = await orders.findByCertificateId(ctx.account.id, ref.certificateID);
    if (!order) return fail(ErrorCode.InvalidArgument, 'certificateID');
  } else {
    order = ref.baseOrderNumber === undefined ? undefined : await orders.newestOfChain(ctx.account.id, ref.baseOrderNumber);
    return order ? { ok: true, value: order } : fail(ErrorCode.InvalidArgument, 'baseOrderNumber');
  }
  if (ref.baseOrderNumber !== undefined && order.base_order_number !== ref.baseOrderNumber) return fail(ErrorCode.InvalidArgument, 'baseOrderNumber');
  if (ref.certificateID !== undefined && order.certificate_id !== ref.certificateID) return fail(ErrorCode.InvalidArgument, 'certificateID');
  return { ok: true, value: order };
}

// ---------------------------------------------------------------- AutoUpdateDCV

interface Change {
  domain: OrderDomainRow;
  method: DcvMethod;
  recipient?: DcvRecipient;
  /** The MPIC evidence of a DNS-found recipient. */
  corroborationId?: number | null;
}

/**
 * Finds a named domain among the order's: a wildcard domain may be named with or without its `*.`, any other
 * domain only as it is. A `*.` name never stands for the domain without it (until 2026-12-04 it fell back to
 * it, so `*.www.example.com` changed `www.example.com`; found by fuzzing).
 */
function domainNamed(domains: readonly OrderDomainRow[], name: string): OrderDomainRow | undefined {
  const check = checkDomainName(name);
  if (!check.ok) return undefined;
  const wildcard = `*.${check.domain}`;
  if (check.wildcard) return domains.find((d) => d.domain === wildcard);
  return domains.find((d) => d.domain === check.domain) ?? domains.find((d) => d.domain === wildcard);
}

export async function autoUpdateDcv(deps: OrderFlowDeps, ctx: CallContext, params: AutoUpdateDcvParams): Promise<Outcome<UpdatedDcvResult>> {
  const now = deps.clock.now();
  const found = await ownOrder(deps.orders, ctx, params);
  if (!found.ok) return found;
  const order = found.value;
  if (order.voucher === 1 && !ctx.account.perm_voucher) return fail(ErrorCode.VoucherPermissionDenied, 'AutoUpdateDCV');
  const domains = (await domainsByOrder(deps.db, [order.id])).get(order.id) ?? [];

  // The requested changes: the multi-domain form (domainNames/newMethods/newDCVEmailAddresses) or the single one.
  // In each, a missing parameter (-3, in the table's order) before an invalid one (-4), as CONTRACT §1 checks
  // step 5 before step 6; whether one is required may depend on the order (domainName) or on another's value
  // (an address for EMAIL), so these come after the order and its permission.
  const wanted: { domain: OrderDomainRow; method: DcvMethodName; address?: string; item: string }[] = [];
  if (params.domainNames !== undefined) {
    const names = listItems(params.domainNames);
    if (params.newMethods === undefined) return fail(ErrorCode.MissingArgument, 'newMethods');
    const methods = listItems(params.newMethods);
    if (params.newDCVEmailAddresses === undefined && methods.includes('EMAIL')) return fail(ErrorCode.MissingArgument, 'newDCVEmailAddresses');
    // Separators only (`,`): a list of no domain is no request to change one, not a success.
    if (names.length === 0) return fail(ErrorCode.InvalidArgument, 'domainNames');
    if (methods.length !== names.length || !methods.every((m) => (DCV_METHOD_NAMES as readonly string[]).includes(m))) return fail(ErrorCode.InvalidArgument, 'newMethods');
    const addresses = params.newDCVEmailAddresses === undefined ? undefined : listItems(params.newDCVEmailAddresses);
    if (addresses !== undefined && addresses.length !== names.length) return fail(ErrorCode.InvalidArgument, 'newDCVEmailAddresses');
    for (let i = 0; i < names.length; i += 1) {
      const domain = domainNamed(domains, names[i]!);
      if (!domain || wanted.some((w) => w.domain.id === domain.id)) return fail(ErrorCode.InvalidArgument, 'domainNames');
      const change: (typeof wanted)[number] = { domain, method: methods[i] as DcvMethodName, item: 'newDCVEmailAddresses' };
      if (methods[i] === 'EMAIL') change.address = addresses![i]!;
      wanted.push(change);
    }
  } else {
    // domainName may be left out for a single-domain order only.
    if (params.domainName === undefined && domains.length !== 1) return fail(ErrorCode.MissingArgument, 'domainName');
    if (params.newMethod === undefined) return fail(ErrorCode.MissingArgument, 'newMethod');
    const method = params.newMethod as DcvMethodName;
    if (method === 'EMAIL' && params.newDCVEmailAddress === undefined) return fail(ErrorCode.MissingArgument, 'newDCVEmailAddress');
    const domain = params.domainName === undefined ? domains[0] : domainNamed(domains, params.domainName);
    if (!domain) return fail(ErrorCode.InvalidArgument, 'domainName');
    const change: (typeof wanted)[number] = { domain, method, item: 'newDCVEmailAddress' };
    if (method === 'EMAIL') change.address = params.newDCVEmailAddress!;
    wanted.push(change);
  }

  const template = await templateOf(deps, ctx, order, params.dcvTemplateID);
  if (!template.ok) return template;
  const templateRef = template.value;

  // An order declined (one domain's code declined declines it) or cancelled takes no change, as it takes no resend,
  // even where another of its domains is still awaiting.
  if (order.dcv_status !== 'awaiting') {
    ctx.log.info({ orderNumber: order.order_number, status: order.dcv_status }, 'DCV of an order that is not awaiting cannot change');
    return fail(ErrorCode.RequestUnsuccessful);
  }
  const changes: Change[] = [];
  for (const w of wanted) {
    if (w.domain.dcv_status !== 'awaiting') {
      ctx.log.info({ orderNumber: order.order_number, status: w.domain.dcv_status }, 'DCV of a domain that is not awaiting cannot change');
      return fail(ErrorCode.RequestUnsuccessful);
    }
    const change: Change = { domain: w.domain, method: METHOD_OF[w.method] };
    if (w.address !== undefined) {
      if (emailDcvRefusal(deps.policy, bare(w.domain.domain), now)) return fail(ErrorCode.RequestUnsuccessful);
      const recipient = await recipientFor(deps, ctx.account.id, w.domain.domain, w.address, now);
      if (!recipient) return fail(ErrorCode.InvalidArgument, w.item);
      const ok = await corroborateRecipient(deps.contactGate, ctx, { orderId: order.id, domain: w.domain.domain, recipient, templateRef, now });
      if (!ok) return fail(ErrorCode.RequestUnsuccessful);
      change.recipient = recipient;
      change.corroborationId = ok.evidenceId;
    }
    changes.push(change);
  }

  let queued = 0;
  const plan: (PlannedEmail & { same: boolean })[] = [];
  try {
    await deps.db.transaction().execute(async (trx) => {
      // `orders` first (lock order), then each domain.
      const stillAwaiting = await trx.updateTable('orders').set({ updated_at: now }).where('id', '=', order.id).where('dcv_status', '=', 'awaiting').executeTakeFirst();
      // Declined or cancelled since it was read.
      if (Number(stillAwaiting.numUpdatedRows) !== 1) throw new NotQueued('not-awaiting');
      for (const c of changes) {
        const moved = await trx
          .updateTable('order_domains')
          .set({ dcv_method: c.method, updated_at: now })
          .where('id', '=', c.domain.id)
          .where('dcv_status', '=', 'awaiting')
          .executeTakeFirst();
        if (Number(moved.numUpdatedRows) !== 1) throw new NotQueued('not-awaiting');
        if (c.domain.position === 1) await trx.updateTable('orders').set({ dcv_method: c.method }).where('id', '=', order.id).execute();
        // Any change makes the domain's outstanding codes stop working; a new email carries a new value.
        await revokeValuesOfDomain(trx, c.domain.id, c.method === 'email' ? 'superseded' : 'method-changed', now);
        if (c.recipient) {
          const fresh = await trx.selectFrom('order_domains').selectAll().where('id', '=', c.domain.id).executeTakeFirstOrThrow();
          const same = c.domain.dcv_method === 'email' && c.domain.dcv_email_address === c.recipient.address;
          plan.push({ domain: fresh, recipient: c.recipient, corroborationId: c.corroborationId ?? null, same });
        }
      }
      // The new emails, one per recipient (BR 3.2.2.4.4). A new address or method is a correction, not a
      // resend: the minimum interval holds only when every domain of the email asks for the same address again.
      const settingsOf = (group: readonly PlannedEmail[]) =>
        group.every((g) => plan.find((p) => p.domain.id === g.domain.id)!.same) ? deps.settings : { ...deps.settings, resendIntervalMs: 0 };
      const result = await queueEmailsIn(trx, deps.settings, { order, plan, templateRef, now, settingsOf });
      if ('refused' in result) throw new NotQueued(result.refused);
      queued = result.queued;
    });
  } catch (err) {
    if (!(err instanceof NotQueued)) throw err;
    ctx.log.info({ orderNumber: order.order_number, refusal: err.message }, 'DCV not updated');
    return fail(ErrorCode.RequestUnsuccessful);
  }
  ctx.log.info({ orderNumber: order.order_number, changed: changes.length, emails: queued }, 'DCV updated');
  if (queued > 0) deps.onQueued?.();
  return { ok: true, value: { certificateID: order.certificate_id } };
}

// ---------------------------------------------------------------- CollectSSL

/**
 * CollectSSL's status queries (docs/PROTOCOL.md): the order by `orderNumber`, else `certificateID`, else the
 * newest of `baseOrderNumber`'s chain; another account's answers as a missing one. A cancelled or declined
 * order is -20, as the real host answers a rejected request. dcvd issues no certificate, so any other order
 * is "being processed", with its DCV progress: completed once every domain is validated.
 */
export async function collectSsl(deps: OrderFlowDeps, ctx: CallContext, params: CollectSslParams): Promise<Outcome<CollectedStatus>> {
  const found = await ownOrder(deps.orders, ctx, params);
  if (!found.ok) return found;
  const order = found.value;
  if (order.dcv_status === 'cancelled' || order.dcv_status === 'declined') return fail(ErrorCode.OrderRejected);
  const domains = (await domainsByOrder(deps.db, [order.id])).get(order.id) ?? [];
  const started = domains.some((d) => d.dcv_status === 'validated' || d.last_dcv_email_at !== null);
  const dcvStatus = order.dcv_status === 'validated' ? 1 : started ? 2 : 0;
  return { ok: true, value: { orderNumber: order.order_number, certificateID: order.certificate_id, dcvStatus, fqdn: order.domain } };
}

// ---------------------------------------------------------------- GetMDCDomainDetails

const seconds = (ms: number | null) => (ms === null ? undefined : Math.floor(ms / 1000));

export async function getMdcDomainDetails(deps: OrderFlowDeps, ctx: CallContext, params: GetMdcDomainDetailsParams): Promise<Outcome<MdcDomainDetail[]>> {
  const found = await ownOrder(deps.orders, ctx, { orderNumber: params.orderNumber });
  if (!found.ok) return found;
  const domains = (await domainsByOrder(deps.db, [found.value.id])).get(found.value.id) ?? [];
  const now = deps.clock.now();
  return {
    ok: true,
    value: domains.map((d) => {
      const detail: MdcDomainDetail = { domainName: d.domain, dcvMethod: NAME_OF[d.dcv_method] ?? d.dcv_method.toUpperCase(), dcvStatus: STATUS_OF[d.dcv_status] ?? d.dcv_status };
      if (params.showStatusDetails) {
        if (d.dcv_email_address !== null) detail.dcvEmailAddress = d.dcv_email_address;
        const sent = seconds(d.last_dcv_email_at);
        if (sent !== undefined) detail.lastEmailSentAt = sent;
        const validated = d.dcv_status === 'validated' ? seconds(d.dcv_decided_at) : undefined;
        if (validated !== undefined) detail.validatedAt = validated;
        // From the email-DCV cut-off on, an email validation may no longer be relied upon (issue 18).
        if (d.dcv_status === 'validated') detail.validationUsable = emailValidationUsable(deps.policy, 'approved', now).usable ? 'Y' : 'N';
      }
      return detail;
    }),
  };
}

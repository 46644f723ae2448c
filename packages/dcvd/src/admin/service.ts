/**
 * The operator's operations (CONTRACT §9): accounts, orders, templates, the
 * outbox and evidence. One implementation behind both the `dcvd` commands and
 * the internal JSON API; each returns exactly the JSON view `--json` prints.
 */
import type { Kysely } from 'kysely';
import type { FastifyBaseLogger } from 'fastify';
import type { Clock, RandomSource } from '../deps.ts';
import type { Database } from '../store/schema.ts';
import { AccountError, AccountRepository, PERMISSIONS, type AccountInput, type AccountView, type Permission } from '../accounts/repository.ts';
import { normalizeNetworks } from '../accounts/networks.ts';
import { OfferedAddressRegistry } from '../registry/offered.ts';
import { checkDomainName } from '../domains/index.ts';
import { listOutbox, type OutboxView } from '../outbox/outbox.ts';
import { ProductError, ProductRepository, productView, type ProductInput, type ProductView } from '../orders/products.ts';
import { domainsByOrder, OrderError, OrderRepository, orderView, validationDomain, type DcvMethod, type OrderRow, type OrderView } from '../orders/orders.ts';
import { GLOBAL_SCOPE, TemplateRepository, templateView, type TemplateView } from '../orders/templates.ts';
import { queueDcvEmailIn, type DcvEmailSettings } from '../orders/dcv-email.ts';
import { offeredRecipient, type DcvRecipient } from '../registry/offer-window.ts';
import { listEvidence, type EvidenceView } from '../orders/confirmation.ts';
import { listWebhooks, type WebhookView } from '../webhooks/webhooks.ts';
import { accountReceiver, issueWebhookSecret } from '../webhooks/secrets.ts';
import type { EmailTemplate } from '../mail/templates.ts';
import { defaultEmailDcvPolicy, emailDcvRefusal, refusalText, type EmailDcvPolicy } from '../orders/email-dcv-policy.ts';
import { corroborateSelectedContact, listCorroborations, type ContactGate, type MpicEvidenceView } from '../mpic/corroborate.ts';
import { createLogger } from '../log.ts';

export interface AdminDeps {
  db: Kysely<Database>;
  clock: Clock;
  random: RandomSource;
  /** How a first DCV email is made; called only when an order is created with an address (it may create the key file). */
  dcvEmail: () => DcvEmailSettings;
  /** After an email was queued (the server wakes its outbox worker). */
  onQueued?: () => void;
  /** Cut-off and blocklist of email DCV: no first email for a refused domain, evidence judged usable or not. Default: the built-in cut-off. */
  emailPolicy?: EmailDcvPolicy;
  /** MPIC of DNS-found addresses (issue 19); absent = no MPIC service, so such an address is refused. */
  contactGate?: ContactGate;
  /** Where the gate logs each perspective's answer (default: JSON lines on stderr). */
  log?: FastifyBaseLogger;
}

export interface OrderCreateRequest {
  account: string;
  domain: string;
  orderNumber?: number | undefined;
  baseOrderNumber?: number | undefined;
  product?: number | undefined;
  voucher?: boolean | undefined;
  dcvMethod: DcvMethod;
  templateId?: number | undefined;
  dcvEmail?: string | undefined;
}

/**
 * An account as create/update/rotate answer it: with `webhookSecret` when a
 * new signing secret of its webhook URL was made. Shown this once; dcvd keeps
 * it only sealed.
 */
export type AccountWithSecret = AccountView & { webhookSecret?: string; previousWebhookSecretExpiresAt?: string | null };

export type CreatedOrder = OrderView & { queuedEmail: string | null };
export type OrderDetail = OrderView & { emails: OutboxView[]; evidence: EvidenceView[]; webhooks: WebhookView[]; corroborations: MpicEvidenceView[] };

export interface OutboxFilter {
  state?: string | undefined;
  orderNumber?: number | undefined;
  limit: number;
}

/** Checks permission names and drops repeats. */
export function permissionList(values: string[] | undefined): Permission[] | undefined {
  if (values === undefined) return undefined;
  for (const v of values) {
    if (!PERMISSIONS.includes(v as Permission)) throw new AccountError(`unknown permission ${JSON.stringify(v)} (known: ${PERMISSIONS.join(', ')})`);
  }
  return [...new Set(values)] as Permission[];
}

/** Source networks, checked up front so a bad one is the caller's error (AccountError), not an internal one. */
function checkedNetworks(values: string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  try {
    normalizeNetworks(values);
  } catch (err) {
    throw new AccountError((err as Error).message);
  }
  return values;
}

export class AdminService {
  private readonly accounts: AccountRepository;
  private readonly orders: OrderRepository;
  private readonly templates: TemplateRepository;

  constructor(private readonly deps: AdminDeps) {
    this.accounts = new AccountRepository(deps.db, deps.clock);
    this.orders = new OrderRepository(deps.db, deps.clock, deps.random);
    this.templates = new TemplateRepository(deps.db, deps.clock);
  }

  // ------------------------------------------------------------ accounts

  /** With a webhook URL, the account's own signing secret is made and returned (once). */
  async createAccount(login: string, input: AccountInput & { password: string }): Promise<AccountWithSecret> {
    const view = await this.accounts.create(login, { ...input, ...this.checkedAccountInput(input) });
    if (view.webhookUrl === null) return view;
    // Only if none: an update or a rotation that came between the insert and this issued the account's secret and
    // showed it to its caller; this must not replace it (the account's JSON then has no secret, as an update's).
    const issued = await this.issueSecret(login, 0, { onlyIfNone: true });
    return issued ? { ...view, webhookSecret: issued.secret } : view;
  }

  /** Setting a webhook URL on an account without a signing secret makes one and returns it (once); rotation is explicit. */
  async updateAccount(login: string, input: AccountInput): Promise<AccountWithSecret> {
    const view = await this.accounts.update(login, { ...input, ...this.checkedAccountInput(input) });
    if (typeof input.webhookUrl !== 'string') return view;
    const issued = await this.issueSecret(login, 0, { onlyIfNone: true });
    return issued === undefined ? view : { ...view, webhookSecret: issued.secret };
  }

  /**
   * A new signing secret for the account's webhook URL, returned once; the
   * previous one keeps signing for `overlapMs` (events carry both signatures).
   */
  async rotateWebhookSecret(login: string, overlapMs: number): Promise<AccountWithSecret> {
    const view = await this.accounts.view(login);
    if (view.webhookUrl === null) throw new AccountError(`account ${JSON.stringify(login)} has no webhook URL of its own (its events go to the global URL, signed with --webhook-secret)`);
    if (!Number.isSafeInteger(overlapMs) || overlapMs < 0 || overlapMs > 30 * 24 * 3600 * 1000) throw new AccountError('the overlap must be between 0 and 30 days');
    const issued = (await this.issueSecret(login, overlapMs))!;
    return { ...view, webhookSecret: issued.secret, previousWebhookSecretExpiresAt: issued.previousExpiresAt === null ? null : new Date(issued.previousExpiresAt).toISOString() };
  }

  private async issueSecret(login: string, overlapMs: number, opts: { onlyIfNone?: boolean } = {}) {
    const id = await this.accountId(login);
    const { keys, random } = this.deps.dcvEmail();
    return issueWebhookSecret(this.deps.db, { keys, random }, accountReceiver(id), this.deps.clock.now(), overlapMs, opts);
  }

  showAccount(login: string): Promise<AccountView> {
    return this.accounts.view(login);
  }

  lockAccount(login: string): Promise<AccountView> {
    return this.accounts.lock(login);
  }

  unlockAccount(login: string): Promise<AccountView> {
    return this.accounts.unlock(login);
  }

  listAccounts(): Promise<AccountView[]> {
    return this.accounts.list();
  }

  private checkedAccountInput(input: AccountInput): AccountInput {
    const checked: AccountInput = {};
    const perms = permissionList(input.permissions);
    if (perms) checked.permissions = perms;
    const networks = checkedNetworks(input.allowedNetworks);
    if (networks) checked.allowedNetworks = networks;
    return checked;
  }

  // ------------------------------------------------------------ orders

  /** Creates an order; with `dcvEmail`, the 24-hour rule (CONTRACT §4) applies and the first DCV email is queued. */
  async createOrder(req: OrderCreateRequest): Promise<CreatedOrder> {
    const { db, clock } = this.deps;
    const now = clock.now();
    const owner = await this.accountId(req.account);
    // A product, when named, is one of the catalogue's, and a wildcard domain needs a wildcard product (as AutoApplyOrder holds them).
    if (req.product !== undefined) {
      const product = await new ProductRepository(db, clock).get(req.product);
      if (!product) throw new OrderError(`no product ${req.product} in the catalogue (dcvd product list)`, 'not-found');
      // The domain as the order will keep it (checkDomainName trims it and reads `。．｡` as dots), so `*。example.org` is a wildcard too.
      const domain = checkDomainName(req.domain);
      if (product.wildcard !== 1 && domain.ok && domain.wildcard) throw new OrderError(`product ${req.product} is not a wildcard product; ${JSON.stringify(req.domain)} needs one`);
    }
    let templateRef: number | null = null;
    if (req.templateId !== undefined) {
      const row = await this.templates.resolve(owner, req.templateId);
      if (!row) throw new OrderError(`no template ${req.templateId} for account ${JSON.stringify(req.account)} or global`, 'not-found');
      templateRef = row.id;
    }
    // The 24-hour rule before anything is written.
    let recipient: DcvRecipient | undefined;
    if (req.dcvEmail !== undefined) {
      if (req.dcvMethod !== 'email') throw new OrderError('--dcv-email needs --dcv-method email');
      const domain = checkDomainName(req.domain);
      const refusal = domain.ok ? emailDcvRefusal(this.emailPolicy, domain.domain, now) : undefined;
      if (refusal) throw new OrderError(`no DCV email for ${domain.ok ? domain.domain : req.domain}: ${refusalText(refusal, this.emailPolicy)}`, 'conflict');
      if (domain.ok) {
        const pseudo = { account_id: owner, domain: domain.domain };
        recipient = await offeredRecipient(new OfferedAddressRegistry(db), pseudo, req.dcvEmail, now);
        if (!recipient) {
          throw new OrderError(
            `${req.dcvEmail} was not returned to account ${JSON.stringify(req.account)} by GetDCVEmailAddressList for ${validationDomain(pseudo)} in the last 24 hours`,
          );
        }
      }
    }
    // A DNS-found address is corroborated from multiple perspectives before the order is written (BR 3.2.2.9).
    let corroborationId: number | null = null;
    if (recipient) {
      const gate = this.deps.contactGate ?? { db, mode: 'required' as const, service: undefined, perspectives: 6 };
      const log = this.deps.log ?? createLogger('info', 2);
      const decision = await corroborateSelectedContact(gate, { accountId: owner, orderId: null, domain: req.domain, recipient, templateRef, now, log });
      if (!decision.allowed) {
        throw new OrderError(`${recipient.address} was found in DNS and Multi-Perspective Issuance Corroboration did not corroborate it (${decision.outcome}); no order was created`);
      }
      corroborationId = decision.evidenceId;
    }
    const input: Parameters<OrderRepository['create']>[0] = { accountId: owner, domain: req.domain, dcvMethod: req.dcvMethod, voucher: req.voucher === true };
    if (req.orderNumber !== undefined) input.orderNumber = req.orderNumber;
    if (req.baseOrderNumber !== undefined) input.baseOrderNumber = req.baseOrderNumber;
    if (req.product !== undefined) input.product = req.product;
    if (req.templateId !== undefined) input.templateId = req.templateId;
    let queuedEmail: string | null = null;
    // The order and its first DCV email in one transaction (CONTRACT §5): an email that cannot be queued leaves no order.
    const firstEmail = recipient && (async (trx: Kysely<Database>, created: OrderRow) => {
      const settings = { ...this.deps.dcvEmail(), resendIntervalMs: 0 };
      const result = await queueDcvEmailIn(trx, settings, { order: created, recipient, templateRef, now, corroborationId });
      if (!result.queued) throw new OrderError(`no order was created: its DCV email could not be queued (${result.reason})`, 'conflict');
      queuedEmail = result.messageId;
    });
    let order = await this.orders.create(input, firstEmail);
    if (queuedEmail !== null) {
      this.deps.onQueued?.();
      order = (await this.orders.findByNumber(order.order_number))!;
    }
    const [view] = await this.viewsOf([order]);
    return { ...view!, queuedEmail };
  }

  /** An order with its DCV emails, evidence and webhook events (`dcvd order show`). */
  async showOrder(orderNumber: number): Promise<OrderDetail> {
    const { db } = this.deps;
    const row = await this.orders.require(orderNumber);
    const [v] = await this.viewsOf([row]);
    const evidence = await listEvidence(db, { orderId: row.id }, { policy: this.emailPolicy, now: this.deps.clock.now() });
    return {
      ...v!,
      emails: await listOutbox(db, { orderId: row.id }),
      evidence,
      webhooks: await listWebhooks(db, { orderId: row.id }),
      corroborations: await listCorroborations(db, row.id),
    };
  }

  async listOrders(account?: string): Promise<OrderView[]> {
    const owner = account === undefined ? undefined : await this.accountId(account);
    return this.viewsOf(await this.orders.list(owner));
  }

  async cancelOrder(orderNumber: number): Promise<OrderView> {
    return (await this.viewsOf([await this.orders.cancel(orderNumber)]))[0]!;
  }

  /** The evidence of an order's validations, newest first (CONTRACT §6). */
  async orderEvidence(orderNumber: number): Promise<EvidenceView[]> {
    const row = await this.orders.require(orderNumber);
    return listEvidence(this.deps.db, { orderId: row.id }, { policy: this.emailPolicy, now: this.deps.clock.now() });
  }

  // ------------------------------------------------------------ products (CONTRACT §12)

  listProducts(): Promise<ProductView[]> {
    return new ProductRepository(this.deps.db, this.deps.clock).list();
  }

  async showProduct(code: number): Promise<ProductView> {
    const row = await new ProductRepository(this.deps.db, this.deps.clock).get(code);
    if (!row) throw new ProductError(`no product ${code}`, 'not-found');
    return productView(row);
  }

  createProduct(input: ProductInput): Promise<ProductView> {
    return new ProductRepository(this.deps.db, this.deps.clock).create(input);
  }

  // ------------------------------------------------------------ templates

  /** `account` null: a global template. */
  async createTemplate(account: string | null, id: number, template: EmailTemplate): Promise<TemplateView> {
    const scope = account === null ? GLOBAL_SCOPE : await this.accountId(account);
    const row = await this.templates.create(scope, id, template);
    return templateView(row, account);
  }

  async listTemplates(account?: string): Promise<TemplateView[]> {
    const scope = account === undefined ? undefined : await this.accountId(account);
    const names = await this.logins();
    return (await this.templates.list(scope)).map((r) => templateView(r, r.account_id === GLOBAL_SCOPE ? null : (names.get(r.account_id) ?? `#${r.account_id}`)));
  }

  // ------------------------------------------------------------ outbox

  /** DCV emails and their delivery state, newest first. */
  async listOutbox(filter: OutboxFilter): Promise<OutboxView[]> {
    const query: Parameters<typeof listOutbox>[1] = { limit: filter.limit };
    if (filter.state !== undefined) query.state = filter.state;
    if (filter.orderNumber !== undefined) query.orderId = (await this.orders.require(filter.orderNumber)).id;
    return listOutbox(this.deps.db, query);
  }

  // ------------------------------------------------------------ helpers

  private get emailPolicy(): EmailDcvPolicy {
    return this.deps.emailPolicy ?? defaultEmailDcvPolicy();
  }

  private async accountId(login: string): Promise<number> {
    const row = await this.deps.db.selectFrom('accounts').select('id').where('login', '=', login).executeTakeFirst();
    if (!row) throw new OrderError(`no account ${JSON.stringify(login)}`, 'not-found');
    return row.id;
  }

  private async logins(): Promise<Map<number, string>> {
    const rows = await this.deps.db.selectFrom('accounts').select(['id', 'login']).execute();
    return new Map(rows.map((r) => [r.id, r.login]));
  }

  private async viewsOf(rows: OrderRow[]): Promise<OrderView[]> {
    const names = await this.logins();
    const domains = await domainsByOrder(this.deps.db, rows.map((r) => r.id));
    return rows.map((r) => orderView(r, names.get(r.account_id) ?? `#${r.account_id}`, domains.get(r.id) ?? []));
  }
}

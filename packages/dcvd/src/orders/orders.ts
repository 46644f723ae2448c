/**
 * Orders (CONTRACT §5): each belongs to one account, has a unique order
 * number and a base order number shared by its renewal/reissue chain (which
 * resolves to the chain's newest order), a product, a domain, a DCV method
 * and status, the current DCV address and a voucher flag. The CA's ordering
 * system creates them through the operator interface (§9).
 */
import { sql, type Kysely, type Selectable } from 'kysely';
import type { Clock, RandomSource } from '../deps.ts';
import type { Database, OrderDomainTable, OrderTable } from '../store/schema.ts';
import { checkDomainName } from '../domains/index.ts';
import { revokeValuesOfOrder } from './random-values.ts';
import { OperatorError } from '../errors.ts';
import { prepared } from '../store/prepared.ts';
import { dialectOf, retryTransaction, unindexedNumber } from '../store/database.ts';
import { DCV_METHODS, type DcvMethod } from './methods.ts';

/** Every ResendDCVEmail looks its order up by number: precompiled. */
const orderByNumberSelect = (db: Kysely<Database>, p: { orderNumber: number }) => db.selectFrom('orders').selectAll().where('order_number', '=', p.orderNumber);
const orderByNumber = prepared(orderByNumberSelect);
/**
 * The newest order of a chain of one account: found by the chain's index (base number, id), the
 * account only a guard (unindexedNumber; through the account's index SQLite walked every order of
 * the account for a chain that is old or does not exist).
 */
const newestOfChainSelect = (db: Kysely<Database>, p: { accountId: number; baseOrderNumber: number }) =>
  db
    .selectFrom('orders')
    .selectAll()
    .where('base_order_number', '=', p.baseOrderNumber)
    .where(unindexedNumber('account_id'), '=', p.accountId)
    .orderBy('id', 'desc')
    .limit(sql.lit(1));
export const newestOfChainQuery = prepared(newestOfChainSelect);
/**
 * An order of one account by the certificate id AutoApplyOrder gave it (CollectSSL): its partial index, the account a
 * guard; one at most (unique within an account since migration 0016).
 */
export const orderByCertificateQuery = prepared((db: Kysely<Database>, p: { accountId: number; certificateId: number }) =>
  db
    .selectFrom('orders')
    .selectAll()
    .where('certificate_id', '=', p.certificateId)
    .where(unindexedNumber('account_id'), '=', p.accountId)
    .limit(sql.lit(1)),
);

/**
 * What a resend needs of an order's domains, read with the order (by the `(order_id, position)` index):
 * how many it has, and the id of its first. A one-domain order, nearly every one, needs no further read
 * (one round trip fewer per ResendDCVEmail, issue 20).
 */
const domainSummary = [
  sql<number | string>`(select count(*) from order_domains as s where s.order_id = orders.id)`.as('domain_count'),
  sql<number | null>`(select s.id from order_domains as s where s.order_id = orders.id and s.position = 1)`.as('first_domain_id'),
] as const;
export const orderByNumberWithDomains = prepared((db, p: { orderNumber: number }) => orderByNumberSelect(db, p).select(domainSummary));
const newestOfChainWithDomains = prepared((db, p: { accountId: number; baseOrderNumber: number }) => newestOfChainSelect(db, p).select(domainSummary));

export interface DomainSummary {
  /** How many domains the order has (1 for a single-domain order). */
  domain_count: number;
  /** Its first domain's `order_domains` id (the order's own domain); null only for an order without domains. */
  first_domain_id: number | null;
}
export type OrderWithDomains = OrderRow & DomainSummary;

/** PostgreSQL's count is a bigint: a number through `loadPg`'s type parser, a string through a pg without it. */
const withCount = (row: (OrderRow & { domain_count: number | string; first_domain_id: number | null }) | undefined): OrderWithDomains | undefined =>
  row && { ...row, domain_count: Number(row.domain_count) };

/**
 * Whether an order has the number `n`, as its own, as its chain's or as its certificate id: three index probes
 * in one statement (a union rather than an `or`, whose plan depends on statistics: PostgreSQL scanned a small
 * table for it).
 */
export const numberTaken = prepared((db, p: { n: number }) =>
  db
    .selectFrom('orders')
    .select('id')
    .where('order_number', '=', p.n)
    .unionAll(db.selectFrom('orders').select('id').where('base_order_number', '=', p.n))
    // AutoApplyOrder draws its certificate ids here too: CollectSSL finds an order by one (migration 0014's index).
    .unionAll(db.selectFrom('orders').select('id').where('certificate_id', '=', p.n))
    .limit(sql.lit(1)),
);

/** An order of the chain `baseOrderNumber` (a literal limit: SQLite plans a bound one for any count). */
const orderOfChain = prepared((db, p: { baseOrderNumber: number }) =>
  db.selectFrom('orders').selectAll().where('base_order_number', '=', p.baseOrderNumber).limit(sql.lit(1)),
);

export type OrderRow = Selectable<OrderTable>;
export type OrderDomainRow = Selectable<OrderDomainTable>;

export const DCV_STATUSES = ['awaiting', 'validated', 'declined', 'cancelled'] as const;
export type DcvStatus = (typeof DCV_STATUSES)[number];
export { DCV_METHODS, type DcvMethod } from './methods.ts';

/** Products for which dcvTemplateID is "not relevant" (seed): VMC and CMC. */
export const MARK_CERTIFICATE_PRODUCTS: ReadonlySet<number> = new Set([801, 803]);

/** The API's integer range (CONTRACT §1): order numbers beyond it could never be named in a request. */
const MAX_NUMBER = Number.MAX_SAFE_INTEGER;
/** Assigned order numbers: 8 digits, drawn at random (no count of orders leaks through them). */
const ASSIGNED_MIN = 10_000_000;
const ASSIGNED_SPAN = 90_000_000;

export class OrderError extends OperatorError {
  override name = 'OrderError';
}

export interface OrderInput {
  accountId: number;
  domain: string;
  orderNumber?: number;
  baseOrderNumber?: number;
  product?: number;
  voucher?: boolean;
  dcvMethod?: DcvMethod;
  templateId?: number;
}

/** An order as the operator interface prints it (CONTRACT §9). */
export interface OrderView {
  orderNumber: number;
  baseOrderNumber: number;
  account: string;
  domain: string;
  product: number | null;
  voucher: boolean;
  dcvMethod: string;
  dcvStatus: string;
  dcvEmailAddress: string | null;
  templateId: number | null;
  lastDcvEmailAt: string | null;
  createdAt: string;
  updatedAt: string;
  /** Every domain of the order with its own DCV state, the order's `domain` first (CONTRACT §12). */
  domains: OrderDomainView[];
}

export interface OrderDomainView {
  domain: string;
  dcvMethod: string;
  dcvStatus: string;
  dcvEmailAddress: string | null;
  lastDcvEmailAt: string | null;
  dcvDecidedAt: string | null;
}

export function orderDomainView(row: OrderDomainRow): OrderDomainView {
  return {
    domain: row.domain,
    dcvMethod: row.dcv_method,
    dcvStatus: row.dcv_status,
    dcvEmailAddress: row.dcv_email_address,
    lastDcvEmailAt: iso(row.last_dcv_email_at),
    dcvDecidedAt: iso(row.dcv_decided_at),
  };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function orderView(row: OrderRow, login: string, domains: readonly OrderDomainRow[]): OrderView {
  return {
    orderNumber: row.order_number,
    baseOrderNumber: row.base_order_number,
    account: login,
    domain: row.domain,
    product: row.product,
    voucher: row.voucher === 1,
    dcvMethod: row.dcv_method,
    dcvStatus: row.dcv_status,
    dcvEmailAddress: row.dcv_email_address,
    templateId: row.template_id,
    lastDcvEmailAt: iso(row.last_dcv_email_at),
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
    domains: domains.map(orderDomainView),
  };
}

/** The domains of orders, by order id, each list in position order. */
export async function domainsByOrder(db: Kysely<Database>, orderIds: readonly number[]): Promise<Map<number, OrderDomainRow[]>> {
  const out = new Map<number, OrderDomainRow[]>();
  for (let i = 0; i < orderIds.length; i += 500) {
    const chunk = orderIds.slice(i, i + 500);
    const rows = await db.selectFrom('order_domains').selectAll().where('order_id', 'in', chunk).orderBy('order_id').orderBy('position').execute();
    for (const r of rows) {
      const list = out.get(r.order_id) ?? [];
      list.push(r);
      out.set(r.order_id, list);
    }
  }
  return out;
}

/** The `orders` row of a new order, awaiting DCV, with no DCV address yet. */
export function newOrderValues(p: {
  accountId: number;
  orderNumber: number;
  baseOrderNumber: number;
  product: number | null;
  domain: string;
  method: DcvMethod;
  voucher: boolean;
  templateId: number | null;
  now: number;
}) {
  return {
    account_id: p.accountId,
    order_number: p.orderNumber,
    base_order_number: p.baseOrderNumber,
    product: p.product,
    domain: p.domain,
    dcv_method: p.method,
    ...NO_DCV_YET,
    voucher: p.voucher ? 1 : 0,
    template_id: p.templateId,
    created_at: p.now,
    updated_at: p.now,
  };
}

/** The DCV state of a new order and of each of its domains: awaiting, no email sent yet. */
const NO_DCV_YET = {
  dcv_status: 'awaiting',
  dcv_email_address: null,
  dcv_adn: null,
  dcv_address_source: null,
  dcv_dns_detail: null,
  last_dcv_email_at: null,
  dcv_decided_at: null,
} as const;

/** A domain of a new order: normalized name (`*.` kept) and its DCV method. */
export interface NewOrderDomain {
  domain: string;
  dcvMethod: DcvMethod;
}

/** Inserts the domains of a new order, in order (position 1 = the order's own domain). */
export async function insertOrderDomains(db: Kysely<Database>, orderId: number, domains: readonly NewOrderDomain[], now: number): Promise<OrderDomainRow[]> {
  // The rows as inserted (both databases return them), first position first: RETURNING promises no order.
  const rows = await db
    .insertInto('order_domains')
    .values(
      domains.map((d, i) => ({
        order_id: orderId,
        position: i + 1,
        domain: d.domain,
        dcv_method: d.dcvMethod,
        ...NO_DCV_YET,
        created_at: now,
        updated_at: now,
      })),
    )
    .returningAll()
    .execute();
  return rows.sort((x, y) => x.position - y.position);
}

/** The name DCV is done for: the order's domain without a wildcard's `*.` (the 24-hour registry's key). */
export function validationDomain(order: Pick<OrderRow, 'domain'>): string {
  return order.domain.startsWith('*.') ? order.domain.slice(2) : order.domain;
}

function checkNumber(name: string, n: number | undefined): void {
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 1 || n > MAX_NUMBER)) {
    throw new OrderError(`${name} must be a whole number from 1 to ${MAX_NUMBER}`);
  }
}

/**
 * A new order's chain (docs/OPERATIONS.md, "Orders"), inside its creating transaction: its own number must not be
 * another chain's base (unless it starts that chain, of its own account), and its base must be no other account's
 * chain, and, when an order has that number, be that order's own base. On PostgreSQL the numbers are locked first
 * (transaction-scoped advisory locks on the numbers themselves, in ascending order: no two creates wait for each
 * other in a circle).
 */
async function checkChain(trx: Kysely<Database>, input: { accountId: number; orderNumber: number; baseOrderNumber?: number | undefined }): Promise<void> {
  const base = input.baseOrderNumber ?? input.orderNumber;
  if (dialectOf(trx) === 'postgres') {
    for (const n of [...new Set([input.orderNumber, base])].sort((a, b) => a - b)) await sql`select pg_advisory_xact_lock(${n}::bigint)`.execute(trx);
  }
  const chain = await orderOfChain.first(trx, { baseOrderNumber: input.orderNumber });
  if (chain && (chain.account_id !== input.accountId || base !== input.orderNumber)) {
    throw new OrderError(`${input.orderNumber} is already the base order number of another chain`, 'conflict');
  }
  if (base === input.orderNumber) return;
  const root = await orderByNumber.first(trx, { orderNumber: base });
  const member = root ?? (await orderOfChain.first(trx, { baseOrderNumber: base }));
  if (member && member.account_id !== input.accountId) throw new OrderError(`base order number ${base} belongs to another account`);
  if (root && root.base_order_number !== root.order_number) {
    throw new OrderError(`order ${root.order_number} is not the base of its chain; its base order number is ${root.base_order_number}`);
  }
}

export class OrderRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  /**
   * Creates an order in `awaiting`; checks the domain as the API does (CONTRACT §2) and keeps chains within one account.
   * `within` runs in the order's transaction after its insert (its first DCV email, CONTRACT §5): what it throws
   * undoes the order too.
   */
  async create(input: OrderInput, within?: (trx: Kysely<Database>, order: OrderRow) => Promise<void>): Promise<OrderRow> {
    checkNumber('order number', input.orderNumber);
    checkNumber('base order number', input.baseOrderNumber);
    checkNumber('product code', input.product);
    checkNumber('template id', input.templateId);
    const check = checkDomainName(input.domain);
    if (!check.ok) throw new OrderError(`domain ${JSON.stringify(input.domain)} cannot be validated (${check.reason}, API code ${check.code})`);
    const domain = check.wildcard ? `*.${check.domain}` : check.domain;
    const method = input.dcvMethod ?? 'email';
    if (!DCV_METHODS.includes(method)) throw new OrderError(`DCV method must be one of ${DCV_METHODS.join(', ')}`);

    if (input.orderNumber !== undefined && (await this.findByNumber(input.orderNumber))) throw new OrderError(`order ${input.orderNumber} already exists`, 'conflict');

    const now = this.clock.now();
    for (let attempt = 0; ; attempt += 1) {
      const orderNumber = input.orderNumber ?? (await this.unusedOrderNumber());
      try {
        await this.db.transaction().execute(async (trx) => {
          // The chain's rules, checked where they cannot change before the insert: SQLite's transaction holds the
          // write lock from its start; on PostgreSQL each number the order takes (its own, its chain's) is locked
          // for the transaction, so two creates naming one chain number, for two accounts, run one after the other.
          await checkChain(trx, { ...input, orderNumber });
          const inserted = await trx
          .insertInto('orders')
          .values(
            newOrderValues({
              accountId: input.accountId,
              orderNumber,
              baseOrderNumber: input.baseOrderNumber ?? orderNumber,
              product: input.product ?? null,
              domain,
              method,
              voucher: input.voucher === true,
              templateId: input.templateId ?? null,
              now,
            }),
          )
          .returningAll()
          .executeTakeFirstOrThrow();
          await insertOrderDomains(trx, inserted.id, [{ domain, dcvMethod: method }], now);
          await within?.(trx, inserted);
        });
        return (await this.findByNumber(orderNumber))!;
      } catch (err) {
        // Another writer took the number between the check and the insert.
        if (!(await this.findByNumber(orderNumber))) throw err;
        if (input.orderNumber !== undefined || attempt >= 5) throw new OrderError(`order ${orderNumber} already exists`, 'conflict');
      }
    }
  }

  findByNumber(orderNumber: number): Promise<OrderRow | undefined> {
    return orderByNumber.first(this.db, { orderNumber });
  }

  /** This account's order with the certificate id `certificateId` (orders placed over the API have one). */
  findByCertificateId(accountId: number, certificateId: number): Promise<OrderRow | undefined> {
    return orderByCertificateQuery.first(this.db, { accountId, certificateId });
  }

  /** The newest order of the chain `baseOrderNumber` that belongs to this account. */
  newestOfChain(accountId: number, baseOrderNumber: number): Promise<OrderRow | undefined> {
    return newestOfChainQuery.first(this.db, { accountId, baseOrderNumber });
  }

  /** `findByNumber` with how many domains the order has and its first one's id, in the same statement. */
  async findByNumberWithDomains(orderNumber: number): Promise<OrderWithDomains | undefined> {
    return withCount(await orderByNumberWithDomains.first(this.db, { orderNumber }));
  }

  /** `newestOfChain` with how many domains the order has and its first one's id, in the same statement. */
  async newestOfChainWithDomains(accountId: number, baseOrderNumber: number): Promise<OrderWithDomains | undefined> {
    return withCount(await newestOfChainWithDomains.first(this.db, { accountId, baseOrderNumber }));
  }

  async list(accountId?: number): Promise<OrderRow[]> {
    let q = this.db.selectFrom('orders').selectAll();
    if (accountId !== undefined) q = q.where('account_id', '=', accountId);
    return q.orderBy('id').execute();
  }

  /**
   * Cancels an order: its codes stop working and its DCV emails not yet sent
   * are not sent. A cancelled order stays cancelled.
   */
  async cancel(orderNumber: number): Promise<OrderRow> {
    const order = await this.require(orderNumber);
    if (order.dcv_status === 'cancelled') throw new OrderError(`order ${orderNumber} is already cancelled`, 'conflict');
    const now = this.clock.now();
    // Lock order (store/database.ts): orders, then random_values and outbox.
    await retryTransaction(() => this.db.transaction().execute(async (trx) => {
      // Only an order not cancelled yet: of two cancels at once, the second finds it cancelled and answers so.
      const cancelled = await trx.updateTable('orders').set({ dcv_status: 'cancelled', updated_at: now }).where('id', '=', order.id).where('dcv_status', '<>', 'cancelled').executeTakeFirst();
      if (cancelled.numUpdatedRows === 0n) throw new OrderError(`order ${orderNumber} is already cancelled`, 'conflict');
      await trx.updateTable('order_domains').set({ dcv_status: 'cancelled', updated_at: now }).where('order_id', '=', order.id).where('dcv_status', '=', 'awaiting').execute();
      await revokeValuesOfOrder(trx, order.id, 'cancelled', now);
    }));
    return (await this.findByNumber(orderNumber))!;
  }

  async require(orderNumber: number): Promise<OrderRow> {
    const order = await this.findByNumber(orderNumber);
    if (!order) throw new OrderError(`no order ${orderNumber}`, 'not-found');
    return order;
  }


  /** A number no order has, as its own or as its chain's (one statement a draw). */
  async unusedOrderNumber(): Promise<number> {
    for (;;) {
      const n = ASSIGNED_MIN + (this.random.bytes(4).readUInt32BE(0) % ASSIGNED_SPAN);
      if (!(await numberTaken.first(this.db, { n }))) return n;
    }
  }
}

/**
 * The operator's product catalogue (CONTRACT §12): codes AutoApplyOrder
 * accepts, each single- or multi-domain, with its maximum number of domains,
 * whether wildcards are allowed, and the allowed `days`. 801 and 803 exist
 * by default (migration 0008) and take single-domain orders.
 */
import type { Kysely, Selectable } from 'kysely';
import type { Clock } from '../deps.ts';
import type { Database, ProductTable } from '../store/schema.ts';
import { OperatorError } from '../errors.ts';
import { insertedOnce } from '../store/database.ts';
import { displayLineProblem } from '../text.ts';

export type ProductRow = Selectable<ProductTable>;

export interface ProductView {
  code: number;
  name: string;
  multiDomain: boolean;
  maxDomains: number;
  wildcard: boolean;
  allowedDays: number[];
}

/** What the operator gives for a product: exactly what the views show. */
export type ProductInput = ProductView;

/** A multi-domain certificate's limit on names (the CA/B Forum sets none; common products stop at 250). */
export const MAX_DOMAINS_LIMIT = 250;

export function productView(row: ProductRow): ProductView {
  return {
    code: row.code,
    name: row.name,
    multiDomain: row.multi_domain === 1,
    maxDomains: row.max_domains,
    wildcard: row.wildcard === 1,
    allowedDays: allowedDays(row),
  };
}

export function allowedDays(row: Pick<ProductRow, 'allowed_days'>): number[] {
  return row.allowed_days.split(',').filter((d) => d !== '').map(Number);
}

export class ProductError extends OperatorError {
  override name = 'ProductError';
}

const whole = (n: number, min: number, max: number) => Number.isSafeInteger(n) && n >= min && n <= max;

export class ProductRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly clock: Clock,
  ) {}

  get(code: number): Promise<ProductRow | undefined> {
    return this.db.selectFrom('products').selectAll().where('code', '=', code).executeTakeFirst();
  }

  async list(): Promise<ProductView[]> {
    return (await this.db.selectFrom('products').selectAll().orderBy('code').execute()).map(productView);
  }

  async create(input: ProductInput): Promise<ProductView> {
    if (!whole(input.code, 1, Number.MAX_SAFE_INTEGER)) throw new ProductError('product code must be a whole number from 1');
    const problem = displayLineProblem(input.name, 128);
    if (problem) throw new ProductError(`product name ${problem}`);
    const name = input.name.trim();
    if (!whole(input.maxDomains, 1, MAX_DOMAINS_LIMIT)) throw new ProductError(`maximum domains must be from 1 to ${MAX_DOMAINS_LIMIT}`);
    if (!input.multiDomain && input.maxDomains !== 1) throw new ProductError('a single-domain product has a maximum of 1 domain');
    if (input.allowedDays.length === 0 || input.allowedDays.length > 20 || !input.allowedDays.every((d) => whole(d, 1, 3650))) {
      throw new ProductError('allowed days must be 1 to 20 whole numbers from 1 to 3650');
    }
    const taken = () => new ProductError(`product ${input.code} already exists`, 'conflict');
    if (await this.get(input.code)) throw taken();
    const now = this.clock.now();
    // Checked above, and again by the insert: another create of the code may come between.
    await insertedOnce(
      this.db
        .insertInto('products')
        .values({
          code: input.code,
          name,
          multi_domain: input.multiDomain ? 1 : 0,
          max_domains: input.maxDomains,
          wildcard: input.wildcard ? 1 : 0,
          allowed_days: [...new Set(input.allowedDays)].join(','),
          created_at: now,
          updated_at: now,
        })
        .execute(),
      taken,
    );
    return productView((await this.get(input.code))!);
  }
}

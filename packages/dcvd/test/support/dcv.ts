/** Orders, offers and resends against a test server (CONTRACT §4, §5). */
import { encodeUrlencoded, type ErrorCodeValue } from '@dcvd/client';
import { cryptoRandom, systemClock, type Clock } from '../../src/deps.ts';
import { AccountRepository } from '../../src/accounts/repository.ts';
import { OrderRepository, type OrderInput, type OrderRow } from '../../src/orders/orders.ts';
import type { Store } from '../../src/store/database.ts';
import { migrateToLatest } from '../../src/store/migrations.ts';
import { TemplateRepository, GLOBAL_SCOPE } from '../../src/orders/templates.ts';
import type { EmailTemplate } from '../../src/mail/templates.ts';
import { form, GET_PATH, PASSWORD, RESEND_PATH, type Response, type TestServer } from './server.ts';

export async function accountId(server: TestServer, login: string): Promise<number> {
  const row = await server.accounts.find(login);
  if (!row) throw new Error(`no account ${login}`);
  return row.id;
}

export async function createOrder(server: TestServer, clock: Clock, login: string, input: Omit<OrderInput, 'accountId'>): Promise<OrderRow> {
  return new OrderRepository(server.store.db, clock, cryptoRandom).create({ ...input, accountId: await accountId(server, login) });
}

/**
 * A store as the CA's ordering system leaves it before `dcvd serve` starts:
 * migrated, account `login` (PASSWORD, auto-apply) and one email-DCV order for
 * `domain` per number.
 */
export async function seedOrders(store: Store, login: string, domain: string, orderNumbers: number[]): Promise<void> {
  await migrateToLatest(store.db, store.dialect);
  await new AccountRepository(store.db, systemClock).create(login, { password: PASSWORD, permissions: ['auto-apply'] });
  const accountId = (await store.db.selectFrom('accounts').select('id').where('login', '=', login).executeTakeFirstOrThrow()).id;
  const orders = new OrderRepository(store.db, systemClock, cryptoRandom);
  for (const orderNumber of orderNumbers) await orders.create({ accountId, domain, orderNumber });
}

export async function createTemplate(server: TestServer, clock: Clock, login: string | null, id: number, t: EmailTemplate): Promise<void> {
  await new TemplateRepository(server.store.db, clock).create(login === null ? GLOBAL_SCOPE : await accountId(server, login), id, t);
}

/** GetDCVEmailAddressList (text format: constructed addresses, no DNS): records the offers of the 24-hour rule. */
export async function getList(server: TestServer, login: string, domainName: string): Promise<Response> {
  const r = await server.post(GET_PATH, form({ loginName: login, loginPassword: PASSWORD, domainName, product: '801' }));
  if (!r.body.startsWith('0\n')) throw new Error(`GetDCVEmailAddressList failed: ${r.body}`);
  return r;
}

export function resend(server: TestServer, login: string, params: Record<string, string | number>): Promise<Response> {
  const pairs: Record<string, string> = { loginName: login, loginPassword: PASSWORD };
  for (const [k, v] of Object.entries(params)) pairs[k] = String(v);
  return server.post(RESEND_PATH, form(pairs));
}

export const OK = 'errorCode=0';

/** The urlencoded error body of ResendDCVEmail, as the seed's table spells it. */
export function errorBody(code: ErrorCodeValue, item?: string): string {
  // The protocol's own encoder: its exact bytes are pinned by the protocol tests.
  return encodeUrlencoded('ResendDCVEmail', item === undefined ? { code } : { code, item });
}

/** The validation code in a delivered email's text. */
export function codeIn(text: string | undefined): string {
  const m = /Validation code:\s+([0-9A-Z]{26})\b/.exec(text ?? '');
  if (!m) throw new Error(`no validation code in ${JSON.stringify(text)}`);
  return m[1]!;
}

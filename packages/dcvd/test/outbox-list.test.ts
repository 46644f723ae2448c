/**
 * The admin list of emails (src/outbox/outbox.ts listOutbox: `dcvd outbox list`, GET /v1/outbox): on SQLite
 * a final state with many emails is read by walking the ids back, LIST_CHUNK at a time, instead of sorting
 * every email of the state (issue 20, thirteenth round). Its answers must be the plain query's, newest
 * first, for every state, limit and layout, chunk boundaries crossed; on SQLite, and on PostgreSQL (which
 * runs the plain query); and the walk's statements bounded (SQLite's plans).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CompiledQuery, sql, type Kysely, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs, type QueryResult, type RootOperationNode, type UnknownRow } from 'kysely';
import type { Store } from '../src/store/database.ts';
import type { Database } from '../src/store/schema.ts';
import { LIST_WALK, listBelow, listChunk, listOutbox, manyOfState, type ListWalk } from '../src/outbox/outbox.ts';
import { bulkFill, postgresOrSkip, postgresTestStore, sqliteTestStore } from './support/database.ts';

const NOW = 1_700_000_000_000;
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** Layout (ids 1…): delivered, every 1,000th cancelled, up to DELIVERED; then a block of failed longer than a chunk; then a few pending. */
const DELIVERED = LIST_WALK.sortAtMost + 1000;
const FAILED = LIST_WALK.chunk + 2000;
/** A small walk: a few short chunks, then the rest as before (the layout's newest delivered emails lie deeper). */
const SMALL: ListWalk = { sortAtMost: 500, chunk: 300, chunks: 3 };

/** Counts the statements a Kysely instance runs. */
class Counting implements KyselyPlugin {
  n = 0;
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    this.n += 1;
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}
const PENDING = 10;

async function fill(db: Kysely<Database>): Promise<{ orderId: number }> {
  await sql`insert into accounts (login, password_hash, created_at, updated_at) values ('list', 'x', ${NOW}, ${NOW})`.execute(db);
  await sql`insert into orders (account_id, order_number, base_order_number, domain, dcv_method, dcv_status, created_at, updated_at)
    select id, 77, 77, 'example.com', 'email', 'awaiting', ${NOW}, ${NOW} from accounts where login = 'list'`.execute(db);
  await sql`insert into orders (account_id, order_number, base_order_number, domain, dcv_method, dcv_status, created_at, updated_at)
    select id, 78, 78, 'example.org', 'email', 'awaiting', ${NOW}, ${NOW} from accounts where login = 'list'`.execute(db);
  await sql`insert into random_values (order_id, value_hash, recipient, adn, address_source, created_at, expires_at)
    select id, 'list-' || order_number, 'admin@example.com', 'example.com', 'constructed', ${NOW}, ${NOW} from orders`.execute(db);
  const total = DELIVERED + FAILED + PENDING;
  // Every 7th email is order 78's (an order's own list), the rest order 77's.
  await bulkFill(db, (trx) => sql`with recursive g(i) as (select 1 union all select i + 1 from g where i < ${sql.lit(total)})
    insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at)
    select '<list-' || i || '@ca.example>', v.order_id, v.id, 'admin@example.com',
      case when i > ${sql.lit(DELIVERED + FAILED)} then 'pending' when i > ${sql.lit(DELIVERED)} then 'failed' when i % 1000 = 0 then 'cancelled' else 'delivered' end,
      1, ${sql.lit(NOW)} + i, ${sql.lit(NOW)} + i, ${sql.lit(NOW)} + i
    from g join random_values v on v.value_hash = case when i % 7 = 0 then 'list-78' else 'list-77' end`.execute(trx).then(() => undefined));
  const { id } = await db.selectFrom('orders').select('id').where('order_number', '=', 78).executeTakeFirstOrThrow();
  return { orderId: Number(id) };
}

/** The plain query's message ids: what the list must answer. */
async function expected(db: Kysely<Database>, filter: { state?: string; orderId?: number; limit: number }): Promise<string[]> {
  let q = db.selectFrom('outbox').select('message_id').orderBy('id', 'desc').limit(filter.limit);
  if (filter.state !== undefined) q = q.where('state', '=', filter.state);
  if (filter.orderId !== undefined) q = q.where('order_id', '=', filter.orderId);
  return (await q.execute()).map((r) => r.message_id);
}

function suite(name: string, open: () => Promise<Store | undefined>) {
  describe(name, () => {
    test('every state, limit and order: the plain query’s answer, newest first, across chunks', async (t) => {
      const store = await open();
      if (!store) return t.skip('no PostgreSQL');
      const { db } = store;
      const { orderId } = await fill(db);
      if (store.dialect === 'postgres') await bulkFill(db, (trx) => sql`analyze outbox`.execute(trx).then(() => undefined));
      // On SQLite delivered is walked, failed sorted (with the default walk).
      assert.ok(Number((await manyOfState(db, 'delivered').executeTakeFirstOrThrow()).n) >= LIST_WALK.sortAtMost);
      assert.ok(Number((await manyOfState(db, 'failed').executeTakeFirstOrThrow()).n) < LIST_WALK.sortAtMost);
      const cases = [
        // The newest delivered ones lie a whole chunk and more below the newest email: the walk crosses chunks.
        ...[1, 7, 100, 999, 10_000].map((limit) => ({ state: 'delivered', limit })),
        ...[1, 100, 1000, 10_000].map((limit) => ({ state: 'failed', limit })),
        { state: 'cancelled', limit: 100 },
        { state: 'pending', limit: 100 },
        { state: 'sending', limit: 100 },
        { state: 'unknown', limit: 100 },
        { limit: 50 },
        { state: 'delivered', orderId, limit: 100 },
        { orderId, limit: 20 },
      ];
      for (const c of cases) {
        const want = await expected(db, c);
        assert.deepEqual((await listOutbox(db, c)).map((v) => v.messageId), want, JSON.stringify(c));
        // The small walk: its chunks run out before the limit for delivered (the rest by the state's index), and failed is walked too.
        assert.deepEqual((await listOutbox(db, c, SMALL)).map((v) => v.messageId), want, `${JSON.stringify(c)}, small walk`);
      }
      // Which statements ran (SQLite; PostgreSQL runs one statement): the count, the largest id, the chunks, the rest.
      if (store.dialect === 'sqlite') {
        const statements = async (filter: { state: string; limit: number }, w?: ListWalk) => {
          const counting = new Counting();
          await listOutbox(db.withPlugin(counting), filter, w);
          return counting.n;
        };
        assert.equal(await statements({ state: 'delivered', limit: 7 }), 4, 'count, largest id, two chunks');
        assert.equal(await statements({ state: 'delivered', limit: 7 }, SMALL), 6, 'count, largest id, three chunks, the rest');
        assert.equal(await statements({ state: 'failed', limit: 7 }), 2, 'count, one statement');
        assert.equal(await statements({ state: 'failed', limit: 7 }, SMALL), 3, 'count, largest id, one chunk');
      }
      // All of them: the walk goes down to the first email.
      const all = await listOutbox(db, { state: 'delivered', limit: DELIVERED });
      assert.equal(all.length, DELIVERED - Math.floor(DELIVERED / 1000));
      assert.equal(all.at(-1)!.messageId, '<list-1@ca.example>');
      assert.ok(all.every((v) => v.state === 'delivered'));
    });
  });
}

suite('SQLite', async () => (await sqliteTestStore(cleanups, 'dcvd-outbox-list-')).store);
suite('PostgreSQL', async () => ((await postgresOrSkip()) ? undefined : (await postgresTestStore(cleanups)).store));

describe('SQLite’s plans: a chunk is a range of the primary key; the count stops in the state’s index; the rest by it', () => {
  test('SQLite', async () => {
    const { store } = await sqliteTestStore(cleanups, 'dcvd-outbox-list-plan-');
    const plan = async (q: CompiledQuery) => (await store.db.executeQuery<{ detail: string }>(CompiledQuery.raw(`explain query plan ${q.sql}`, [...q.parameters]))).rows.map((r) => r.detail).join('; ');
    const chunk = await plan(listChunk(store.db, 'delivered', 100, 200, 50).compile());
    assert.match(chunk, /SEARCH o USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\)/, chunk);
    assert.doesNotMatch(chunk, /TEMP B-TREE|SCAN o\b/, chunk);
    const count = await plan(manyOfState(store.db, 'delivered').compile());
    assert.match(count, /SEARCH outbox USING COVERING INDEX outbox_(lease|due) \(state=\?\)/, count);
    // The rest after the chunks: the state's emails by its index (what the plain statement read), not the ids.
    const rest = await plan(listBelow(store.db, 'delivered', 5000, 50).compile());
    assert.match(rest, /SEARCH o USING INDEX outbox_(lease|due) \(state=\?\)/, rest);
  });
});

/**
 * Precompiled queries for the hot paths. Kysely builds an operation tree and
 * compiles it to SQL on every call; for the few statements every API request
 * runs, that costs more than SQLite takes to run them. `prepared` builds the
 * query once per database (dialect), with named placeholders where the values
 * go, and afterwards only substitutes the values into the compiled parameter
 * list. The SQL is still written with Kysely's typed builder, so both dialects
 * share one definition and the schema types still check it.
 */
import { CompiledQuery, type Compilable, type Kysely, type QueryResult } from 'kysely';
import type { Database } from './schema.ts';
import { nameStatement, syncStatementOf } from './database.ts';

/** Stands in for a value while the query is compiled. */
class Placeholder {
  constructor(readonly name: string) {}
}

interface Compiled {
  sql: string;
  /** Per compiled parameter: the name of the input it takes, or a constant of the query. */
  slots: readonly unknown[];
}

/** For inserts: `values(columns(input, [...]))` gives each named column its placeholder. */
export function columns<T extends Record<string, unknown>, K extends keyof T & string>(input: T, names: readonly K[]): Pick<T, K> {
  return Object.fromEntries(names.map((name) => [name, input[name]])) as Pick<T, K>;
}

export interface PreparedQuery<I, O> {
  execute(db: Kysely<Database>, input: I): Promise<QueryResult<O>>;
  /** The SQL and its parameters as `execute` would run them (tests EXPLAIN them). */
  statement(db: Kysely<Database>, input: I): { sql: string; parameters: unknown[] };
  /** The rows. */
  rows(db: Kysely<Database>, input: I): Promise<O[]>;
  /** The first row, or undefined. */
  first(db: Kysely<Database>, input: I): Promise<O | undefined>;
  /** Rows an update or delete touched. */
  affected(db: Kysely<Database>, input: I): Promise<number>;
}

/**
 * `build` gets the database and an object whose properties stand for the
 * input's values; every value the query should take from the input must be
 * one of those properties, used as is (not inside an expression that reads
 * it). Works inside transactions: a transaction shares its database's
 * compiler, so the compiled form is shared too.
 */
export function prepared<I extends Record<string, unknown>, O>(
  build: (db: Kysely<Database>, input: I) => Compilable<O>,
): PreparedQuery<I, O> {
  const compiled = compiler(build, (c, input: I) => {
    // An input the query never reads is a mistake in its definition (a column left out of an insert, say).
    const used = new Set(c.slots.flatMap((slot) => (slot instanceof Placeholder ? [slot.name] : [])));
    const unused = Object.keys(input).filter((name) => !used.has(name));
    if (unused.length > 0) throw new TypeError(`prepared query never uses ${unused.join(', ')}: ${c.sql}`);
  });

  const statement = (db: Kysely<Database>, input: I) => {
    const c = compiled(db, input);
    const parameters = c.slots.map((slot) => {
      if (!(slot instanceof Placeholder)) return slot;
      const value = input[slot.name];
      if (value === undefined) throw new TypeError(`prepared query: no value for ${slot.name}`);
      return value;
    });
    return { sql: c.sql, parameters };
  };
  const execute = async (db: Kysely<Database>, input: I): Promise<QueryResult<O>> => {
    const { sql, parameters } = statement(db, input);
    return run<O>(db, sql, parameters);
  };

  return {
    execute,
    statement,
    rows: async (db, input) => (await execute(db, input)).rows,
    first: async (db, input) => (await execute(db, input)).rows[0],
    affected: async (db, input) => Number((await execute(db, input)).numAffectedRows ?? 0n),
  };
}

/** A compiled statement with its values: on SQLite outside any transaction at once (database.ts, syncStatementOf), else through Kysely. */
async function run<O>(db: Kysely<Database>, sql: string, parameters: readonly unknown[]): Promise<QueryResult<O>> {
  const now = syncStatementOf(db)?.(sql, parameters);
  if (now) return now as QueryResult<O>;
  return db.executeQuery(CompiledQuery.raw(sql, parameters as unknown[]) as CompiledQuery<O>);
}

/** Compiles `build` once per database (its adapter: one per Kysely instance, shared with its transactions); `check` vets the compiled form once. */
function compiler<I extends Record<string, unknown>, O, C>(
  build: (db: Kysely<Database>, input: I) => Compilable<O>,
  check: (compiled: Compiled, context: C) => void,
): (db: Kysely<Database>, context: C) => Compiled {
  const byAdapter = new WeakMap<object, Compiled>();
  const placeholders = new Proxy({} as I, { get: (_target, name) => new Placeholder(String(name)) });
  return (db, context) => {
    const adapter = db.getExecutor().adapter;
    let hit = byAdapter.get(adapter);
    if (!hit) {
      const c = build(db, placeholders).compile();
      hit = { sql: c.sql, slots: c.parameters };
      check(hit, context);
      nameStatement(c.sql);
      byAdapter.set(adapter, hit);
    }
    return hit;
  };
}

export interface PreparedListQuery<O> {
  /** `values` holds one value per compiled parameter, in the order the query was declared with. */
  execute(db: Kysely<Database>, values: readonly unknown[]): Promise<QueryResult<O>>;
}

/**
 * Like `prepared`, for a statement whose every parameter is an input value
 * and whose order is known: a multi-row insert, `order` naming the input of
 * each compiled parameter (`column0`, `column1`, … per row). The values come
 * as a list in that order, so a call builds no object with a property per row
 * and column (issue 20: the 24-hour registry's upsert of a dozen rows). The
 * order is checked against the compiled query once, when it compiles.
 */
export function preparedList<I extends Record<string, unknown>, O>(
  build: (db: Kysely<Database>, input: I) => Compilable<O>,
  order: readonly (keyof I & string)[],
): PreparedListQuery<O> {
  const compiled = compiler(build, (c, _: undefined) => {
    const names = c.slots.map((slot) => (slot instanceof Placeholder ? slot.name : undefined));
    if (names.length !== order.length || names.some((name, i) => name !== order[i])) {
      throw new TypeError(`prepared list query takes its values as ${names.map((n) => n ?? '(a constant)').join(', ')}, not in the declared order: ${c.sql}`);
    }
  });
  return {
    execute: async (db, values) => {
      const c = compiled(db, undefined);
      if (values.length !== c.slots.length) throw new TypeError(`prepared list query: ${values.length} values for ${c.slots.length} parameters`);
      if (values.includes(undefined)) throw new TypeError('prepared list query: a value is undefined');
      return run<O>(db, c.sql, values);
    },
  };
}

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
  // Keyed by the database's adapter: one per Kysely instance, shared with its transactions.
  const byAdapter = new WeakMap<object, Compiled>();
  const placeholders = new Proxy({} as I, { get: (_target, name) => new Placeholder(String(name)) });

  const compiled = (db: Kysely<Database>, input: I): Compiled => {
    const adapter = db.getExecutor().adapter;
    let hit = byAdapter.get(adapter);
    if (!hit) {
      const c = build(db, placeholders).compile();
      hit = { sql: c.sql, slots: c.parameters };
      // An input the query never reads is a mistake in its definition (a column left out of an insert, say).
      const used = new Set(hit.slots.flatMap((slot) => (slot instanceof Placeholder ? [slot.name] : [])));
      const unused = Object.keys(input).filter((name) => !used.has(name));
      if (unused.length > 0) throw new TypeError(`prepared query never uses ${unused.join(', ')}: ${c.sql}`);
      byAdapter.set(adapter, hit);
    }
    return hit;
  };

  const execute = async (db: Kysely<Database>, input: I): Promise<QueryResult<O>> => {
    const c = compiled(db, input);
    const parameters = c.slots.map((slot) => {
      if (!(slot instanceof Placeholder)) return slot;
      const value = input[slot.name];
      if (value === undefined) throw new TypeError(`prepared query: no value for ${slot.name}`);
      return value;
    });
    return db.executeQuery(CompiledQuery.raw(c.sql, parameters) as CompiledQuery<O>);
  };

  return {
    execute,
    rows: async (db, input) => (await execute(db, input)).rows,
    first: async (db, input) => (await execute(db, input)).rows[0],
    affected: async (db, input) => Number((await execute(db, input)).numAffectedRows ?? 0n),
  };
}

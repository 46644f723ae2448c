/**
 * The one migration path of both databases (CONTRACT §10): Kysely's schema
 * builder only, no dialect-specific SQL except the identity column, which the
 * two dialects spell differently.
 */
import { Migrator, sql, type Kysely, type Migration, type MigrationProvider, type MigrationResult } from 'kysely';
import type { Dialect } from './database.ts';

type Builder = ReturnType<Kysely<unknown>['schema']['createTable']>;

function withId(table: Builder, dialect: Dialect): Builder {
  return dialect === 'postgres'
    ? table.addColumn('id', 'bigint', (c) => c.primaryKey().generatedByDefaultAsIdentity())
    : table.addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement());
}

export function migrations(dialect: Dialect): Record<string, Migration> {
  return {
    '0001_accounts': {
      async up(db: Kysely<unknown>) {
        await withId(db.schema.createTable('accounts'), dialect)
          .addColumn('login', 'varchar(64)', (c) => c.notNull().unique())
          .addColumn('password_hash', 'text', (c) => c.notNull())
          .addColumn('credential_version', 'integer', (c) => c.notNull().defaultTo(1))
          .addColumn('perm_auto_apply', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('perm_voucher', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('allowed_networks', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('password_expires_at', 'bigint')
          .addColumn('locked', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('failed_attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('locked_until', 'bigint')
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('updated_at', 'bigint', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('ip_failures')
          .addColumn('ip', 'varchar(64)', (c) => c.primaryKey())
          .addColumn('window_start', 'bigint', (c) => c.notNull())
          .addColumn('failures', 'integer', (c) => c.notNull())
          .addColumn('blocked_until', 'bigint')
          .execute();
      },
    },
    '0002_offered_addresses': {
      async up(db: Kysely<unknown>) {
        await withId(db.schema.createTable('offered_addresses'), dialect)
          .addColumn('account_id', 'bigint', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
          .addColumn('domain', 'varchar(253)', (c) => c.notNull())
          .addColumn('address', 'varchar(254)', (c) => c.notNull())
          .addColumn('level', 'integer', (c) => c.notNull())
          .addColumn('source', 'varchar(16)', (c) => c.notNull())
          .addColumn('dns_detail', 'text')
          .addColumn('offered_at', 'bigint', (c) => c.notNull())
          .addUniqueConstraint('offered_addresses_account_domain_address', ['account_id', 'domain', 'address'])
          .execute();
        // The purge scans by age.
        await db.schema.createIndex('offered_addresses_offered_at').on('offered_addresses').column('offered_at').execute();
      },
    },
  };
}

class StaticProvider implements MigrationProvider {
  constructor(private readonly list: Record<string, Migration>) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return this.list;
  }
}

async function migrator(db: Kysely<any>, dialect: Dialect): Promise<Migrator> {
  if (dialect === 'sqlite') return new Migrator({ db, provider: new StaticProvider(migrations(dialect)) });
  // Kysely looks for its bookkeeping tables in every schema unless told which: name the
  // current one, so a database with several dcvd schemas (search_path) keeps them apart.
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  return new Migrator({ db, provider: new StaticProvider(migrations(dialect)), migrationTableSchema: rows[0]!.schema });
}

/** Applies every pending migration; throws with the failing migration's name. */
export async function migrateToLatest(db: Kysely<any>, dialect: Dialect): Promise<MigrationResult[]> {
  const { error, results } = await (await migrator(db, dialect)).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`migration ${failed} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  return results ?? [];
}

/** Names of migrations not yet applied (empty when the schema is current). */
export async function pendingMigrations(db: Kysely<any>, dialect: Dialect): Promise<string[]> {
  const all = await (await migrator(db, dialect)).getMigrations();
  return all.filter((m) => m.executedAt === undefined).map((m) => m.name);
}

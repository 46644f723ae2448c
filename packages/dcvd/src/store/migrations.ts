/**
 * The one migration path of both databases (CONTRACT §10): Kysely's schema
 * builder, with dialect branches only where the two differ: the identity
 * column, which they spell differently, SQLite's table rebuilds where it
 * cannot alter a constraint, and PostgreSQL's partial indexes for the queue
 * claims (0012), which SQLite's planner does not use.
 */
import { randomInt } from 'node:crypto';
import { Migrator, sql, type Kysely, type Migration, type MigrationProvider, type MigrationResult } from 'kysely';
import type { Dialect } from './database.ts';

type Builder = ReturnType<Kysely<unknown>['schema']['createTable']>;

function withId(table: Builder, dialect: Dialect): Builder {
  return dialect === 'postgres'
    ? table.addColumn('id', 'bigint', (c) => c.primaryKey().generatedByDefaultAsIdentity())
    : table.addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement());
}

/**
 * The evidence table (CONTRACT §6). Until migration 0011 one row per random
 * value (`uniqueValue`); since, one row per domain a value validated.
 */
/** The evidence columns after the two references. */
const EVIDENCE_COLUMNS = [
  'decision', 'br_section', 'br_version', 'domain', 'adn', 'recipient', 'address_source', 'dns_detail',
  'value_hash', 'value_created_at', 'message_id', 'email_sent_at', 'decided_at', 'source_ip', 'user_agent',
] as const;

function evidenceTable(db: Kysely<unknown>, dialect: Dialect, name: string, uniqueValue: boolean): Builder {
  return withId(db.schema.createTable(name), dialect)
    .addColumn('order_id', 'bigint', (c) => c.notNull().references('orders.id').onDelete('cascade'))
    .addColumn('random_value_id', 'bigint', (c) => {
      const col = c.notNull().references('random_values.id').onDelete('cascade');
      return uniqueValue ? col.unique() : col;
    })
    .addColumn('decision', 'varchar(16)', (c) => c.notNull())
    .addColumn('br_section', 'varchar(16)', (c) => c.notNull())
    .addColumn('br_version', 'varchar(16)', (c) => c.notNull())
    .addColumn('domain', 'varchar(255)', (c) => c.notNull())
    .addColumn('adn', 'varchar(253)', (c) => c.notNull())
    .addColumn('recipient', 'varchar(254)', (c) => c.notNull())
    .addColumn('address_source', 'varchar(16)', (c) => c.notNull())
    .addColumn('dns_detail', 'text')
    .addColumn('value_hash', 'varchar(64)', (c) => c.notNull())
    .addColumn('value_created_at', 'bigint', (c) => c.notNull())
    .addColumn('message_id', 'varchar(160)')
    .addColumn('email_sent_at', 'bigint')
    .addColumn('decided_at', 'bigint', (c) => c.notNull())
    .addColumn('source_ip', 'varchar(64)', (c) => c.notNull())
    .addColumn('user_agent', 'varchar(512)');
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
    '0003_orders_templates_outbox': {
      async up(db: Kysely<unknown>) {
        await withId(db.schema.createTable('orders'), dialect)
          .addColumn('account_id', 'bigint', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
          .addColumn('order_number', 'bigint', (c) => c.notNull().unique())
          .addColumn('base_order_number', 'bigint', (c) => c.notNull())
          .addColumn('product', 'bigint')
          .addColumn('domain', 'varchar(255)', (c) => c.notNull())
          .addColumn('dcv_method', 'varchar(16)', (c) => c.notNull())
          .addColumn('dcv_status', 'varchar(16)', (c) => c.notNull())
          .addColumn('voucher', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('template_id', 'bigint')
          .addColumn('dcv_email_address', 'varchar(254)')
          .addColumn('dcv_adn', 'varchar(253)')
          .addColumn('dcv_address_source', 'varchar(16)')
          .addColumn('dcv_dns_detail', 'text')
          .addColumn('last_dcv_email_at', 'bigint')
          .addColumn('dcv_decided_at', 'bigint')
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('updated_at', 'bigint', (c) => c.notNull())
          .execute();
        // A base order number resolves to the newest order of its chain.
        await db.schema.createIndex('orders_chain').on('orders').columns(['base_order_number', 'id']).execute();
        await db.schema.createIndex('orders_account').on('orders').columns(['account_id', 'id']).execute();

        await withId(db.schema.createTable('dcv_templates'), dialect)
          .addColumn('account_id', 'bigint', (c) => c.notNull())
          .addColumn('template_id', 'bigint', (c) => c.notNull())
          .addColumn('subject', 'text', (c) => c.notNull())
          .addColumn('text_body', 'text', (c) => c.notNull())
          .addColumn('html_body', 'text')
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addUniqueConstraint('dcv_templates_scope_id', ['account_id', 'template_id'])
          .execute();

        await withId(db.schema.createTable('random_values'), dialect)
          .addColumn('order_id', 'bigint', (c) => c.notNull().references('orders.id').onDelete('cascade'))
          .addColumn('value_hash', 'varchar(64)', (c) => c.notNull().unique())
          .addColumn('recipient', 'varchar(254)', (c) => c.notNull())
          .addColumn('adn', 'varchar(253)', (c) => c.notNull())
          .addColumn('address_source', 'varchar(16)', (c) => c.notNull())
          .addColumn('dns_detail', 'text')
          .addColumn('template_ref', 'bigint')
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .addColumn('revoked_at', 'bigint')
          .addColumn('revoked_reason', 'varchar(16)')
          .addColumn('spent_at', 'bigint')
          .execute();
        await db.schema.createIndex('random_values_order').on('random_values').columns(['order_id', 'id']).execute();

        await withId(db.schema.createTable('outbox'), dialect)
          .addColumn('message_id', 'varchar(160)', (c) => c.notNull().unique())
          .addColumn('order_id', 'bigint', (c) => c.notNull().references('orders.id').onDelete('cascade'))
          .addColumn('random_value_id', 'bigint', (c) => c.notNull().references('random_values.id').onDelete('cascade'))
          .addColumn('recipient', 'varchar(254)', (c) => c.notNull())
          .addColumn('state', 'varchar(16)', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
          .addColumn('lease_until', 'bigint')
          .addColumn('claim_token', 'varchar(64)')
          .addColumn('sealed_code', 'text')
          .addColumn('mail_from', 'varchar(254)')
          .addColumn('subject', 'text')
          .addColumn('last_error', 'text')
          .addColumn('response', 'text')
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('updated_at', 'bigint', (c) => c.notNull())
          .addColumn('delivered_at', 'bigint')
          .execute();
        // The worker's two claims: due pending emails, and sending ones whose lease ran out.
        await db.schema.createIndex('outbox_due').on('outbox').columns(['state', 'next_attempt_at']).execute();
        await db.schema.createIndex('outbox_lease').on('outbox').columns(['state', 'lease_until']).execute();
        await db.schema.createIndex('outbox_order').on('outbox').columns(['order_id', 'id']).execute();
        await db.schema.createIndex('outbox_random_value').on('outbox').columns(['random_value_id', 'id']).execute();
      },
    },
    '0004_confirmation_evidence': {
      async up(db: Kysely<unknown>) {
        await evidenceTable(db, dialect, 'dcv_evidence', true).execute();
        await db.schema.createIndex('dcv_evidence_order').on('dcv_evidence').columns(['order_id', 'id']).execute();
        await db.schema
          .createTable('code_failures')
          .addColumn('ip', 'varchar(64)', (c) => c.primaryKey())
          .addColumn('window_start', 'bigint', (c) => c.notNull())
          .addColumn('failures', 'integer', (c) => c.notNull())
          .addColumn('blocked_until', 'bigint')
          .execute();
      },
    },
    '0005_webhooks': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('accounts').addColumn('webhook_url', 'text').execute();
        await withId(db.schema.createTable('webhook_outbox'), dialect)
          .addColumn('event_id', 'varchar(64)', (c) => c.notNull().unique())
          .addColumn('order_id', 'bigint', (c) => c.notNull().references('orders.id').onDelete('cascade'))
          .addColumn('event', 'varchar(32)', (c) => c.notNull())
          .addColumn('url', 'text', (c) => c.notNull())
          .addColumn('body', 'text', (c) => c.notNull())
          .addColumn('state', 'varchar(16)', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
          .addColumn('lease_until', 'bigint')
          .addColumn('claim_token', 'varchar(64)')
          .addColumn('last_error', 'text')
          .addColumn('response', 'text')
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('updated_at', 'bigint', (c) => c.notNull())
          .addColumn('delivered_at', 'bigint')
          .execute();
        await db.schema.createIndex('webhook_outbox_due').on('webhook_outbox').columns(['state', 'next_attempt_at']).execute();
        await db.schema.createIndex('webhook_outbox_lease').on('webhook_outbox').columns(['state', 'lease_until']).execute();
        await db.schema.createIndex('webhook_outbox_order').on('webhook_outbox').columns(['order_id', 'id']).execute();
      },
    },
    // Attempts reserved before the work they guard (issue 14): an argon2 verification, a code lookup.
    '0006_security_limits': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('accounts').addColumn('auth_pending', 'integer', (c) => c.notNull().defaultTo(0)).execute();
        await db.schema.alterTable('accounts').addColumn('auth_pending_at', 'bigint').execute();
        for (const table of ['ip_failures', 'code_failures']) {
          await db.schema.alterTable(table).addColumn('pending', 'integer', (c) => c.notNull().defaultTo(0)).execute();
          await db.schema.alterTable(table).addColumn('pending_at', 'bigint').execute();
        }
      },
    },
    '0010_mpic_evidence': {
      async up(db: Kysely<unknown>) {
        await withId(db.schema.createTable('mpic_evidence'), dialect)
          .addColumn('request_id', 'varchar(64)', (c) => c.notNull().unique())
          .addColumn('account_id', 'bigint', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
          .addColumn('order_id', 'bigint', (c) => c.references('orders.id').onDelete('cascade'))
          .addColumn('random_value_id', 'bigint', (c) => c.references('random_values.id').onDelete('cascade'))
          .addColumn('domain', 'varchar(255)', (c) => c.notNull())
          .addColumn('target', 'varchar(253)', (c) => c.notNull())
          .addColumn('method', 'varchar(32)', (c) => c.notNull())
          .addColumn('address', 'varchar(254)', (c) => c.notNull())
          .addColumn('outcome', 'varchar(32)', (c) => c.notNull())
          .addColumn('corroborated', 'integer', (c) => c.notNull())
          .addColumn('perspectives', 'integer', (c) => c.notNull())
          .addColumn('corroborating', 'integer', (c) => c.notNull())
          .addColumn('rirs', 'varchar(200)', (c) => c.notNull())
          .addColumn('service_valid', 'integer')
          .addColumn('perspective_results', 'text', (c) => c.notNull())
          .addColumn('detail', 'text', (c) => c.notNull())
          .addColumn('started_at', 'bigint', (c) => c.notNull())
          .addColumn('finished_at', 'bigint', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('mpic_evidence_order').on('mpic_evidence').columns(['order_id', 'id']).execute();
        await db.schema.createIndex('mpic_evidence_random_value').on('mpic_evidence').column('random_value_id').execute();
      },
    },
    '0008_multi_domain_orders': {
      async up(db: Kysely<unknown>) {
        await withId(db.schema.createTable('order_domains'), dialect)
          .addColumn('order_id', 'bigint', (c) => c.notNull().references('orders.id').onDelete('cascade'))
          .addColumn('position', 'integer', (c) => c.notNull())
          .addColumn('domain', 'varchar(255)', (c) => c.notNull())
          .addColumn('dcv_method', 'varchar(16)', (c) => c.notNull())
          .addColumn('dcv_status', 'varchar(16)', (c) => c.notNull())
          .addColumn('dcv_email_address', 'varchar(254)')
          .addColumn('dcv_adn', 'varchar(253)')
          .addColumn('dcv_address_source', 'varchar(16)')
          .addColumn('dcv_dns_detail', 'text')
          .addColumn('last_dcv_email_at', 'bigint')
          .addColumn('dcv_decided_at', 'bigint')
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('updated_at', 'bigint', (c) => c.notNull())
          .addUniqueConstraint('order_domains_position', ['order_id', 'position'])
          .addUniqueConstraint('order_domains_domain', ['order_id', 'domain'])
          .execute();
        // Every existing order is a single-domain order: its domain becomes position 1.
        const copied = ['domain', 'dcv_method', 'dcv_status', 'dcv_email_address', 'dcv_adn', 'dcv_address_source', 'dcv_dns_detail', 'last_dcv_email_at', 'dcv_decided_at', 'created_at', 'updated_at'] as const;
        const odb = db as Kysely<any>;
        await odb
          .insertInto('order_domains')
          .columns(['order_id', 'position', ...copied])
          .expression(odb.selectFrom('orders').select(['id', sql<number>`1`.as('position'), ...copied]))
          .execute();

        await db.schema.alterTable('random_values').addColumn('order_domain_id', 'bigint').execute();
        await odb
          .updateTable('random_values')
          .set((eb: any) => ({
            order_domain_id: eb.selectFrom('order_domains').select('order_domains.id').whereRef('order_domains.order_id', '=', 'random_values.order_id').where('order_domains.position', '=', 1),
          }))
          .execute();
        await db.schema.createIndex('random_values_order_domain').on('random_values').columns(['order_domain_id', 'id']).execute();

        await db.schema.alterTable('orders').addColumn('certificate_id', 'bigint').execute();
        await db.schema.alterTable('orders').addColumn('days', 'integer').execute();
        await db.schema.alterTable('orders').addColumn('csr', 'text').execute();

        await db.schema
          .createTable('products')
          .addColumn('code', 'bigint', (c) => c.primaryKey())
          .addColumn('name', 'varchar(128)', (c) => c.notNull())
          .addColumn('multi_domain', 'integer', (c) => c.notNull())
          .addColumn('max_domains', 'integer', (c) => c.notNull())
          .addColumn('wildcard', 'integer', (c) => c.notNull())
          .addColumn('allowed_days', 'varchar(255)', (c) => c.notNull())
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('updated_at', 'bigint', (c) => c.notNull())
          .execute();
        // The two codes of the seed exist by default and take single-domain orders (CONTRACT §12).
        const now = Date.now();
        const single = { multi_domain: 0, max_domains: 1, wildcard: 0, allowed_days: '365,395', created_at: now, updated_at: now };
        await odb
          .insertInto('products')
          .values([
            { code: 801, name: 'VMC', ...single },
            { code: 803, name: 'CMC', ...single },
          ])
          .execute();
      },
    },
    // One DCV email may cover several domains of an order (BR 3.2.2.4.4, issue 16): the domains a
    // shared random value validates, and one evidence row per domain (no longer one per value).
    '0011_shared_dcv_email': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('random_value_domains')
          .addColumn('random_value_id', 'bigint', (c) => c.notNull().references('random_values.id').onDelete('cascade'))
          .addColumn('order_domain_id', 'bigint', (c) => c.notNull().references('order_domains.id').onDelete('cascade'))
          .addPrimaryKeyConstraint('random_value_domains_pk', ['random_value_id', 'order_domain_id'])
          .execute();
        await db.schema.createIndex('random_value_domains_domain').on('random_value_domains').columns(['order_domain_id', 'random_value_id']).execute();

        if (dialect === 'postgres') {
          // PostgreSQL's name for the column's UNIQUE of migration 0004.
          await db.schema.alterTable('dcv_evidence').dropConstraint('dcv_evidence_random_value_id_key').execute();
        } else {
          // SQLite cannot drop a constraint: the table is rebuilt without it, rows and ids kept.
          await evidenceTable(db, dialect, 'dcv_evidence_0011', false).execute();
          const odb = db as Kysely<any>;
          const all = ['id', 'order_id', 'random_value_id', ...EVIDENCE_COLUMNS];
          await odb.insertInto('dcv_evidence_0011').columns(all).expression(odb.selectFrom('dcv_evidence').select(all)).execute();
          await db.schema.dropTable('dcv_evidence').execute();
          await db.schema.alterTable('dcv_evidence_0011').renameTo('dcv_evidence').execute();
          await db.schema.createIndex('dcv_evidence_order').on('dcv_evidence').columns(['order_id', 'id']).execute();
        }
        await db.schema.createIndex('dcv_evidence_value_domain').on('dcv_evidence').columns(['random_value_id', 'domain']).unique().execute();
      },
    },
    // One signing secret per webhook receiver (issue 14); events name their receiver.
    '0007_webhook_secrets': {
      async up(db: Kysely<unknown>) {
        await withId(db.schema.createTable('webhook_secrets'), dialect)
          .addColumn('receiver', 'varchar(64)', (c) => c.notNull())
          .addColumn('sealed_secret', 'text', (c) => c.notNull())
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('expires_at', 'bigint')
          .execute();
        await db.schema.createIndex('webhook_secrets_receiver').on('webhook_secrets').columns(['receiver', 'id']).execute();
        await db.schema.alterTable('webhook_outbox').addColumn('receiver', 'varchar(64)').execute();
      },
    },
    // The queues' claims on PostgreSQL (issue 20, docs/PERFORMANCE.md "sixth round"): with statistics
    // taken while nothing was pending, PostgreSQL estimates one pending row and read the whole
    // (state, lease_until) index range of a backlog and sorted it on disk (47 ms a claim at 100,000
    // pending, growing with the backlog). A partial index per claimed state holds only the rows a
    // claim looks for, in the order it takes them, whatever the statistics say. SQLite's planner
    // keeps the (state, …) indexes for these claims (measured: the partial ones went unused and
    // cost about 25 µs more per email), so it gets none. Migration 0018 drops webhook_outbox_pending_due,
    // which no statement reads since the webhook claim of 0017.
    '0012_queue_partial_indexes': {
      async up(db: Kysely<unknown>) {
        if (dialect !== 'postgres') return;
        // A large queue table takes longer to index than the connection's statement timeout (5 s); inside the migration's transaction only.
        await sql`set local statement_timeout = 0`.execute(db);
        for (const table of ['outbox', 'webhook_outbox']) {
          await db.schema.createIndex(`${table}_pending_due`).on(table).column('next_attempt_at').where(sql.ref('state'), '=', sql.lit('pending')).execute();
          await db.schema.createIndex(`${table}_sending_lease`).on(table).column('lease_until').where(sql.ref('state'), '=', sql.lit('sending')).execute();
        }
      },
    },
    // The emails that still keep a sealed code (issue 20, docs/PERFORMANCE.md "ninth round"): the
    // minute's purge of the codes of dead values read every random value ever made (none is deleted),
    // 80 ms at 200,000 while holding SQLite's write lock; it now walks only the emails that still keep
    // one (about the last 30 days'), by this index. Both databases: `is not null` takes no parameter,
    // so SQLite uses a partial index for it.
    '0013_outbox_sealed_codes': {
      async up(db: Kysely<unknown>) {
        await indexOnBusyTable(db, dialect);
        // SQLite's migrations run outside a transaction: an index made by a start that then died is kept.
        await db.schema.createIndex('outbox_sealed').ifNotExists().on('outbox').column('random_value_id').where(sql.ref('sealed_code'), 'is not', null).execute();
      },
    },
    '0014_orders_by_certificate': {
      async up(db: Kysely<unknown>) {
        await indexOnBusyTable(db, dialect);
        // CollectSSL finds an order by the certificate id AutoApplyOrder gave it; orders made otherwise have none.
        await db.schema.createIndex('orders_certificate').ifNotExists().on('orders').column('certificate_id').where(sql.ref('certificate_id'), 'is not', null).execute();
      },
    },
    // The emails keeping a sealed code, by value and then id (docs/PERFORMANCE.md, fourteenth round): a
    // resend reads its value's newest code (`order by id desc limit 1`). With statistics of one email a
    // value, PostgreSQL read 0013's index (the value alone) and sorted every email of the value: 1 ms for
    // 2,000, growing with each resend of an unchanged value. With the id in the index it reads one entry.
    // The purge still walks the same emails.
    '0015_outbox_sealed_by_id': {
      async up(db: Kysely<unknown>) {
        await indexOnBusyTable(db, dialect);
        // SQLite runs this outside a transaction: a start that died between the two statements runs both again.
        await db.schema.dropIndex('outbox_sealed').ifExists().execute();
        await db.schema.createIndex('outbox_sealed').ifNotExists().on('outbox').columns(['random_value_id', 'id']).where(sql.ref('sealed_code'), 'is not', null).execute();
      },
    },
    // Certificate ids unique within an account (CollectSSL finds an account's order by one): AutoApplyOrder draws them
    // among the numbers no order has, but two orders placed at once could draw the same one, and orders placed before
    // 2026-12-04 drew theirs without that check. The older orders of an account's shared id get new ones; the newest
    // keeps it, as CollectSSL answered it. Two accounts' orders that share one keep it: each account found its own.
    '0016_orders_certificate_unique': {
      async up(db: Kysely<unknown>) {
        await indexOnBusyTable(db, dialect);
        const unique = async (tx: Kysely<any>) => {
          // PostgreSQL: no instance places an order between the renumbering and the index (the index's build would
          // wait for the same lock anyway). SQLite: the transaction's write lock does the same.
          if (dialect === 'postgres') await sql`lock table orders in share row exclusive mode`.execute(tx);
          await renumberSharedCertificateIds(tx);
          await tx.schema.dropIndex('orders_certificate').ifExists().execute();
          // The certificate id first: CollectSSL's lookup and the draw's probe search by it alone (the account is a guard).
          await tx.schema.createIndex('orders_certificate').unique().on('orders').columns(['certificate_id', 'account_id']).where(sql.ref('certificate_id'), 'is not', null).execute();
        };
        // PostgreSQL runs every migration in a transaction already; SQLite runs them outside one.
        if (dialect === 'postgres') await unique(db as Kysely<any>);
        else await (db as Kysely<any>).transaction().execute(unique);
      },
    },
    // The webhook claim's fair share per receiver (src/webhooks/fair-claim.ts): the receivers with pending
    // events, and each one's oldest due ones, by this index, so a claim costs a few index seeks per receiver
    // however many events one receiver has waiting. Its predicate is the claim's own guard on the state, one
    // no other index can serve (`+state` on SQLite, `(state || '')` on PostgreSQL, as store/database.ts's
    // unindexedState writes it, written out here): so the claim reads its pending rows by this index only,
    // and no other statement uses it. The claim's UPDATE repeats that guard, so this index could serve it too:
    // it does not with no statistics (dcvd never runs ANALYZE) or fresh ones, but after an operator's ANALYZE
    // taken before a backlog, SQLite scanned it for the UPDATE (7–9.5 ms a claim at 100,000 pending against
    // 1.2–2; a review), as the email outbox's claim would scan with such statistics; PostgreSQL used the
    // primary key in every plan. With statistics taken while nothing was pending, PostgreSQL otherwise
    // read a (state, …) index's whole backlog for each receiver (measured: 0.2–0.4 s a claim at 50,000
    // pending events of one receiver; 1 ms by this index).
    '0017_webhook_receiver_due': {
      async up(db: Kysely<unknown>) {
        await indexOnBusyTable(db, dialect);
        const state = dialect === 'postgres' ? sql`(${sql.ref('state')} || '')` : sql`+${sql.ref('state')}`;
        // SQLite runs this outside a transaction: an index made by a start that then died is kept.
        await db.schema.createIndex('webhook_outbox_receiver_due').ifNotExists().on('webhook_outbox').columns(['receiver', 'next_attempt_at']).where(state, '=', sql.lit('pending')).execute();
      },
    },
    // Migration 0012's partial index of the webhook outbox's pending rows, which nothing reads since 0017
    // (docs/PERFORMANCE.md, "seventeenth round: an unused webhook index"): the webhook claim reads its pending rows
    // by 0017's index only, and the other statements that read the table plan the same without it on
    // PostgreSQL, empty or with a backlog whose statistics predate it (test/webhook-index-plan.test.ts pins
    // them). Each event's enqueue and each retry wrote an entry of it. Only the claim of before 0017 used
    // it: an instance of that version still running beside this one claims by the (state, …) indexes,
    // as in the sixth round (a backlog's range read and sorted, 31 ms a claim at 100,000 pending, with
    // statistics that predate the backlog) until it is replaced. PostgreSQL only had it (0012); `if exists`
    // on both.
    '0018_drop_webhook_pending_due': {
      async up(db: Kysely<unknown>) {
        // PostgreSQL's DROP INDEX locks the table against readers too, for a moment: it waits 5 s at most for that lock.
        await indexOnBusyTable(db, dialect);
        await db.schema.dropIndex('webhook_outbox_pending_due').ifExists().execute();
      },
    },
  };
}

/**
 * Gives every order but the newest of each certificate id an account's orders share a new one (migration 0016), drawn as AutoApplyOrder
 * draws them in 2026-12 (8 digits, at random, among the numbers no order has as its number, chain or certificate
 * id). Written out here rather than imported: a migration must do tomorrow what it does today.
 */
async function renumberSharedCertificateIds(tx: Kysely<any>): Promise<number> {
  const shared = await tx
    .selectFrom('orders')
    .select(['account_id', 'certificate_id'])
    .where('certificate_id', 'is not', null)
    .groupBy(['account_id', 'certificate_id'])
    .having(sql`count(*)`, '>', 1)
    .execute();
  let renumbered = 0;
  for (const { account_id: accountId, certificate_id: id } of shared) {
    const sharing = await tx.selectFrom('orders').select('id').where('certificate_id', '=', id).where('account_id', '=', accountId).orderBy('id', 'desc').execute();
    for (const { id: orderId } of sharing.slice(1)) {
      await tx.updateTable('orders').set({ certificate_id: await unusedNumber(tx) }).where('id', '=', orderId).execute();
      renumbered += 1;
    }
  }
  return renumbered;
}

async function unusedNumber(tx: Kysely<any>): Promise<number> {
  for (;;) {
    const n = randomInt(10_000_000, 100_000_000);
    const taken = await tx
      .selectFrom('orders')
      .select('id')
      .where((eb) => eb.or([eb('order_number', '=', n), eb('base_order_number', '=', n), eb('certificate_id', '=', n)]))
      .limit(1)
      .executeTakeFirst();
    if (!taken) return n;
  }
}

/**
 * Before an index on a table the instances write all the time, on PostgreSQL: no statement timeout (the
 * build reads the whole table), and a lock timeout. The index waits for a lock that blocks the table's
 * writers: behind a transaction left open it fails (and the next start tries again) rather than hold every
 * instance's writes indefinitely.
 */
async function indexOnBusyTable(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  if (dialect !== 'postgres') return;
  await sql`set local statement_timeout = 0`.execute(db);
  await sql`set local lock_timeout = '5s'`.execute(db);
}

class StaticProvider implements MigrationProvider {
  constructor(private readonly list: Record<string, Migration>) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return this.list;
  }
}

async function migrator(db: Kysely<any>, dialect: Dialect): Promise<{ migrator: Migrator; schema: string | undefined }> {
  if (dialect === 'sqlite') return { migrator: new Migrator({ db, provider: new StaticProvider(migrations(dialect)) }), schema: undefined };
  // Kysely looks for its bookkeeping tables in every schema unless told which: name the
  // current one, so a database with several dcvd schemas (search_path) keeps them apart.
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = rows[0]!.schema;
  return { migrator: new Migrator({ db, provider: new StaticProvider(migrations(dialect)), migrationTableSchema: schema }), schema };
}

/**
 * A failure because another session dropped a schema, table or column meanwhile. Kysely's migrator looks for its
 * bookkeeping tables by reading the catalog of every schema, by name (`has_schema_privilege`,
 * `pg_get_serial_sequence`), before it does anything; what another session drops during that read fails it with
 * 3F000, 42P01 or 42703 naming that object. Seen in the test suite, whose files each drop their own schemas on one
 * server, and reproduced by migrating while another session created and dropped schemas and tables (14 failures in
 * a minute). Nothing was done yet then (no migration's result), so it is tried again; an error naming this schema,
 * or one that a migration met, is not.
 */
const VANISHED = new Set(['3F000', '42P01', '42703', '42704']);
const droppedElsewhere = (err: unknown, schema: string | undefined): boolean =>
  schema !== undefined && VANISHED.has(String((err as { code?: unknown } | undefined)?.code)) && !String((err as Error).message).includes(`"${schema}"`);

/** `step` with the database's migrator, tried again (at most 5 times in all) when another session's schema was dropped meanwhile. */
async function withMigrator<T>(db: Kysely<any>, dialect: Dialect, step: (m: Migrator) => Promise<T>, failure: (result: T) => unknown): Promise<T> {
  const { migrator: m, schema } = await migrator(db, dialect);
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await step(m);
      if (attempt < 5 && droppedElsewhere(failure(result), schema)) continue;
      return result;
    } catch (err) {
      if (attempt < 5 && droppedElsewhere(err, schema)) continue;
      throw err;
    }
  }
}

/** Applies every pending migration (or those up to `name`); throws with the failing migration's name. */
export async function migrateToLatest(db: Kysely<any>, dialect: Dialect, name?: string): Promise<MigrationResult[]> {
  const { error, results } = await withMigrator(db, dialect, (m) => (name === undefined ? m.migrateToLatest() : m.migrateTo(name)), (r) => (r.results === undefined ? r.error : undefined));
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`migration ${failed} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  return results ?? [];
}

/** Names of migrations not yet applied (empty when the schema is current). */
export async function pendingMigrations(db: Kysely<any>, dialect: Dialect): Promise<string[]> {
  const all = await withMigrator(db, dialect, (m) => m.getMigrations(), () => undefined);
  return all.filter((m) => m.executedAt === undefined).map((m) => m.name);
}

/** `dcvd migrate`: applies pending database migrations. */
import { resolve } from 'node:path';
import { Command } from 'commander';
import { print, withJson, withStoreOptions, type StoreFlags } from './options.ts';

export function migrateCommand(): Command {
  return withJson(withStoreOptions(new Command('migrate'))).action(
    async (flags: StoreFlags & { json?: boolean }) => {
      const [{ openStore }, { migrateToLatest }] = await Promise.all([import('../store/database.ts'), import('../store/migrations.ts')]);
      const store = openStore({ dataDir: resolve(flags.dataDir), databaseUrl: flags.databaseUrl });
      try {
        const results = await migrateToLatest(store.db, store.dialect);
        const applied = results.map((r) => r.migrationName);
        print(flags.json, { applied, database: store.location }, () =>
          applied.length === 0 ? `schema is current (${store.location})` : `applied ${applied.join(', ')} (${store.location})`,
        );
      } finally {
        await store.close();
      }
    },
  );
}


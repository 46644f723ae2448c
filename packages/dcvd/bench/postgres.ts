/**
 * Storage (issue 6's benchmark): GetDCVEmailAddressList in the text format —
 * authentication plus the 24-hour registry write, no DNS — on SQLite and on
 * PostgreSQL, then two instances against one on PostgreSQL, in the same run.
 * Each server is its own process; the two instances share one schema.
 */
import { createPostgresSchema, postgresReachable, DEFAULT_TEST_POSTGRES_URL } from '../test/support/database.ts';
import { fmt, load, startChild, type Child, type LoadResult } from './lib.ts';

const LOGIN = 'bench';
const PASSWORD = 'bench password 1234';

export default async function bench(opts: { durationMs?: number; concurrency?: number } = {}): Promise<string[]> {
  const durationMs = opts.durationMs ?? 10_000;
  const concurrency = opts.concurrency ?? 64;
  const url = process.env.DCVD_TEST_DATABASE_URL ?? DEFAULT_TEST_POSTGRES_URL;
  const lines = [`Storage: GetDCVEmailAddressList text format (auth + registry write), HTTPS keep-alive, concurrency ${concurrency}, ${durationMs / 1000}s`];
  if (!(await postgresReachable(url))) return [...lines, `skipped: no PostgreSQL at ${url}`];

  const body = new URLSearchParams({ loginName: LOGIN, loginPassword: PASSWORD, domainName: 'www.example.com', product: '801' }).toString();
  const run = (children: Child[]): Promise<LoadResult> =>
    load({
      port: children[0]!.port,
      morePorts: children.slice(1).map((c) => c.port),
      ca: children.map((c) => c.ca),
      path: '/products/!GetDCVEmailAddressList',
      body,
      concurrency,
      durationMs,
      check: (status, b) => status === 200 && b.startsWith('0\ndomain_name\twww.example.com\n'),
    });

  const sqlite = await startChild('dcvd', { login: LOGIN, password: PASSWORD });
  const onSqlite = await run([sqlite]);
  lines.push(fmt('SQLite, one instance', onSqlite, await sqlite.stop()));

  const schema = await createPostgresSchema();
  try {
    const first = await startChild('dcvd', { login: LOGIN, password: PASSWORD, databaseUrl: schema.url });
    const onPostgres = await run([first]);
    lines.push(fmt('PostgreSQL, one instance', onPostgres, 0).replace(/peak RSS.*/, ''));
    const second = await startChild('dcvd', { databaseUrl: schema.url });
    const onTwo = await run([first, second]);
    const rss = [await first.stop(), await second.stop()];
    lines.push(fmt('PostgreSQL, two instances', onTwo, Math.max(...rss)).replace('peak RSS', 'peak RSS (each, max)'));
    lines.push(`ratios: PostgreSQL/SQLite ${(onPostgres.rps / onSqlite.rps).toFixed(2)}, two/one instances on PostgreSQL ${(onTwo.rps / onPostgres.rps).toFixed(2)}`);
  } finally {
    await schema.drop();
  }
  return lines;
}

/**
 * The 24-hour registry of CONTRACT §4: every address GetDCVEmailAddressList
 * returns is recorded with the account, the normalized domain and the time;
 * the rule that reads it (a dcvEmailAddress must have been offered to the
 * same account for that domain in the 24 hours before) is offer-window.ts.
 * One row per (account, domain, address), refreshed on each offer, so the
 * table grows with distinct offers, not calls, and every check is one
 * unique-index lookup.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import { prepared, preparedList, type PreparedListQuery } from '../store/prepared.ts';
import { normalizeAddress } from '../contacts/address.ts';
import type { ContactSource, DnsEvidence, OfferedAddress } from '../contacts/provider.ts';
import { windowStart, type OfferLookup, type OfferRecord } from './offer-window.ts';

/** The 24-hour check of every ResendDCVEmail that names an address: precompiled. */
const offerOf = prepared((db, p: { accountId: number; domain: string; address: string; since: number }) =>
  db
    .selectFrom('offered_addresses')
    .select(['domain', 'address', 'level', 'source', 'dns_detail', 'offered_at'])
    .where('account_id', '=', p.accountId)
    .where('domain', '=', p.domain)
    .where('address', '=', p.address)
    .where('offered_at', '>', p.since),
);

const OFFER_COLUMNS = ['account_id', 'domain', 'address', 'level', 'source', 'dns_detail', 'offered_at'] as const;
type OfferRow = Record<(typeof OFFER_COLUMNS)[number], unknown>;
/** Answers of up to this many addresses have their upsert precompiled (a 10-label name offers 45 constructed ones). */
const MAX_PRECOMPILED_ROWS = 64;
const upserts = new Map<number, PreparedListQuery<unknown>>();

/**
 * The upsert of `n` offers, precompiled per row count (issue 20: building and compiling it was
 * about a tenth of the server's CPU per GetDCVEmailAddressList call). Its values: OFFER_COLUMNS
 * per row, row after row.
 */
function upsertOf(n: number): PreparedListQuery<unknown> {
  const hit = upserts.get(n);
  if (hit) return hit;
  const rows = Array.from({ length: n }, (_, i) => OFFER_COLUMNS.map((c) => `${c}${i}`));
  const query = preparedList(
    (db, p: Record<string, unknown>) =>
      db
        .insertInto('offered_addresses')
        .values(rows.map((names) => Object.fromEntries(names.map((name, c) => [OFFER_COLUMNS[c], p[name]])) as OfferRow as never))
        .onConflict((oc) =>
          oc.columns(['account_id', 'domain', 'address']).doUpdateSet((eb) => ({
            level: eb.ref('excluded.level'),
            source: eb.ref('excluded.source'),
            dns_detail: eb.ref('excluded.dns_detail'),
            offered_at: eb.ref('excluded.offered_at'),
          })),
        ),
    rows.flat(),
  );
  if (n <= MAX_PRECOMPILED_ROWS) upserts.set(n, query);
  return query;
}

export class OfferedAddressRegistry implements OfferLookup {
  constructor(private readonly db: Kysely<Database>) {}

  /** Records (or refreshes) every address of one answer. */
  async record(accountId: number, domain: string, offers: readonly OfferedAddress[], now: number): Promise<void> {
    if (offers.length === 0) return;
    // The same address may come from two sources in one answer: keep the first (constructed wins).
    // The values go straight into the statement's list, in OFFER_COLUMNS order.
    const seen = new Set<string>();
    const values: unknown[] = [];
    for (const o of offers) {
      const address = normalizeAddress(o.address);
      if (seen.has(address)) continue;
      seen.add(address);
      values.push(accountId, domain, address, o.level, o.source, o.dns ? JSON.stringify(o.dns) : null, now);
    }
    await upsertOf(seen.size).execute(this.db, values);
  }

  /** The offer of `address` to this account for `domain` within the last 24 hours, if any. */
  async find(accountId: number, domain: string, address: string, now: number): Promise<OfferRecord | undefined> {
    const row = await offerOf.first(this.db, { accountId, domain, address: normalizeAddress(address), since: windowStart(now) });
    if (!row) return undefined;
    const record: OfferRecord = {
      domain: row.domain,
      address: row.address,
      level: row.level,
      source: row.source as ContactSource,
      offeredAt: row.offered_at,
    };
    if (row.dns_detail) record.dns = JSON.parse(row.dns_detail) as DnsEvidence;
    return record;
  }

  /** Deletes expired rows in batches (short write locks); returns how many. */
  async purge(now: number, batchSize = 5000): Promise<number> {
    let total = 0;
    for (;;) {
      const result = await this.db
        .deleteFrom('offered_addresses')
        .where('id', 'in', (eb) =>
          eb.selectFrom('offered_addresses').select('id').where('offered_at', '<=', windowStart(now)).limit(batchSize),
        )
        .executeTakeFirst();
      const n = Number(result.numDeletedRows);
      total += n;
      if (n < batchSize) return total;
    }
  }
}

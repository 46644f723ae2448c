/**
 * The 24-hour registry of CONTRACT §4: every address GetDCVEmailAddressList
 * returns is recorded with the account, the normalized domain and the time;
 * the rule that reads it (a dcvEmailAddress must have been offered to the
 * same account for that domain in the 24 hours before) is offer-window.ts.
 * One row per (account, domain, address), refreshed on each offer, so the
 * table grows with distinct offers, not calls, and every check is one
 * unique-index lookup. An answer this process recorded less than a minute ago
 * for the same account and domain, with the same rows, is not written again
 * (`RecentAnswers` below; issue 20, why that is safe: docs/PROTOCOL.md).
 */
import { createHash } from 'node:crypto';
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

/** How long an answer recorded by this process is not written again when repeated unchanged. */
export const RECENT_ANSWER_MS = 60_000;
/** How many (account, domain) pairs that memory holds at most (measured: 5.2 MB for 10,000 pairs of 253-character names). */
export const RECENT_ANSWER_ENTRIES = 10_000;

/**
 * The last answer this process recorded for each (account, domain): a digest of its rows (address,
 * level, source, DNS evidence: everything written but the time) and the time written. A repeated
 * identical answer within `windowMs` of that write is not written again, so its rows keep that
 * time: an offer then leaves the 24-hour window up to `windowMs` early, never late, and every row
 * stays an offer really made at its `offered_at` (docs/PROTOCOL.md, "The 24-hour registry").
 * Bounded: past `maxEntries` the pair written longest ago is forgotten (its next answer is
 * written), so many domains cost writes, never memory.
 */
class RecentAnswers {
  private readonly last = new Map<string, { digest: string; at: number }>();
  constructor(
    private readonly windowMs: number,
    private readonly maxEntries: number,
  ) {}

  /** Whether exactly this answer was written for `key` less than the window before `now` (and not in its future: a clock set back). */
  fresh(key: string, digest: string, now: number): boolean {
    const hit = this.last.get(key);
    return hit !== undefined && hit.digest === digest && now >= hit.at && now - hit.at < this.windowMs;
  }

  /** After a successful write: the pair's newest answer, moved to the end of the eviction order. */
  written(key: string, digest: string, at: number): void {
    this.last.delete(key);
    this.last.set(key, { digest, at });
    if (this.last.size > this.maxEntries) this.last.delete(this.last.keys().next().value!);
  }
}

export interface RegistryOptions {
  /** RECENT_ANSWER_MS by default; 0 writes every answer. */
  recentAnswerMs?: number;
  /** RECENT_ANSWER_ENTRIES by default. */
  recentAnswerEntries?: number;
}

export class OfferedAddressRegistry implements OfferLookup {
  private readonly recent: RecentAnswers;

  constructor(
    private readonly db: Kysely<Database>,
    options: RegistryOptions = {},
  ) {
    this.recent = new RecentAnswers(options.recentAnswerMs ?? RECENT_ANSWER_MS, options.recentAnswerEntries ?? RECENT_ANSWER_ENTRIES);
  }

  /**
   * Records (or refreshes) every address of one answer, unless this process wrote the same rows
   * for this account and domain less than RECENT_ANSWER_MS ago (then they stay as written then).
   */
  async record(accountId: number, domain: string, offers: readonly OfferedAddress[], now: number): Promise<void> {
    if (offers.length === 0) return;
    // The same address may come from two sources in one answer: keep the first (constructed wins).
    // The normalized addresses, and each row's evidence as JSON or null, by position in `offers`.
    const seen = new Set<string>();
    const addresses: (string | undefined)[] = new Array(offers.length);
    const evidence: (string | null)[] = new Array(offers.length);
    // Every column but the key's and the time, one line a row: the address as a JSON string, the
    // level, the source (one word), the evidence as JSON or `-` (JSON escapes any line break).
    let rows = '';
    for (let i = 0; i < offers.length; i++) {
      const o = offers[i]!;
      const address = normalizeAddress(o.address);
      if (seen.has(address)) continue;
      seen.add(address);
      const dns = o.dns ? JSON.stringify(o.dns) : null;
      addresses[i] = address;
      evidence[i] = dns;
      rows += `${JSON.stringify(address)} ${o.level} ${o.source} ${dns ?? '-'}\n`;
    }
    const key = `${accountId} ${domain}`;
    const digest = createHash('sha256').update(rows).digest('base64');
    if (this.recent.fresh(key, digest, now)) return;
    // Only for a write: the statement's values, in OFFER_COLUMNS order, row after row.
    const values: unknown[] = new Array(seen.size * OFFER_COLUMNS.length);
    let v = 0;
    for (let i = 0; i < offers.length; i++) {
      const address = addresses[i];
      if (address === undefined) continue;
      const o = offers[i]!;
      values[v++] = accountId;
      values[v++] = domain;
      values[v++] = address;
      values[v++] = o.level;
      values[v++] = o.source;
      values[v++] = evidence[i];
      values[v++] = now;
    }
    await upsertOf(seen.size).execute(this.db, values);
    this.recent.written(key, digest, now);
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
        // Again on the row deleted: on PostgreSQL an answer may refresh a row the batch chose, and a DELETE that waited
        // for its lock rechecks its own conditions only, not the subquery's, so the fresh offer would go.
        .where('offered_at', '<=', windowStart(now))
        .executeTakeFirst();
      const n = Number(result.numDeletedRows);
      total += n;
      if (n < batchSize) return total;
    }
  }
}

/**
 * Contact addresses published in DNS (CONTRACT §3), the two providers of the
 * DigiCert library's shape: DNS TXT at `_validation-contactemail.<ADN>` for
 * every ADN, and CAA `contactemail` found by RFC 8659 tree climbing. All
 * lookups of one request run concurrently; a failed lookup drops only its
 * source, is logged and counted.
 */
import type { FastifyBaseLogger } from 'fastify';
import { DnsError, type DnsClient, type DnsResult } from '../dns/client.ts';
import { checkQueryName } from '../dns/message.ts';
import { isBogus, type DnssecEvidence } from '../dns/dnssec.ts';
import type { Adn } from '../domains/index.ts';
import type { DnsEvidence, OfferedAddress } from '../registry/offered.ts';
import { isContactAddress } from './address.ts';

export const TXT_PREFIX = '_validation-contactemail.';

/**
 * Per-request caps (issue 14): a name of many labels must not turn one call
 * into hundreds of lookups. TXT is looked up for at most MAX_TXT_ADNS ADNs,
 * the base domain and the ones closest below it; the CAA climb asks at most
 * MAX_CAA_CLIMB names, the FQDN and its nearest parents. Names beyond the caps
 * are not queried: the response says nothing about them, the log says how many
 * were left out, and they are counted as outcome `not-queried`.
 */
export const MAX_TXT_ADNS = 10;
export const MAX_CAA_CLIMB = 10;

/** Counts lookups by outcome, and passes each to `sink` (the metrics). */
export class DnsLookupStats {
  readonly counts = new Map<string, number>();
  constructor(private readonly sink?: (type: string, outcome: string) => void) {}
  add(type: string, outcome: string): void {
    const key = `${type}:${outcome}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    this.sink?.(type, outcome);
  }
  get(type: string, outcome: string): number {
    return this.counts.get(`${type}:${outcome}`) ?? 0;
  }
}

export interface ContactLookup {
  dns: DnsClient;
  log: FastifyBaseLogger;
  stats: DnsLookupStats;
  /** The DNSSEC policy (src/dns/dnssec.ts): its view of each answer goes into the evidence. */
  dnssec?: { evidence(resolver: string, authenticatedData: boolean): DnssecEvidence } | undefined;
  /** The request's: abandons its lookups when the client goes away or its deadline passes. */
  signal?: AbortSignal | undefined;
}

function evidence(ctx: ContactLookup, result: DnsResult, type: 'TXT' | 'CAA'): DnsEvidence {
  const found: DnsEvidence = {
    name: result.name,
    type,
    rcode: result.rcode,
    authenticatedData: result.authenticatedData,
    extendedErrors: result.extendedErrors,
    resolver: result.resolver,
  };
  if (ctx.dnssec) found.dnssec = ctx.dnssec.evidence(result.resolver, result.authenticatedData);
  return found;
}

/** Runs one lookup; a failure is logged, counted and becomes `undefined`. */
async function attempt<T extends DnsResult>(ctx: ContactLookup, type: 'TXT' | 'CAA', name: string, run: () => Promise<T>): Promise<T | undefined> {
  try {
    // A valid domain of 229+ characters makes `_validation-contactemail.<ADN>`
    // longer than a query name can be (255 bytes on the wire): a failed
    // lookup of that source, not an error of the call.
    checkQueryName(name);
  } catch (err) {
    ctx.stats.add(type, 'name-too-long');
    ctx.log.warn({ dns: { type, name, kind: 'name-too-long' }, err: String(err) }, 'DNS lookup not possible; its contact source is dropped');
    return undefined;
  }
  try {
    const result = await run();
    ctx.stats.add(type, 'ok');
    return result;
  } catch (err) {
    if (!(err instanceof DnsError)) throw err;
    if (err.kind === 'aborted') {
      ctx.stats.add(type, 'aborted');
      ctx.log.debug({ dns: { type, name, kind: 'aborted' } }, 'DNS lookup abandoned: the request ended');
      return undefined;
    }
    // A SERVFAIL with a DNSSEC Extended DNS Error: the resolver found the answer bogus (forged or broken signatures).
    const bogus = isBogus(err);
    ctx.stats.add(type, bogus ? 'dnssec-bogus' : err.kind);
    ctx.log.warn(
      { dns: { type, name, kind: bogus ? 'dnssec-bogus' : err.kind, rcode: err.rcode, resolver: err.resolver, extendedErrors: err.extendedErrors } },
      bogus ? 'DNSSEC validation failed (bogus answer); its contact source is dropped' : 'DNS lookup failed; its contact source is dropped',
    );
    return undefined;
  }
}

/** Logs and counts the names a per-request cap leaves out. */
function notQueried(ctx: ContactLookup, type: 'TXT' | 'CAA', names: readonly string[]): void {
  if (names.length === 0) return;
  for (let i = 0; i < names.length; i++) ctx.stats.add(type, 'not-queried');
  ctx.log.info({ dns: { type, notQueried: names.length, first: names[0] } }, 'DNS lookups beyond the per-request cap are not queried');
}

/** TXT provider: one lookup per ADN; each record's strings concatenated must be exactly one address. */
async function txtContacts(ctx: ContactLookup, adns: readonly Adn[]): Promise<OfferedAddress[]> {
  notQueried(ctx, 'TXT', adns.slice(MAX_TXT_ADNS).map((adn) => TXT_PREFIX + adn.name));
  const perAdn = await Promise.all(
    adns.slice(0, MAX_TXT_ADNS).map(async (adn) => {
      const result = await attempt(ctx, 'TXT', TXT_PREFIX + adn.name, () => ctx.dns.txt(TXT_PREFIX + adn.name, ctx.signal));
      if (!result) return [];
      const found: OfferedAddress[] = [];
      for (const strings of result.records) {
        const value = strings.join('');
        if (isContactAddress(value)) found.push({ address: value, level: adn.level, source: 'dns-txt', dns: evidence(ctx, result, 'TXT') });
      }
      return found;
    }),
  );
  return perAdn.flat();
}

/** The names RFC 8659 §3 climbs: the FQDN, then each parent up to (and including) the TLD. */
export function caaClimb(fqdn: string): string[] {
  const labels = fqdn.split('.');
  return labels.map((_, i) => labels.slice(i).join('.'));
}

/**
 * CAA provider: the relevant RRset is the first non-empty one climbing from
 * the FQDN. Its `contactemail` values count for every ADN at or below where it
 * was found and are listed at that ADN's level — or the base domain's, when
 * the RRset sits above the base domain. The climb's lookups run concurrently;
 * if one below the relevant RRset failed, the relevant RRset is unknown and the
 * source is dropped.
 */
async function caaContacts(ctx: ContactLookup, fqdn: string, adns: readonly Adn[]): Promise<OfferedAddress[]> {
  const climb = caaClimb(fqdn);
  notQueried(ctx, 'CAA', climb.slice(MAX_CAA_CLIMB));
  const names = climb.slice(0, MAX_CAA_CLIMB);
  const results = await Promise.all(names.map((name) => attempt(ctx, 'CAA', name, () => ctx.dns.caa(name, ctx.signal))));
  for (let i = 0; i < names.length; i++) {
    const result = results[i];
    if (result === undefined) return [];
    if (result.records.length === 0) continue;
    const at = adns.find((a) => a.name === names[i]) ?? adns[0]!;
    const found: OfferedAddress[] = [];
    for (const record of result.records) {
      if (record.tag.toLowerCase() !== 'contactemail') continue;
      if (isContactAddress(record.value)) found.push({ address: record.value, level: at.level, source: 'dns-caa', dns: evidence(ctx, result, 'CAA') });
    }
    return found;
  }
  return [];
}

/** Every DNS contact of a checked name: TXT and CAA concurrently, in that order. */
export async function findDnsContacts(ctx: ContactLookup, fqdn: string, adns: readonly Adn[]): Promise<OfferedAddress[]> {
  const [txt, caa] = await Promise.all([txtContacts(ctx, adns), caaContacts(ctx, fqdn, adns)]);
  return [...txt, ...caa];
}

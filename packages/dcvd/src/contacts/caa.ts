/**
 * The DNS CAA contact provider (CONTRACT §3, BR 3.2.2.4.13): `contactemail`
 * properties of the relevant CAA RRset, found by RFC 8659 tree climbing.
 */
import { isContactAddress } from './address.ts';
import { attempt, evidence, notQueried } from './dns.ts';
import type { ContactLookupError, ContactProvider, OfferedAddress } from './provider.ts';

/**
 * Per-request cap (issue 14): the CAA climb asks at most MAX_CAA_CLIMB names,
 * the FQDN and its nearest parents. Names beyond the cap are not queried (the
 * log says how many; counted as outcome `not-queried`).
 */
export const MAX_CAA_CLIMB = 10;

/** The names RFC 8659 §3 climbs: the FQDN, then each parent up to (and including) the TLD. */
export function caaClimb(fqdn: string): string[] {
  const labels = fqdn.split('.');
  return labels.map((_, i) => labels.slice(i).join('.'));
}

/**
 * The relevant RRset is the first non-empty one climbing from the FQDN. Its
 * `contactemail` values count for every ADN at or below where it was found and
 * are listed at that ADN's level — or the base domain's, when the RRset sits
 * above the base domain. The climb's lookups run concurrently; if one below
 * the relevant RRset failed, the relevant RRset is unknown and the source is
 * dropped.
 */
export const caaProvider: ContactProvider = {
  source: 'dns-caa',
  looksUpDns: true,
  // The perspectives climb from the order's FQDN themselves.
  corroboration: { method: 'contact-email-caa', target: (fqdn) => fqdn },
  async offer({ fqdn, adns }, ctx) {
    const errors: ContactLookupError[] = [];
    const climb = caaClimb(fqdn);
    notQueried(ctx, 'CAA', climb.slice(MAX_CAA_CLIMB));
    const names = climb.slice(0, MAX_CAA_CLIMB);
    const results = await Promise.all(names.map((name) => attempt(ctx, errors, 'CAA', name, () => ctx.dns.caa(name, ctx.signal))));
    for (let i = 0; i < names.length; i++) {
      const result = results[i];
      if (result === undefined) return { addresses: [], errors };
      if (result.records.length === 0) continue;
      const at = adns.find((a) => a.name === names[i]) ?? adns[0]!;
      const addresses: OfferedAddress[] = [];
      for (const record of result.records) {
        if (record.tag.toLowerCase() !== 'contactemail') continue;
        if (isContactAddress(record.value)) addresses.push({ address: record.value, level: at.level, source: 'dns-caa', dns: evidence(ctx, result, 'CAA') });
      }
      return { addresses, errors };
    }
    return { addresses: [], errors };
  },
};

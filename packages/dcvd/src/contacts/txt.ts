/**
 * The DNS TXT contact provider (CONTRACT §3, BR 3.2.2.4.14): TXT at
 * `_validation-contactemail.<ADN>` for every ADN; each record's strings
 * concatenated must be exactly one address, listed at that ADN's level.
 */
import { isContactAddress } from './address.ts';
import { attempt, evidence, notQueried } from './dns.ts';
import type { ContactLookupError, ContactProvider, OfferedAddress } from './provider.ts';

export const TXT_PREFIX = '_validation-contactemail.';

/**
 * Per-request cap (issue 14): a name of many labels must not turn one call
 * into hundreds of lookups. TXT is looked up for at most MAX_TXT_ADNS ADNs,
 * the base domain and the ones closest below it. Names beyond the cap are not
 * queried: the response says nothing about them, the log says how many were
 * left out, and they are counted as outcome `not-queried`.
 */
export const MAX_TXT_ADNS = 10;

export const txtProvider: ContactProvider = {
  source: 'dns-txt',
  looksUpDns: true,
  // The perspectives look up TXT at the ADN the address was found for.
  corroboration: { method: 'contact-email-txt', target: (_fqdn, adn) => adn },
  async offer({ adns }, ctx) {
    const errors: ContactLookupError[] = [];
    notQueried(ctx, 'TXT', adns.slice(MAX_TXT_ADNS).map((adn) => TXT_PREFIX + adn.name));
    const perAdn = await Promise.all(
      adns.slice(0, MAX_TXT_ADNS).map(async (adn) => {
        const result = await attempt(ctx, errors, 'TXT', TXT_PREFIX + adn.name, () => ctx.dns.txt(TXT_PREFIX + adn.name, ctx.signal));
        if (!result) return [];
        const found: OfferedAddress[] = [];
        for (const strings of result.records) {
          const value = strings.join('');
          if (isContactAddress(value)) found.push({ address: value, level: adn.level, source: 'dns-txt', dns: evidence(ctx, result, 'TXT') });
        }
        return found;
      }),
    );
    return { addresses: perAdn.flat(), errors };
  },
};

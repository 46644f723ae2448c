/**
 * Contact discovery (CONTRACT §1, §3): the list of contact providers, in the
 * order the wire lists their addresses within a level, and the one loop that
 * asks them. GetDCVEmailAddressList offers what they find; the MPIC gate
 * (src/mpic/corroborate.ts) asks the provider of a selected address how to
 * corroborate it. A new source (e.g. WHOIS) is one more provider here.
 */
import { normalizeAddress } from './address.ts';
import { caaProvider } from './caa.ts';
import { constructedProvider } from './constructed.ts';
import type { ContactLookup, ContactOffer, ContactProvider, ContactQuery } from './provider.ts';
import { txtProvider } from './txt.ts';

export type {
  ContactLookup,
  ContactLookupError,
  ContactMethod,
  ContactOffer,
  ContactProvider,
  ContactQuery,
  ContactSource,
  Corroboration,
  DnsEvidence,
  OfferedAddress,
} from './provider.ts';

/** Constructed first, then DNS TXT, then DNS CAA. */
export const CONTACT_PROVIDERS: readonly ContactProvider[] = [constructedProvider, txtProvider, caaProvider];

/** The provider of a recorded source, if it is one of `providers`. */
export function providerOf(source: string, providers: readonly ContactProvider[] = CONTACT_PROVIDERS): ContactProvider | undefined {
  return providers.find((p) => p.source === source);
}

/**
 * Asks every provider concurrently and lists their addresses in the
 * providers' order; an address equal to one listed before (domain part
 * compared case-insensitively) is listed once, as its first provider found it.
 * With `dns` false, the providers that look up DNS are not asked.
 */
export async function offerContacts(
  providers: readonly ContactProvider[],
  query: ContactQuery,
  lookup: ContactLookup,
  opts: { dns: boolean },
): Promise<ContactOffer> {
  const asked = opts.dns ? providers : providers.filter((p) => !p.looksUpDns);
  // One provider (the text format's constructed addresses): no Promise.all and its arrays.
  const offers = asked.length === 1 ? [await asked[0]!.offer(query, lookup)] : await Promise.all(asked.map((p) => p.offer(query, lookup)));
  const seen = new Set<string>();
  const merged: ContactOffer = { addresses: [], errors: [] };
  for (const offer of offers) {
    for (const contact of offer.addresses) {
      const key = normalizeAddress(contact.address);
      if (seen.has(key)) continue;
      seen.add(key);
      merged.addresses.push(contact);
    }
    merged.errors.push(...offer.errors);
  }
  return merged;
}

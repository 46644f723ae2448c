/**
 * The constructed contact provider (CONTRACT §1 response formats, BR
 * 3.2.2.4.4: "'admin', 'administrator', 'webmaster', 'hostmaster', or
 * 'postmaster' … followed by … the Authorization Domain Name"). No lookups:
 * it answers both response formats.
 */
import type { Adn } from '../domains/index.ts';
import { MAX_ADDRESS_LENGTH } from './address.ts';
import type { ContactProvider } from './provider.ts';

/** In the order the wire lists them within a level (CONTRACT §1). */
export const CONSTRUCTED_LOCAL_PARTS = ['admin', 'administrator', 'hostmaster', 'postmaster', 'webmaster'] as const;

export type ConstructedAddress = { level: number; address: string };

/**
 * The constructed addresses of each ADN, lowest level first and, within a
 * level, in the order of CONSTRUCTED_LOCAL_PARTS.
 */
export function constructedAddresses(adns: readonly Adn[]): ConstructedAddress[] {
  // Sorting a copy (stable) keeps the wire order even if a caller passes the
  // ADNs in another order; checkDomainName already yields them sorted.
  const sorted = [...adns].sort((a, b) => a.level - b.level);
  const out: ConstructedAddress[] = [];
  for (const adn of sorted) {
    for (const local of CONSTRUCTED_LOCAL_PARTS) out.push({ level: adn.level, address: `${local}@${adn.name}` });
  }
  return out;
}

export const constructedProvider: ContactProvider = {
  source: 'constructed',
  looksUpDns: false,
  // BR 3.2.2.4.4 needs no corroboration: the address is made from the ADN itself.
  corroboration: undefined,
  async offer({ adns }) {
    // An address over 254 characters cannot be an SMTP path (RFC 5321 §4.5.3.1.3): long ADNs offer none.
    const addresses = constructedAddresses(adns)
      .filter((c) => c.address.length <= MAX_ADDRESS_LENGTH)
      .map((c) => ({ ...c, source: 'constructed' as const }));
    return { addresses, errors: [] };
  },
};

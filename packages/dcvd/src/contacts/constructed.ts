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
  return inWireOrder(adns, (level, address) => ({ level, address }));
}

/**
 * Each ADN's constructed addresses through `make`, lowest level first. checkDomainName yields the
 * ADNs sorted; a caller's list in another order is sorted (a stable copy) so the wire order holds.
 */
function inWireOrder<T>(adns: readonly Adn[], make: (level: number, address: string) => T): T[] {
  const sorted = adns.every((adn, i) => i === 0 || adns[i - 1]!.level <= adn.level) ? adns : [...adns].sort((a, b) => a.level - b.level);
  const out: T[] = [];
  for (const adn of sorted) {
    for (const local of CONSTRUCTED_LOCAL_PARTS) out.push(make(adn.level, `${local}@${adn.name}`));
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
    // Built in one pass (issue 20: the list, its filtered copy and a copy of every entry were a tenth of
    // what a text-format call allocated).
    const addresses = inWireOrder(adns, (level, address) => ({ level, address, source: 'constructed' as const })).filter((c) => c.address.length <= MAX_ADDRESS_LENGTH);
    return { addresses, errors: [] };
  },
};

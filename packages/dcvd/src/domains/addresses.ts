/**
 * Constructed contact addresses (CONTRACT §1 response formats, BR 3.2.2.4.4:
 * "'admin', 'administrator', 'webmaster', 'hostmaster', or 'postmaster' …
 * followed by … the Authorization Domain Name").
 */
import type { Adn } from './types.ts';

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

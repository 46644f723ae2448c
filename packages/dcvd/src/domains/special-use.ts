/**
 * Names that never identify a host on the public Internet (CONTRACT §2:
 * "an internal name → -37"). Each entry covers the name itself and every
 * name below it.
 *
 * We keep our own list instead of tldts's `detectSpecialUse`: that list also
 * holds `example.com`/`.net`/`.org` (RFC 6761 §6.5), which are real
 * delegated domains under ICANN TLDs and which the contract itself uses as
 * valid examples (`www.example.com` yields level2 and level3).
 */
const SPECIAL_USE: ReadonlyMap<string, 'special-use' | 'reverse-zone'> = new Map([
  ['localhost', 'special-use'], // RFC 6761 §6.3
  ['test', 'special-use'], // RFC 6761 §6.2
  ['invalid', 'special-use'], // RFC 6761 §6.4
  ['example', 'special-use'], // RFC 6761 §6.5 (the TLD only, see above)
  ['local', 'special-use'], // RFC 6762 (mDNS)
  ['onion', 'special-use'], // RFC 7686 (listed in the PSL's ICANN section, so it must be caught here)
  ['alt', 'special-use'], // RFC 9476
  ['home.arpa', 'special-use'], // RFC 8375 (also an ICANN suffix in the PSL)
  ['ipv4only.arpa', 'special-use'], // RFC 8880
  ['resolver.arpa', 'special-use'], // RFC 9462
  ['service.arpa', 'special-use'], // RFC 9665
  ['6tisch.arpa', 'special-use'], // RFC 9031
  ['in-addr.arpa', 'reverse-zone'], // RFC 1035 §3.5: names of IPv4 addresses, not hosts
  ['ip6.arpa', 'reverse-zone'], // RFC 3596 §2.5: names of IPv6 addresses, not hosts
]);

/**
 * Returns why `name` (normalized A-labels, no trailing dot) is special, or
 * null. Checks every suffix of the name, so the cost is bounded by the label
 * count (≤ 127 after the syntax check).
 */
export function specialUseOf(name: string): 'special-use' | 'reverse-zone' | null {
  let at = 0;
  for (;;) {
    const hit = SPECIAL_USE.get(at === 0 ? name : name.slice(at));
    if (hit !== undefined) return hit;
    const dot = name.indexOf('.', at);
    if (dot < 0) return null;
    at = dot + 1;
  }
}

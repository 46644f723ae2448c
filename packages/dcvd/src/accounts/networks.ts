/** Source-address rules: allowed networks per account (CONTRACT §7). */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/** Parses one CIDR (or a bare address, meaning a single host); throws a clear error otherwise. */
export function parseCidr(text: string): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  const value = text.trim();
  const slash = value.indexOf('/');
  const address = slash < 0 ? value : value.slice(0, slash);
  if (isIP(address) === 0) throw new Error(`not an IP network: ${JSON.stringify(text)}`);
  if (slash < 0) {
    const ip = ipaddr.parse(address);
    return [ip, ip.kind() === 'ipv4' ? 32 : 128];
  }
  try {
    return ipaddr.parseCIDR(value);
  } catch {
    throw new Error(`not an IP network: ${JSON.stringify(text)}`);
  }
}

/**
 * A network as it matches: an IPv4-mapped IPv6 network of 96 bits or more is its IPv4 network, since an IPv4
 * client is matched as IPv4. New lists are stored so (allowedNetwork); lists stored before 2026-12-04 may hold
 * the mapped form, and match by this too.
 */
function matchedNetwork(text: string): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  const [ip, bits] = parseCidr(text);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) return [(ip as ipaddr.IPv6).toIPv4Address(), bits - 96];
  return [ip, bits];
}

/**
 * One network of an allowed list as it will match (isAllowedSource): a zone (`%eth0`) is refused, since no
 * client address carries one; an IPv4-mapped IPv6 network is its IPv4 network (a mapped prefix shorter than
 * 96 bits is refused: it is not a set of IPv4 addresses).
 */
function allowedNetwork(text: string): string {
  if (text.includes('%')) throw new Error(`not an IP network: ${JSON.stringify(text)} (a zone such as %eth0 is not allowed)`);
  const [ip, bits] = matchedNetwork(text);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) {
    throw new Error(`not an IP network: ${JSON.stringify(text)} (an IPv4-mapped network needs a prefix of 96 bits or more; write it as IPv4)`);
  }
  return `${ip.toString()}/${bits}`;
}

/**
 * The canonical text of a CIDR list, validated. An empty item (`""`, `" "`, a doubled or trailing comma) is an
 * error, not nothing: a list of nothing allows every source, so a slip must not widen an account's access.
 */
export function normalizeNetworks(list: readonly string[]): string {
  return list
    .flatMap((item) => item.split(','))
    .map((item) => {
      if (item.trim() === '') throw new Error('an empty entry in the allowed networks (give none at all to allow every source)');
      return allowedNetwork(item);
    })
    .join(',');
}

/** True when `ip` lies in one of the comma-separated networks; an empty list allows every source. */
export function isAllowedSource(ip: string, networks: string): boolean {
  if (networks === '') return true;
  if (isIP(ip) === 0) return false;
  // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
  const address = ipaddr.process(ip);
  return networks.split(',').some((cidr) => {
    const [range, bits] = matchedNetwork(cidr);
    return address.kind() === range.kind() && address.match(range, bits);
  });
}

/** Default length of the IPv6 prefix that per-IP limits count as one source (issue 14). */
export const DEFAULT_IPV6_PREFIX = 64;

/**
 * The key a per-IP limit counts under: an IPv4 address (also when it arrives
 * IPv4-mapped) alone, an IPv6 address by its network of `ipv6Prefix` bits,
 * written `network/bits` (a /64 is what one subscriber usually holds, so one
 * attacker has 2^64 addresses but only one key). Anything else as given.
 */
export function limitKey(ip: string, ipv6Prefix: number = DEFAULT_IPV6_PREFIX): string {
  if (isIP(ip) === 0) return ip;
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  if (ipv6Prefix >= 128) return address.toString();
  const bytes = address.toByteArray();
  for (let bit = ipv6Prefix; bit < 128; bit += 1) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return `${ipaddr.fromByteArray(bytes).toString()}/${ipv6Prefix}`;
}

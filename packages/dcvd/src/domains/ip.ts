/**
 * IP address literals given as domainName (CONTRACT §2): an Internet-
 * accessible one → -19, any other → -37.
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { ErrorCode } from '@dcvd/client';

export type IpVerdict =
  | { ok: false; code: typeof ErrorCode.PublicIpAddress; reason: 'public-ip' }
  | { ok: false; code: typeof ErrorCode.IntranetName; reason: 'private-ip' };

const PUBLIC: IpVerdict = { ok: false, code: ErrorCode.PublicIpAddress, reason: 'public-ip' };
const PRIVATE: IpVerdict = { ok: false, code: ErrorCode.IntranetName, reason: 'private-ip' };

/**
 * If `text` is an IPv4 or IPv6 literal, bare or in brackets (`[2001:db8::1]`,
 * and `[192.0.2.1]` as in RFC 5321 address literals), returns the address
 * without brackets; else null.
 *
 * "Is this an IP?" is decided by `net.isIP`, i.e. only the canonical textual
 * forms: dotted-quad IPv4 without leading zeros, and RFC 4291 IPv6 (a zone ID
 * is allowed). The shorthand forms that inet_aton and URL parsers also take
 * (`1.2.3`, `0x7f.1`, `010.0.0.1`) are not IP literals here; the caller
 * refuses them as names ending in a number.
 */
export function ipLiteral(text: string): { version: 4 | 6; address: string } | null {
  const inner = text.length > 2 && text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const version = isIP(inner);
  return version === 4 || version === 6 ? { version, address: inner } : null;
}

/** Classifies an address already accepted by `ipLiteral`. */
export function classifyIp(literal: { version: 4 | 6; address: string }): IpVerdict {
  if (literal.version === 4) return classifyV4(ipaddr.IPv4.parse(literal.address));

  // A zone ID (`fe80::1%eth0`) only scopes the address; classify the address.
  const bare = literal.address.split('%', 1)[0] ?? '';
  // Canonicalize through the WHATWG host serializer first: ipaddr.js reads
  // the deprecated IPv4-compatible form `::a.b.c.d` as IPv4-mapped
  // `::ffff:a.b.c.d`, which would make `::8.8.8.8` look public. RFC 4291
  // §2.5.5.1 deprecates that form and it lies in ::/8, which IANA keeps
  // reserved, so it must not count as Internet-accessible.
  const canonical = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  const v6 = ipaddr.IPv6.parse(canonical);
  if (v6.isIPv4MappedAddress()) return classifyV4(v6.toIPv4Address());
  // ipaddr.js calls everything outside its special ranges 'unicast', which
  // includes space IANA has never allocated; only 2000::/3 is global unicast
  // (RFC 4291 §2.4, IANA IPv6 Address Space registry).
  const first = v6.parts[0] ?? 0;
  return v6.range() === 'unicast' && (first & 0xe000) === 0x2000 ? PUBLIC : PRIVATE;
}

function classifyV4(v4: ipaddr.IPv4): IpVerdict {
  // 'unicast' is ipaddr.js's name for "in none of the special ranges"
  // (private, loopback, link-local, CGNAT, reserved, multicast, …).
  return v4.range() === 'unicast' ? PUBLIC : PRIVATE;
}

// Resolver addresses: parsing the operator's `--dns-servers` list (CONTRACT §3,
// §9) and reading the system's resolvers when none is configured.
// The module object, not a named import: dns.setServers() rebinds dns.getServers.
import dns from 'node:dns';
import { isIP } from 'node:net';

/** A recursive resolver, addressed by IP literal and port. */
export interface Resolver {
  /** IP literal in canonical form (IPv6 compressed and lower-cased, no brackets). */
  readonly host: string;
  readonly port: number;
}

const DEFAULT_PORT = 53;

/**
 * Parses "host:port,host:port". The port defaults to 53. IPv6 addresses take
 * brackets when a port is given ("[::1]:5353"); a bare IPv6 address ("::1")
 * means port 53, which is also how node's dns.getServers() prints them.
 * Hosts must be IP literals: a resolver's own name could only be looked up
 * through DNS, which is what we are configuring.
 */
export function parseResolvers(spec: string): Resolver[] {
  if (spec.trim() === '') throw new Error('invalid DNS resolver list: it is empty');
  return spec.split(',').map((entry) => {
    const trimmed = entry.trim();
    if (trimmed === '') throw new Error(`invalid DNS resolver list "${spec}": it has an empty entry`);
    return parseResolver(trimmed);
  });
}

/** The resolvers the operating system is configured with (node's view of resolv.conf). */
export function systemResolvers(): Resolver[] {
  const servers = dns.getServers();
  if (servers.length === 0) {
    throw new Error('no DNS resolvers are configured on this system; set --dns-servers');
  }
  return servers.map(parseResolver);
}

/** "host:port", IPv6 in brackets: the form parseResolvers reads back. */
export function formatResolver(resolver: Resolver): string {
  return resolver.host.includes(':') ? `[${resolver.host}]:${resolver.port}` : `${resolver.host}:${resolver.port}`;
}

/**
 * Validates a resolver built by hand and returns it in canonical form, so that
 * answers can be matched against the address they must come from.
 */
export function canonicalResolver(resolver: Resolver): Resolver {
  const host = canonicalIp(resolver.host);
  if (host === undefined) throw new Error(`invalid DNS resolver host "${resolver.host}": not an IP address`);
  if (!Number.isInteger(resolver.port) || resolver.port < 1 || resolver.port > 65535) {
    throw new Error(`invalid DNS resolver port ${String(resolver.port)} for ${resolver.host}`);
  }
  return { host, port: resolver.port };
}

/**
 * Canonical text of an IP literal, or undefined when `text` is not one. IPv6
 * goes through the WHATWG URL parser, which compresses and lower-cases it, so
 * "2001:DB8:0::1" and a datagram's source "2001:db8::1" compare equal. A zone
 * id ("fe80::1%eth0") is kept as written.
 */
export function canonicalIp(text: string): string | undefined {
  const zoneAt = text.indexOf('%');
  const address = zoneAt === -1 ? text : text.slice(0, zoneAt);
  const zone = zoneAt === -1 ? '' : text.slice(zoneAt);
  const family = isIP(address);
  if (family === 4) return zone === '' ? address : undefined;
  if (family !== 6 || zone === '%') return undefined;
  return new URL(`http://[${address}]/`).hostname.slice(1, -1) + zone;
}

function parseResolver(entry: string): Resolver {
  const fail = (why: string): never => {
    throw new Error(`invalid DNS resolver "${entry}": ${why} (expected IP:PORT, [IPv6]:PORT, or an IP alone for port 53)`);
  };
  let host: string;
  let portText: string | undefined;
  if (entry.startsWith('[')) {
    const match = /^\[([^\]]+)\](?::([^:]*))?$/.exec(entry);
    if (!match) return fail('malformed brackets');
    host = match[1]!;
    portText = match[2];
    if (isIP(host.split('%')[0]!) !== 6) return fail('brackets must hold an IPv6 address');
  } else {
    const colons = entry.split(':').length - 1;
    if (colons === 1) {
      [host, portText] = entry.split(':') as [string, string];
      if (isIP(host) !== 4) return fail(`"${host}" is not an IPv4 address`);
    } else {
      // No colon: IPv4 alone. Two or more: a bare IPv6 address, port 53.
      host = entry;
    }
  }
  const canonical = canonicalIp(host);
  if (canonical === undefined) return fail(`"${host}" is not an IP address (resolver names cannot be looked up)`);
  let port = DEFAULT_PORT;
  if (portText !== undefined) {
    if (!/^[0-9]{1,5}$/.test(portText)) return fail(`port "${portText}" is not a number`);
    port = Number(portText);
    if (port < 1 || port > 65535) return fail(`port ${port} is out of range 1..65535`);
  }
  return { host: canonical, port };
}

/**
 * Where webhook events may go, and how they are POSTed (CONTRACT §6, §7).
 *
 * An account's own webhook URL comes from a reseller, through whoever runs dcvd: it must not let the reseller
 * make dcvd's host send requests into the operator's network (server-side request forgery). So an account's
 * URL reaches only Internet addresses (what `domains/ip.ts` calls publicly routable: no loopback, private,
 * link-local, CGNAT, unique-local, NAT64, 6to4 or reserved space, whatever the URL's spelling), and plain
 * `http://` only inside the networks the operator allows (`--webhook-allow-networks`), so evidence never crosses
 * the Internet unencrypted. The address is checked where the connection is made, after resolution, so a name
 * that resolves to an allowed address at one moment and to another at the next (DNS rebinding) is caught. A name
 * with any refused address is refused whole.
 *
 * Host names of accounts' URLs are resolved over DNS by c-ares (dcvd's resolvers, its DNS timeout and attempts),
 * never by getaddrinfo: a lookup that never ends would hold one of libuv's four pool threads per name, and a few
 * black-holed names would stall every other lookup, file read and password hash of the process. The global
 * `--webhook-url` is the operator's own (an internal ordering system, often): no address rule, the system's
 * resolution (/etc/hosts too).
 *
 * Each request is one connection (no pooling: a socket made for the global URL can never carry an account's
 * event) with one time limit for all of it: connection, TLS, request, the answer's status line. The answer's body
 * is never read, and redirects are never followed.
 */
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { Resolver as CaresResolver } from 'node:dns/promises';
import { classifyIp, ipLiteral } from '../domains/ip.ts';
import { isAllowedSource } from '../accounts/networks.ts';
import { checkWebhookUrl } from '../accounts/webhook-url.ts';
import { formatResolver, type Resolver } from '../dns/resolvers.ts';

export interface WebhookEgressPolicy {
  /** Networks (a normalized CIDR list; '' for none) an account's URL may reach besides Internet addresses, and over http://. */
  allowNetworks: string;
  /** Where accounts' URLs' host names are resolved (dcvd's DNS resolvers). */
  resolvers: Resolver[];
  /** c-ares's per-attempt timeout, and its attempts. */
  dnsTimeoutMs: number;
  dnsAttempts: number;
  /** The whole request, from its lookup to the answer's status line. */
  timeoutMs: number;
}

/** An account's URL that leads somewhere it may not go: the attempt fails with this message. */
export class WebhookTargetRefused extends Error {}

/** Why an account's URL may not reach `address` (an IP literal) over `protocol`, or undefined when it may. */
export function targetProblem(address: string, protocol: string, allowNetworks: string): string | undefined {
  if (allowNetworks !== '' && isAllowedSource(address, allowNetworks)) return undefined;
  const literal = ipLiteral(address);
  if (literal === null || classifyIp(literal).reason !== 'public-ip') {
    return `${address} is not an Internet address (accounts' URLs reach others only in --webhook-allow-networks)`;
  }
  if (protocol !== 'https:') return `plain http:// to ${address}: accounts' URLs need https:// outside --webhook-allow-networks`;
  return undefined;
}

/**
 * For an account's URL whose host is an IP literal: why it may not be reached, or undefined when it may. undefined
 * too for a host name, which is checked where it is resolved. The URL parser has already turned `2130706433`,
 * `0x7f.1`, `0177.0.0.1` and `[::ffff:7f00:1]` into their canonical forms.
 */
export function literalTargetProblem(url: URL, allowNetworks: string): string | undefined {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return isIP(host) === 0 ? undefined : targetProblem(host, url.protocol, allowNetworks);
}

/** What one POST needs. `restricted`: an account's URL (the address rules and c-ares), else the operator's global URL. */
export interface WebhookRequest {
  body: string;
  headers: Record<string, string>;
  restricted: boolean;
}

/** POSTs an event and resolves with the answer's HTTP status; rejects on a refused target, a network error or the time limit. */
export type WebhookPost = (url: string, request: WebhookRequest) => Promise<number>;

export function webhookPoster(policy: WebhookEgressPolicy): WebhookPost {
  const resolver = new CaresResolver({ timeout: policy.dnsTimeoutMs, tries: policy.dnsAttempts });
  resolver.setServers(policy.resolvers.map(formatResolver));
  return (url, request) =>
    new Promise<number>((resolve, reject) => {
      const target = new URL(url);
      let lookup: LookupFunction | undefined;
      if (request.restricted) {
        // The URL's own rules (a port of another protocol, the length) for URLs stored before they were checked.
        const problem = urlProblem(url) ?? literalTargetProblem(target, policy.allowNetworks);
        if (problem !== undefined) {
          reject(new WebhookTargetRefused(problem));
          return;
        }
        // A name (net.connect never looks an IP literal up).
        lookup = guardedLookup(resolver, target.protocol, policy.allowNetworks);
      }
      const body = Buffer.from(request.body, 'utf8');
      const req = (target.protocol === 'https:' ? https : http).request(
        target,
        {
          method: 'POST',
          headers: { ...request.headers, 'content-length': String(body.length) },
          agent: false,
          signal: AbortSignal.timeout(policy.timeoutMs),
          ...(lookup ? { lookup } : {}),
        },
        (res) => {
          resolve(res.statusCode ?? 0);
          // The body is the receiver's business: never read, whatever its size.
          res.destroy();
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError') reject(new Error(`no answer within ${policy.timeoutMs} ms`));
        // The code beside node's message: "socket hang up (ECONNRESET)", "connect ECONNREFUSED 127.0.0.1:1".
        else if (err instanceof WebhookTargetRefused || err.code === undefined || err.message.includes(err.code)) reject(err);
        else reject(new Error(`${err.message} (${err.code})`));
      });
      req.end(body);
    });
}

function urlProblem(url: string): string | undefined {
  try {
    checkWebhookUrl(url);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** A `lookup` for net.connect: `hostname`'s A and AAAA records through c-ares, refused whole if any address is. */
function guardedLookup(resolver: CaresResolver, protocol: string, allowNetworks: string): LookupFunction {
  return (hostname, options, callback) => {
    addressesOf(resolver, hostname).then(
      (addresses) => {
        for (const address of addresses) {
          const problem = targetProblem(address, protocol, allowNetworks);
          if (problem !== undefined) {
            callback(new WebhookTargetRefused(`${hostname} (${address}): ${problem}`), '', 0);
            return;
          }
        }
        const family = options.family === 4 || options.family === 6 ? options.family : 0;
        const usable = family === 0 ? addresses : addresses.filter((a) => isIP(a) === family);
        if (usable.length === 0) callback(Object.assign(new Error(`${hostname} has no IPv${family} address`), { code: 'ENOTFOUND' }), '', 0);
        else if (options.all) callback(null, usable.map((address) => ({ address, family: isIP(address) })));
        else callback(null, usable[0]!, isIP(usable[0]!));
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
}

/** Every A and AAAA address of `hostname`; one of the two failing is enough when the other answers. */
async function addressesOf(resolver: CaresResolver, hostname: string): Promise<string[]> {
  const [v4, v6] = await Promise.allSettled([resolver.resolve4(hostname), resolver.resolve6(hostname)]);
  const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
  if (addresses.length > 0) return addresses;
  const failed = v4.status === 'rejected' ? v4.reason : v6.status === 'rejected' ? v6.reason : undefined;
  throw failed instanceof Error ? failed : Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' });
}

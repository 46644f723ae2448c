/** The DCV email settings of `serve`, checked before anything opens, and the default base of confirmation links: every role needs them. */
import type { AddressInfo } from 'node:net';
import type { DcvEmailConfig } from '../config.ts';
import { addressProblem } from '../contacts/address.ts';
import { MAX_RANDOM_VALUE_TTL_MS } from '../orders/random-values.ts';

/** `https://localhost:PORT` for a loopback or wildcard listener, else `https://HOST:PORT`. */
export function defaultPublicUrl(https: AddressInfo): string {
  const local = ['127.0.0.1', '::1', '0.0.0.0', '::'].includes(https.address) || https.address.startsWith('127.');
  const host = local ? 'localhost' : https.address.includes(':') ? `[${https.address}]` : https.address;
  return `https://${host}${https.port === 443 ? '' : `:${https.port}`}`;
}

/** Refuses settings that would send unusable or non-compliant emails. */
export function checkDcvEmailConfig(config: DcvEmailConfig): void {
  const problem = addressProblem(config.mailFrom);
  if (problem !== undefined) throw new Error(`--mail-from ${problem}`);
  if (config.publicUrl !== undefined) {
    let u: URL;
    try {
      u = new URL(config.publicUrl);
    } catch {
      throw new Error('--public-url is not a URL');
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('--public-url must be an https:// (or http://) URL');
    if (u.search !== '' || u.hash !== '') throw new Error('--public-url must not have a query or fragment');
  }
  if (config.randomValueTtlMs <= 0 || config.randomValueTtlMs > MAX_RANDOM_VALUE_TTL_MS) {
    throw new Error('--random-value-ttl must be more than 0 and at most 30d (BR 3.2.2.4.4)');
  }
  const o = config.outbox;
  if (o.maxAttempts < 1 || o.concurrency < 1 || o.leaseMs < 3000 || o.retryBaseMs < 1 || o.pollMs < 1) {
    throw new Error('outbox settings out of range (attempts and concurrency ≥ 1, lease ≥ 3s)');
  }
  // A call waits at most this long before it runs: well within the request deadline (15 s) and API clients' timeouts.
  const flow = config.outboxFlow;
  if (flow.maxLagMs > 0 && (flow.delayMs < 1 || flow.delayMs > 10_000)) {
    throw new Error('--outbox-flow-delay must be 1ms to 10s (--outbox-max-lag 0 turns flow control off)');
  }
}

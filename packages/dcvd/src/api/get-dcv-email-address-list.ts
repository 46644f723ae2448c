/**
 * GetDCVEmailAddressList (seed and CONTRACT §1–§4): permission, domain rules,
 * policy, constructed addresses, DNS contacts (responseFormat 2), and the
 * 24-hour registry of everything returned.
 */
import type { DcvEmailAddressList } from '@dcvd/client';
import type { Clock } from '../deps.ts';
import { checkDomainName, constructedAddresses } from '../domains/index.ts';
import { findDnsContacts, type ContactLookup, type DnsLookupStats } from '../contacts/dns.ts';
import type { DnsClient } from '../dns/client.ts';
import { normalizeAddress, type OfferedAddress, type OfferedAddressRegistry } from '../registry/offered.ts';
import { emailDcvRefusal, type EmailDcvPolicy } from './policy.ts';
import { ClientGone, type CallContext, type GetDcvEmailAddressListParams, type Outcome } from './types.ts';

export const MAX_ADDRESS_LENGTH = 254;

export interface GetListDeps {
  clock: Clock;
  dns: DnsClient;
  dnsStats: DnsLookupStats;
  registry: OfferedAddressRegistry;
  policy: EmailDcvPolicy;
  /** The DNSSEC policy's view of each answer, for the evidence (src/dns/dnssec.ts). */
  dnssec?: ContactLookup['dnssec'];
}

export async function getDcvEmailAddressList(
  deps: GetListDeps,
  ctx: CallContext,
  params: GetDcvEmailAddressListParams,
): Promise<Outcome<DcvEmailAddressList>> {
  // Step 8.
  if (!ctx.account.perm_auto_apply) return { ok: false, error: { code: -91 } };
  // Step 9: -4 / -19 / -37.
  const check = checkDomainName(params.domainName);
  if (!check.ok) {
    ctx.log.info({ domainRule: check.reason }, 'domain refused');
    return { ok: false, error: check.code === -4 ? { code: -4, item: 'domainName' } : { code: check.code } };
  }
  // Step 10: the operator's policy.
  const refusal = emailDcvRefusal(deps.policy, check.domain, deps.clock.now());
  if (refusal) {
    ctx.log.info({ policy: refusal }, 'email DCV refused by policy');
    return { ok: false, error: { code: -160 } };
  }

  // An address over 254 characters cannot be an SMTP path (RFC 5321 §4.5.3.1.3): long ADNs offer none.
  const offers: OfferedAddress[] = constructedAddresses(check.adns)
    .filter((c) => c.address.length <= MAX_ADDRESS_LENGTH)
    .map((c) => ({ ...c, source: 'constructed' }));
  // responseFormat 1 returns the constructed addresses only (CONTRACT §1, reading of the seed).
  if (params.responseFormat === 2) {
    const seen = new Set(offers.map((o) => normalizeAddress(o.address)));
    const found = await findDnsContacts({ dns: deps.dns, log: ctx.log, stats: deps.dnsStats, dnssec: deps.dnssec, signal: ctx.signal }, check.domain, check.adns);
    // Nobody will read the answer (the client left): nothing was offered, so nothing is recorded. After
    // the deadline the lookups still running were dropped like failed ones, and the rest is answered.
    if (ctx.signal?.aborted && ctx.signal.reason instanceof ClientGone) {
      ctx.log.info('client left during the DNS lookups; nothing recorded');
      return { ok: false, error: { code: -14 } };
    }
    for (const contact of found) {
      const key = normalizeAddress(contact.address);
      if (seen.has(key)) continue;
      seen.add(key);
      offers.push(contact);
    }
  }

  await deps.registry.record(ctx.account.id, check.domain, offers, deps.clock.now());

  // Constructed first, then DNS contacts, each in its level's list.
  const levels: Record<number, string[]> = {};
  for (const offer of offers) (levels[offer.level] ??= []).push(offer.address);
  return { ok: true, value: { domainName: check.domain, levels } };
}

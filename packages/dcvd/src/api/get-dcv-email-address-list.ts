/**
 * GetDCVEmailAddressList (seed and CONTRACT §1–§4): permission, domain rules,
 * policy, the contact providers (src/contacts/: constructed addresses, and
 * DNS contacts with responseFormat 2), and the 24-hour registry of
 * everything returned.
 */
import { ErrorCode, type DcvEmailAddressList } from '@dcvd/client';
import type { Clock } from '../deps.ts';
import { checkDomainName } from '../domains/index.ts';
import { CONTACT_PROVIDERS, offerContacts, type ContactLookup, type ContactProvider } from '../contacts/index.ts';
import type { DnsLookupStats } from '../contacts/dns.ts';
import type { DnsClient } from '../dns/client.ts';
import type { OfferedAddressRegistry } from '../registry/offered.ts';
import { emailDcvRefusal, type EmailDcvPolicy } from '../orders/email-dcv-policy.ts';
import { ClientGone, fail, type CallContext, type GetDcvEmailAddressListParams, type Outcome } from './types.ts';

export interface GetListDeps {
  clock: Clock;
  dns: DnsClient;
  dnsStats: DnsLookupStats;
  registry: OfferedAddressRegistry;
  policy: EmailDcvPolicy;
  /** The DNSSEC policy's view of each answer, for the evidence (src/dns/dnssec.ts). */
  dnssec?: ContactLookup['dnssec'];
  /** The contact sources, in wire order (default: constructed, DNS TXT, DNS CAA; src/contacts/index.ts). */
  providers?: readonly ContactProvider[];
}

export async function getDcvEmailAddressList(
  deps: GetListDeps,
  ctx: CallContext,
  params: GetDcvEmailAddressListParams,
): Promise<Outcome<DcvEmailAddressList>> {
  // Step 8.
  if (!ctx.account.perm_auto_apply) return fail(ErrorCode.AutoApplyPermissionDenied);
  // Step 9: -4 / -19 / -37.
  const check = checkDomainName(params.domainName);
  if (!check.ok) {
    ctx.log.info({ domainRule: check.reason }, 'domain refused');
    return check.code === ErrorCode.InvalidArgument ? fail(check.code, 'domainName') : fail(check.code);
  }
  // Step 10: the operator's policy.
  const refusal = emailDcvRefusal(deps.policy, check.domain, deps.clock.now());
  if (refusal) {
    ctx.log.info({ policy: refusal }, 'email DCV refused by policy');
    return fail(ErrorCode.RequestUnsuccessful);
  }

  // responseFormat 1 returns the constructed addresses only and looks nothing up (CONTRACT §1, reading of the seed).
  const dns = params.responseFormat === 2;
  // The call's signal only where a lookup waits on DNS (not for the text format, nor answers from the
  // cache): creating it (a controller, a timer, a listener on the response) was about 2 % of the
  // server's CPU per text-format call and 3 % per JSON one (issue 20).
  let signal: AbortSignal | undefined;
  const lookup: ContactLookup = { dns: deps.dns, log: ctx.log, stats: deps.dnsStats, dnssec: deps.dnssec, signal: () => (signal ??= ctx.signal) };
  const { addresses: offers } = await offerContacts(deps.providers ?? CONTACT_PROVIDERS, { fqdn: check.domain, adns: check.adns }, lookup, { dns });
  // Nobody will read the answer (the client left): nothing was offered, so nothing is recorded. After
  // the deadline the lookups still running were dropped like failed ones, and the rest is answered.
  // (Without a signal nothing waited: no event could have told of the client's leaving.)
  if (signal?.aborted && signal.reason instanceof ClientGone) {
    ctx.log.info('client left during the DNS lookups; nothing recorded');
    return fail(ErrorCode.UnknownError);
  }

  await deps.registry.record(ctx.account.id, check.domain, offers, deps.clock.now());

  // Constructed first, then DNS contacts, each in its level's list.
  const levels: Record<number, string[]> = {};
  for (const offer of offers) (levels[offer.level] ??= []).push(offer.address);
  return { ok: true, value: { domainName: check.domain, levels } };
}

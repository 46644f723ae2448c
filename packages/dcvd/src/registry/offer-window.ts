/**
 * The 24-hour rule (CONTRACT §4), the one place it is decided: a
 * dcvEmailAddress is accepted only if GetDCVEmailAddressList offered it to the
 * same account for the same domain (without `*.`) within the 24 hours before.
 * Every caller that selects an address for a DCV email asks
 * `offeredRecipient`: ResendDCVEmail, AutoApplyOrder and AutoUpdateDCV
 * (src/api/), and `dcvd order create --dcv-email` (src/admin/service.ts); the
 * registry (offered.ts) stores the offers and purges those outside the window.
 */
import { addressProblem } from '../contacts/address.ts';
import type { OfferedAddress } from '../contacts/provider.ts';

/** How long an offer counts. */
export const OFFER_WINDOW_MS = 24 * 60 * 60 * 1000;

/** An offer counts at `now` if it was made after this time (an offer exactly 24 hours old no longer does). */
export function windowStart(now: number): number {
  return now - OFFER_WINDOW_MS;
}

/** One recorded offer. */
export interface OfferRecord extends OfferedAddress {
  domain: string;
  offeredAt: number;
}

/** Where a DCV email goes, and how the address was found (evidence, CONTRACT §6). */
export interface DcvRecipient {
  address: string;
  adn: string;
  source: string;
  dnsDetail: string | null;
}

/** The registry's lookup (OfferedAddressRegistry.find): the offer of `address` inside the window at `now`, if any. */
export interface OfferLookup {
  find(accountId: number, domain: string, address: string, now: number): Promise<OfferRecord | undefined>;
}

/**
 * The address as a recipient for the order's domain, if it was returned to
 * this account for that domain within the last 24 hours; undefined otherwise.
 * The ADN is the domain's suffix of the offer's level.
 */
export async function offeredRecipient(
  registry: OfferLookup,
  order: { account_id: number; domain: string },
  address: string,
  now: number,
): Promise<DcvRecipient | undefined> {
  // Never offered anyway, and never allowed near a header (CONTRACT §5, header injection).
  if (addressProblem(address) !== undefined) return undefined;
  // The registry keys a wildcard order's offers by the name without `*.`.
  const domain = order.domain.startsWith('*.') ? order.domain.slice(2) : order.domain;
  const offer = await registry.find(order.account_id, domain, address, now);
  if (!offer) return undefined;
  const labels = domain.split('.');
  if (offer.level < 1 || offer.level > labels.length) return undefined;
  return {
    address: offer.address,
    adn: labels.slice(labels.length - offer.level).join('.'),
    source: offer.source,
    dnsDetail: offer.dns ? JSON.stringify(offer.dns) : null,
  };
}

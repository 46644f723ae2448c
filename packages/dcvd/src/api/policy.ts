/**
 * The operator's policy for email DCV (CONTRACT §1 step 10): a domain
 * blocklist, and the cut-off date after which email methods are refused
 * (default 2028-03-15, when the CA/Browser Forum's ban on them starts).
 */
import { checkDomainName } from '../domains/index.ts';

export const DEFAULT_EMAIL_DCV_CUTOFF = Date.UTC(2028, 2, 15);

export interface EmailDcvPolicy {
  /** Normalized domains; each blocks itself and every name below it. */
  blocklist: readonly string[];
  /** Epoch ms from which email DCV is refused. */
  cutoff: number;
}

export function defaultEmailDcvPolicy(): EmailDcvPolicy {
  return { blocklist: [], cutoff: DEFAULT_EMAIL_DCV_CUTOFF };
}

/** Normalizes blocklist entries as the API normalizes domainName; throws on entries that are not domains. */
export function normalizeBlocklist(entries: readonly string[]): string[] {
  return entries.map((entry) => {
    const check = checkDomainName(entry);
    // A public suffix is a valid blocklist entry (block all of `.example-tld`), so only syntax matters.
    if (!check.ok && check.reason !== 'public-suffix') throw new Error(`not a domain name: ${JSON.stringify(entry)}`);
    return check.ok ? check.domain : entry.trim().toLowerCase().replace(/\.$/, '');
  });
}

/** Why policy refuses email DCV for `domain` now, or undefined. */
export function policyRefusal(policy: EmailDcvPolicy, domain: string, now: number): 'blocklist' | 'cutoff' | undefined {
  if (now >= policy.cutoff) return 'cutoff';
  if (policy.blocklist.some((b) => domain === b || domain.endsWith(`.${b}`))) return 'blocklist';
  return undefined;
}

/**
 * The operator's policy for email DCV (CONTRACT §1 step 10, §6): a domain
 * blocklist, and the cut-off date after which email methods are refused
 * (default 2028-03-15, when BR 3.2.2.4.4, .13 and .14 stop being usable).
 * `emailDcvRefusal` is the ONE check every path that sends or confirms a DCV
 * email calls: GetDCVEmailAddressList, ResendDCVEmail, order creation with a
 * first email, the outbox at delivery time and the confirmation page.
 */
import { checkDomainName } from '../domains/index.ts';

export const DEFAULT_EMAIL_DCV_CUTOFF = Date.UTC(2028, 2, 15);
/** BR 3.2.2.4.4/.13/.14: from this date the email methods SHOULD NOT be used. */
export const EMAIL_DCV_DISCOURAGED_FROM = Date.UTC(2026, 2, 15);
const DAY_MS = 86_400_000;

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

export type EmailDcvRefusal = 'blocklist' | 'cutoff';

/**
 * Why policy refuses email DCV for `domain` (normalized, without `*.`) at
 * `now`, or undefined when it may go ahead. The one policy check of every
 * path that sends or confirms a DCV email.
 */
export function emailDcvRefusal(policy: EmailDcvPolicy, domain: string, now: number): EmailDcvRefusal | undefined {
  if (now >= policy.cutoff) return 'cutoff';
  if (policy.blocklist.some((b) => domain === b || domain.endsWith(`.${b}`))) return 'blocklist';
  return undefined;
}

/**
 * The first refusal of any of `domains` (names as orders keep them: a wildcard's `*.` is taken off here), or
 * undefined when email DCV may go ahead for every one: what an email covering several domains of an order, or
 * a resend of several, must pass (CONTRACT §6: the policy applies on every path, to every domain).
 */
export function emailDcvRefusalOfAny(policy: EmailDcvPolicy, domains: readonly string[], now: number): EmailDcvRefusal | undefined {
  for (const domain of domains) {
    const refusal = emailDcvRefusal(policy, domain.startsWith('*.') ? domain.slice(2) : domain, now);
    if (refusal) return refusal;
  }
  return undefined;
}

/** Readable reason of a refusal, for outbox rows, logs and operators. */
export function refusalText(refusal: EmailDcvRefusal, policy: EmailDcvPolicy): string {
  return refusal === 'cutoff'
    ? `email DCV methods may not be relied upon from ${new Date(policy.cutoff).toISOString().slice(0, 10)} (BR 3.2.2.4.4, .13, .14; --email-dcv-cutoff)`
    : 'the domain is on the email DCV blocklist (--email-dcv-blocklist)';
}

/**
 * Where the email methods stand at `now`: usable, discouraged (BR: SHOULD NOT
 * be used, from 2026-03-15 until the cut-off) or refused (from the cut-off).
 */
export function emailMethodsPhase(policy: EmailDcvPolicy, now: number): 'usable' | 'discouraged' | 'refused' {
  if (now >= policy.cutoff) return 'refused';
  return now >= EMAIL_DCV_DISCOURAGED_FROM ? 'discouraged' : 'usable';
}

/** Whole days until the cut-off (0 from the cut-off on), rounded up. */
export function daysUntilCutoff(policy: EmailDcvPolicy, now: number): number {
  return Math.max(0, Math.ceil((policy.cutoff - now) / DAY_MS));
}

/**
 * Whether a validation made by email at `decidedAt` may still be relied upon
 * at `now`: not from the cut-off on (BR: prior validations with these methods
 * MUST NOT be used), and never one that was declined.
 */
export function emailValidationUsable(policy: EmailDcvPolicy, decision: string, now: number): { usable: boolean; reason: string | null } {
  if (decision !== 'approved') return { usable: false, reason: 'declined' };
  if (now >= policy.cutoff) return { usable: false, reason: refusalText('cutoff', policy) };
  return { usable: true, reason: null };
}

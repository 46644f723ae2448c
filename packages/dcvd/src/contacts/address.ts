/**
 * What an email address may look like, wherever one comes from or goes to:
 * a bare plain-ASCII mailbox (`addressProblem`, also the gate of every
 * outgoing email in src/mail/message.ts), what counts as a contact address
 * found in DNS (CONTRACT §3), and how two addresses compare.
 */

import { CONTROL_CHARS } from '../text.ts';

// RFC 5322 atext. Quoted local parts, comments, address literals and
// non-ASCII (SMTPUTF8) are refused on purpose: DCV addresses are
// constructed from an ADN or read from DNS (CONTRACT §3) and never need them,
// and each of them is a place where parsers disagree.
const ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-";
const LOCAL_PART = new RegExp(`^[${ATEXT}]+(?:\\.[${ATEXT}]+)*$`);
const DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** RFC 5321 §4.5.3.1.3 path limit minus the angle brackets: a longer address cannot be an SMTP path. */
export const MAX_ADDRESS_LENGTH = 254;
const MAX_LOCAL_PART = 64; // RFC 5321 §4.5.3.1.1

/** Why `address` is not one bare, plain-ASCII mailbox, or undefined when it is. */
export function addressProblem(address: unknown): string | undefined {
  if (typeof address !== 'string') return 'is not a string';
  if (address.length === 0) return 'is empty';
  if (address.length > MAX_ADDRESS_LENGTH) return `is longer than ${MAX_ADDRESS_LENGTH} characters`;
  if (CONTROL_CHARS.test(address)) return 'contains control characters';
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return 'is not of the form local@domain';
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length > MAX_LOCAL_PART) return `has a local part longer than ${MAX_LOCAL_PART} characters`;
  // Rejects '"', '<', '>', ',', ';', ':', '(', ')', spaces, '@' and '\': so no
  // display names, groups, comments, quoting or second address can get in.
  if (!LOCAL_PART.test(local)) return 'must be a single bare address (local@domain), without display name';
  if (!domain.split('.').every((label) => DNS_LABEL.test(label))) return 'has an invalid domain';
  return undefined;
}

/**
 * Which values found in DNS count as a contact address (CONTRACT §3): the
 * whole value is one bare address and nothing else — no surrounding
 * whitespace or quotes, no display name — of at most 254 characters, without
 * control characters, CR or LF, with a domain of at least two labels.
 */
export function isContactAddress(value: string): boolean {
  if (addressProblem(value) !== undefined) return false;
  return value.slice(value.lastIndexOf('@') + 1).includes('.');
}

/** Addresses compare with the domain part case-insensitive and the local part as written (RFC 5321 §2.4). */
export function normalizeAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  // Most addresses are already normal (constructed ones always): then no string is built (issue 20).
  for (let i = at + 1; i < address.length; i++) {
    const c = address.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c >= 0x80) return address.slice(0, at) + address.slice(at).toLowerCase();
  }
  return address;
}

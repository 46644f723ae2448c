/**
 * Which values found in DNS count as a contact address (CONTRACT §3): the
 * whole value is one bare address and nothing else — no surrounding
 * whitespace or quotes, no display name — of at most 254 characters, without
 * control characters, CR or LF, with a domain of at least two labels.
 */
import { addressProblem } from '../mail/message.ts';

export function isContactAddress(value: string): boolean {
  if (addressProblem(value) !== undefined) return false;
  return value.slice(value.lastIndexOf('@') + 1).includes('.');
}

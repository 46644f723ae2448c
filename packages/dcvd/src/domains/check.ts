/**
 * domainName rules of CONTRACT §2, run at check 9 of CONTRACT §1.
 *
 * Order, first failure answers:
 *  1. normalize: trim, map the UTS-46 full stops to '.', ASCII-lowercase,
 *     drop one trailing dot, take off a leading '*.' (wildcard);
 *  2. IP literals (before the syntax check, since a dotted quad is also a run
 *     of LDH labels): with a wildcard -4, else -19 / -37;
 *  3. characters, UTS-46 (domainToASCII) and LDH syntax → -4;
 *  4. a last label that is a number (`1.2.3`, `0x7f.1`) → -4;
 *  5. special-use names and reverse zones → -37;
 *  6. no ICANN public suffix → -37;
 *  7. a public suffix itself, ICANN or private section → -4;
 *  8. base domain and ADNs.
 */
import { domainToASCII, domainToUnicode } from 'node:url';
import { getDomain, parse } from 'tldts';
import { ErrorCode } from '@dcvd/client';
import { classifyIp, ipLiteral } from './ip.ts';
import { specialUseOf } from './special-use.ts';
import type { Adn, DomainCheck, DomainErrorCode, DomainRejectReason } from './types.ts';

/**
 * Inputs longer than this are refused before any other work. The wire caps
 * domainName at 255 characters (CONTRACT §1), so nothing valid is lost; the
 * margin leaves room for UTS-46 "ignored" characters (soft hyphens …) and
 * keeps the function cheap for any caller, whatever the string's length.
 */
export const MAX_INPUT_LENGTH = 1024;

const MAX_NAME_LENGTH = 253; // RFC 1035 §3.1: 255 octets on the wire, 253 in text without the final dot
const MAX_LABEL_LENGTH = 63; // RFC 1035 §2.3.4

// LDH label (RFC 952/1123, CONTRACT §2): letters, digits, hyphen, not at
// either end. Input is lowercase by now.
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
// ASCII allowed before UTS-46 mapping. Anything else ASCII (space, controls,
// '_', '%', '/', ':' …) is refused up front: domainToASCII is the WHATWG host
// parser and would otherwise silently drop tab/LF, percent-decode, or cut the
// name at '/', turning one name into another.
const ASCII_ALLOWED = /^[a-z0-9.-]$/;
// UTS-46 §2.3: these map to U+002E FULL STOP. Mapped first so that the
// trailing-dot and '*.' rules see them as dots.
const FULL_STOPS = /[\u3002\uff0e\uff61]/g;
// WHATWG URL "ends in a number checker": a last label URL parsers read as
// an IPv4 number (decimal, octal, 0x-hex).
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;

// A label appended before calling domainToASCII so that the WHATWG host
// parser never reads the name as an IPv4 address ("1.2.3" → "1.2.0.3").
const SENTINEL = '.a';

const ICANN_ONLY = { extractHostname: false, detectIp: false } as const;
const WITH_PRIVATE = { extractHostname: false, detectIp: false, allowPrivateDomains: true } as const;

function fail(code: DomainErrorCode, reason: DomainRejectReason): DomainCheck {
  return { ok: false, code, reason };
}

export function checkDomainName(input: string): DomainCheck {
  if (input.length > MAX_INPUT_LENGTH) return fail(ErrorCode.InvalidArgument, 'too-long');

  // 1. Normalize (CONTRACT §2).
  let name = input.trim().replace(FULL_STOPS, '.');
  // ASCII only: non-ASCII case is UTS-46's business (its mapping differs from
  // toLowerCase, e.g. U+1E9E ẞ → "ss", not "ß").
  name = name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  if (name.endsWith('.')) name = name.slice(0, -1);
  const wildcard = name.startsWith('*.');
  if (wildcard) name = name.slice(2);

  // 2. IP literals.
  const ip = ipLiteral(name);
  if (ip !== null) {
    // `*.192.0.2.1` is not a wildcard over an address (addresses have no
    // children); as a name it ends in a number. Refused as invalid, not as
    // an IP, whatever the address.
    if (wildcard) return fail(ErrorCode.InvalidArgument, 'wildcard-ip');
    return classifyIp(ip);
  }

  // 3. Characters, UTS-46, syntax.
  let hasNonAscii = false;
  for (const ch of name) {
    if (ch.charCodeAt(0) >= 0x80) hasNonAscii = true;
    else if (!ASCII_ALLOWED.test(ch)) return fail(ErrorCode.InvalidArgument, 'syntax');
  }
  const ascii = toAscii(name, hasNonAscii);
  if (ascii === null) return fail(ErrorCode.InvalidArgument, 'idna');
  // Full-width digits map to ASCII ones ("８.８.８.８" → "8.8.8.8"): answer as
  // for the address they spell.
  const mappedIp = hasNonAscii ? ipLiteral(ascii) : null;
  if (mappedIp !== null) return wildcard ? fail(ErrorCode.InvalidArgument, 'wildcard-ip') : classifyIp(mappedIp);
  if (!isLdhName(ascii)) return fail(ErrorCode.InvalidArgument, 'syntax');
  const labels = ascii.split('.');

  // 4. A name ending in a number is read as an IPv4 address by URL parsers
  // and inet_aton (`0x7f.1` is 127.0.0.1), and no TLD is numeric (RFC 3696
  // §2), so it is neither a valid IP literal nor a valid host name.
  if (NUMERIC_LABEL.test(labels[labels.length - 1] ?? '')) return fail(ErrorCode.InvalidArgument, 'numeric-tld');

  // 5. Special-use names, reverse zones.
  const special = specialUseOf(ascii);
  if (special !== null) return fail(ErrorCode.IntranetName, special);

  // 6. Internal names: no ICANN suffix. tldts answers unknown TLDs with the
  // PSL's implicit '*' rule (suffix "corp" for "host.corp"), flagged neither
  // ICANN nor private, so `isIcann` is the test, not "has a suffix".
  if (parse(ascii, ICANN_ONLY).isIcann !== true) return fail(ErrorCode.IntranetName, 'internal-name');

  // 7. Base domain by the PSL including its private section, so that
  // `github.io` is a suffix and `admin@github.io` is never offered. No
  // registrable domain means the name is a public suffix (a wildcard over one
  // included: `*.co.uk`).
  const baseDomain = getDomain(ascii, WITH_PRIVATE);
  if (baseDomain === null) return fail(ErrorCode.InvalidArgument, 'public-suffix');

  // 8. ADNs from the base domain down to the name itself.
  const baseLevel = baseDomain.split('.').length;
  const adns: Adn[] = [];
  for (let level = baseLevel; level <= labels.length; level++) {
    adns.push({ name: labels.slice(labels.length - level).join('.'), level });
  }
  return { ok: true, domain: ascii, wildcard, baseDomain, adns };
}

/**
 * UTS-46 ToASCII via node:url's domainToASCII (nontransitional, as WHATWG
 * URL). Returns null when it fails or would change the label structure.
 */
function toAscii(name: string, hasNonAscii: boolean): string | null {
  // Plain LDH input needs no mapping; only `xn--` labels need validating.
  if (!hasNonAscii && !/(?:^|\.)xn--/.test(name)) return name;
  const withSentinel = domainToASCII(name + SENTINEL);
  if (!withSentinel.endsWith(SENTINEL)) return null; // '' on failure
  // UTS-46 can map one character to several labels ('⒈' → "1."): refuse,
  // the name would not be the one the user typed.
  if (countDots(withSentinel) !== countDots(name) + 1) return null;
  // ada (Node's URL parser) accepts `xn--` labels that decode to plain ASCII
  // (`xn--abc-` → "abc"), which UTS-46 (since Unicode 15.1) makes an error.
  // Requiring a round trip refuses every non-canonical A-label.
  if (domainToASCII(domainToUnicode(withSentinel)) !== withSentinel) return null;
  return withSentinel.slice(0, -SENTINEL.length);
}

function countDots(s: string): number {
  let n = 0;
  for (let i = s.indexOf('.'); i >= 0; i = s.indexOf('.', i + 1)) n++;
  return n;
}

function isLdhName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) return false;
  for (const label of name.split('.')) {
    if (label.length > MAX_LABEL_LENGTH || !LDH_LABEL.test(label)) return false;
  }
  return true;
}

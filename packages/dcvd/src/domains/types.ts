/**
 * Types of the domain-name rules (CONTRACT §2). The error codes are the wire
 * codes of GetDCVEmailAddressList (CONTRACT §1 check 9).
 */
import type { ErrorCode } from '@dcvd/client';

/** An Authorization Domain Name: a name at or below the base domain. */
export type Adn = {
  /** A-label form, lowercase, no trailing dot. */
  name: string;
  /** Number of labels; `levelN_email` on the wire (CONTRACT §1, §2). */
  level: number;
};

/**
 * Why a name was refused. Meant for logs and metrics, never for the client,
 * which only sees the code and the seed's message.
 */
export type DomainRejectReason =
  /** Input longer than any domainName the wire could carry. */
  | 'too-long'
  /** Not LDH labels of 1..63, total over 253, an empty label, or a stray character. */
  | 'syntax'
  /** UTS-46 could not convert it, or an `xn--` label is not valid punycode. */
  | 'idna'
  /** The last label is a number (`1.2.3`, `0x7f.1`): neither an IP literal nor a host name. */
  | 'numeric-tld'
  /** A wildcard over an IP literal (`*.1.2.3.4`). */
  | 'wildcard-ip'
  /** An Internet-accessible IP literal (-19). */
  | 'public-ip'
  /** A private, loopback, link-local, reserved… IP literal (-37). */
  | 'private-ip'
  /** A special-use name (RFC 6761/6762/7686/8375/9476 …). */
  | 'special-use'
  /** A reverse-DNS zone (`in-addr.arpa`, `ip6.arpa`). */
  | 'reverse-zone'
  /** No ICANN public suffix (`intranet`, `host.corp`). */
  | 'internal-name'
  /** The name is a public suffix itself (ICANN or private section). */
  | 'public-suffix';

export type DomainErrorCode = (typeof ErrorCode)['InvalidArgument' | 'PublicIpAddress' | 'IntranetName'];

export type DomainCheck =
  | {
      ok: true;
      /** Normalized name without `*.`: the response's `domain_name`. */
      domain: string;
      /** The input started with `*.`. */
      wildcard: boolean;
      /** Registrable domain by the PSL including its private section. */
      baseDomain: string;
      /** Base domain first, then each child down to `domain` itself. */
      adns: Adn[];
    }
  | { ok: false; code: DomainErrorCode; reason: DomainRejectReason };

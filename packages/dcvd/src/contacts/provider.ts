/**
 * The contact sources (CONTRACT §1, §3) behind one interface,
 * `ContactProvider`, and what they offer: each address with its level, its
 * source and, for one found in DNS, the answer as evidence. The 24-hour
 * registry (src/registry/) records these offers. The providers:
 * constructed.ts, txt.ts, caa.ts; their list: index.ts.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { DnsClient, LookupSignal } from '../dns/client.ts';
import type { DnssecEvidence } from '../dns/dnssec.ts';
import type { Adn } from '../domains/index.ts';

export type ContactSource = 'constructed' | 'dns-txt' | 'dns-caa';

/** The DNS answer a contact address came from, kept as evidence. */
export interface DnsEvidence {
  name: string;
  type: 'TXT' | 'CAA';
  rcode: string;
  authenticatedData: boolean;
  extendedErrors: { infoCode: number; extraText: string }[];
  resolver: string;
  /** The DNSSEC policy's view of the answer: mode, secure/insecure, the resolver's probe state (CONTRACT §3). */
  dnssec?: DnssecEvidence;
}

/** One offered contact. Later checks of DNS-found contacts (e.g. multi-perspective corroboration) add optional fields. */
export interface OfferedAddress {
  address: string;
  level: number;
  source: ContactSource;
  dns?: DnsEvidence;
}

/** The checked name a provider is asked about: the FQDN (no `*.`) and its ADNs, base domain first (src/domains/check.ts). */
export interface ContactQuery {
  fqdn: string;
  adns: readonly Adn[];
}

/** The DNS lookup dependency of the providers that look up DNS, and where they log and count. */
export interface ContactLookup {
  dns: DnsClient;
  log: FastifyBaseLogger;
  /** Counts each lookup by type and outcome (DnsLookupStats in dns.ts, which feeds the metrics). */
  stats: { add(type: string, outcome: string): void };
  /** The DNSSEC policy (src/dns/dnssec.ts): its view of each answer goes into the evidence. */
  dnssec?: { evidence(resolver: string, authenticatedData: boolean): DnssecEvidence } | undefined;
  /**
   * The request's (or how to make it: only a lookup that waits asks): abandons its lookups when the
   * client goes away or its deadline passes (issue 20).
   */
  signal?: LookupSignal | undefined;
}

/** A lookup of a provider that failed (already logged and counted): what it would have found there is not offered. */
export interface ContactLookupError {
  type: 'TXT' | 'CAA';
  name: string;
  /** The outcome of `dcvd_dns_lookups_total`: `timeout`, `servfail`, `dnssec-bogus`, `name-too-long` … */
  kind: string;
}

/** One provider's answer: the addresses it offers, in wire order, and its failed lookups. */
export interface ContactOffer {
  addresses: OfferedAddress[];
  errors: ContactLookupError[];
}

/** The Open MPIC API's validation method for a DNS-found contact (BR 3.2.2.9). */
export type ContactMethod = 'contact-email-txt' | 'contact-email-caa';

/** How an address of a source is corroborated from other network perspectives (src/mpic/corroborate.ts). */
export interface Corroboration {
  method: ContactMethod;
  /** The name the perspectives look up from, given the order's FQDN (no `*.`) and the ADN the address was offered for. */
  target(fqdn: string, adn: string): string;
}

/**
 * One contact source, in the shape of DigiCert's `EmailProvider`: its name
 * (the `source` recorded with every address it offers), whether it looks up
 * DNS (then it answers responseFormat 2 only), how its addresses are
 * corroborated before an email goes to one (none for constructed addresses),
 * and `offer`, which never throws for a DNS failure: a failed lookup is one
 * of its `errors` and drops only what it would have found.
 */
export interface ContactProvider {
  readonly source: ContactSource;
  readonly looksUpDns: boolean;
  readonly corroboration?: Corroboration | undefined;
  offer(query: ContactQuery, lookup: ContactLookup): Promise<ContactOffer>;
}

/**
 * What a contact source offers (CONTRACT §1, §3): each address with its
 * level, its source and, for one found in DNS, the answer as evidence. The
 * 24-hour registry (src/registry/) records these offers.
 */
import type { DnssecEvidence } from '../dns/dnssec.ts';

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

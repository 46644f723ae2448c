/** The DNSSEC policy's settings (CONTRACT §3; the guard is dnssec.ts): a leaf, so config.ts and the CLI read them without loading the DNS client. */
export const DNSSEC_MODES = ['require', 'log', 'off'] as const;
export type DnssecMode = (typeof DNSSEC_MODES)[number];

export interface DnssecConfig {
  mode: DnssecMode;
  /** A name in a signed zone: a validating resolver answers it with the AD bit. */
  probeSecure: string;
  /** A name in a zone with broken signatures: a validating resolver answers SERVFAIL. */
  probeBogus: string;
  /** How often the probes run again (require). */
  probeIntervalMs: number;
}

/**
 * Public names for the probes when the operator names none: isc.org has been
 * signed for many years, dnssec-failed.org is kept bogus on purpose (Comcast).
 * A CA should name its own (zones it controls, or its resolver operator's).
 */
export const DEFAULT_DNSSEC: DnssecConfig = {
  mode: 'log',
  probeSecure: 'isc.org',
  probeBogus: 'dnssec-failed.org',
  probeIntervalMs: 5 * 60_000,
};


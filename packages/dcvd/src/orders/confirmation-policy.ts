/** The confirmation's settings: a leaf, so config.ts and the CLI read the defaults without loading the confirmation service. */
/** The Baseline Requirements version the evidence names by default (`--br-version` for the operator's CPS). */
export const BR_VERSION = '2.2.6';

export interface CodeGuessPolicy {
  /** Unknown codes from one source IP within `windowMs` that block it. */
  failureLimit: number;
  /** The counting window, and how long a block lasts. */
  windowMs: number;
}

export const DEFAULT_CODE_GUESS_POLICY: CodeGuessPolicy = { failureLimit: 20, windowMs: 15 * 60_000 };

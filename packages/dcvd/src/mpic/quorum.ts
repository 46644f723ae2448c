/**
 * The quorum rules of BR 3.2.2.9, applied by dcvd itself to the answer of
 * each remote Network Perspective (never to the MPIC service's summary flag
 * alone): from 2026-12-15 at least five remote perspectives; of N used, at
 * most one non-corroboration for N = 2..5 and two for N ≥ 6; and the
 * corroborating perspectives in the service regions of at least two distinct
 * Regional Internet Registries.
 */

/** BR 3.2.2.9, phased implementation, effective 2026-12-15 (dcvd requires it already). */
export const MIN_REMOTE_PERSPECTIVES = 5;

/** The BR table "Quorum Requirements": allowed non-corroborations for N distinct remote perspectives. */
export function allowedNonCorroborations(perspectives: number): number {
  if (perspectives < 2) return 0;
  return perspectives <= 5 ? 1 : 2;
}

/** The five Regional Internet Registries, by the names Open MPIC perspective codes start with (`arin.us-east-2`). */
const RIRS: Record<string, string> = {
  arin: 'ARIN',
  ripe: 'RIPE NCC',
  'ripe-ncc': 'RIPE NCC',
  ripencc: 'RIPE NCC',
  apnic: 'APNIC',
  lacnic: 'LACNIC',
  afrinic: 'AFRINIC',
};

/** The RIR of a perspective code `rir.region` (Open MPIC's form), or undefined when the code names none. */
export function rirOfPerspective(code: string): string | undefined {
  const dot = code.indexOf('.');
  if (dot <= 0) return undefined;
  return RIRS[code.slice(0, dot).toLowerCase()];
}

/** One remote perspective's answer, as dcvd judged it. */
export interface PerspectiveResult {
  code: string;
  /** undefined when the code names no RIR: such a perspective cannot count towards RIR diversity. */
  rir: string | undefined;
  /** True only when the perspective passed, reported no error, and listed the selected address among the records it saw. */
  corroborates: boolean;
  /** The perspective's own flag, as sent. */
  checkPassed: boolean;
  /** Why it does not corroborate (empty when it does). */
  reason: string;
  recordsSeen?: string[];
  foundAt?: string;
  errors?: { type: string; message: string }[];
}

export type QuorumOutcome = 'corroborated' | 'too-few-perspectives' | 'quorum-not-met' | 'rir-diversity-not-met' | 'service-disagrees';

export interface QuorumDecision {
  corroborated: boolean;
  outcome: QuorumOutcome;
  /** N: the remote perspectives asked for (a missing answer is a non-corroboration). */
  perspectives: number;
  corroborating: number;
  nonCorroborations: number;
  allowed: number;
  /** Distinct RIRs of the corroborating perspectives. */
  rirs: string[];
  /** One line for logs and evidence. */
  detail: string;
}

/**
 * The decision on one MPIC answer. `requested` is N (what dcvd asked for);
 * `serviceValid` is the service's `is_valid`: it can veto, never approve.
 */
export function decideQuorum(requested: number, results: readonly PerspectiveResult[], serviceValid: boolean): QuorumDecision {
  const corroborating = results.filter((r) => r.corroborates);
  const rirs = [...new Set(corroborating.map((r) => r.rir).filter((r): r is string => r !== undefined))].sort();
  const allowed = allowedNonCorroborations(requested);
  const nonCorroborations = requested - corroborating.length;
  const base = { perspectives: requested, corroborating: corroborating.length, nonCorroborations, allowed, rirs };
  const summary = `${corroborating.length} of ${requested} remote perspectives corroborate (${nonCorroborations} non-corroborations, ${allowed} allowed), RIRs: ${rirs.join(', ') || 'none'}`;
  if (requested < MIN_REMOTE_PERSPECTIVES) {
    return { ...base, corroborated: false, outcome: 'too-few-perspectives', detail: `${summary}; at least ${MIN_REMOTE_PERSPECTIVES} remote perspectives are required` };
  }
  if (nonCorroborations > allowed) return { ...base, corroborated: false, outcome: 'quorum-not-met', detail: `${summary}; quorum not met` };
  if (rirs.length < 2) return { ...base, corroborated: false, outcome: 'rir-diversity-not-met', detail: `${summary}; corroborating perspectives must span at least 2 RIRs` };
  if (!serviceValid) return { ...base, corroborated: false, outcome: 'service-disagrees', detail: `${summary}; but the MPIC service answered is_valid=false` };
  return { ...base, corroborated: true, outcome: 'corroborated', detail: summary };
}

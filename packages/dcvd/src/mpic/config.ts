/** The MPIC settings (issue 19; the gate is corroborate.ts): a leaf, so config.ts and the CLI read them without loading the gate. */
export type MpicMode = 'required' | 'off';

/** `--mpic`, `--mpic-url`, `--mpic-api-key-file`, `--mpic-ca-file`, `--mpic-perspectives`, `--mpic-timeout`. */
export interface MpicConfig {
  /** required (default): a DNS-found address needs a corroboration; off: used on dcvd's own lookup alone (not BR 3.2.2.9-compliant). */
  mode: MpicMode;
  url?: string | undefined;
  apiKeyFile?: string | undefined;
  caFile?: string | undefined;
  perspectives: number;
  timeoutMs: number;
}

export const DEFAULT_MPIC_PERSPECTIVES = 6;
export const DEFAULT_MPIC_TIMEOUT_MS = 10_000;

export function defaultMpicConfig(overrides: Partial<MpicConfig> = {}): MpicConfig {
  return { mode: 'required', perspectives: DEFAULT_MPIC_PERSPECTIVES, timeoutMs: DEFAULT_MPIC_TIMEOUT_MS, ...overrides };
}


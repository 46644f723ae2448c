/** The lockout and per-IP limits of API logins (CONTRACT §7): a leaf, so config.ts and the CLI read the defaults without loading the authenticator. */
export interface AuthPolicy {
  /** Consecutive failures that lock an account. */
  lockoutFailures: number;
  lockoutMs: number;
  /** Failures from one source IP within the window that block it. */
  ipFailures: number;
  ipWindowMs: number;
  ipBlockMs: number;
  /** How long a verified credential is remembered (0 = never). */
  credentialCacheMs: number;
  /** At most this many remembered credentials. */
  credentialCacheSize: number;
}

export const DEFAULT_AUTH_POLICY: AuthPolicy = {
  lockoutFailures: 5,
  lockoutMs: 15 * 60_000,
  ipFailures: 50,
  ipWindowMs: 15 * 60_000,
  ipBlockMs: 15 * 60_000,
  credentialCacheMs: 60_000,
  credentialCacheSize: 10_000,
};


/** A leaf, so config.ts and the CLI read the queue's defaults without loading the queue. */
/** The retry and lease policy of a leased queue: the DCV email outbox's (--outbox-*), which the webhook outbox shares. */
export interface OutboxPolicy {
  /** How long a claim holds an email before another worker may take it over. */
  leaseMs: number;
  /** Delay after the first failed attempt; doubled after each further one. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Attempts before an email is marked failed. */
  maxAttempts: number;
  /** Emails in flight at once (also the SMTP pool's connection count); a claim waits for a quarter of them to be free. */
  concurrency: number;
  /** How often the worker looks for due emails when nothing woke it. */
  pollMs: number;
}

export const DEFAULT_OUTBOX_POLICY: OutboxPolicy = {
  leaseMs: 5 * 60_000,
  retryBaseMs: 30_000,
  retryMaxMs: 60 * 60_000,
  maxAttempts: 10,
  // 16: a relay's usual limits leave room for it (Postfix 50 connections per client, Exim 20 in all by
  // default), and delivery under load is bound by the emails in flight (docs/PERFORMANCE.md, third round).
  concurrency: 16,
  pollMs: 1000,
};

/** Flow control of the DCV email outbox (--outbox-max-lag, --outbox-flow-delay; src/outbox/flow.ts). */
export interface OutboxFlowConfig {
  /** How long the oldest due email may wait for delivery before calls that queue emails wait; 0 turns flow control off. */
  maxLagMs: number;
  /** The longest such a call waits before it goes on anyway. */
  delayMs: number;
}

/**
 * 2 s: longer than a delivery takes to begin in any healthy deployment (a queued email wakes the
 * workers at once, and the workers poll every second when a wake is lost), so only a backlog trips
 * it; 1 s: Postfix's `in_flow_delay` default, and short enough for any API client's timeout.
 */
export const DEFAULT_OUTBOX_FLOW: OutboxFlowConfig = { maxLagMs: 2000, delayMs: 1000 };

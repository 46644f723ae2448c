/** An outbox email's states (`dcvd outbox list --state`): a leaf, so the CLI lists them without loading the worker. */
export const OUTBOX_STATES = ['pending', 'sending', 'delivered', 'failed', 'cancelled'] as const;

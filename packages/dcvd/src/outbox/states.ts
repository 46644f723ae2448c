/** An outbox email's states (`dcvd outbox list --state`): a leaf, so the CLI lists them without loading the worker. */
export const OUTBOX_STATES = ['pending', 'sending', 'delivered', 'failed', 'cancelled'] as const;
/** The states of an email still waiting to be delivered (the queue); the others are final. */
export const WAITING_STATES = ['pending', 'sending'] as const;

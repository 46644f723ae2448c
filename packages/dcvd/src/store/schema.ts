/**
 * Table types for Kysely. Times are integer milliseconds since the epoch
 * (bigint columns), booleans are 0/1 integers: one representation that
 * SQLite and PostgreSQL both store and return the same way.
 */
import type { ColumnType, Generated } from 'kysely';

type Millis = number;

export interface AccountTable {
  id: Generated<number>;
  login: string;
  password_hash: string;
  /** Bumped by every password change, lock, unlock and expiry change: voids remembered credentials (CONTRACT §7). */
  credential_version: ColumnType<number, number | undefined, number>;
  perm_auto_apply: ColumnType<number, number | undefined, number>;
  perm_voucher: ColumnType<number, number | undefined, number>;
  /** Comma-separated CIDR list; empty = any source. */
  allowed_networks: ColumnType<string, string | undefined, string>;
  password_expires_at: Millis | null;
  /** Locked by an operator until unlocked. */
  locked: ColumnType<number, number | undefined, number>;
  /** Consecutive failures since the last success or lockout. */
  failed_attempts: ColumnType<number, number | undefined, number>;
  /** Set by the lockout rule. */
  locked_until: Millis | null;
  /** Where this account's DCV decisions are POSTed (CONTRACT §6); null = the global --webhook-url. */
  webhook_url: ColumnType<string | null, string | null | undefined, string | null>;
  /** Password verifications reserved and not yet settled (issue 14); stale after RESERVATION_TTL_MS. */
  auth_pending: ColumnType<number, number | undefined, number>;
  auth_pending_at: ColumnType<Millis | null, Millis | null | undefined, Millis | null>;
  created_at: Millis;
  updated_at: Millis;
}

export interface IpFailureTable {
  ip: string;
  window_start: Millis;
  failures: number;
  blocked_until: Millis | null;
  /** Attempts reserved and not yet settled (issue 14); stale after RESERVATION_TTL_MS. */
  pending: ColumnType<number, number | undefined, number>;
  pending_at: ColumnType<Millis | null, Millis | null | undefined, Millis | null>;
}

/** The 24-hour registry (CONTRACT §4): one row per account, domain and address, refreshed on every offer. */
export interface OfferedAddressTable {
  id: Generated<number>;
  account_id: number;
  /** The normalized domain the list was asked for (without `*.`). */
  domain: string;
  /** Local part as offered, domain part lower-cased. */
  address: string;
  level: number;
  /** How the address was found: constructed, dns-txt or dns-caa (evidence, CONTRACT §6). */
  source: string;
  /** JSON of the DNS answer that gave a DNS contact: name, rcode, AD bit, EDE, resolver. */
  dns_detail: string | null;
  offered_at: Millis;
}

/** An order of the CA's ordering system (CONTRACT §5), created through the operator interface (§9). */
export interface OrderTable {
  id: Generated<number>;
  account_id: number;
  /** Unique across all accounts. */
  order_number: number;
  /** The chain (renewals, reissues) this order belongs to; an order that starts a chain has its own number here. */
  base_order_number: number;
  /** Product code (801 VMC and 803 CMC ignore dcvTemplateID); null when the ordering system gave none. */
  product: number | null;
  /** Normalized (A-labels, lower case), with `*.` kept for a wildcard order. */
  domain: string;
  /** email, http, https or cname: only `email` orders are sent DCV emails. */
  dcv_method: string;
  /** awaiting, validated, declined or cancelled. */
  dcv_status: string;
  voucher: ColumnType<number, number | undefined, number>;
  /** The template of this order's DCV emails when the resend names none; null = the built-in default. */
  template_id: number | null;
  /** The current DCV address and how it was found (evidence, CONTRACT §6). */
  dcv_email_address: string | null;
  dcv_adn: string | null;
  dcv_address_source: string | null;
  dcv_dns_detail: string | null;
  /** When the last DCV email was queued: the minimum resend interval counts from here. */
  last_dcv_email_at: Millis | null;
  dcv_decided_at: Millis | null;
  created_at: Millis;
  updated_at: Millis;
  /** AutoApplyOrder's answer (certificateID), its `days` and CSR; null for orders of the operator interface. */
  certificate_id: ColumnType<number | null, number | null | undefined, number | null>;
  days: ColumnType<number | null, number | null | undefined, number | null>;
  csr: ColumnType<string | null, string | null | undefined, string | null>;
}

/**
 * The domains of an order (CONTRACT §12), position 1 being the order's own
 * `domain`, each with its own DCV method, address and status. The `orders`
 * row's DCV columns mirror position 1, and its dcv_status sums them up:
 * validated when every domain is, declined when one is, cancelled with the order.
 */
export interface OrderDomainTable {
  id: Generated<number>;
  order_id: number;
  position: number;
  /** Normalized, `*.` kept for a wildcard. */
  domain: string;
  dcv_method: string;
  dcv_status: string;
  dcv_email_address: string | null;
  dcv_adn: string | null;
  dcv_address_source: string | null;
  dcv_dns_detail: string | null;
  last_dcv_email_at: Millis | null;
  dcv_decided_at: Millis | null;
  created_at: Millis;
  updated_at: Millis;
}

/** The operator's product catalogue (CONTRACT §12): codes AutoApplyOrder accepts. */
export interface ProductTable {
  code: number;
  name: string;
  multi_domain: number;
  max_domains: number;
  wildcard: number;
  /** Comma-separated allowed `days` values. */
  allowed_days: string;
  created_at: Millis;
  updated_at: Millis;
}

/** DCV email templates (CONTRACT §5, §9): `account_id` 0 is a global template. Immutable once created. */
export interface DcvTemplateTable {
  id: Generated<number>;
  account_id: number;
  /** The dcvTemplateID of the API. */
  template_id: number;
  subject: string;
  text_body: string;
  html_body: string | null;
  created_at: Millis;
}

/**
 * Random Values (BR 3.2.2.4.4), stored only as keyed hashes, with what the
 * evidence of a validation needs later (CONTRACT §5, §6).
 */
export interface RandomValueTable {
  id: Generated<number>;
  order_id: number;
  /** Hex HMAC-SHA256 of the canonical code under the instance's secret key. */
  value_hash: string;
  recipient: string;
  adn: string;
  /** constructed, dns-txt or dns-caa. */
  address_source: string;
  /** JSON of the DNS answer for a DNS contact. */
  dns_detail: string | null;
  /** The dcv_templates row its emails are rendered with; null = the built-in default. */
  template_ref: number | null;
  created_at: Millis;
  expires_at: Millis;
  /** Set when the value stopped working before its expiry: superseded by a newer value, or the order was cancelled. */
  revoked_at: Millis | null;
  revoked_reason: string | null;
  /** Set once, atomically, by the confirmation that uses it. */
  spent_at: Millis | null;
  /** The order_domains row this value validates (every value since migration 0008). */
  order_domain_id: ColumnType<number | null, number | null | undefined, number | null>;
}

/**
 * The domains of an order one random value validates when its email covers
 * more than one (BR 3.2.2.4.4, migration 0011): every covered domain, the
 * value's own `order_domain_id` included. No rows for a one-domain value.
 */
export interface RandomValueDomainTable {
  random_value_id: number;
  order_domain_id: number;
}

/** The transactional outbox (CONTRACT §5): one row per DCV email. */
export interface OutboxTable {
  id: Generated<number>;
  /** Idempotency key, sent as the Message-ID. */
  message_id: string;
  order_id: number;
  random_value_id: number;
  recipient: string;
  /** pending, sending, delivered, failed or cancelled. */
  state: string;
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: Millis;
  /** While `sending`: another worker may take the email over after this time. */
  lease_until: Millis | null;
  /** Which claim holds the lease; only its holder may record the outcome. */
  claim_token: string | null;
  /** The validation code, sealed (AES-256-GCM) until the value stops working; never in clear text. */
  sealed_code: string | null;
  /** Set at delivery: what was actually sent. */
  mail_from: string | null;
  subject: string | null;
  /** The server's reply or the reason of the last failure. */
  last_error: string | null;
  response: string | null;
  created_at: Millis;
  updated_at: Millis;
  delivered_at: Millis | null;
}

/**
 * The evidence of one DCV decision (CONTRACT §6), written in the transaction
 * that spends the code and decides the order; never changed afterwards.
 */
export interface DcvEvidenceTable {
  id: Generated<number>;
  order_id: number;
  random_value_id: number;
  /** approved or declined. */
  decision: string;
  /** The BR method: section (3.2.2.4.4, .13 or .14, by how the address was found) and the BR version. */
  br_section: string;
  br_version: string;
  domain: string;
  adn: string;
  recipient: string;
  /** constructed, dns-txt or dns-caa, with the DNS answer (JSON) for the last two. */
  address_source: string;
  dns_detail: string | null;
  /** The random value's keyed hash (never the value). */
  value_hash: string;
  value_created_at: Millis;
  /** The last delivered email that carried the value (Message-ID, time); null if none was delivered yet. */
  message_id: string | null;
  email_sent_at: Millis | null;
  decided_at: Millis;
  source_ip: string;
  user_agent: string | null;
}

/** Unknown validation codes per source IP (CONTRACT §6: guessing is rate-limited), shared by every instance. */
export interface CodeFailureTable {
  ip: string;
  window_start: Millis;
  failures: number;
  blocked_until: Millis | null;
  /** Attempts reserved and not yet settled (issue 14); stale after RESERVATION_TTL_MS. */
  pending: ColumnType<number, number | undefined, number>;
  pending_at: ColumnType<Millis | null, Millis | null | undefined, Millis | null>;
}

/** Signed webhook events (CONTRACT §6), delivered by the same leased-queue machinery as the emails. */
export interface WebhookOutboxTable {
  id: Generated<number>;
  /** Idempotency key, sent as X-Dcvd-Event-Id. */
  event_id: string;
  order_id: number;
  event: string;
  url: string;
  /** The exact JSON body that is signed and sent. */
  body: string;
  state: string;
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: Millis;
  lease_until: Millis | null;
  claim_token: string | null;
  last_error: string | null;
  response: string | null;
  created_at: Millis;
  updated_at: Millis;
  delivered_at: Millis | null;
  /** Whose secrets sign it (issue 14): 'global' or 'account:<id>'; null = queued before 0007 (the global secret). */
  receiver: ColumnType<string | null, string | null | undefined, string | null>;
}

/** Signing secrets of the webhook receivers (issue 14), sealed (AES-256-GCM, the receiver as AAD); never in clear text. */
export interface WebhookSecretTable {
  id: Generated<number>;
  /** 'account:<id>'. */
  receiver: string;
  sealed_secret: string;
  created_at: Millis;
  /** null: the current secret; else it stops signing then (the overlap of a rotation). */
  expires_at: Millis | null;
}

/**
 * Multi-Perspective Issuance Corroboration of a DNS-found contact (BR 3.2.2.9, issue 19): one row
 * per selection of a DNS TXT/CAA address for an email, whatever the outcome; never changed
 * afterwards except `random_value_id`, set in the transaction that queues the corroborated email.
 */
export interface MpicEvidenceTable {
  id: Generated<number>;
  /** The MPIC request's trace_identifier (a UUID dcvd made). */
  request_id: string;
  account_id: number;
  /** Null when the order was not created because the corroboration failed. */
  order_id: number | null;
  random_value_id: number | null;
  /** The order's domain, the MPIC target (ADN for TXT, FQDN for CAA), the method and the address. */
  domain: string;
  target: string;
  method: string;
  address: string;
  /** corroborated, quorum-not-met, rir-diversity-not-met, too-few-perspectives, service-disagrees, timeout, unreachable, bad-answer, off. */
  outcome: string;
  corroborated: number;
  /** N asked for, and how many corroborated. */
  perspectives: number;
  corroborating: number;
  /** Comma-separated RIRs of the corroborating perspectives. */
  rirs: string;
  /** The service's is_valid (null when it gave no usable answer). */
  service_valid: number | null;
  /** JSON: each perspective's code, RIR, check_passed, whether it corroborates and why not, records seen, found_at, errors. */
  perspective_results: string;
  /** The decision in one line (or the failure). */
  detail: string;
  started_at: Millis;
  finished_at: Millis;
}

export interface Database {
  accounts: AccountTable;
  ip_failures: IpFailureTable;
  offered_addresses: OfferedAddressTable;
  orders: OrderTable;
  dcv_templates: DcvTemplateTable;
  random_values: RandomValueTable;
  random_value_domains: RandomValueDomainTable;
  outbox: OutboxTable;
  dcv_evidence: DcvEvidenceTable;
  code_failures: CodeFailureTable;
  webhook_outbox: WebhookOutboxTable;
  mpic_evidence: MpicEvidenceTable;
  order_domains: OrderDomainTable;
  products: ProductTable;
  webhook_secrets: WebhookSecretTable;
}

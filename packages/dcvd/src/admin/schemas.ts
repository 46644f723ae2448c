/**
 * Typebox schemas of the internal JSON API: the request bodies and query
 * strings it validates, and the views it returns (the same objects
 * `dcvd … --json` prints). docs/openapi.json is generated from them.
 */
import { Type, type Static, type TSchema } from 'typebox';
import { DEFAULT_OUTBOX_LIST_LIMIT, DEFAULT_WEBHOOK_SECRET_OVERLAP_MS } from '../config.ts';
import { PERMISSIONS, type AccountView } from '../accounts/repository.ts';
import { DCV_METHODS, DCV_STATUSES, type OrderView } from '../orders/orders.ts';
import { OUTBOX_STATES, type OutboxView } from '../outbox/outbox.ts';
import type { TemplateView } from '../orders/templates.ts';
import type { EvidenceView } from '../orders/confirmation.ts';
import type { WebhookView } from '../webhooks/webhooks.ts';
import { MAX_DOMAINS_LIMIT, type ProductView } from '../orders/products.ts';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const DateTime = Type.String({ format: 'date-time' });
/** The API's integer rule (CONTRACT §1): 1 to 2^53-1. */
const Id = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });
const Login = Type.String({ minLength: 1, maxLength: 64, description: 'the account\u2019s loginName (case-sensitive)' });
const Permission = Type.Enum([...PERMISSIONS]);
const IsoDate = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}([T ][0-9:.]+(Z|[+-]\\d{2}:?\\d{2})?)?$',
  description: 'ISO 8601 date or date-time, e.g. 2027-01-31 or 2027-01-31T12:00:00Z',
});
const Password = Type.String({ minLength: 12, maxLength: 512, description: '12 to 128 characters; only ever in a request body' });

// ---------------------------------------------------------------- views

export const AccountSchema = Type.Object({
  login: Type.String(),
  permissions: Type.Array(Permission),
  allowedNetworks: Type.Array(Type.String()),
  passwordExpiresAt: Nullable(DateTime),
  locked: Type.Boolean(),
  lockedUntil: Nullable(DateTime),
  failedAttempts: Type.Integer(),
  webhookUrl: Nullable(Type.String()),
  createdAt: DateTime,
  updatedAt: DateTime,
});

/** An account as create/update/rotate answer it: `webhookSecret` is there only when a signing secret was just made (shown once). */
export const AccountWithSecretSchema = Type.Object({
  ...AccountSchema.properties,
  webhookSecret: Type.Optional(Type.String({ description: 'the new signing secret of the account\u2019s webhook URL: shown only in this response, stored sealed' })),
  previousWebhookSecretExpiresAt: Type.Optional(Nullable(DateTime)),
});

const orderProperties = {
  orderNumber: Id,
  baseOrderNumber: Id,
  account: Type.String(),
  domain: Type.String(),
  product: Nullable(Type.Integer()),
  voucher: Type.Boolean(),
  dcvMethod: Type.Enum([...DCV_METHODS]),
  dcvStatus: Type.Enum([...DCV_STATUSES]),
  dcvEmailAddress: Nullable(Type.String()),
  templateId: Nullable(Type.Integer()),
  lastDcvEmailAt: Nullable(DateTime),
  createdAt: DateTime,
  updatedAt: DateTime,
  domains: Type.Array(
    Type.Object({
      domain: Type.String(),
      dcvMethod: Type.String(),
      dcvStatus: Type.String(),
      dcvEmailAddress: Nullable(Type.String()),
      lastDcvEmailAt: Nullable(DateTime),
      dcvDecidedAt: Nullable(DateTime),
    }),
    { description: 'every domain of the order with its own DCV state, the order\'s domain first' },
  ),
};
export const OrderSchema = Type.Object(orderProperties);

/** What the email outbox and the webhook queue share: a delivery with retries. */
const deliveryProperties = {
  attempts: Type.Integer(),
  nextAttemptAt: Nullable(DateTime),
  lastError: Nullable(Type.String()),
  response: Nullable(Type.String()),
  createdAt: DateTime,
  deliveredAt: Nullable(DateTime),
};

export const EmailSchema = Type.Object({
  messageId: Type.String(),
  orderNumber: Id,
  to: Type.String(),
  state: Type.Enum([...OUTBOX_STATES]),
  ...deliveryProperties,
});

export const EvidenceSchema = Type.Object({
  decision: Type.String({ description: 'validated or declined' }),
  method: Type.String(),
  brSection: Type.String(),
  brVersion: Type.String(),
  orderNumber: Id,
  domain: Type.String(),
  adn: Type.String(),
  recipient: Type.String(),
  addressSource: Type.String({ description: 'constructed, dns-txt or dns-caa' }),
  dns: Type.Unknown({ description: 'the DNS answer the address came from (null for constructed addresses): name, type, rcode, authenticatedData, extendedErrors, resolver, dnssec {mode, status, probe}' }),
  randomValueHash: Type.String(),
  randomValueCreatedAt: DateTime,
  emailMessageId: Nullable(Type.String()),
  emailSentAt: Nullable(DateTime),
  decidedAt: DateTime,
  sourceIp: Type.String(),
  userAgent: Nullable(Type.String()),
  usable: Type.Boolean({ description: 'whether a certificate may still be issued on this validation: false when declined and, from --email-dcv-cutoff on, always' }),
  unusableReason: Nullable(Type.String()),
  emailMethodsUsableUntil: Nullable(DateTime),
});

export const WebhookSchema = Type.Object({
  eventId: Type.String(),
  event: Type.String(),
  orderNumber: Id,
  url: Type.String(),
  state: Type.String(),
  ...deliveryProperties,
});

export const CorroborationSchema = Type.Object({
  requestId: Type.String({ description: 'the MPIC request\u2019s trace_identifier' }),
  address: Type.String(),
  method: Type.String({ description: 'contact-email-txt or contact-email-caa' }),
  target: Type.String({ description: 'the ADN (TXT) or the FQDN the CAA climb starts from' }),
  outcome: Type.String(),
  corroborated: Type.Boolean(),
  perspectives: Type.Integer({ description: 'remote perspectives asked for (N)' }),
  corroborating: Type.Integer(),
  rirs: Type.Array(Type.String(), { description: 'RIRs of the corroborating perspectives' }),
  serviceValid: Nullable(Type.Boolean()),
  perspectiveResults: Type.Array(Type.Unknown(), { description: 'each perspective: code, rir, checkPassed, corroborates, reason, recordsSeen, foundAt, errors' }),
  detail: Type.String(),
  used: Type.Boolean({ description: 'an email was queued on this corroboration' }),
  at: DateTime,
});

export const CreatedOrderSchema = Type.Object({ ...orderProperties, queuedEmail: Nullable(Type.String({ description: 'Message-ID of the queued first DCV email' })) });
export const OrderDetailSchema = Type.Object({
  ...orderProperties,
  emails: Type.Array(EmailSchema),
  evidence: Type.Array(EvidenceSchema),
  webhooks: Type.Array(WebhookSchema),
  corroborations: Type.Array(CorroborationSchema),
});

export const TemplateSchema = Type.Object({
  id: Id,
  account: Nullable(Type.String({ description: 'null: a global template' })),
  subject: Type.String(),
  hasHtml: Type.Boolean(),
  createdAt: DateTime,
});

export const ErrorSchema = Type.Object({
  error: Type.Object({
    code: Type.String({ description: 'invalid_request, unauthorized, not_found, conflict, payload_too_large, unsupported_media_type, rate_limited, internal' }),
    message: Type.String(),
  }),
});

/** Compile-time proof that each schema describes its view (a field added to a view must be added here). */
type Describes<S extends TSchema, V> = [V] extends [Static<S>] ? true : never;
export const VIEWS_MATCH: [
  Describes<typeof AccountSchema, AccountView>,
  Describes<typeof OrderSchema, Omit<OrderView, 'dcvMethod' | 'dcvStatus'> & { dcvMethod: (typeof DCV_METHODS)[number]; dcvStatus: (typeof DCV_STATUSES)[number] }>,
  Describes<typeof EmailSchema, Omit<OutboxView, 'state'> & { state: (typeof OUTBOX_STATES)[number] }>,
  Describes<typeof EvidenceSchema, EvidenceView>,
  Describes<typeof WebhookSchema, WebhookView>,
  Describes<typeof TemplateSchema, TemplateView>,
] = [true, true, true, true, true, true];

// ---------------------------------------------------------------- requests

export const LoginParams = Type.Object({ login: Login });
export const OrderNumberParams = Type.Object({ orderNumber: Id });

export const AccountCreateBody = Type.Object(
  {
    login: Login,
    password: Password,
    permissions: Type.Optional(Type.Array(Permission, { maxItems: 8 })),
    allowedNetworks: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 1000, description: 'CIDRs; empty or absent: any source' })),
    passwordExpiresAt: Type.Optional(IsoDate),
    webhookUrl: Type.Optional(Type.String({ maxLength: 2048 })),
  },
  { additionalProperties: false },
);

export const AccountUpdateBody = Type.Object(
  {
    password: Type.Optional(Password),
    permissions: Type.Optional(Type.Array(Permission, { maxItems: 8, description: 'replaces the permissions; [] removes every one' })),
    allowedNetworks: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 1000, description: 'replaces the networks; [] allows every source' })),
    passwordExpiresAt: Type.Optional(Nullable(IsoDate)),
    webhookUrl: Type.Optional(Nullable(Type.String({ maxLength: 2048, description: 'null: the server\u2019s --webhook-url' }))),
  },
  { additionalProperties: false },
);

export const WebhookSecretRotateBody = Type.Object(
  {
    overlapSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 24 * 3600, default: DEFAULT_WEBHOOK_SECRET_OVERLAP_MS / 1000, description: 'how long the previous secret keeps signing too (0: it stops at once)' })),
  },
  { additionalProperties: false },
);

export const OrderCreateBody = Type.Object(
  {
    account: Login,
    domain: Type.String({ minLength: 1, maxLength: 300, description: 'the domain to validate (`*.` for a wildcard)' }),
    orderNumber: Type.Optional(Id),
    baseOrderNumber: Type.Optional(Id),
    product: Type.Optional(Id),
    voucher: Type.Optional(Type.Boolean()),
    dcvMethod: Type.Optional(Type.Enum([...DCV_METHODS], { default: 'email' })),
    templateId: Type.Optional(Id),
    dcvEmailAddress: Type.Optional(Type.String({ maxLength: 320, description: 'queue the first DCV email to this address; it must have been returned by GetDCVEmailAddressList in the last 24 hours' })),
  },
  { additionalProperties: false },
);

/** A product of the catalogue (CONTRACT §12), as `dcvd product list --json` prints it. */
export const ProductSchema = Type.Object({
  code: Id,
  name: Type.String(),
  multiDomain: Type.Boolean(),
  maxDomains: Type.Integer(),
  wildcard: Type.Boolean(),
  allowedDays: Type.Array(Type.Integer()),
});

export const ProductCodeParams = Type.Object({ code: Id });

/** `dcvd product create`'s options; the repository's rules (ProductError) answer 400, an existing code 409. */
export const ProductCreateBody = Type.Object(
  {
    code: Id,
    name: Type.String({ minLength: 1, maxLength: 128, description: '1 to 128 characters on one line, without control or invisible characters; the whitespace around it is trimmed' }),
    multiDomain: Type.Optional(Type.Boolean({ default: false, description: 'orders may have several domains (domainNames, dcvEmailAddresses)' })),
    maxDomains: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_DOMAINS_LIMIT, default: 1, description: 'most domains of one order; 1 for a single-domain product' })),
    wildcard: Type.Optional(Type.Boolean({ default: false, description: 'names may be wildcards (*.example.com)' })),
    allowedDays: Type.Array(Type.Integer({ minimum: 1, maximum: 3650 }), { minItems: 1, maxItems: 20, description: 'allowed values of AutoApplyOrder\u2019s days' }),
  },
  { additionalProperties: false },
);

export const AccountQuery = Type.Object({ account: Type.Optional(Login) }, { additionalProperties: false });

export const TemplateCreateBody = Type.Object(
  {
    id: Id,
    account: Type.Optional(Login),
    global: Type.Optional(Type.Literal(true)),
    subject: Type.String({ maxLength: 1000 }),
    text: Type.String({ description: 'plain-text body; must contain {{validationCode}}' }),
    html: Type.Optional(Type.String({ description: 'HTML body; must contain {{validationCode}}' })),
  },
  { additionalProperties: false },
);

export const OutboxQuery = Type.Object(
  {
    state: Type.Optional(Type.Enum([...OUTBOX_STATES])),
    order: Type.Optional(Id),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: DEFAULT_OUTBOX_LIST_LIMIT })),
  },
  { additionalProperties: false },
);

/** Names of the schemas under components/schemas of the OpenAPI document. */
export const NAMED_SCHEMAS = new Map<TSchema, string>([
  [AccountSchema, 'Account'],
  [AccountWithSecretSchema, 'AccountWithSecret'],
  [OrderSchema, 'Order'],
  [CreatedOrderSchema, 'CreatedOrder'],
  [OrderDetailSchema, 'OrderDetail'],
  [EmailSchema, 'Email'],
  [EvidenceSchema, 'Evidence'],
  [WebhookSchema, 'Webhook'],
  [CorroborationSchema, 'Corroboration'],
  [TemplateSchema, 'Template'],
  [ProductSchema, 'Product'],
  [ErrorSchema, 'Error'],
]);

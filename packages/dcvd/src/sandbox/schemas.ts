/** Typebox schemas of the sandbox's routes on the internal API (issue 17). */
import { Type } from 'typebox';
import { OVERRIDE_FAILURES, OVERRIDE_TYPES, MAX_RECORDS } from './dns.ts';
import { MAX_LATENCY_MS, MAX_SWITCH_COUNT } from './switches.ts';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);
const DateTime = Type.String({ format: 'date-time' });
const Name = Type.String({ minLength: 1, maxLength: 253, description: 'the DNS name dcvd looks up, e.g. _validation-contactemail.example.com or example.com' });
const Type_ = Type.String({ maxLength: 8, description: 'TXT or CAA' });

export const CaaRecordSchema = Type.Object({ flags: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })), tag: Type.String({ maxLength: 15 }), value: Type.String({ maxLength: 255 }) }, { additionalProperties: false });

export const DnsOverrideBody = Type.Object(
  {
    name: Name,
    type: Type_,
    records: Type.Optional(Type.Array(Type.Union([Type.String({ maxLength: 254 }), CaaRecordSchema]), { maxItems: MAX_RECORDS, description: 'TXT: addresses, one per record; CAA: {flags, tag, value}' })),
    failure: Type.Optional(Type.String({ maxLength: 16, description: OVERRIDE_FAILURES.join(', ') })),
    authenticatedData: Type.Optional(Type.Boolean({ description: 'the AD bit of the answer (default false)' })),
  },
  { additionalProperties: false },
);

export const DnsOverrideSchema = Type.Object({
  name: Type.String(),
  type: Type.Enum([...OVERRIDE_TYPES]),
  records: Type.Array(Type.Union([Type.String(), Type.Object({ flags: Type.Integer(), tag: Type.String(), value: Type.String() })])),
  failure: Nullable(Type.Enum([...OVERRIDE_FAILURES])),
  authenticatedData: Type.Boolean(),
});

export const DnsClearQuery = Type.Object({ name: Type.Optional(Name), type: Type.Optional(Type_) }, { additionalProperties: false });

export const ClockSchema = Type.Object({ now: DateTime, offsetMs: Type.Integer() });
export const ClockAdvanceBody = Type.Object({ by: Type.String({ minLength: 1, maxLength: 32, description: 'a duration: 90s, 15m, 25h, 31d (at most 366d per call)' }) }, { additionalProperties: false });

export const SwitchBody = Type.Object(
  {
    endpoint: Type.String({ minLength: 1, maxLength: 64, description: 'GetDCVEmailAddressList, ResendDCVEmail, …' }),
    login: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'only calls with this loginName' })),
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_SWITCH_COUNT, default: 1 })),
    errorCode: Type.Optional(Type.Integer({ minimum: -1000, maximum: -1 })),
    errorItem: Type.Optional(Type.String({ maxLength: 64, description: 'the parameter named by -2, -3 and -4' })),
    latencyMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_LATENCY_MS })),
  },
  { additionalProperties: false },
);

export const SwitchSchema = Type.Object({
  id: Type.String(),
  endpoint: Type.String(),
  login: Nullable(Type.String()),
  remaining: Type.Integer(),
  errorCode: Nullable(Type.Integer()),
  errorItem: Nullable(Type.String()),
  latencyMs: Nullable(Type.Integer()),
});

export const AutoApproveSchema = Type.Object({ afterSeconds: Nullable(Type.Integer({ minimum: 0, maximum: 86_400 })) }, { additionalProperties: false });

const mailProperties = {
  id: Type.String(),
  messageId: Type.String(),
  to: Type.String(),
  subject: Type.String(),
  sentAt: DateTime,
  orderNumber: Nullable(Type.Integer()),
  domain: Nullable(Type.String()),
  state: Nullable(Type.String()),
  orderStatus: Nullable(Type.String()),
  confirmationUrl: Nullable(Type.String()),
  code: Nullable(Type.String()),
  hasHtml: Type.Boolean(),
};
export const MailSchema = Type.Object(mailProperties);
export const MailDetailSchema = Type.Object({ ...mailProperties, from: Type.String(), text: Type.String(), html: Nullable(Type.String()) });
export const MailQuery = Type.Object(
  {
    to: Type.Optional(Type.String({ maxLength: 254 })),
    order: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);
export const MailIdParams = Type.Object({ id: Type.String({ minLength: 3, maxLength: 260 }) });
export const CountSchema = Type.Object({ count: Type.Integer() });

export const StatusSchema = Type.Object({
  sandbox: Type.Literal(true),
  clock: ClockSchema,
  autoApproveAfterSeconds: Nullable(Type.Integer()),
  dnsOverrides: Type.Integer(),
  switches: Type.Integer(),
  emails: Type.Integer(),
  endpoints: Type.Array(Type.String()),
});

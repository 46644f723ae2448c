// Typed errors of the mail layer. The outbox (CONTRACT §5: "retries and
// backoff") needs exactly one decision from a failed send — retry later or
// give up — so every transport failure is a MailDeliveryError carrying it.

/** A send failed. `permanent` means retrying the same email cannot succeed. */
export class MailDeliveryError extends Error {
  override name = 'MailDeliveryError';
  readonly permanent: boolean;
  /** Human-readable cause, safe to log and to show the operator: never credentials or the body. */
  readonly reason: string;
  /** SMTP reply code when the server gave one. */
  readonly responseCode: number | undefined;

  constructor(permanent: boolean, reason: string, responseCode?: number) {
    super(reason);
    this.permanent = permanent;
    this.reason = reason;
    this.responseCode = responseCode;
  }
}

export type EmailField = 'messageId' | 'from' | 'to' | 'subject' | 'text' | 'html';

/**
 * The email itself is unsafe or malformed (header injection, several or
 * display-named addresses, ...). It is a permanent delivery error so the
 * outbox's single error path handles it: retrying the same email never helps.
 * The offending value is deliberately not part of the message (it may be
 * attacker-controlled and would land in logs).
 */
export class InvalidEmailError extends MailDeliveryError {
  override name = 'InvalidEmailError';
  readonly field: EmailField;

  constructor(field: EmailField, problem: string) {
    super(true, `invalid email: ${field} ${problem}`);
    this.field = field;
  }
}

export type TemplatePart = 'subject' | 'text' | 'html';

/** A template cannot be used; raised when operators create one and again at render time. */
export class TemplateError extends Error {
  override name = 'TemplateError';
  readonly part: TemplatePart;

  constructor(part: TemplatePart, problem: string) {
    super(`template ${part}: ${problem}`);
    this.part = part;
  }
}

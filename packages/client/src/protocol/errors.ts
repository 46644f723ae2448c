/**
 * The error table of both endpoints, with the seeds' exact texts
 * (CONTRACT §1: "Error messages are the seeds' texts, with `xxxx` replaced by
 * the parameter name. The two seeds spell -2 differently").
 */

export type Endpoint =
  | 'GetDCVEmailAddressList'
  | 'ResendDCVEmail'
  // The rest of the email-DCV flow (CONTRACT §12): urlencoded, ResendDCVEmail's conventions.
  | 'AutoApplyOrder'
  | 'AutoApplySSL'
  | 'AutoUpdateDCV'
  | 'GetMDCDomainDetails'
  // An order's status (the real host's certificate collection; dcvd issues none): docs/PROTOCOL.md.
  | 'CollectSSL';

/** Named constants for every code that appears in the seeds, and CollectSSL's -20. */
export const ErrorCode = {
  Success: 0,
  NotHttps: -1,
  UnrecognisedArgument: -2,
  MissingArgument: -3,
  InvalidArgument: -4,
  UnknownError: -14,
  IncorrectLogin: -16,
  NotPost: -17,
  PublicIpAddress: -19,
  /** CollectSSL: the order was rejected or cancelled (the real host's code; clients take it for a cancelled order). */
  OrderRejected: -20,
  IntranetName: -37,
  VoucherPermissionDenied: -90,
  AutoApplyPermissionDenied: -91,
  RequestUnsuccessful: -160,
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

const CODES: ReadonlySet<number> = new Set(Object.values(ErrorCode));

/** Whether a number is one of {@link ErrorCode}'s values. */
export function isErrorCode(value: number): value is ErrorCodeValue {
  return CODES.has(value);
}

const COMMON: Readonly<Record<number, string>> = {
  [-1]: 'Request was not made over https!',
  [-3]: "The 'xxxx' argument is missing!",
  [-4]: "The value of the 'xxxx' argument is invalid!",
  [-14]: 'An unknown error occurred!',
  [-16]: 'Incorrect login details, account is locked, password has expired or your source IP is blocked.',
  [-17]: 'Request used GET rather than POST!',
};

/**
 * The endpoints of CONTRACT §12 have no seed: they take ResendDCVEmail's texts
 * (the urlencoded family they belong to), GetDCVEmailAddressList's texts for
 * the domain rules and -91, and a -160 text of their own.
 */
function flowMessages(refused: string): Readonly<Record<number, string>> {
  return {
    ...COMMON,
    [-2]: "'xxxx' is an unrecognized argument!",
    [-19]: 'The Domain Name may not be an Internet-accessible IP Address!',
    [-37]: 'The Domain Name is an Intranet Server Name or Intranet IP Address!',
    [-90]: "Permission denied for using 'voucher' with 'xxxx'.",
    [-91]: 'Permission Denied. Not allowed to use the AUTO-Apply service.',
    [-160]: refused,
  };
}

/** Per-endpoint message templates; `xxxx` is the placeholder of the seeds. */
export const ERROR_MESSAGES: Readonly<Record<Endpoint, Readonly<Record<number, string>>>> = {
  GetDCVEmailAddressList: {
    ...COMMON,
    [-2]: 'Unrecognised argument!',
    [-19]: 'The Domain Name may not be an Internet-accessible IP Address!',
    [-37]: 'The Domain Name is an Intranet Server Name or Intranet IP Address!',
    [-90]: 'Permission Denied for using \u201cvoucher\u201d with \u2018xxxx\u2019',
    [-91]: 'Permission Denied. Not allowed to use the AUTO-Apply service.',
    [-160]: 'The request for the DCV email address list was unsuccessful.',
  },
  ResendDCVEmail: {
    ...COMMON,
    [-2]: "'xxxx' is an unrecognized argument!",
    [-90]: "Permission denied for using 'voucher' with 'xxxx'.",
    [-160]: 'The attempt to resend DCV emails did not succeed.',
  },
  AutoApplyOrder: flowMessages('The order was not accepted for email domain control validation.'),
  AutoApplySSL: flowMessages('The order was not accepted for email domain control validation.'),
  AutoUpdateDCV: flowMessages('The DCV method of the domain could not be changed.'),
  GetMDCDomainDetails: flowMessages('The domain details could not be retrieved.'),
  CollectSSL: { ...flowMessages('The order status could not be retrieved.'), [-20]: 'The order was rejected or cancelled.' },
};

/** Codes whose responses carry `errorItem` (ResendDCVEmail seed: "relevant to -2, -3 and -4"). */
export const CODES_WITH_ITEM: ReadonlySet<number> = new Set([-2, -3, -4]);

/** An API-level outcome other than success: the code and, where it has one, the item. */
export interface ApiError {
  /** One of {@link ErrorCode}'s values: a number outside the table does not compile. */
  code: ErrorCodeValue;
  /** Parameter name: canonical for -3/-4, as sent for -2; the endpoint name for -90. */
  item?: string;
}

/** The message for a code on an endpoint, `xxxx` replaced by the item. */
export function errorMessage(endpoint: Endpoint, code: number, item?: string): string {
  const template = ERROR_MESSAGES[endpoint][code] ?? ERROR_MESSAGES[endpoint][-14]!;
  // A function replacer, so that `$&` and friends in the item stay literal.
  return item === undefined ? template : template.replace('xxxx', () => item);
}

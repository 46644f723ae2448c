/**
 * Parameter specs of both endpoints and the request checks of CONTRACT §1,
 * steps 3 to 6 (unknown name, repeated name, missing, type/length/enum).
 * Names match ASCII-case-insensitively ({@link sameParamName}); values are case-sensitive.
 */
import { ErrorCode, type ApiError, type Endpoint } from './errors.ts';

export interface ParamSpec {
  /** Canonical name, as the seed's table spells it. */
  readonly name: string;
  readonly type: 'string' | 'integer';
  /** `conditional` parameters are handled by the endpoint's `oneOf` rule. */
  readonly requirement: 'required' | 'optional' | 'conditional';
  /** Maximum length in characters (Unicode code points). */
  readonly maxLength?: number;
  /** Allowed integer values, when the seed lists them. */
  readonly allowed?: readonly number[];
  /** Allowed string values (case-sensitive, like every value). */
  readonly allowedValues?: readonly string[];
  /** A string value must match this whole. */
  readonly pattern?: RegExp;
  /** Documented by the real host, accepted, checked only for length, and not used by dcvd. */
  readonly ignored?: boolean;
}

export interface EndpointSpec {
  readonly endpoint: Endpoint;
  readonly path: string;
  /** In the seed's table order: required parameters are checked in this order. */
  readonly params: readonly ParamSpec[];
  /** At least one of these must be present; the first is reported as missing (§1 step 5). */
  readonly oneOf?: readonly string[];
  /** Further paths the real host's clients use for the endpoint (CollectSSL: `/products/download/CollectSSL`). */
  readonly aliases?: readonly string[];
}

export const GET_DCV_EMAIL_ADDRESS_LIST = {
  endpoint: 'GetDCVEmailAddressList',
  path: '/products/!GetDCVEmailAddressList',
  params: [
    { name: 'loginName', type: 'string', requirement: 'required', maxLength: 64 },
    { name: 'loginPassword', type: 'string', requirement: 'required', maxLength: 128 },
    { name: 'domainName', type: 'string', requirement: 'required', maxLength: 255 },
    // Optional (CONTRACT §1, revised): the seed's row is headed "(VMC/CMC only)" and no public
    // client sends it. Which codes a server accepts is its own list (dcvd: the operator's
    // products, 801 and 803 by default), given to parseRequestParams as `allowed`.
    { name: 'product', type: 'integer', requirement: 'optional' },
    { name: 'responseFormat', type: 'integer', requirement: 'optional', allowed: [1, 2] },
  ],
} as const satisfies EndpointSpec;

export const RESEND_DCV_EMAIL = {
  endpoint: 'ResendDCVEmail',
  path: '/products/!ResendDCVEmail',
  params: [
    { name: 'loginName', type: 'string', requirement: 'required', maxLength: 64 },
    { name: 'loginPassword', type: 'string', requirement: 'required', maxLength: 128 },
    { name: 'orderNumber', type: 'integer', requirement: 'conditional' },
    { name: 'baseOrderNumber', type: 'integer', requirement: 'conditional' },
    { name: 'dcvEmailAddress', type: 'string', requirement: 'optional', maxLength: 255 },
    { name: 'dcvTemplateID', type: 'integer', requirement: 'optional' },
  ],
  oneOf: ['orderNumber', 'baseOrderNumber'],
} as const satisfies EndpointSpec;

// ---------------------------------------------------------------- the rest of the email-DCV flow (CONTRACT §12)

/** The DCV methods of the real host's API; only EMAIL is performed by dcvd. */
export const DCV_METHOD_NAMES = ['EMAIL', 'HTTP_CSR_HASH', 'HTTPS_CSR_HASH', 'CNAME_CSR_HASH'] as const;
export type DcvMethodName = (typeof DCV_METHOD_NAMES)[number];

const YES_NO = ['Y', 'N'] as const;
/** Room for the longest list a request under the default 64 KiB body limit can carry. */
const LIST_LENGTH = 32_768;

/**
 * AutoApplyOrder's DCV subset, and the parameters the real endpoint documents
 * that dcvd accepts and ignores (`ignored`). `serverSoftware` is a code of the
 * real host's list, where -1 ("other") is a valid value, hence a pattern.
 */
function autoApplyParams() {
  return [
    { name: 'loginName', type: 'string', requirement: 'required', maxLength: 64 },
    { name: 'loginPassword', type: 'string', requirement: 'required', maxLength: 128 },
    { name: 'product', type: 'integer', requirement: 'required' },
    // `days`, or the older `years` (a year is 365 days); -3 names `days` when neither is sent.
    { name: 'days', type: 'integer', requirement: 'conditional' },
    { name: 'years', type: 'integer', requirement: 'conditional' },
    { name: 'csr', type: 'string', requirement: 'required', maxLength: LIST_LENGTH },
    { name: 'domainNames', type: 'string', requirement: 'optional', maxLength: LIST_LENGTH },
    { name: 'serverSoftware', type: 'string', requirement: 'optional', pattern: /^(?:-1|[0-9]{1,4})$/ },
    { name: 'isCustomerValidated', type: 'string', requirement: 'optional', allowedValues: YES_NO },
    { name: 'dcvMethod', type: 'string', requirement: 'optional', allowedValues: DCV_METHOD_NAMES },
    { name: 'dcvEmailAddress', type: 'string', requirement: 'optional', maxLength: 255 },
    { name: 'dcvEmailAddresses', type: 'string', requirement: 'optional', maxLength: LIST_LENGTH },
    { name: 'showCertificateID', type: 'string', requirement: 'optional', allowedValues: YES_NO },
    // 0: the real host's newline-delimited text; 1: urlencoded (dcvd's default, docs/PROTOCOL.md).
    // A string: the contract's integers start at 1.
    { name: 'responseFormat', type: 'string', requirement: 'optional', allowedValues: ['0', '1'] },
    // Accepted and ignored (docs/PROTOCOL.md lists them): ordering details dcvd has no use for.
    { name: 'uniqueValue', type: 'string', requirement: 'optional', maxLength: 64, ignored: true },
    { name: 'foreignOrderNumber', type: 'string', requirement: 'optional', maxLength: 64, ignored: true },
    { name: 'isTrial', type: 'string', requirement: 'optional', maxLength: 1, ignored: true },
    { name: 'test', type: 'string', requirement: 'optional', maxLength: 1, ignored: true },
    { name: 'prioritiseCSRValues', type: 'string', requirement: 'optional', maxLength: 1, ignored: true },
    { name: 'caCertificateID', type: 'string', requirement: 'optional', maxLength: 16, ignored: true },
    { name: 'contactEmailAddress', type: 'string', requirement: 'optional', maxLength: 255, ignored: true },
    ...ORDERING_DETAILS.map((name) => ({ name, type: 'string', requirement: 'optional', maxLength: 255, ignored: true }) as const),
  ] as const satisfies readonly ParamSpec[];
}

/**
 * The ordering details real clients of the real host send with every order (docs/PROTOCOL.md lists which
 * client sends which): the certificate's organisation and its jurisdiction (OV/EV), the applicant's
 * representative, vetting flags, where the certificate is mailed, the licence count. dcvd validates domains
 * only, so it accepts them (up to 255 characters each) and ignores them, instead of answering -2 to a
 * client that would then place no order at all. `orderNumber` is sent, empty, with new orders by one client.
 */
const ORDERING_DETAILS = [
  'organizationName', 'organizationalUnitName', 'postOfficeBox', 'streetAddress1', 'streetAddress2', 'streetAddress3',
  'localityName', 'stateOrProvinceName', 'postalCode', 'countryName', 'companyNumber',
  'joiLocalityName', 'joiStateOrProvinceName', 'joiCountryName',
  'appRepEmailAddress', 'appRepForename', 'appRepSurname', 'appRepTelephone',
  'isAppRepValidated', 'isCallbackCompleted', 'emailAddress', 'servers', 'primaryDomainName', 'maxSubjectCNs', 'orderNumber',
] as const;

export const AUTO_APPLY_ORDER = {
  endpoint: 'AutoApplyOrder',
  path: '/products/!AutoApplyOrder',
  params: autoApplyParams(),
  oneOf: ['days', 'years'],
} as const satisfies EndpointSpec;

/** The older name of AutoApplyOrder, same parameters (reference: AutoApplyOrder v2.9). */
export const AUTO_APPLY_SSL = {
  endpoint: 'AutoApplySSL',
  path: '/products/!AutoApplySSL',
  params: autoApplyParams(),
  oneOf: ['days', 'years'],
} as const satisfies EndpointSpec;

export const AUTO_UPDATE_DCV = {
  endpoint: 'AutoUpdateDCV',
  path: '/products/!AutoUpdateDCV',
  params: [
    { name: 'loginName', type: 'string', requirement: 'required', maxLength: 64 },
    { name: 'loginPassword', type: 'string', requirement: 'required', maxLength: 128 },
    { name: 'orderNumber', type: 'integer', requirement: 'conditional' },
    { name: 'baseOrderNumber', type: 'integer', requirement: 'conditional' },
    { name: 'domainName', type: 'string', requirement: 'optional', maxLength: 255 },
    { name: 'newMethod', type: 'string', requirement: 'optional', allowedValues: DCV_METHOD_NAMES },
    { name: 'newDCVEmailAddress', type: 'string', requirement: 'optional', maxLength: 255 },
    { name: 'dcvTemplateID', type: 'integer', requirement: 'optional' },
    { name: 'domainNames', type: 'string', requirement: 'optional', maxLength: LIST_LENGTH },
    { name: 'newMethods', type: 'string', requirement: 'optional', maxLength: LIST_LENGTH },
    { name: 'newDCVEmailAddresses', type: 'string', requirement: 'optional', maxLength: LIST_LENGTH },
  ],
  oneOf: ['orderNumber', 'baseOrderNumber'],
} as const satisfies EndpointSpec;

export const GET_MDC_DOMAIN_DETAILS = {
  endpoint: 'GetMDCDomainDetails',
  path: '/products/!GetMDCDomainDetails',
  params: [
    { name: 'loginName', type: 'string', requirement: 'required', maxLength: 64 },
    { name: 'loginPassword', type: 'string', requirement: 'required', maxLength: 128 },
    { name: 'orderNumber', type: 'integer', requirement: 'required' },
    { name: 'showStatusDetails', type: 'string', requirement: 'optional', allowedValues: YES_NO },
    { name: 'responseFormat', type: 'integer', requirement: 'optional', allowed: [1, 2] },
  ],
} as const satisfies EndpointSpec;

/**
 * CollectSSL, the status queries (docs/PROTOCOL.md): the order by `orderNumber`, `certificateID` or
 * `baseOrderNumber`; `queryType` 0 to 3 (0 is the status alone; dcvd has no certificate to add); the
 * certificate's formats (`responseType`, `responseEncoding`) accepted and ignored; the `show…` flags the
 * real host's clients send. `responseFormat` 0 (line-based, the default) or 1 (urlencoded). Its clients post
 * to `/products/download/CollectSSL`, without the `!`.
 */
export const COLLECT_SSL = {
  endpoint: 'CollectSSL',
  path: '/products/!CollectSSL',
  aliases: ['/products/download/CollectSSL'],
  params: [
    { name: 'loginName', type: 'string', requirement: 'required', maxLength: 64 },
    { name: 'loginPassword', type: 'string', requirement: 'required', maxLength: 128 },
    { name: 'orderNumber', type: 'integer', requirement: 'conditional' },
    { name: 'certificateID', type: 'integer', requirement: 'conditional' },
    { name: 'baseOrderNumber', type: 'integer', requirement: 'conditional' },
    // Strings: 0 is a value (the contract's integers start at 1).
    { name: 'queryType', type: 'string', requirement: 'required', allowedValues: ['0', '1', '2', '3'] },
    { name: 'responseType', type: 'string', requirement: 'optional', maxLength: 16, ignored: true },
    { name: 'responseEncoding', type: 'string', requirement: 'optional', maxLength: 16, ignored: true },
    { name: 'responseFormat', type: 'string', requirement: 'optional', allowedValues: ['0', '1'] },
    { name: 'showExtStatus', type: 'string', requirement: 'optional', allowedValues: YES_NO },
    { name: 'showStatusDetails', type: 'string', requirement: 'optional', allowedValues: YES_NO },
    { name: 'showMDCDomainDetails', type: 'string', requirement: 'optional', allowedValues: YES_NO },
    { name: 'showMDCDomainDetails2', type: 'string', requirement: 'optional', allowedValues: YES_NO },
    { name: 'showValidityPeriod', type: 'string', requirement: 'optional', allowedValues: YES_NO },
    { name: 'showFQDN', type: 'string', requirement: 'optional', allowedValues: YES_NO },
  ],
  oneOf: ['orderNumber', 'certificateID', 'baseOrderNumber'],
} as const satisfies EndpointSpec;

/**
 * A list parameter's items (`domainNames`, `dcvEmailAddresses`, `newMethods`, …):
 * separated by commas and/or white space, as the real host's pages variously
 * say; empty items are dropped. docs/PROTOCOL.md records this reading.
 */
export function listItems(value: string): string[] {
  return value.split(/[\s,]+/).filter((item) => item !== '');
}

export const ENDPOINTS: Readonly<Record<Endpoint, EndpointSpec>> = {
  GetDCVEmailAddressList: GET_DCV_EMAIL_ADDRESS_LIST,
  ResendDCVEmail: RESEND_DCV_EMAIL,
  AutoApplyOrder: AUTO_APPLY_ORDER,
  AutoApplySSL: AUTO_APPLY_SSL,
  AutoUpdateDCV: AUTO_UPDATE_DCV,
  GetMDCDomainDetails: GET_MDC_DOMAIN_DETAILS,
  CollectSSL: COLLECT_SSL,
};

/** A checked parameter value: strings stay strings, integers become numbers. */
export type ParamValue = string | number;

export type ParsedParams = Readonly<Record<string, ParamValue>>;

/** The value a parameter's row admits: a number for integers, one of `allowedValues` or any string for strings. */
type ValueOf<P extends ParamSpec> = P['type'] extends 'integer'
  ? number
  : P['type'] extends 'string'
    ? P extends { readonly allowedValues: readonly (infer V extends string)[] }
      ? V
      : string
    : ParamValue;

/**
 * The checked parameters of an endpoint, typed from its table: `required` rows
 * present, the others optional (a `oneOf` pair is checked, not typed). For a
 * spec of the plain `EndpointSpec` type this is {@link ParsedParams}' shape.
 */
export type ParamsOf<S extends EndpointSpec> = {
  readonly [P in S['params'][number] as P extends { readonly requirement: 'required' } ? P['name'] : never]: ValueOf<P>;
} & {
  readonly [P in S['params'][number] as P extends { readonly requirement: 'required' } ? never : P['name']]?: ValueOf<P>;
};

export type ParseResult<P = ParsedParams> = { ok: true; params: P } | { ok: false; error: ApiError };

/** A server's own value rules on top of the table: allowed integer values per canonical name. */
export interface ParseOptions {
  readonly allowed?: Readonly<Record<string, readonly number[]>>;
}

const DIGITS = /^[0-9]+$/;

/**
 * CONTRACT §1: "Integers are plain decimal digits, no sign, no leading `+`, within 1..2^53-1."
 * Leading zeros are accepted, any number of them (docs/PROTOCOL.md): the digits after them
 * count, at most 16 (2^53-1 has 16).
 */
export function parseInteger(value: string): number | undefined {
  if (!DIGITS.test(value)) return undefined;
  const significant = value.replace(/^0+/, '');
  if (significant.length > 16) return undefined;
  const n = Number(significant);
  return n >= 1 && n <= Number.MAX_SAFE_INTEGER ? n : undefined;
}

function codePointLength(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

/** `A`-`Z` to `a`-`z`, every other character as it is. */
function asciiLowerCase(value: string): string {
  return value.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/**
 * Whether two parameter names are the same name (CONTRACT §1: names match case-insensitively). Only ASCII
 * letters fold: every canonical name is ASCII, and `toLowerCase()` would also fold characters that are no
 * ASCII letter into one (U+212A KELVIN SIGN to `k`, so `isCallbac\u212ACompleted` would be
 * `isCallbackCompleted`; found by fuzzing, 2026-12-04). Such a name is unknown: -2, named as sent.
 */
export function sameParamName(a: string, b: string): boolean {
  return a.length === b.length && asciiLowerCase(a) === asciiLowerCase(b);
}

/** Finds the spec of a parameter name, ASCII-case-insensitively ({@link sameParamName}). */
export function findParam(spec: EndpointSpec, name: string): ParamSpec | undefined {
  return spec.params.find((p) => sameParamName(p.name, name));
}

/**
 * The value of the one parameter called `name` (matched as {@link findParam} matches it), before any check:
 * undefined when the request has none or more than one (a repeat the checks answer with -4).
 */
export function singleParamValue(entries: readonly (readonly [string, string])[], name: string): string | undefined {
  const values = entries.filter(([n]) => sameParamName(n, name));
  return values.length === 1 ? values[0]![1] : undefined;
}

/**
 * Runs the checks of CONTRACT §1 steps 3 to 6 over the request's parameters
 * (name/value pairs in the order they arrived).
 */
export function parseRequestParams<S extends EndpointSpec>(
  spec: S,
  entries: Iterable<readonly [string, string]>,
  options: ParseOptions = {},
): ParseResult<ParamsOf<S>> {
  const seen = new Map<string, string[]>();
  // Step 3: the first unknown name, as sent.
  for (const [name, value] of entries) {
    const param = findParam(spec, name);
    if (!param) return { ok: false, error: { code: ErrorCode.UnrecognisedArgument, item: name } };
    const values = seen.get(param.name);
    if (values) values.push(value);
    else seen.set(param.name, [value]);
  }
  // Step 4: a repeated parameter, in the seed's table order.
  for (const param of spec.params) {
    if ((seen.get(param.name)?.length ?? 0) > 1) return { ok: false, error: { code: ErrorCode.InvalidArgument, item: param.name } };
  }
  // An empty value counts as absent.
  const present = new Map<string, string>();
  for (const [name, values] of seen) if (values[0] !== '') present.set(name, values[0]!);
  // Step 5: required parameters in table order; the conditional pair reports its first name.
  for (const param of spec.params) {
    if (param.requirement === 'required' && !present.has(param.name)) {
      return { ok: false, error: { code: ErrorCode.MissingArgument, item: param.name } };
    }
    if (param.requirement === 'conditional' && spec.oneOf?.[0] === param.name) {
      if (!spec.oneOf.some((n) => present.has(n))) return { ok: false, error: { code: ErrorCode.MissingArgument, item: param.name } };
    }
  }
  // Step 6: type, length and enum rules, in table order.
  const params: Record<string, ParamValue> = {};
  for (const param of spec.params) {
    const raw = present.get(param.name);
    if (raw === undefined) continue;
    if (param.type === 'integer') {
      const n = parseInteger(raw);
      const allowed = options.allowed?.[param.name] ?? param.allowed;
      if (n === undefined || (allowed && !allowed.includes(n))) {
        return { ok: false, error: { code: ErrorCode.InvalidArgument, item: param.name } };
      }
      params[param.name] = n;
    } else {
      if (param.maxLength !== undefined && codePointLength(raw) > param.maxLength) {
        return { ok: false, error: { code: ErrorCode.InvalidArgument, item: param.name } };
      }
      if ((param.allowedValues && !param.allowedValues.includes(raw)) || (param.pattern && !param.pattern.test(raw))) {
        return { ok: false, error: { code: ErrorCode.InvalidArgument, item: param.name } };
      }
      params[param.name] = raw;
    }
  }
  // The checks above are the table's rules, which ParamsOf<S> states as types.
  return { ok: true, params: params as ParamsOf<S> };
}

/**
 * A request body: the given parameters under their canonical names, in the
 * seed's table order, as `application/x-www-form-urlencoded`. `undefined` and
 * `null` values are left out (the server then answers -3 where one is
 * required). Nothing is checked here: the server's rules are the only ones,
 * so the encoder never disagrees with the host it talks to. Names the spec
 * does not know are an error of the caller, not a request to send.
 * `parseRequestParams(spec, formEntries(body))` reads it back.
 */
export function encodeRequestParams(spec: EndpointSpec, params: Readonly<Record<string, string | number | undefined | null>>): string {
  for (const name of Object.keys(params)) {
    if (!spec.params.some((p) => p.name === name)) throw new TypeError(`${spec.endpoint} has no parameter ${JSON.stringify(name)}`);
  }
  const out = new URLSearchParams();
  for (const param of spec.params) {
    const value = params[param.name];
    if (value !== undefined && value !== null) out.append(param.name, String(value));
  }
  return out.toString();
}

/** The name/value pairs of an `application/x-www-form-urlencoded` body, in order, repeats kept. */
export function formEntries(body: string): [string, string][] {
  return [...new URLSearchParams(body)];
}

/**
 * The format GetDCVEmailAddressList answers in, also for errors found before
 * the parameters are checked: JSON only when one `responseFormat` parameter
 * (any case) says exactly `2`; text otherwise, since 1 is the default.
 */
export function requestedFormat(entries: readonly (readonly [string, string])[]): 1 | 2 {
  const value = singleResponseFormat(entries);
  return value !== undefined && parseInteger(value) === 2 ? 2 : 1;
}

/**
 * The format AutoApplyOrder / AutoApplySSL answer in, also for errors found
 * before the parameters are checked: the newline-delimited text (0) only when
 * one `responseFormat` parameter (any case) says exactly `0`; urlencoded (1) otherwise.
 */
export function requestedOrderFormat(entries: readonly (readonly [string, string])[]): 0 | 1 {
  return singleResponseFormat(entries) === '0' ? 0 : 1;
}

/**
 * The format CollectSSL answers in, also for errors: urlencoded (1) only when one `responseFormat`
 * parameter says exactly `1`; the real host's line-based text (0) otherwise, its default (the clients that
 * send none read lines).
 */
export function requestedCollectFormat(entries: readonly (readonly [string, string])[]): 0 | 1 {
  return singleResponseFormat(entries) === '1' ? 1 : 0;
}

/** The value of the one `responseFormat` parameter (any case), undefined when absent or repeated. */
function singleResponseFormat(entries: readonly (readonly [string, string])[]): string | undefined {
  return singleParamValue(entries, 'responseFormat');
}

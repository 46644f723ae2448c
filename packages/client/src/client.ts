/**
 * The client of CONTRACT §11: typed calls of GetDCVEmailAddressList and
 * ResendDCVEmail, and of the rest of the email-DCV flow (AutoApplyOrder,
 * AutoUpdateDCV, GetMDCDomainDetails, CollectSSL), against the real reseller
 * host (the default base URL) or dcvd. It needs nothing but a `fetch` (global, or passed in) and
 * `AbortController`, so it runs on Node ≥ 20, in browsers and on edge
 * runtimes: no Node-only import, no runtime dependency.
 */
import type { Endpoint } from './protocol/errors.ts';
import {
  decodeAddressList,
  decodeUrlencoded,
  ProtocolDecodeError,
  type Decoded,
  type DecodedDcvEmailAddressList,
  type ResponseFormat,
} from './protocol/formats.ts';
import {
  AUTO_APPLY_ORDER,
  AUTO_UPDATE_DCV,
  COLLECT_SSL,
  GET_MDC_DOMAIN_DETAILS,
  GET_DCV_EMAIL_ADDRESS_LIST,
  RESEND_DCV_EMAIL,
  encodeRequestParams,
  type DcvMethodName,
  type EndpointSpec,
} from './protocol/params.ts';
import { decodeCollectSsl, decodeMdcDomainDetails, type CollectedSsl, type MdcDomainDetail } from './protocol/formats.ts';

/** The reseller host of the seeds. */
export const DEFAULT_BASE_URL = 'https://secure.trust-provider.com';
/**
 * Where the real host's clients post CollectSSL (without the `!` of the other endpoints); dcvd answers
 * there too (docs/PROTOCOL.md).
 */
export const COLLECT_SSL_PATH = '/products/download/CollectSSL';
/** Per attempt, from sending the request to the last byte of the answer. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** The first pause before a retry of GetDCVEmailAddressList; it doubles on each further retry. */
export const DEFAULT_RETRY_DELAY_MS = 500;

/** What the client passes to `fetch`: a subset of `RequestInit`. */
export interface FetchInitLike {
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  signal: AbortSignal;
  /** Redirects are never followed: the body carries the password. */
  redirect: 'manual';
}

/** What the client reads of a `fetch` response: a subset of `Response`. */
export interface FetchResponseLike {
  status: number;
  /** `opaqueredirect` in browsers for a redirect that was not followed. */
  type?: string;
  text(): Promise<string>;
}

/**
 * The narrow `fetch` the client needs. The global `fetch` fits; so does a
 * wrapper (a proxy agent, a private CA, a test double).
 */
export type FetchLike = (url: string, init: FetchInitLike) => Promise<FetchResponseLike>;

/** Options of {@link DcvClient}. */
export interface DcvClientOptions {
  /** Scheme, host and optional path prefix; default {@link DEFAULT_BASE_URL}. Trailing slashes are ignored. */
  baseUrl?: string;
  /** The account's username (case-sensitive). */
  loginName: string;
  /** The account's password (case-sensitive). Kept private: it never appears in an error or its message. */
  loginPassword: string;
  /** Default: the global `fetch`. */
  fetch?: FetchLike;
  /** Per attempt; default {@link DEFAULT_TIMEOUT_MS}. `0` waits for ever. */
  timeoutMs?: number;
  /**
   * GetDCVEmailAddressList and GetMDCDomainDetails only (read-only calls): how
   * many times to repeat a call that failed in the network (no answer, or no
   * answer in time). Default 0. An answer of the server, whatever its code, is
   * never retried, and ResendDCVEmail never is: a repeat could send a second
   * email; nor are the order calls, or CollectSSL, which a caller polls.
   */
  retries?: number;
  /** Pause before the first retry, doubled before each further one; default {@link DEFAULT_RETRY_DELAY_MS}. */
  retryDelayMs?: number;
}

/** Options every call takes. */
export interface CallOptions {
  /** Aborts the call (and any pending retry); the call then rejects with a {@link DcvRequestError} of kind `aborted`. */
  signal?: AbortSignal;
}

/**
 * A product code. The seed's table names 801 (VMC) and 803 (CMC) for
 * GetDCVEmailAddressList; a server may accept others (dcvd: the operator's list).
 */
export type Product = number;

/** A GetDCVEmailAddressList call. */
export interface GetDcvEmailAddressListRequest extends CallOptions {
  /** The fully qualified domain name (≤ 255 characters). */
  domainName: string;
  /**
   * Optional, sent only when given. The seed's row is headed "(VMC/CMC only)"
   * and no public client sends it; without it the call is a TLS certificate's
   * DCV. dcvd accepts the operator's product codes (801 and 803 by default)
   * and answers -4 `product` for any other.
   */
  product?: Product;
  /**
   * 1 (text, the server's default) or 2 (JSON, which also returns contact
   * addresses found in DNS). Sent as `responseFormat` only when given. The
   * result has the same shape either way.
   */
  responseFormat?: ResponseFormat;
}

/**
 * A successful address list, e.g.
 * `{ domainName: 'www.example.com', levels: { 2: ['admin@example.com', …], 3: [...] }, emails: [...], whoisEmails: [], extra: {} }`.
 */
export type DcvEmailAddressListResult = DecodedDcvEmailAddressList;

/** Which order ResendDCVEmail is about: its number, or the base order number of its chain (or both). */
export type OrderRef = { orderNumber: number; baseOrderNumber?: number } | { orderNumber?: undefined; baseOrderNumber: number };

/** Optional parameters of ResendDCVEmail. */
export interface ResendDcvEmailOptions extends CallOptions {
  /** Send to this address instead (one the server offered in the last 24 hours); default: the last recipient. */
  dcvEmailAddress?: string;
  /** A DCV email template of the account; sent as `dcvTemplateID`. */
  dcvTemplateId?: number;
}

/** A successful ResendDCVEmail. */
export interface ResendDcvEmailResult {
  /** Fields of the answer besides `errorCode=0`, kept as sent (none from dcvd). */
  extra: Record<string, string>;
}

/** AutoApplyOrder's request (the DCV subset, docs/PROTOCOL.md). */
export interface AutoApplyOrderRequest extends CallOptions {
  product: number;
  days: number;
  /** PKCS#10, PEM with or without armour. */
  csr: string;
  /**
   * The real host requires both; its integration notes give `-1` ("other": the software does not change the
   * certificate) and `N` as the values to send unless told otherwise. Sent with these defaults; dcvd ignores both.
   */
  serverSoftware?: number;
  isCustomerValidated?: 'Y' | 'N';
  /** Additional names (multi-domain products). */
  domainNames?: readonly string[];
  dcvMethod?: DcvMethodName;
  dcvEmailAddress?: string;
  dcvEmailAddresses?: readonly string[];
}

export interface AutoApplyOrderResult {
  /**
   * The real host's `errorCode=1`: the order was placed and waits for payment (dcvd takes none and always
   * answers 0). Not an error: the order exists, and placing it again would make a second one.
   */
  paymentRequired: boolean;
  orderNumber: number;
  certificateID: number;
  totalCost: string;
  expectedDeliveryTime: number;
}

/**
 * Which order CollectSSL is about: its number, else the certificate ID AutoApplyOrder answered, else the newest
 * order of the chain `baseOrderNumber`. Each further one given must name the same order (dcvd: -4 on it).
 */
export type CollectSslOrderRef =
  | { orderNumber: number; certificateID?: number; baseOrderNumber?: number }
  | { orderNumber?: undefined; certificateID: number; baseOrderNumber?: number }
  | { orderNumber?: undefined; certificateID?: undefined; baseOrderNumber: number };

/** Optional parameters of CollectSSL. */
export interface CollectSslOptions extends CallOptions {
  /**
   * 0 (the default) asks for the status; 1 to 3 ask the real host for the certificate as well, whose lines or
   * fields the result keeps as sent (`lines`, `extra`). dcvd issues no certificate and answers the status to all four.
   */
  queryType?: 0 | 1 | 2 | 3;
  /** Sent as `showStatusDetails=Y`/`N` when given: the urlencoded answer then carries `dcvStatus`. */
  showStatusDetails?: boolean;
  /** Sent as `showFQDN=Y`/`N` when given: the urlencoded answer then carries `fqdn`. */
  showFQDN?: boolean;
  /**
   * 1 (urlencoded, the default here) or 0 (the real host's line-based text, the server's default, from dcvd the
   * status line alone). Always sent, so the answer's form does not rest on the server's default.
   */
  responseFormat?: 0 | 1;
}

/** A CollectSSL answer that is not an error; see {@link CollectedSsl}. */
export type CollectSslResult = CollectedSsl;

/** One domain's new DCV method (and address, for EMAIL). */
export interface DcvChange {
  domainName?: string;
  method: DcvMethodName;
  dcvEmailAddress?: string;
}

/**
 * The server answered with an error code (anything below 0). `code` is one
 * of {@link ErrorCode}'s values for every code of the seeds; another server
 * may send others, which are kept as they are.
 */
export class DcvApiError extends Error {
  override readonly name = 'DcvApiError';
  /** The error code, e.g. `ErrorCode.IncorrectLogin` (-16). */
  readonly code: number;
  /** The parameter at fault, for -2, -3 and -4 (and whatever else a server names). */
  readonly item: string | undefined;
  /** The real host's `errorDetail`, when it sends one. */
  readonly detail: string | undefined;
  /** The endpoint that answered. */
  readonly endpoint: Endpoint;
  /** The HTTP status of the answer (200 from dcvd for every answer of the protocol; another host may differ). */
  readonly status: number;
  /** Other fields of the error answer, kept as sent. */
  readonly extra: Readonly<Record<string, string>>;

  constructor(
    endpoint: Endpoint,
    fields: { code: number; message: string; item?: string; detail?: string; status: number; extra?: Record<string, string> },
  ) {
    super(fields.message);
    this.endpoint = endpoint;
    this.code = fields.code;
    this.item = fields.item;
    this.detail = fields.detail;
    this.status = fields.status;
    this.extra = fields.extra ?? {};
  }
}

/**
 * The call got no answer of the protocol:
 * - `network`: `fetch` failed (connection refused, TLS, DNS, reset);
 * - `timeout`: no complete answer within `timeoutMs`;
 * - `aborted`: the caller's signal aborted it;
 * - `http`: an HTTP status other than 2xx without a protocol body (a proxy's error page, a redirect);
 * - `protocol`: a 2xx answer whose body is not the protocol.
 */
export type DcvRequestErrorKind = 'network' | 'timeout' | 'aborted' | 'http' | 'protocol';

/** A call that got no answer of the protocol; see {@link DcvRequestErrorKind}. */
export class DcvRequestError extends Error {
  override readonly name = 'DcvRequestError';
  readonly kind: DcvRequestErrorKind;
  readonly endpoint: Endpoint;
  /** The HTTP status, for `http` and `protocol`. */
  readonly status: number | undefined;
  /** How many requests were sent (more than 1 only for retried GetDCVEmailAddressList calls). */
  readonly attempts: number;

  constructor(endpoint: Endpoint, kind: DcvRequestErrorKind, message: string, opts: { status?: number; attempts: number; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.endpoint = endpoint;
    this.kind = kind;
    this.status = opts.status;
    this.attempts = opts.attempts;
  }
}

interface Answer {
  status: number;
  body: string;
  /** Requests sent for it (retries included). */
  attempts: number;
}

function nonNegativeInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) throw new TypeError(`${name} must be a non-negative integer`);
  return value;
}

/**
 * A client of the two DCV email endpoints, for the real reseller host and
 * for dcvd alike.
 *
 * @example
 * ```ts
 * const client = new DcvClient({ baseUrl: 'https://localhost:8443', loginName: 'demo', loginPassword: password });
 * const list = await client.getDcvEmailAddressList({ domainName: 'www.example.com', product: 801 });
 * await client.resendDcvEmail({ orderNumber: 1234567 }, { dcvEmailAddress: list.emails[0] });
 * ```
 */
export class DcvClient {
  /** The base URL calls go to, without trailing slashes. */
  readonly baseUrl: string;
  readonly loginName: string;
  /** Never shown, also not by `console.log(client)`: a private field. */
  readonly #loginPassword: string;
  readonly #fetch: FetchLike;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #retryDelayMs: number;

  constructor(options: DcvClientOptions) {
    const base = options.baseUrl ?? DEFAULT_BASE_URL;
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      throw new TypeError(`baseUrl is not a URL: ${JSON.stringify(base)}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('baseUrl must be an https: (or http:) URL');
    if (url.username || url.password || url.search || url.hash) throw new TypeError('baseUrl must not carry credentials, a query or a fragment');
    if (typeof options.loginName !== 'string' || typeof options.loginPassword !== 'string') {
      throw new TypeError('loginName and loginPassword must be strings');
    }
    if (options.fetch === undefined && typeof globalThis.fetch !== 'function') {
      throw new TypeError('no fetch: this runtime has no global fetch, pass one as options.fetch');
    }
    this.baseUrl = base.replace(/\/+$/, '');
    this.loginName = options.loginName;
    this.#loginPassword = options.loginPassword;
    // Called unbound: browsers' fetch throws "Illegal invocation" when called as a method of another object.
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#timeoutMs = nonNegativeInteger('timeoutMs', options.timeoutMs, DEFAULT_TIMEOUT_MS);
    this.#retries = nonNegativeInteger('retries', options.retries, 0);
    this.#retryDelayMs = nonNegativeInteger('retryDelayMs', options.retryDelayMs, DEFAULT_RETRY_DELAY_MS);
  }

  /**
   * GetDCVEmailAddressList: the addresses the CA accepts for email DCV of
   * `domainName`, per domain level.
   *
   * @returns the list: `domainName` as the server normalized it, `levels`
   *   (level N → addresses, in the server's order), `emails` (all of them,
   *   lowest level first, once each), `whoisEmails` (the real host's
   *   `whois_email` lines, `none` dropped; dcvd sends none) and `extra`
   *   (keys the client does not know, kept as sent).
   * @throws {@link DcvApiError} when the server answers an error code;
   *   {@link DcvRequestError} when it gives no answer of the protocol.
   */
  async getDcvEmailAddressList(request: GetDcvEmailAddressListRequest): Promise<DcvEmailAddressListResult> {
    const body = this.#body(GET_DCV_EMAIL_ADDRESS_LIST, {
      domainName: request.domainName,
      product: request.product,
      responseFormat: request.responseFormat,
    });
    const answer = await this.#send(GET_DCV_EMAIL_ADDRESS_LIST, body, request.signal, this.#retries);
    return this.#result(GET_DCV_EMAIL_ADDRESS_LIST, answer, decodeAddressList);
  }

  /**
   * ResendDCVEmail: sends the order's DCV email again, to `dcvEmailAddress`
   * when given, else to the address it last went to. Sent once and never
   * retried: after a lost answer the email may have gone out, so whether to
   * try again is the caller's decision.
   *
   * @throws {@link DcvApiError} when the server answers an error code;
   *   {@link DcvRequestError} when it gives no answer of the protocol.
   */
  async resendDcvEmail(order: OrderRef, options: ResendDcvEmailOptions = {}): Promise<ResendDcvEmailResult> {
    const body = this.#body(RESEND_DCV_EMAIL, {
      orderNumber: order.orderNumber,
      baseOrderNumber: order.baseOrderNumber,
      dcvEmailAddress: options.dcvEmailAddress,
      dcvTemplateID: options.dcvTemplateId,
    });
    const answer = await this.#send(RESEND_DCV_EMAIL, body, options.signal, 0);
    const fields = this.#result(RESEND_DCV_EMAIL, answer, decodeUrlencoded);
    const extra: Record<string, string> = {};
    for (const [k, v] of Object.entries(fields)) if (k !== 'errorCode') extra[k] = this.#redact(v);
    return { extra };
  }

  /**
   * AutoApplyOrder, DCV subset (CONTRACT §12). Never retried: a retry could
   * place a second order. `dcvEmailAddresses` go one per domain: in the order
   * of `domainNames` when it lists every name of the order (the CSR's too),
   * else CN first, then the CSR's other names, then `domainNames`' own
   * (docs/PROTOCOL.md). An item may be `HTTPCSRHASH`, `HTTPSCSRHASH` or
   * `CNAMECSRHASH` instead of an address.
   */
  async autoApplyOrder(request: AutoApplyOrderRequest): Promise<AutoApplyOrderResult> {
    const body = this.#body(AUTO_APPLY_ORDER, {
      product: request.product,
      days: request.days,
      csr: request.csr,
      serverSoftware: request.serverSoftware ?? -1,
      isCustomerValidated: request.isCustomerValidated ?? 'N',
      domainNames: request.domainNames?.join(','),
      dcvMethod: request.dcvMethod,
      dcvEmailAddress: request.dcvEmailAddress,
      dcvEmailAddresses: request.dcvEmailAddresses?.join(','),
      showCertificateID: 'Y',
      responseFormat: 1,
    });
    const answer = await this.#send(AUTO_APPLY_ORDER, body, request.signal, 0);
    const fields = this.#result(AUTO_APPLY_ORDER, answer, (text) => decodeUrlencoded(text, [0, 1]));
    const num = (name: string) => {
      const v = fields[name];
      if (v === undefined || !/^[0-9]+$/.test(v)) throw new DcvRequestError('AutoApplyOrder', 'protocol', `AutoApplyOrder: the answer has no ${name}`, { status: answer.status, attempts: answer.attempts });
      return Number(v);
    };
    return { paymentRequired: Number(fields.errorCode?.trim()) === 1, orderNumber: num('orderNumber'), certificateID: num('certificateID'), totalCost: fields.totalCost ?? '', expectedDeliveryTime: num('expectedDeliveryTime') };
  }

  /** AutoUpdateDCV: one domain (`changes` of one, `domainName` optional for a single-domain order) or several at once. Never retried. */
  async autoUpdateDcv(order: OrderRef, changes: readonly DcvChange[], options: CallOptions & { dcvTemplateId?: number } = {}): Promise<void> {
    if (changes.length === 0) throw new TypeError('autoUpdateDcv needs at least one change');
    const one = changes.length === 1 ? changes[0]! : undefined;
    const params: Record<string, string | number | undefined> = {
      orderNumber: order.orderNumber,
      baseOrderNumber: order.baseOrderNumber,
      dcvTemplateID: options.dcvTemplateId,
    };
    if (one) {
      params.domainName = one.domainName;
      params.newMethod = one.method;
      params.newDCVEmailAddress = one.dcvEmailAddress;
    } else {
      if (changes.some((c) => c.domainName === undefined)) throw new TypeError('every change of a multi-domain update names its domain');
      params.domainNames = changes.map((c) => c.domainName).join(' ');
      params.newMethods = changes.map((c) => c.method).join(',');
      if (changes.some((c) => c.dcvEmailAddress !== undefined)) params.newDCVEmailAddresses = changes.map((c) => c.dcvEmailAddress ?? '-').join(' ');
    }
    const answer = await this.#send(AUTO_UPDATE_DCV, this.#body(AUTO_UPDATE_DCV, params), options.signal, 0);
    this.#result(AUTO_UPDATE_DCV, answer, decodeUrlencoded);
  }

  /**
   * GetMDCDomainDetails: each domain's DCV method and status (`Validated` when done); read-only, so retried like
   * the list. With `showStatusDetails`, asked in JSON (responseFormat 2) unless `responseFormat` says otherwise:
   * dcvd sends the details in that form only.
   */
  async getMdcDomainDetails(orderNumber: number, options: CallOptions & { showStatusDetails?: boolean; responseFormat?: ResponseFormat } = {}): Promise<MdcDomainDetail[]> {
    const body = this.#body(GET_MDC_DOMAIN_DETAILS, {
      orderNumber,
      showStatusDetails: options.showStatusDetails === undefined ? undefined : options.showStatusDetails ? 'Y' : 'N',
      responseFormat: options.responseFormat ?? (options.showStatusDetails ? 2 : undefined),
    });
    const answer = await this.#send(GET_MDC_DOMAIN_DETAILS, body, options.signal, this.#retries);
    return this.#result(GET_MDC_DOMAIN_DETAILS, answer, decodeMdcDomainDetails);
  }

  /**
   * CollectSSL, the status query (docs/PROTOCOL.md), posted to {@link COLLECT_SSL_PATH} as the real host's
   * clients do. Read-only, yet sent once and never retried, whatever `retries` says: a caller that polls
   * repeats it anyway, at its own pace.
   *
   * @example
   * ```ts
   * try {
   *   const s = await client.collectSsl({ certificateID: placed.certificateID }, { showStatusDetails: true });
   *   if (s.dcvStatus === 1) console.log('every domain is validated');
   * } catch (err) {
   *   if (err instanceof DcvApiError && err.code === ErrorCode.OrderRejected) console.log('cancelled or declined');
   *   else throw err;
   * }
   * ```
   * @returns `statusCode` (0 while the order is being processed, dcvd's only one) and, in the urlencoded form,
   *   `orderNumber`, `certificateID`, `dcvStatus` (with `showStatusDetails`) and `fqdn` (with `showFQDN`) where
   *   the server sent them; other fields in `extra`, the line-based form's further lines in `lines`.
   * @throws {@link DcvApiError} when the server answers an error code: `ErrorCode.OrderRejected` (-20) for an
   *   order cancelled by the operator or declined by a recipient, -4 on the reference for an order the account
   *   does not have; {@link DcvRequestError} when it gives no answer of the protocol.
   */
  async collectSsl(order: CollectSslOrderRef, options: CollectSslOptions = {}): Promise<CollectSslResult> {
    const flag = (value: boolean | undefined) => (value === undefined ? undefined : value ? 'Y' : 'N');
    const body = this.#body(COLLECT_SSL, {
      orderNumber: order.orderNumber,
      certificateID: order.certificateID,
      baseOrderNumber: order.baseOrderNumber,
      queryType: options.queryType ?? 0,
      responseFormat: options.responseFormat ?? 1,
      showStatusDetails: flag(options.showStatusDetails),
      showFQDN: flag(options.showFQDN),
    });
    const answer = await this.#send(COLLECT_SSL, body, options.signal, 0, COLLECT_SSL_PATH);
    const result = this.#result(COLLECT_SSL, answer, decodeCollectSsl);
    const extra: Record<string, string> = {};
    for (const [k, v] of Object.entries(result.extra)) extra[k] = this.#redact(v);
    return { ...result, extra, lines: result.lines.map((line) => this.#redact(line)) };
  }

  toJSON(): { baseUrl: string; loginName: string } {
    return { baseUrl: this.baseUrl, loginName: this.loginName };
  }

  #body(spec: EndpointSpec, params: Record<string, string | number | undefined>): string {
    return encodeRequestParams(spec, { loginName: this.loginName, loginPassword: this.#loginPassword, ...params });
  }

  /** Removes the password (as typed and as form-encoded) from text that goes into an error. */
  #redact(text: string): string {
    const secret = this.#loginPassword;
    if (secret === '') return text;
    let out = text;
    const forms = new Set([secret, encodeURIComponent(secret), new URLSearchParams({ p: secret }).toString().slice(2)]);
    for (const form of forms) out = out.split(form).join('[redacted]');
    return out;
  }

  #safeCause(err: unknown): unknown {
    if (!(err instanceof Error)) return typeof err === 'string' ? this.#redact(err) : err;
    const text = `${err.message}\n${err.stack ?? ''}`;
    if (this.#redact(text) === text) return err;
    const copy = new Error(this.#redact(err.message));
    copy.name = err.name;
    return copy;
  }

  #result<T>(spec: EndpointSpec, answer: Answer, decode: (body: string) => Decoded<T>): T {
    let decoded: Decoded<T>;
    try {
      decoded = decode(answer.body);
    } catch (err) {
      if (!(err instanceof ProtocolDecodeError)) throw err;
      const http = answer.status < 200 || answer.status > 299;
      const reason =
        answer.status === 0 || (answer.status >= 300 && answer.status <= 399)
          ? `a redirect (HTTP ${answer.status}), not followed since the request carries the password`
          : http
            ? `HTTP ${answer.status} without an answer of the protocol`
            : `an answer that is not the protocol (${err.message})`;
      throw new DcvRequestError(spec.endpoint, http ? 'http' : 'protocol', `${spec.endpoint}: ${reason}`, {
        status: answer.status,
        attempts: answer.attempts,
      });
    }
    if (decoded.ok) return decoded.value;
    const e = decoded.error;
    const extra: Record<string, string> = {};
    for (const [k, v] of Object.entries(e.extra)) extra[k] = this.#redact(v);
    throw new DcvApiError(spec.endpoint, {
      code: e.errorCode,
      message: this.#redact(e.errorMessage),
      ...(e.errorItem === undefined ? {} : { item: this.#redact(e.errorItem) }),
      ...(e.errorDetail === undefined ? {} : { detail: this.#redact(e.errorDetail) }),
      status: answer.status,
      extra,
    });
  }

  /** `path`: the endpoint's own unless given (CollectSSL's clients post elsewhere). */
  async #send(spec: EndpointSpec, body: string, signal: AbortSignal | undefined, retries: number, path = spec.path): Promise<Answer> {
    const url = this.baseUrl + path;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#attempt(spec, url, body, signal, attempt);
      } catch (err) {
        const retriable = err instanceof DcvRequestError && (err.kind === 'network' || err.kind === 'timeout');
        if (!retriable || attempt > retries) throw err;
      }
      await this.#pause(spec, this.#retryDelayMs * 2 ** (attempt - 1), signal, attempt);
    }
  }

  async #attempt(spec: EndpointSpec, url: string, body: string, signal: AbortSignal | undefined, attempt: number): Promise<Answer> {
    if (signal?.aborted) throw new DcvRequestError(spec.endpoint, 'aborted', `${spec.endpoint}: aborted by the caller`, { attempts: attempt - 1 });
    // One controller per attempt, aborted by the timeout or by the caller's signal
    // (not AbortSignal.any/timeout: Node 20.0–20.2 and older browsers lack the former).
    const controller = new AbortController();
    let timedOut = false;
    const timer =
      this.#timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            controller.abort();
          }, this.#timeoutMs)
        : undefined;
    const onAbort = () => controller.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const response = await this.#fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/plain, application/json, application/x-www-form-urlencoded' },
        body,
        signal: controller.signal,
        redirect: 'manual',
      });
      const status = response.type === 'opaqueredirect' ? 0 : response.status;
      return { status, body: await response.text(), attempts: attempt };
    } catch (err) {
      const fail = (kind: DcvRequestErrorKind, what: string) =>
        new DcvRequestError(spec.endpoint, kind, `${spec.endpoint}: ${what}`, { attempts: attempt, cause: this.#safeCause(err) });
      if (signal?.aborted) throw fail('aborted', 'aborted by the caller');
      if (timedOut) throw fail('timeout', `no answer from ${url} within ${this.#timeoutMs} ms`);
      const detail = err instanceof Error ? this.#redact(err.message) : 'unknown failure';
      const cause = err instanceof Error && err.cause instanceof Error ? `: ${this.#redact(err.cause.message)}` : '';
      throw fail('network', `request to ${url} failed: ${detail}${cause}`);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  #pause(spec: EndpointSpec, ms: number, signal: AbortSignal | undefined, attempts: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(new DcvRequestError(spec.endpoint, 'aborted', `${spec.endpoint}: aborted by the caller`, { attempts }));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/**
 * The three response formats of CONTRACT §1: urlencoded (ResendDCVEmail),
 * text/plain and JSON (GetDCVEmailAddressList). Encoders produce exactly what
 * dcvd sends; decoders accept that and what the real reseller host is known to
 * send beyond it (CRLF, a space after the tab, whois_email lines, unknown keys).
 */
import { CODES_WITH_ITEM, ERROR_MESSAGES, errorMessage, type ApiError, type Endpoint } from './errors.ts';

export const CONTENT_TYPE = {
  urlencoded: 'application/x-www-form-urlencoded',
  text: 'text/plain; charset=utf-8',
  json: 'application/json; charset=utf-8',
} as const;

export type ResponseFormat = 1 | 2;

/** A successful address list: the normalized domain and the addresses per level. */
export interface DcvEmailAddressList {
  domainName: string;
  /** Level N → addresses, in the order the server listed them. */
  levels: Record<number, string[]>;
}

/** A decoded address list, with what the real host may add. */
export interface DecodedDcvEmailAddressList extends DcvEmailAddressList {
  /** Every level address, lowest level first, without duplicates. */
  emails: string[];
  /** `whois_email` values, the placeholder `none` dropped. */
  whoisEmails: string[];
  /** Keys this decoder does not know, kept as sent. */
  extra: Record<string, string[]>;
}

/** A decoded error response. */
export interface DecodedError {
  errorCode: number;
  errorMessage: string;
  errorItem?: string;
  /** The real host's `errorDetail` (urlencoded or JSON), when it sends one; dcvd never does. */
  errorDetail?: string;
  /** Anything else the body carried, kept as sent. */
  extra: Record<string, string>;
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: DecodedError };

export class ProtocolDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolDecodeError';
  }
}

function sortedLevels(levels: Record<number, string[]>): [number, string[]][] {
  return Object.entries(levels)
    .map(([k, v]) => [Number(k), v] as [number, string[]])
    .sort((a, b) => a[0] - b[0]);
}

// ---------------------------------------------------------------- encoders

/** ResendDCVEmail's body: `errorCode=0`, or code, message and (for -2/-3/-4) item. */
export function encodeUrlencoded(endpoint: Endpoint, error?: ApiError): string {
  const out = new URLSearchParams();
  if (!error) {
    out.set('errorCode', '0');
    return out.toString();
  }
  out.set('errorCode', String(error.code));
  out.set('errorMessage', errorMessage(endpoint, error.code, error.item));
  if (error.item !== undefined && CODES_WITH_ITEM.has(error.code)) out.set('errorItem', error.item);
  return out.toString();
}

export interface TextOptions {
  /**
   * Add `whois_email<TAB>none` right after `domain_name`: the historic format, which some
   * clients read unconditionally (dcvd's `--text-whois-none`; WHOIS addresses are never offered).
   */
  whoisNone?: boolean;
}

/** Text format: success is `0`, `domain_name` and `levelN_email` lines; every line ends with `\n`. */
export function encodeText(result: DcvEmailAddressList, options: TextOptions = {}): string {
  let body = `0\ndomain_name\t${result.domainName}\n`;
  if (options.whoisNone) body += 'whois_email\tnone\n';
  for (const [level, addresses] of sortedLevels(result.levels)) {
    for (const address of addresses) body += `level${level}_email\t${address}\n`;
  }
  return body;
}

/**
 * Text format error: the code on the first line, the message on the second. The message may name a parameter
 * as the request spelled it (-2), so its control characters and line separators are percent-encoded (`%0A`,
 * `%C2%85`): a name with a line break or a tab would otherwise add lines and fields of the caller's choosing
 * to a line-based answer.
 */
export function encodeTextError(endpoint: Endpoint, error: ApiError): string {
  const message = errorMessage(endpoint, error.code, error.item).replace(
    // C0, DEL, C1 (NEL among them), and the line and paragraph separators some line splitters honour.
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => encodeURIComponent(c),
  );
  return `${error.code}\n${message}\n`;
}

/** JSON format: keys as in the text format, each level an array. */
export function encodeJson(result: DcvEmailAddressList): string {
  const out: Record<string, unknown> = { errorCode: 0, domain_name: result.domainName };
  for (const [level, addresses] of sortedLevels(result.levels)) out[`level${level}_email`] = addresses;
  return JSON.stringify(out);
}

export function encodeJsonError(endpoint: Endpoint, error: ApiError): string {
  const out: Record<string, unknown> = {
    errorCode: error.code,
    errorMessage: errorMessage(endpoint, error.code, error.item),
  };
  if (error.item !== undefined && CODES_WITH_ITEM.has(error.code)) out.errorItem = error.item;
  return JSON.stringify(out);
}

// ---------------------------------------------------------------- decoders

function parseCode(raw: string | undefined): number {
  const text = (raw ?? '').trim();
  if (!/^-?[0-9]+$/.test(text)) throw new ProtocolDecodeError('response does not start with a numeric error code');
  return Number(text);
}

const LEVEL_KEY = /^level([0-9]+)_email$/i;

function emptyList(): DecodedDcvEmailAddressList {
  return { domainName: '', levels: {}, emails: [], whoisEmails: [], extra: {} };
}

function addPair(list: DecodedDcvEmailAddressList, key: string, value: string): void {
  const level = LEVEL_KEY.exec(key);
  if (level) {
    const n = Number(level[1]);
    (list.levels[n] ??= []).push(value);
    if (!list.emails.includes(value)) list.emails.push(value);
  } else if (key.toLowerCase() === 'domain_name') {
    list.domainName = value;
  } else if (key.toLowerCase() === 'whois_email') {
    if (value.toLowerCase() !== 'none' && value !== '') list.whoisEmails.push(value);
  } else {
    (list.extra[key] ??= []).push(value);
  }
}

function finishList(list: DecodedDcvEmailAddressList): DecodedDcvEmailAddressList {
  // `emails` follows level order, whatever order the lines came in.
  list.emails = [];
  for (const [, addresses] of sortedLevels(list.levels)) {
    for (const a of addresses) if (!list.emails.includes(a)) list.emails.push(a);
  }
  return list;
}

/**
 * The text format has no errorItem; for the codes that have one, the seed's
 * message names the parameter in place of `xxxx` ("The 'product' argument is
 * missing!"), so it is read back from there. A message in another wording
 * gives none.
 */
function itemInMessage(endpoint: Endpoint, code: number, message: string): string | undefined {
  const template = ERROR_MESSAGES[endpoint][code];
  if (!CODES_WITH_ITEM.has(code) || template === undefined || !template.includes('xxxx')) return undefined;
  const [before, after] = template.split('xxxx') as [string, string];
  if (message.length <= before.length + after.length || !message.startsWith(before) || !message.endsWith(after)) return undefined;
  return message.slice(before.length, message.length - after.length);
}

/** A text body's lines (CR LF or LF ends, a last empty line dropped) and the code on its first. */
function textLines(body: string): { code: number; lines: string[] } {
  const lines = body.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return { code: parseCode(lines[0]), lines };
}

/** A text error: the code, the message on the second line, the item read back from it. */
function textError(endpoint: Endpoint, code: number, lines: readonly string[]): { ok: false; error: DecodedError } {
  const error: DecodedError = { errorCode: code, errorMessage: (lines[1] ?? '').trim(), extra: {} };
  const item = itemInMessage(endpoint, code, error.errorMessage);
  if (item !== undefined) error.errorItem = item;
  return { ok: false, error };
}

/** Decodes a text/plain GetDCVEmailAddressList body. */
export function decodeText(body: string): Decoded<DecodedDcvEmailAddressList> {
  const { code, lines } = textLines(body);
  if (code !== 0) return textError('GetDCVEmailAddressList', code, lines);
  const list = emptyList();
  for (const line of lines.slice(1)) {
    if (line.trim() === '') continue;
    const tab = line.indexOf('\t');
    if (tab < 0) throw new ProtocolDecodeError('a success line has no tab between name and value');
    addPair(list, line.slice(0, tab).trim(), line.slice(tab + 1).trim());
  }
  return { ok: true, value: finishList(list) };
}

function asString(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : JSON.stringify(v);
}

/** A JSON answer: its object when `errorCode` is 0, else the error it carries (every field kept). */
function decodeJsonObject(body: string): Decoded<Record<string, unknown>> {
  let data: unknown;
  try {
    data = JSON.parse(body);
  } catch {
    throw new ProtocolDecodeError('response is not valid JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ProtocolDecodeError('JSON response is not an object');
  }
  const record = data as Record<string, unknown>;
  const code = parseCode(asString(record.errorCode));
  if (code === 0) return { ok: true, value: record };
  const fields: Record<string, string> = {};
  for (const [k, v] of Object.entries(record)) if (v !== undefined && v !== null) fields[k] = asString(v);
  return { ok: false, error: errorFromFields(code, fields) };
}

/** Decodes a JSON GetDCVEmailAddressList body. */
export function decodeJson(body: string): Decoded<DecodedDcvEmailAddressList> {
  const decoded = decodeJsonObject(body);
  if (!decoded.ok) return decoded;
  const record = decoded.value;
  const list = emptyList();
  for (const [key, value] of Object.entries(record)) {
    if (key === 'errorCode') continue;
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) addPair(list, key, asString(v));
  }
  return { ok: true, value: finishList(list) };
}

/**
 * Decodes a urlencoded body (ResendDCVEmail, and errors of the real host in that shape). `successCodes`:
 * the codes that are no error (AutoApplyOrder's 1, "successful, payment required", is one).
 */
export function decodeUrlencoded(body: string, successCodes: readonly number[] = [0]): Decoded<Record<string, string>> {
  const fields: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(body.trim())) fields[k] ??= v;
  const code = parseCode(fields.errorCode);
  if (successCodes.includes(code)) return { ok: true, value: fields };
  return { ok: false, error: errorFromFields(code, fields) };
}

const ERROR_FIELDS = new Set(['errorCode', 'errorMessage', 'errorItem', 'errorDetail']);

/** An error from the fields of a urlencoded or JSON body; fields not of the error kept in `extra`. */
function errorFromFields(code: number, fields: Record<string, string>): DecodedError {
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) if (!ERROR_FIELDS.has(k)) extra[k] = v;
  const error: DecodedError = { errorCode: code, errorMessage: fields.errorMessage ?? '', extra };
  if (fields.errorItem !== undefined) error.errorItem = fields.errorItem;
  if (fields.errorDetail !== undefined) error.errorDetail = fields.errorDetail;
  return error;
}

/**
 * Decodes a GetDCVEmailAddressList body in whichever shape it came: JSON (it
 * starts with `{`), urlencoded (it starts with `errorCode=`, as the real
 * host's errors may), text otherwise. The body decides, not the requested
 * format or the Content-Type, since a server may answer an error found
 * before the parameters in another format than the one asked for (dcvd
 * answers in JSON only when the body carries exactly one `responseFormat=2`;
 * a body it cannot read gets text).
 */
export function decodeAddressList(body: string): Decoded<DecodedDcvEmailAddressList> {
  const start = body.replace(/^[\s\uFEFF]+/, '');
  if (start.startsWith('{')) return decodeJson(start);
  if (/^errorCode=/i.test(start)) {
    const decoded = decodeUrlencoded(start);
    if (!decoded.ok) return decoded;
    const list = emptyList();
    // Every pair, repeats included (decodeUrlencoded keeps the first of each name).
    for (const [key, value] of new URLSearchParams(start.trim())) if (key !== 'errorCode') addPair(list, key, value.trim());
    return { ok: true, value: finishList(list) };
  }
  return decodeText(body);
}

// ---------------------------------------------------------------- the rest of the email-DCV flow (CONTRACT §12)

/**
 * One urlencoded value, with `@`, `:` and `*` left as they are (legal in a
 * query string): a public client URL-decodes every answer and then parses it
 * as a query string, so every `%` escape dcvd avoids is one it cannot break.
 */
function formValue(value: string): string {
  return encodeURIComponent(value).replace(/%40/g, '@').replace(/%3A/g, ':').replace(/%20/g, '+');
}

/** A success body of the urlencoded endpoints: `errorCode=0` first, then the fields in order. */
export function encodeUrlencodedFields(fields: readonly (readonly [string, string | number])[]): string {
  return ['errorCode=0', ...fields.map(([k, v]) => `${formValue(k)}=${formValue(String(v))}`)].join('&');
}

/** AutoApplyOrder / AutoApplySSL success. */
export interface PlacedOrder {
  orderNumber: number;
  certificateID: number;
  totalCost: string;
  /** Epoch seconds; 0 when unknown (delivery waits for DCV). */
  expectedDeliveryTime: number;
}

/**
 * AutoApplyOrder / AutoApplySSL success in the real host's responseFormat 0:
 * newline-delimited lines, status `0`, order number, amount, expected
 * delivery time, then the certificate ID when `showCertificateID=Y` was sent.
 * Errors in that format are `encodeTextError`'s two lines.
 */
export function encodePlacedOrderText(order: PlacedOrder, showCertificateID: boolean): string {
  const lines = ['0', String(order.orderNumber), order.totalCost, String(order.expectedDeliveryTime)];
  if (showCertificateID) lines.push(String(order.certificateID));
  return `${lines.join('\n')}\n`;
}

/** What the real host calls the per-domain DCV status; `Validated` is the exact string clients compare with. */
export const MDC_DCV_STATUSES = ['Awaiting', 'Validated', 'Declined', 'Cancelled'] as const;
export type MdcDcvStatus = (typeof MDC_DCV_STATUSES)[number];

/** One domain of GetMDCDomainDetails. */
export interface MdcDomainDetail {
  domainName: string;
  dcvMethod: string;
  dcvStatus: string;
  /**
   * With showStatusDetails=Y, in the JSON form only (responseFormat 2): the current DCV address (EMAIL), the last
   * email's time and the validation's time (epoch seconds).
   */
  dcvEmailAddress?: string;
  lastEmailSentAt?: number;
  validatedAt?: number;
  /**
   * With showStatusDetails=Y (JSON only), for a validated domain: `Y` while the email validation may be relied
   * upon, `N` from the email-DCV cut-off on (BR 3.2.2.4.4/.13/.14; dcvd's reading, the status itself
   * stays `Validated`).
   */
  validationUsable?: 'Y' | 'N';
}

/**
 * GetMDCDomainDetails, responseFormat 1: `errorCode=0&1_domainName=…&1_dcvMethod=…&1_dcvStatus=…`, numbered
 * from 1, exactly these three fields per domain whatever `showStatusDetails` says: a public client asks for
 * the details and reads every `N_` field by position, in threes (docs/PROTOCOL.md). The details are in the JSON
 * form (responseFormat 2), whose objects are read by name.
 */
export function encodeMdcDomainDetails(domains: readonly MdcDomainDetail[]): string {
  const fields: [string, string | number][] = [];
  domains.forEach((d, i) => {
    for (const key of ['domainName', 'dcvMethod', 'dcvStatus'] as const) fields.push([`${i + 1}_${key}`, d[key]]);
  });
  return encodeUrlencodedFields(fields);
}

/** GetMDCDomainDetails, responseFormat 2: `{"errorCode":0,"domains":[{…},…]}` in the same order. */
export function encodeMdcDomainDetailsJson(domains: readonly MdcDomainDetail[]): string {
  return JSON.stringify({ errorCode: 0, domains });
}

/** Decodes GetMDCDomainDetails in either format (the body decides: JSON starts with `{`). */
export function decodeMdcDomainDetails(body: string): Decoded<MdcDomainDetail[]> {
  const start = body.replace(/^[\s\uFEFF]+/, '');
  if (start.startsWith('{')) {
    const decoded = decodeJsonObject(start);
    if (!decoded.ok) return decoded;
    const record = decoded.value;
    if (!Array.isArray(record.domains)) throw new ProtocolDecodeError('JSON response has no domains array');
    return { ok: true, value: record.domains.map((d) => detailFrom((k) => (typeof d === 'object' && d !== null ? (d as Record<string, unknown>)[k] : undefined))) };
  }
  const decoded = decodeUrlencoded(start);
  if (!decoded.ok) return decoded;
  const rows = new Map<number, Record<string, string>>();
  for (const [key, value] of Object.entries(decoded.value)) {
    const m = /^([0-9]+)_(.+)$/.exec(key);
    if (!m) continue;
    const n = Number(m[1]);
    if (!rows.has(n)) rows.set(n, {});
    rows.get(n)![m[2]!] = value;
  }
  const ordered = [...rows.entries()].sort((a, b) => a[0] - b[0]).map(([, r]) => r);
  return { ok: true, value: ordered.map((r) => detailFrom((k) => r[k])) };
}

function detailFrom(get: (key: string) => unknown): MdcDomainDetail {
  const text = (k: string) => {
    const v = get(k);
    return v === undefined || v === null ? undefined : asString(v);
  };
  const detail: MdcDomainDetail = { domainName: text('domainName') ?? '', dcvMethod: text('dcvMethod') ?? '', dcvStatus: text('dcvStatus') ?? '' };
  const address = text('dcvEmailAddress');
  if (address !== undefined) detail.dcvEmailAddress = address;
  for (const k of ['lastEmailSentAt', 'validatedAt'] as const) {
    const v = text(k);
    if (v !== undefined && /^[0-9]+$/.test(v)) detail[k] = Number(v);
  }
  const usable = text('validationUsable');
  if (usable === 'Y' || usable === 'N') detail.validationUsable = usable;
  return detail;
}

/**
 * A CollectSSL answer that is not an error (docs/PROTOCOL.md). dcvd answers `statusCode` 0 and, in the
 * urlencoded form, `orderNumber`, `certificateID` (orders placed over the API), `dcvStatus` (with
 * `showStatusDetails=Y`) and `fqdn` (with `showFQDN=Y`); in the line-based form the status line alone.
 */
export interface CollectedSsl {
  /**
   * The answer's code: 0 "being processed", dcvd's only one (it issues no certificate). The real host's
   * clients read 1 and 2 as an issued certificate, whose lines or fields are then in `lines` or `extra`.
   */
  statusCode: number;
  orderNumber?: number;
  certificateID?: number;
  /** 0 not started, 2 in progress (an email went out or a domain is validated), 1 completed (every domain validated). */
  dcvStatus?: number;
  /** The order's first domain (its CN). */
  fqdn?: string;
  /** Urlencoded fields this decoder does not know (or whose value is not the number it expects, or one above 2^53 - 1), kept as sent. */
  extra: Record<string, string>;
  /** The line-based form: the lines after the status line, as sent (none from dcvd; CR LF ends taken off). */
  lines: string[];
}

const COLLECTED_NUMBERS = ['orderNumber', 'certificateID', 'dcvStatus'] as const;

/**
 * Decodes CollectSSL in either form; the body decides: urlencoded when it starts with `errorCode=`, else the
 * line-based text (responseFormat 0), whose first line is the code and, for an error, whose second is the
 * message (the item read back from it for -2, -3 and -4, as for GetDCVEmailAddressList's text). A code below
 * 0 is an error, -20 (`ErrorCode.OrderRejected`) a cancelled or declined order among them; 0 and above are not.
 */
export function decodeCollectSsl(body: string): Decoded<CollectedSsl> {
  const start = body.replace(/^[\s\uFEFF]+/, '');
  if (/^errorCode=/i.test(start)) {
    const fields: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(start.trim())) fields[k] ??= v;
    const code = parseCode(fields.errorCode);
    if (code < 0) return { ok: false, error: errorFromFields(code, fields) };
    // `+ 0`: a `-0` is the code 0.
    const result: CollectedSsl = { statusCode: code + 0, extra: {}, lines: [] };
    for (const [key, value] of Object.entries(fields)) {
      if (key === 'errorCode') continue;
      if ((COLLECTED_NUMBERS as readonly string[]).includes(key) && /^[0-9]+$/.test(value) && Number.isSafeInteger(Number(value))) result[key as (typeof COLLECTED_NUMBERS)[number]] = Number(value);
      else if (key === 'fqdn') result.fqdn = value;
      else result.extra[key] = value;
    }
    return { ok: true, value: result };
  }
  const { code, lines } = textLines(start);
  if (code < 0) return textError('CollectSSL', code, lines);
  return { ok: true, value: { statusCode: code + 0, extra: {}, lines: lines.slice(1) } };
}

/**
 * A client of the Open MPIC API (github.com/open-mpic/open-mpic-specification,
 * API v3): one `POST <base>/mpic` with `check_type: dcv` per selected DNS
 * contact, method `contact-email-txt` (the perspectives look up TXT at
 * `_validation-contactemail.<ADN>`) or `contact-email-caa` (they climb the
 * tree from the FQDN for the relevant CAA RRset, RFC 8659 §3), the selected
 * address as `challenge_value`. The answer's per-perspective results are
 * read into PerspectiveResult; the decision is quorum.ts's, not the service's.
 *
 * Everything that is not a well-formed answer to this very request is an
 * MpicError: dcvd fails closed on it.
 */
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { ContactMethod } from '../contacts/provider.ts';
import { allowedNonCorroborations, rirOfPerspective, type PerspectiveResult } from './quorum.ts';

export interface MpicCheck {
  /** TXT: the ADN; CAA: the FQDN the climb starts from. Never with `*.`. */
  target: string;
  method: ContactMethod;
  /** The selected contact address. */
  address: string;
  /** Sent as `trace_identifier`; the service must echo it. */
  requestId: string;
  /** N, the remote perspectives asked for. */
  perspectives: number;
}

export interface MpicAnswer {
  /** The service's `is_valid`. */
  isValid: boolean;
  results: PerspectiveResult[];
  /** `actual_orchestration_parameters` as sent, for the evidence. */
  actual: unknown;
}

export type MpicFailure = 'unreachable' | 'timeout' | 'bad-answer';

export class MpicError extends Error {
  constructor(
    readonly kind: MpicFailure,
    message: string,
  ) {
    super(message);
    this.name = 'MpicError';
  }
}

/** What dcvd needs of an MPIC service: tests give the test peer's, unit tests a fake. */
export interface MpicService {
  check(check: MpicCheck): Promise<MpicAnswer>;
}

export interface MpicClientOptions {
  /** The API's base URL (the specification's `servers` entry); dcvd POSTs to `<url>/mpic`. */
  url: string;
  /** Sent as `x-api-key` (the header Open MPIC deployments check). */
  apiKey?: string | undefined;
  /** PEM of the CA(s) that signed the service's certificate, instead of the system's. */
  ca?: string | undefined;
  /** The whole call, connection to last byte. */
  timeoutMs: number;
}

/** Larger answers are not an MPIC answer (six perspectives with records are a few KiB). */
const MAX_ANSWER_BYTES = 1024 * 1024;

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

/** Checks `--mpic-url`: HTTPS (BR 3.2.2.9: an authenticated and encrypted channel), plain HTTP only on loopback. */
export function checkMpicUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`not a URL: ${JSON.stringify(text)}`);
  }
  if (url.username || url.password) throw new Error('the MPIC URL must not carry credentials (use --mpic-api-key-file)');
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) throw new Error('the MPIC URL must be https:// (plain http only on loopback)');
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('the MPIC URL must be https://');
  return url.toString();
}

/** `<base>/mpic`, whatever trailing slash the base has. */
export function endpointOf(base: string): URL {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/mpic`;
  return url;
}

export function requestBody(check: MpicCheck): Record<string, unknown> {
  return {
    check_type: 'dcv',
    domain_or_ip_target: check.target,
    trace_identifier: check.requestId,
    orchestration_parameters: {
      perspective_count: check.perspectives,
      quorum_count: check.perspectives - allowedNonCorroborations(check.perspectives),
      // BR 3.2.2.9: a retry must not rely on earlier corroborations; dcvd asks once.
      max_attempts: 1,
    },
    dcv_check_parameters: { validation_method: check.method, challenge_value: check.address },
  };
}

function post(url: URL, body: string, opts: MpicClientOptions): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const secure = url.protocol === 'https:';
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      accept: 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    if (opts.apiKey !== undefined) headers['x-api-key'] = opts.apiKey;
    let settled = false;
    const fail = (err: MpicError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new MpicError('timeout', `no complete answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    const req = (secure ? https : http).request(
      url,
      { method: 'POST', headers, ...(secure ? { ca: opts.ca, rejectUnauthorized: true } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) fail(new MpicError('bad-answer', `answer larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('error', (err) => fail(new MpicError('unreachable', err.message)));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
      },
    );
    req.on('error', (err) => fail(new MpicError('unreachable', err.message)));
    req.end(body);
  });
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function bad(message: string): never {
  throw new MpicError('bad-answer', message);
}

/** Errors of a perspective (`[{error_type, error_message}]`), or undefined when none. */
function errorsOf(value: unknown): { type: string; message: string }[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) bad('a perspective\u2019s errors is not an array');
  if (value.length === 0) return undefined;
  return value.map((e) => ({
    type: isObject(e) && typeof e.error_type === 'string' ? e.error_type.slice(0, 200) : 'unknown',
    message: isObject(e) && typeof e.error_message === 'string' ? e.error_message.slice(0, 500) : '',
  }));
}

/**
 * One entry of `perspectives`. The specification's schema nests the result
 * under `check_response`; its own example and the Python implementation put
 * the fields beside `perspective_code` (older versions: `perspective`). Both
 * are read.
 */
function perspectiveOf(item: unknown, address: string): PerspectiveResult {
  if (!isObject(item)) bad('a perspective is not an object');
  const code = item.perspective_code ?? item.perspective;
  if (typeof code !== 'string' || code === '' || code.length > 100) bad('a perspective has no perspective_code');
  const response = isObject(item.check_response) ? item.check_response : item;
  if (response.check_type !== undefined && response.check_type !== 'dcv') bad(`perspective ${code} answered check_type ${String(response.check_type)}`);
  const checkPassed = response.check_passed === true;
  const errors = errorsOf(response.errors);
  const details = isObject(response.details) ? response.details : {};
  const recordsSeen = Array.isArray(details.records_seen)
    ? details.records_seen.filter((r): r is string => typeof r === 'string').map((r) => r.slice(0, 300)).slice(0, 50)
    : undefined;
  const foundAt = typeof details.found_at === 'string' ? details.found_at.slice(0, 300) : undefined;
  const wanted = address.toLowerCase();
  // Open MPIC compares contact addresses case-insensitively; so does dcvd.
  const seen = recordsSeen?.some((r) => r.toLowerCase() === wanted) === true;
  let reason = '';
  if (!checkPassed) reason = errors ? `failed: ${errors.map((e) => e.type).join(', ')}` : 'check_passed is false';
  else if (errors) reason = `passed with errors: ${errors.map((e) => e.type).join(', ')}`;
  else if (!seen) reason = 'the selected address is not among the records it saw';
  const result: PerspectiveResult = { code, rir: rirOfPerspective(code), corroborates: reason === '', checkPassed, reason };
  if (recordsSeen) result.recordsSeen = recordsSeen;
  if (foundAt !== undefined) result.foundAt = foundAt;
  if (errors) result.errors = errors;
  return result;
}

/** Reads a DCV answer to `check`; throws MpicError('bad-answer') on anything else. */
export function parseAnswer(check: MpicCheck, status: number, text: string): MpicAnswer {
  if (status !== 200) bad(`HTTP ${status}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    bad('the answer is not JSON');
  }
  if (!isObject(json)) bad('the answer is not a JSON object');
  if (json.check_type !== 'dcv') bad(`check_type is ${JSON.stringify(json.check_type)}, not "dcv"`);
  if (typeof json.is_valid !== 'boolean') bad('is_valid is missing');
  // An answer to another request (or a confused proxy) must not count for this one.
  if (json.trace_identifier !== undefined && json.trace_identifier !== null && json.trace_identifier !== check.requestId) bad('trace_identifier does not match');
  if (typeof json.domain_or_ip_target === 'string' && json.domain_or_ip_target.toLowerCase() !== check.target) bad('domain_or_ip_target does not match');
  if (isObject(json.dcv_check_parameters)) {
    const p = json.dcv_check_parameters;
    if (p.validation_method !== undefined && p.validation_method !== check.method) bad('validation_method does not match');
    if (typeof p.challenge_value === 'string' && p.challenge_value.toLowerCase() !== check.address.toLowerCase()) bad('challenge_value does not match');
  }
  if (!Array.isArray(json.perspectives)) bad('perspectives is missing');
  if (json.perspectives.length > check.perspectives) bad(`${json.perspectives.length} perspectives answered, ${check.perspectives} were asked for`);
  const results = json.perspectives.map((p) => perspectiveOf(p, check.address));
  const codes = new Set(results.map((r) => r.code));
  if (codes.size !== results.length) bad('a perspective answered twice');
  return { isValid: json.is_valid, results, actual: json.actual_orchestration_parameters ?? null };
}

export class MpicClient implements MpicService {
  private readonly endpoint: URL;
  constructor(private readonly opts: MpicClientOptions) {
    this.endpoint = endpointOf(checkMpicUrl(opts.url));
  }

  async check(check: MpicCheck): Promise<MpicAnswer> {
    const { status, text } = await post(this.endpoint, JSON.stringify(requestBody(check)), this.opts);
    return parseAnswer(check, status, text);
  }
}

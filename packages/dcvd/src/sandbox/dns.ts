/**
 * DNS overrides of the sandbox (issue 17, after pebble-challtestsrv): answers
 * for TXT and CAA per name, or a failure (SERVFAIL, timeout, NXDOMAIN). A
 * decorator at the DnsClient interface: an overridden name and type is
 * answered here, everything else goes to the wrapped client and its configured
 * resolvers. Every DNS client the server builds passes through
 * `ServerDeps.sandbox.wrapDnsClient`, so every lookup sees the overrides.
 */
import { DnsError, type CaaRecord, type CaaResult, type DnsClient, type TxtResult } from '../dns/client.ts';
import { checkDomainName } from '../domains/index.ts';
import { isContactAddress } from '../contacts/address.ts';
import { OperatorError } from '../errors.ts';

export const OVERRIDE_TYPES = ['TXT', 'CAA'] as const;
export type OverrideType = (typeof OVERRIDE_TYPES)[number];
export const OVERRIDE_FAILURES = ['servfail', 'timeout', 'nxdomain'] as const;
export type OverrideFailure = (typeof OVERRIDE_FAILURES)[number];
/** What results and errors of an overridden lookup give as their resolver. */
export const OVERRIDE_RESOLVER = 'sandbox-override';
export const MAX_OVERRIDES = 10_000;
export const MAX_RECORDS = 20;

export interface DnsOverrideInput {
  name: string;
  type: string;
  /** TXT: each value one record (an address); CAA: flags, tag, value. Absent with `failure`. */
  records?: (string | { flags?: number; tag: string; value: string })[] | undefined;
  failure?: string | undefined;
  /** The AD bit the answer carries (default false). */
  authenticatedData?: boolean | undefined;
}

export interface DnsOverrideView {
  name: string;
  type: OverrideType;
  /** TXT: the addresses; CAA: the records. Empty with a failure. */
  records: (string | CaaRecord)[];
  failure: OverrideFailure | null;
  authenticatedData: boolean;
}

const invalid = (message: string) => new OperatorError(message, 'invalid');
const UNDERSCORE_LABEL = /^_[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const CAA_TAG = /^[A-Za-z0-9]{1,15}$/;
const CAA_VALUE = /^[\x20-\x7e]{0,255}$/;

/**
 * A query name as dcvd asks it: leading underscore labels (`_validation-contactemail.`)
 * on a host name that the domain rules of CONTRACT §2 accept (no wildcard, no IP,
 * no internal name). Returns the normalised name.
 */
export function overrideName(input: string): string {
  if (typeof input !== 'string' || input.length === 0 || input.length > 253) throw invalid('name must be 1 to 253 characters');
  const labels = input.trim().toLowerCase().replace(/\.$/, '').split('.');
  const prefix: string[] = [];
  while (labels.length > 0 && labels[0]!.startsWith('_')) {
    const label = labels.shift()!;
    if (!UNDERSCORE_LABEL.test(label)) throw invalid(`name: ${JSON.stringify(label)} is not a valid underscore label`);
    prefix.push(label);
  }
  const host = labels.join('.');
  if (host.startsWith('*')) throw invalid('name must not be a wildcard');
  const checked = checkDomainName(host);
  if (!checked.ok) throw invalid(`name: ${JSON.stringify(host)} is not a valid domain name (${checked.reason})`);
  return [...prefix, checked.domain].join('.');
}

function txtRecord(value: unknown): string {
  if (typeof value !== 'string' || !isContactAddress(value)) {
    throw invalid(`TXT records must each be one contact address (local@domain.tld), got ${JSON.stringify(value).slice(0, 100)}`);
  }
  return value;
}

function caaRecord(value: unknown): CaaRecord {
  const r = (value ?? {}) as { flags?: unknown; tag?: unknown; value?: unknown };
  if (typeof value !== 'object' || value === null) throw invalid('CAA records must be objects {flags, tag, value}');
  const flags = r.flags ?? 0;
  if (flags !== 0 && flags !== 128) throw invalid('CAA flags must be 0 or 128');
  if (typeof r.tag !== 'string' || !CAA_TAG.test(r.tag)) throw invalid('CAA tag must be 1 to 15 letters and digits (RFC 8659)');
  if (typeof r.value !== 'string' || !CAA_VALUE.test(r.value)) throw invalid('CAA value must be at most 255 printable ASCII characters');
  if (r.tag.toLowerCase() === 'contactemail' && !isContactAddress(r.value)) throw invalid(`CAA contactemail value must be one contact address, got ${JSON.stringify(r.value).slice(0, 100)}`);
  return { flags, tag: r.tag, value: r.value };
}

/** Checks an override request; throws OperatorError (HTTP 400) with what is wrong. */
export function checkOverride(input: DnsOverrideInput): DnsOverrideView {
  const type = String(input.type ?? '').toUpperCase();
  if (!(OVERRIDE_TYPES as readonly string[]).includes(type)) throw invalid(`type must be one of ${OVERRIDE_TYPES.join(', ')}`);
  const name = overrideName(input.name);
  const hasFailure = input.failure !== undefined;
  if (hasFailure === (input.records !== undefined)) throw invalid('give exactly one of records and failure');
  if (hasFailure && !(OVERRIDE_FAILURES as readonly string[]).includes(input.failure!)) throw invalid(`failure must be one of ${OVERRIDE_FAILURES.join(', ')}`);
  const records = input.records ?? [];
  if (!Array.isArray(records) || records.length > MAX_RECORDS) throw invalid(`records must be a list of at most ${MAX_RECORDS}`);
  return {
    name,
    type: type as OverrideType,
    records: type === 'TXT' ? records.map(txtRecord) : records.map(caaRecord),
    failure: hasFailure ? (input.failure as OverrideFailure) : null,
    authenticatedData: input.authenticatedData === true,
  };
}

/** Splits a TXT value into character-strings of at most 255 bytes, as on the wire. */
function characterStrings(value: string): string[] {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(value.slice(i, i + 255));
  return parts.length > 0 ? parts : [''];
}

/** The overrides of one sandbox process, and the decorator that consults them. */
export class DnsOverrides {
  private readonly byKey = new Map<string, DnsOverrideView>();

  set(input: DnsOverrideInput): DnsOverrideView {
    const view = checkOverride(input);
    const key = `${view.type} ${view.name}`;
    if (!this.byKey.has(key) && this.byKey.size >= MAX_OVERRIDES) throw new OperatorError(`at most ${MAX_OVERRIDES} overrides; clear some first`, 'conflict');
    this.byKey.set(key, view);
    return view;
  }

  /** Clears one name's overrides, or every name's without one; of one type with `type`, else of both. Returns how many went. */
  clear(name?: string, type?: string): number {
    const t = type?.toUpperCase();
    if (t !== undefined && !(OVERRIDE_TYPES as readonly string[]).includes(t)) throw invalid(`type must be one of ${OVERRIDE_TYPES.join(', ')}`);
    if (name === undefined) {
      let n = 0;
      for (const [key, view] of this.byKey) if (t === undefined || view.type === t) n += Number(this.byKey.delete(key));
      return n;
    }
    const normalised = overrideName(name);
    let n = 0;
    for (const ot of t === undefined ? OVERRIDE_TYPES : [t]) if (this.byKey.delete(`${ot} ${normalised}`)) n++;
    return n;
  }

  list(): DnsOverrideView[] {
    const key = (o: DnsOverrideView) => `${o.name} ${o.type}`;
    return [...this.byKey.values()].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  }

  private find(name: string, type: OverrideType): DnsOverrideView | undefined {
    if (this.byKey.size === 0) return undefined;
    const key = name.toLowerCase().replace(/\.$/, '');
    return this.byKey.get(`${type} ${key}`);
  }

  /** The decorator: overridden lookups answered here, the rest by `inner`. */
  wrap(inner: DnsClient): DnsClient {
    const answer = (o: DnsOverrideView, name: string) => {
      const base = { resolver: OVERRIDE_RESOLVER, name: name.replace(/\.$/, ''), type: o.type };
      if (o.failure === 'servfail') throw new DnsError({ ...base, kind: 'servfail', rcode: 'SERVFAIL' }, 'SERVFAIL (sandbox override)');
      if (o.failure === 'timeout') throw new DnsError({ ...base, kind: 'timeout' }, 'no answer (sandbox override)');
      return {
        name: base.name,
        rcode: o.failure === 'nxdomain' ? ('NXDOMAIN' as const) : ('NOERROR' as const),
        authenticatedData: o.authenticatedData,
        extendedErrors: [],
        resolver: OVERRIDE_RESOLVER,
      };
    };
    // Spread first: a method the interface gains later passes through unchanged.
    return {
      ...inner,
      txt: async (name, signal): Promise<TxtResult> => {
        const o = this.find(name, 'TXT');
        if (!o) return inner.txt(name, signal);
        return { ...answer(o, name), records: (o.records as string[]).map(characterStrings) };
      },
      caa: async (name, signal): Promise<CaaResult> => {
        const o = this.find(name, 'CAA');
        if (!o) return inner.caa(name, signal);
        return { ...answer(o, name), records: (o.records as CaaRecord[]).map((r) => ({ ...r })) };
      },
    };
  }
}

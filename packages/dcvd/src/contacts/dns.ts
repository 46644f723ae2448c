/**
 * The lookup step the DNS providers share (txt.ts, caa.ts; CONTRACT §3):
 * every lookup is counted by outcome, a failed one is logged and becomes one
 * of the provider's errors, and the answer's evidence is kept with what it
 * offered. All lookups of one request run concurrently; a failed lookup
 * drops only its source.
 */
import { DnsError, type DnsResult } from '../dns/client.ts';
import { checkQueryName } from '../dns/message.ts';
import { isBogus } from '../dns/dnssec.ts';
import type { ContactLookup, ContactLookupError, DnsEvidence } from './provider.ts';

/** Counts lookups by outcome, and passes each to `sink` (the metrics). */
export class DnsLookupStats {
  readonly counts = new Map<string, number>();
  constructor(private readonly sink?: (type: string, outcome: string) => void) {}
  add(type: string, outcome: string): void {
    const key = `${type}:${outcome}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    this.sink?.(type, outcome);
  }
  get(type: string, outcome: string): number {
    return this.counts.get(`${type}:${outcome}`) ?? 0;
  }
}

export function evidence(ctx: ContactLookup, result: DnsResult, type: 'TXT' | 'CAA'): DnsEvidence {
  const found: DnsEvidence = {
    name: result.name,
    type,
    rcode: result.rcode,
    authenticatedData: result.authenticatedData,
    extendedErrors: result.extendedErrors,
    resolver: result.resolver,
  };
  if (ctx.dnssec) found.dnssec = ctx.dnssec.evidence(result.resolver, result.authenticatedData);
  return found;
}

/** Runs one lookup; a failure is logged, counted, added to `errors` and becomes `undefined`. */
export async function attempt<T extends DnsResult>(
  ctx: ContactLookup,
  errors: ContactLookupError[],
  type: 'TXT' | 'CAA',
  name: string,
  run: () => Promise<T>,
): Promise<T | undefined> {
  try {
    // A valid domain of 229+ characters makes `_validation-contactemail.<ADN>`
    // longer than a query name can be (255 bytes on the wire): a failed
    // lookup of that source, not an error of the call.
    checkQueryName(name);
  } catch (err) {
    ctx.stats.add(type, 'name-too-long');
    ctx.log.warn({ dns: { type, name, kind: 'name-too-long' }, err: String(err) }, 'DNS lookup not possible; its contact source is dropped');
    errors.push({ type, name, kind: 'name-too-long' });
    return undefined;
  }
  try {
    const result = await run();
    ctx.stats.add(type, 'ok');
    return result;
  } catch (err) {
    if (!(err instanceof DnsError)) throw err;
    if (err.kind === 'aborted') {
      ctx.stats.add(type, 'aborted');
      ctx.log.debug({ dns: { type, name, kind: 'aborted' } }, 'DNS lookup abandoned: the request ended');
      errors.push({ type, name, kind: 'aborted' });
      return undefined;
    }
    // A SERVFAIL with a DNSSEC Extended DNS Error: the resolver found the answer bogus (forged or broken signatures).
    const bogus = isBogus(err);
    const kind = bogus ? 'dnssec-bogus' : err.kind;
    ctx.stats.add(type, kind);
    ctx.log.warn(
      { dns: { type, name, kind, rcode: err.rcode, resolver: err.resolver, extendedErrors: err.extendedErrors } },
      bogus ? 'DNSSEC validation failed (bogus answer); its contact source is dropped' : 'DNS lookup failed; its contact source is dropped',
    );
    errors.push({ type, name, kind });
    return undefined;
  }
}

/** Logs and counts the names a per-request cap leaves out. */
export function notQueried(ctx: ContactLookup, type: 'TXT' | 'CAA', names: readonly string[]): void {
  if (names.length === 0) return;
  for (let i = 0; i < names.length; i++) ctx.stats.add(type, 'not-queried');
  ctx.log.info({ dns: { type, notQueried: names.length, first: names[0] } }, 'DNS lookups beyond the per-request cap are not queried');
}

/**
 * Fault switches of the sandbox (issue 17): the next N calls of an endpoint
 * (optionally only those naming one loginName) answer a chosen error code, or
 * are held for a given latency first, so a client's error handling can be
 * tested deterministically. Consumed in order of creation; each call consumes
 * at most one switch of each kind (one latency, then one error).
 */
import { randomUUID } from 'node:crypto';
import { ERROR_MESSAGES, CODES_WITH_ITEM, isErrorCode, type ApiError, type Endpoint, type ErrorCodeValue } from '@dcvd/client';
import { OperatorError } from '../errors.ts';

export const MAX_SWITCH_COUNT = 1000;
export const MAX_LATENCY_MS = 60_000;
export const MAX_SWITCHES = 1000;

export interface SwitchInput {
  endpoint: string;
  login?: string | undefined;
  count?: number | undefined;
  errorCode?: number | undefined;
  /** For -2, -3 and -4: the parameter named in the answer. */
  errorItem?: string | undefined;
  latencyMs?: number | undefined;
}

export interface SwitchView {
  id: string;
  endpoint: string;
  login: string | null;
  /** Calls still to be switched. */
  remaining: number;
  errorCode: ErrorCodeValue | null;
  errorItem: string | null;
  latencyMs: number | null;
}

const invalid = (message: string) => new OperatorError(message, 'invalid');

/** The codes an endpoint's answers can carry (the seeds' tables), for a switch. */
export function switchableCodes(endpoint: string): ErrorCodeValue[] {
  const table = (ERROR_MESSAGES as Record<string, Record<number, string>>)[endpoint] ?? ERROR_MESSAGES.ResendDCVEmail;
  return Object.keys(table).map(Number).filter(isErrorCode).sort((a, b) => b - a);
}

export class FaultSwitches {
  private switches: SwitchView[] = [];

  /** @param endpoints the endpoints the API serves (filled as its routes register). */
  constructor(private readonly endpoints: () => readonly string[]) {}

  add(input: SwitchInput): SwitchView {
    if (!this.endpoints().includes(input.endpoint)) throw invalid(`endpoint must be one of ${this.endpoints().join(', ')}`);
    const count = input.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > MAX_SWITCH_COUNT) throw invalid(`count must be a whole number from 1 to ${MAX_SWITCH_COUNT}`);
    if ((input.errorCode === undefined) === (input.latencyMs === undefined)) throw invalid('give exactly one of errorCode and latencyMs');
    if (input.latencyMs !== undefined && (!Number.isInteger(input.latencyMs) || input.latencyMs < 0 || input.latencyMs > MAX_LATENCY_MS)) {
      throw invalid(`latencyMs must be a whole number from 0 to ${MAX_LATENCY_MS}`);
    }
    let errorCode: ErrorCodeValue | undefined;
    if (input.errorCode !== undefined) {
      const codes = switchableCodes(input.endpoint);
      errorCode = codes.find((c) => c === input.errorCode);
      if (errorCode === undefined) throw invalid(`errorCode must be one of ${codes.join(', ')} for ${input.endpoint}`);
      if (CODES_WITH_ITEM.has(input.errorCode) !== (input.errorItem !== undefined)) throw invalid('errorItem (a parameter name) goes with errorCode -2, -3 and -4, and only with them');
    } else if (input.errorItem !== undefined) throw invalid('errorItem goes with errorCode');
    if (input.errorItem !== undefined && !/^[A-Za-z][A-Za-z0-9]{0,63}$/.test(input.errorItem)) throw invalid('errorItem must be a parameter name (letters and digits)');
    if (input.login !== undefined && (input.login.length < 1 || input.login.length > 64)) throw invalid('login must be 1 to 64 characters');
    if (this.switches.length >= MAX_SWITCHES) throw new OperatorError(`at most ${MAX_SWITCHES} switches; clear them first`, 'conflict');
    const view: SwitchView = {
      id: randomUUID(),
      endpoint: input.endpoint,
      login: input.login ?? null,
      remaining: count,
      errorCode: errorCode ?? null,
      errorItem: input.errorItem ?? null,
      latencyMs: input.latencyMs ?? null,
    };
    this.switches.push(view);
    return { ...view };
  }

  list(): SwitchView[] {
    return this.switches.map((s) => ({ ...s }));
  }

  clear(): number {
    const n = this.switches.length;
    this.switches = [];
    return n;
  }

  /** For one call: the latency to add and the error to answer, each consumed from the first matching switch. */
  take(endpoint: Endpoint | string, login: string | undefined): { latencyMs: number; error: ApiError | undefined } {
    const matches = (s: SwitchView) => s.endpoint === endpoint && (s.login === null || s.login === login);
    const latency = this.switches.find((s) => matches(s) && s.latencyMs !== null);
    const failure = this.switches.find((s) => matches(s) && s.errorCode !== null);
    for (const s of [latency, failure]) if (s) s.remaining -= 1;
    this.switches = this.switches.filter((s) => s.remaining > 0);
    return {
      latencyMs: latency?.latencyMs ?? 0,
      error: failure ? { code: failure.errorCode!, ...(failure.errorItem !== null ? { item: failure.errorItem } : {}) } : undefined,
    };
  }
}

/**
 * A test peer of the Open MPIC API (issue 19): `POST /mpic` over HTTPS on
 * loopback (a self-signed certificate, an `x-api-key`), written here from the
 * specification's request and response shapes (open-mpic-specification,
 * openapi.yaml, API v3). Each remote perspective resolves through its own
 * loopback DNS server (test/support/dns-server.ts) with Node's own resolver —
 * not dcvd's DNS client — so a test can make k of n perspectives see another
 * address, time out, fail or answer slowly. The coordinator answers once
 * every perspective has (as the reference implementation does), computes
 * `is_valid` from the request's quorum_count honestly unless told to lie, and
 * can be made to send any raw answer.
 */
import https from 'node:https';
import { Resolver } from 'node:dns/promises';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { generate } from 'selfsigned';
import { startTestDnsServer, type TestCaaRecord, type TestDnsServer } from './dns-server.ts';

export interface PeerPerspective {
  /** `rir.region`, as Open MPIC names perspectives (`arin.us-east-2`). */
  code: string;
  /** This perspective's own DNS server. */
  dns: TestDnsServer;
  /** Answer only after this many ms (a slow perspective). */
  delayMs: number;
  /** The perspective cannot be reached by the coordinator: it answers check_passed false with an error. */
  down: boolean;
}

export interface ReceivedRequest {
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

export interface TestMpicServer {
  /** Base URL (dcvd POSTs to `${url}/mpic`). */
  url: string;
  /** PEM of the self-signed certificate, to give dcvd as --mpic-ca-file. */
  ca: string;
  apiKey: string;
  readonly perspectives: PeerPerspective[];
  readonly requests: ReceivedRequest[];
  /** `nested` (the schema: {perspective_code, check_response}) or `flat` (the example and the Python implementation). */
  shape: 'nested' | 'flat';
  /** Force is_valid (a lying summary flag). */
  isValid: boolean | undefined;
  /** Replace the whole answer (malformed answers, other status codes). */
  rawAnswer: ((body: Record<string, unknown>) => { status: number; body: string }) | undefined;
  /** Sets TXT / CAA records on every perspective's DNS server. */
  setTxtEverywhere(name: string, records: string[][]): void;
  setCaaEverywhere(name: string, records: TestCaaRecord[]): void;
  /** Back to honest, fast, reachable perspectives with no records. */
  reset(): void;
  close(): Promise<void>;
}

export const DEFAULT_PERSPECTIVE_CODES = [
  'arin.us-east-1',
  'arin.us-west-2',
  'arin.ca-central-1',
  'arin.us-east-2',
  'ripe.eu-west-1',
  'apnic.ap-northeast-1',
];

interface CheckOutcome {
  check_passed: boolean;
  errors: { error_type: string; error_message: string }[] | null;
  details: { records_seen: string[]; response_code: number | null; ad_flag: boolean; found_at: string | null };
}

function lookupError(err: unknown): CheckOutcome {
  const code = (err as { code?: string }).code ?? 'EUNKNOWN';
  return {
    check_passed: false,
    errors: [{ error_type: 'mpic_error:dcv_checker:lookup', error_message: `DNS lookup failed: ${code}` }],
    details: { records_seen: [], response_code: null, ad_flag: false, found_at: null },
  };
}

const NO_DATA = new Set(['ENODATA', 'ENOTFOUND']);

/** One perspective's DCV check of a contact address, by its own resolver. */
async function checkAt(resolver: Resolver, method: string, target: string, expected: string): Promise<CheckOutcome> {
  const wanted = expected.toLowerCase();
  if (method === 'contact-email-txt') {
    const name = `_validation-contactemail.${target}`;
    try {
      const records = (await resolver.resolveTxt(name)).map((strings) => strings.join(''));
      return {
        check_passed: records.some((r) => r.toLowerCase() === wanted),
        errors: null,
        details: { records_seen: records, response_code: 0, ad_flag: false, found_at: name },
      };
    } catch (err) {
      if (NO_DATA.has((err as { code?: string }).code ?? '')) {
        return { check_passed: false, errors: null, details: { records_seen: [], response_code: 0, ad_flag: false, found_at: name } };
      }
      return lookupError(err);
    }
  }
  // contact-email-caa: the relevant RRset by RFC 8659 §3's climb from the target.
  const labels = target.split('.');
  for (let i = 0; i < labels.length; i++) {
    const name = labels.slice(i).join('.');
    let records: Awaited<ReturnType<Resolver['resolveCaa']>>;
    try {
      records = await resolver.resolveCaa(name);
    } catch (err) {
      if (NO_DATA.has((err as { code?: string }).code ?? '')) continue;
      return lookupError(err);
    }
    if (records.length === 0) continue;
    const contacts = records.map((r) => (r as unknown as Record<string, unknown>).contactemail).filter((v): v is string => typeof v === 'string');
    return {
      check_passed: contacts.some((c) => c.toLowerCase() === wanted),
      errors: null,
      details: { records_seen: contacts, response_code: 0, ad_flag: false, found_at: name },
    };
  }
  return { check_passed: false, errors: null, details: { records_seen: [], response_code: 0, ad_flag: false, found_at: null } };
}

export async function startTestMpicServer(opts: { codes?: string[]; apiKey?: string } = {}): Promise<TestMpicServer> {
  const codes = opts.codes ?? DEFAULT_PERSPECTIVE_CODES;
  const apiKey = opts.apiKey ?? 'test-mpic-api-key-0123456789';
  const perspectives: PeerPerspective[] = [];
  for (const code of codes) perspectives.push({ code, dns: await startTestDnsServer(), delayMs: 0, down: false });
  const requests: ReceivedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  const peer: TestMpicServer = {
    url: '',
    ca: pems.cert,
    apiKey,
    perspectives,
    requests,
    shape: 'nested',
    isValid: undefined,
    rawAnswer: undefined,
    setTxtEverywhere(name, records) {
      for (const p of perspectives) p.dns.setTxt(name, records);
    },
    setCaaEverywhere(name, records) {
      for (const p of perspectives) p.dns.setCaa(name, records);
    },
    reset() {
      for (const p of perspectives) {
        p.dns.reset();
        p.delayMs = 0;
        p.down = false;
      }
      peer.shape = 'nested';
      peer.isValid = undefined;
      peer.rawAnswer = undefined;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all(perspectives.map((p) => p.dns.close()));
    },
  };

  async function answer(body: Record<string, unknown>): Promise<{ status: number; body: string }> {
    if (peer.rawAnswer) return peer.rawAnswer(body);
    const params = (body.dcv_check_parameters ?? {}) as Record<string, unknown>;
    const orchestration = (body.orchestration_parameters ?? {}) as Record<string, unknown>;
    const target = body.domain_or_ip_target;
    const method = params.validation_method;
    const expected = params.challenge_value;
    if (body.check_type !== 'dcv' || typeof target !== 'string' || typeof expected !== 'string' || (method !== 'contact-email-txt' && method !== 'contact-email-caa')) {
      return { status: 400, body: JSON.stringify({ error: 'request validation failed' }) };
    }
    const count = typeof orchestration.perspective_count === 'number' ? orchestration.perspective_count : perspectives.length;
    if (count > perspectives.length) return { status: 400, body: JSON.stringify({ error: `only ${perspectives.length} perspectives` }) };
    const quorum = typeof orchestration.quorum_count === 'number' ? orchestration.quorum_count : count - (count <= 5 ? 1 : 2);
    const used = perspectives.slice(0, count);
    const results = await Promise.all(
      used.map(async (p) => {
        if (p.delayMs > 0) await sleep(p.delayMs);
        if (p.down) {
          const down: CheckOutcome = {
            check_passed: false,
            errors: [{ error_type: 'mpic_error:coordinator:communication', error_message: 'Communication with the remote perspective failed.' }],
            details: { records_seen: [], response_code: null, ad_flag: false, found_at: null },
          };
          return { p, outcome: down };
        }
        const resolver = new Resolver({ timeout: 500, tries: 1 });
        resolver.setServers([p.dns.address]);
        return { p, outcome: await checkAt(resolver, method, target, expected) };
      }),
    );
    const passed = results.filter((r) => r.outcome.check_passed);
    const rirs = new Set(passed.map((r) => r.p.code.split('.')[0]));
    const honest = passed.length >= quorum && (quorum <= 2 || rirs.size >= 2);
    const perspectiveEntries = results.map(({ p, outcome }) => {
      const response = { check_type: 'dcv', timestamp_ns: Date.now() * 1_000_000, ...outcome };
      return peer.shape === 'nested' ? { perspective_code: p.code, check_response: response } : { perspective_code: p.code, ...response };
    });
    return {
      status: 200,
      body: JSON.stringify({
        check_type: 'dcv',
        domain_or_ip_target: target,
        trace_identifier: body.trace_identifier ?? null,
        is_valid: peer.isValid ?? honest,
        request_orchestration_parameters: body.orchestration_parameters ?? null,
        actual_orchestration_parameters: { perspective_count: count, quorum_count: quorum, attempt_count: 1 },
        dcv_check_parameters: params,
        perspectives: perspectiveEntries,
        previous_attempt_results: null,
      }),
    };
  }

  const server = https.createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const send = (status: number, text: string) => {
        if (res.destroyed) return;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(text);
      };
      const key = Buffer.from(String(req.headers['x-api-key'] ?? ''));
      const want = Buffer.from(apiKey);
      if (key.length !== want.length || !timingSafeEqual(key, want)) return send(403, '{"message":"Forbidden"}');
      if (req.method !== 'POST' || req.url !== '/mpic') return send(404, '{"message":"Not Found"}');
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        return send(400, '{"message":"not JSON"}');
      }
      requests.push({ headers: req.headers, body });
      answer(body).then(
        (a) => send(a.status, a.body),
        (err: unknown) => send(500, JSON.stringify({ error: String(err) })),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  peer.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return peer;
}

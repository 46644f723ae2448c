/**
 * The BR 3.2.2.9 quorum table and RIR rule as dcvd applies them, and the
 * reading of Open MPIC answers (issue 19): unit tests of pure functions.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { allowedNonCorroborations, decideQuorum, rirOfPerspective, type PerspectiveResult } from '../src/mpic/quorum.ts';
import { checkMpicUrl, endpointOf, MpicError, parseAnswer, requestBody, type MpicCheck } from '../src/mpic/client.ts';

const pr = (code: string, corroborates: boolean): PerspectiveResult => ({ code, rir: rirOfPerspective(code), corroborates, checkPassed: corroborates, reason: corroborates ? '' : 'x' });
const SPREAD = ['ripe.eu-west-1', 'apnic.ap-northeast-1', 'arin.us-east-1', 'arin.us-west-2', 'lacnic.sa-east-1', 'afrinic.af-south-1'];

describe('the quorum table', () => {
  test('allowed non-corroborations: 1 for 2..5, 2 for 6+', () => {
    assert.deepEqual([2, 3, 4, 5, 6, 7, 12].map(allowedNonCorroborations), [1, 1, 1, 1, 2, 2, 2]);
  });

  for (const n of [5, 6]) {
    for (const k of [0, 1, 2, 3]) {
      const ok = k <= (n === 5 ? 1 : 2);
      test(`n = ${n}, ${k} non-corroborations → ${ok ? 'corroborated' : 'refused'}`, () => {
        // The last k fail, so the corroborating ones always span several RIRs.
        const results = SPREAD.slice(0, n).map((code, i) => pr(code, i < n - k));
        const d = decideQuorum(n, results, true);
        assert.equal(d.corroborated, ok);
        assert.equal(d.outcome, ok ? 'corroborated' : 'quorum-not-met');
        assert.equal(d.nonCorroborations, k);
      });
    }
  }

  test('a missing answer counts as a non-corroboration', () => {
    const d = decideQuorum(6, SPREAD.slice(0, 3).map((c) => pr(c, true)), true);
    assert.equal(d.nonCorroborations, 3);
    assert.equal(d.outcome, 'quorum-not-met');
  });

  test('corroborating perspectives in one RIR only → refused', () => {
    const codes = ['arin.a', 'arin.b', 'arin.c', 'arin.d', 'ripe.e', 'apnic.f'];
    const d = decideQuorum(6, codes.map((c) => pr(c, c.startsWith('arin'))), true);
    assert.equal(d.outcome, 'rir-diversity-not-met');
    assert.deepEqual(d.rirs, ['ARIN']);
  });

  test('perspectives whose code names no RIR do not count towards diversity', () => {
    const codes = ['us-east-1', 'us-west-2', 'eu-west-1', 'eu-central-1', 'ap-south-1', 'arin.x'];
    const d = decideQuorum(6, codes.map((c) => pr(c, true)), true);
    assert.equal(d.outcome, 'rir-diversity-not-met');
  });

  test('fewer than five remote perspectives → refused even when all agree', () => {
    const d = decideQuorum(4, SPREAD.slice(0, 4).map((c) => pr(c, true)), true);
    assert.equal(d.outcome, 'too-few-perspectives');
  });

  test('the service\u2019s is_valid can veto, never approve', () => {
    const all = SPREAD.map((c) => pr(c, true));
    assert.equal(decideQuorum(6, all, false).outcome, 'service-disagrees');
    const none = SPREAD.map((c) => pr(c, false));
    assert.equal(decideQuorum(6, none, true).outcome, 'quorum-not-met');
  });

  test('RIR names', () => {
    assert.equal(rirOfPerspective('arin.us-east-2'), 'ARIN');
    assert.equal(rirOfPerspective('RIPE.eu-west-3'), 'RIPE NCC');
    assert.equal(rirOfPerspective('apnic.ap-south-1'), 'APNIC');
    assert.equal(rirOfPerspective('us-east-2'), undefined);
    assert.equal(rirOfPerspective('nowhere.x'), undefined);
  });
});

describe('reading an Open MPIC answer', () => {
  const check: MpicCheck = { target: 'example.com', method: 'contact-email-txt', address: 'Owner@Example.net', requestId: 'req-1', perspectives: 6 };
  const details = (seen: string[]) => ({ records_seen: seen, response_code: 0, ad_flag: false, found_at: '_validation-contactemail.example.com' });
  const answer = (perspectives: unknown[], extra: Record<string, unknown> = {}) =>
    JSON.stringify({ check_type: 'dcv', domain_or_ip_target: 'example.com', trace_identifier: 'req-1', is_valid: true, perspectives, ...extra });

  test('the request: check_type dcv, the method, the address, N and its quorum, one attempt', () => {
    assert.deepEqual(requestBody(check), {
      check_type: 'dcv',
      domain_or_ip_target: 'example.com',
      trace_identifier: 'req-1',
      orchestration_parameters: { perspective_count: 6, quorum_count: 4, max_attempts: 1 },
      dcv_check_parameters: { validation_method: 'contact-email-txt', challenge_value: 'Owner@Example.net' },
    });
    assert.equal((requestBody({ ...check, perspectives: 5 }).orchestration_parameters as { quorum_count: number }).quorum_count, 4);
  });

  test('nested (the schema) and flat (the example) shapes read alike', () => {
    const nested = parseAnswer(check, 200, answer([{ perspective_code: 'arin.a', check_response: { check_passed: true, check_type: 'dcv', errors: null, details: details(['owner@example.net']) } }]));
    const flat = parseAnswer(check, 200, answer([{ perspective_code: 'arin.a', check_passed: true, check_type: 'dcv', details: details(['owner@example.net']) }]));
    for (const a of [nested, flat]) {
      assert.equal(a.results[0]!.corroborates, true);
      assert.equal(a.results[0]!.rir, 'ARIN');
      assert.equal(a.results[0]!.foundAt, '_validation-contactemail.example.com');
    }
  });

  test('check_passed alone is not enough: the address must be among the records seen, and no errors', () => {
    const a = parseAnswer(
      check,
      200,
      answer([
        { perspective_code: 'arin.a', check_passed: true, details: details(['other@example.net']) },
        { perspective_code: 'arin.b', check_passed: true, details: {} },
        { perspective_code: 'arin.c', check_passed: true, errors: [{ error_type: 'x', error_message: 'y' }], details: details(['owner@example.net']) },
        { perspective_code: 'arin.d', check_passed: false, details: details(['owner@example.net']) },
      ]),
    );
    assert.deepEqual(
      a.results.map((r) => r.corroborates),
      [false, false, false, false],
    );
  });

  for (const [name, status, text] of [
    ['HTTP 500', 500, answer([])],
    ['not JSON', 200, '<html>'],
    ['check_type caa', 200, answer([], { check_type: 'caa' })],
    ['no is_valid', 200, JSON.stringify({ check_type: 'dcv', perspectives: [] })],
    ['another trace_identifier', 200, answer([], { trace_identifier: 'req-2' })],
    ['another target', 200, answer([], { domain_or_ip_target: 'evil.example' })],
    ['another address echoed', 200, answer([], { dcv_check_parameters: { validation_method: 'contact-email-txt', challenge_value: 'x@evil.example' } })],
    ['no perspectives', 200, answer([], { perspectives: undefined })],
    ['a perspective twice', 200, answer([{ perspective_code: 'arin.a', check_passed: true }, { perspective_code: 'arin.a', check_passed: true }])],
    ['more perspectives than asked', 200, answer(Array.from({ length: 7 }, (_, i) => ({ perspective_code: `arin.${i}`, check_passed: true })))],
    ['a perspective without a code', 200, answer([{ check_passed: true }])],
  ] as const) {
    test(`malformed: ${name} → bad-answer`, () => {
      assert.throws(() => parseAnswer(check, status, text), (err: unknown) => err instanceof MpicError && err.kind === 'bad-answer');
    });
  }

  test('the URL: https, or http on loopback only; POST goes to <base>/mpic', () => {
    assert.equal(endpointOf('https://mpic.example/v1/').toString(), 'https://mpic.example/v1/mpic');
    assert.equal(endpointOf('https://mpic.example').toString(), 'https://mpic.example/mpic');
    assert.doesNotThrow(() => checkMpicUrl('http://127.0.0.1:8080'));
    assert.throws(() => checkMpicUrl('http://mpic.example'), /https/);
    assert.throws(() => checkMpicUrl('https://user:pw@mpic.example'), /credentials/);
    assert.throws(() => checkMpicUrl('ftp://mpic.example'), /https/);
  });
});

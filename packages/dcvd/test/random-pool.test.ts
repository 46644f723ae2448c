/**
 * The pooled CSPRNG of src/deps.ts (issue 20): every byte of the source handed out once, in order,
 * across refills; each draw a copy, never a view of the pool; odd sizes refused or served by
 * randomBytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cryptoRandom, pooledRandom } from '../src/deps.ts';

/** A source whose every byte is numbered: byte i of all it ever gave holds i (as a 32-bit word per 4 bytes). */
function numberedSource() {
  let next = 0;
  const given: Buffer[] = [];
  const source = (n: number) => {
    assert.equal(n % 4, 0);
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i += 4) b.writeUInt32BE(next++, i);
    given.push(b);
    return b;
  };
  return { source, given };
}

test('every byte of the source is handed out once and in order, across refills; sizes straddle the pool\u2019s end', () => {
  const { source, given } = numberedSource();
  const random = pooledRandom(source);
  const out: Buffer[] = [];
  for (let i = 0; i < 3000; i++) out.push(random([16, 4, 12, 32][i % 4]!));
  const handed = Buffer.concat(out);
  // What was handed out is the source's bytes with only each pool's unused tail skipped.
  const words = Array.from({ length: handed.length / 4 }, (_, i) => handed.readUInt32BE(i * 4));
  for (let i = 1; i < words.length; i++) {
    assert.ok(words[i]! > words[i - 1]!, `word ${i} (${words[i]}) repeats or goes back from ${words[i - 1]}`);
  }
  assert.ok(given.length > 3, 'the pool was refilled several times');
  // Skipped tails are shorter than the largest draw.
  for (let i = 1; i < words.length; i++) assert.ok(words[i]! - words[i - 1]! <= 32 / 4, `a gap of ${words[i]! - words[i - 1]!} words`);
});

test('a draw is a copy: changing it or the pool changes neither the other', () => {
  const { source, given } = numberedSource();
  const random = pooledRandom(source);
  const a = random(16);
  assert.notEqual(a.buffer, given[0]!.buffer, 'not a view of the pool');
  const b = random(16);
  const before = Buffer.from(b);
  a.fill(0);
  given[0]!.fill(0xff);
  assert.deepEqual(b, before);
});

test('odd sizes: zero, above the pooled size, negative or not whole, none of them moving the pool', () => {
  const { source } = numberedSource();
  const random = pooledRandom(source);
  const first = random(4).readUInt32BE(0);
  assert.equal(random(0).length, 0);
  const big = random(10_000);
  assert.equal(big.length, 10_000);
  assert.notDeepEqual(big.subarray(0, 32), Buffer.alloc(32), 'from randomBytes, not the numbered pool');
  assert.throws(() => random(-1), RangeError);
  assert.throws(() => random(Number.NaN), RangeError);
  random(1.5); // randomBytes' own answer (it rounds), not the pool's
  assert.equal(random(4).readUInt32BE(0), first + 1, 'the pool continues where it was');
  assert.equal(cryptoRandom.bytes(32).length, 32);
  assert.notDeepEqual(cryptoRandom.bytes(16), cryptoRandom.bytes(16));
});

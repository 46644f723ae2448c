/**
 * The pooled CSPRNG of src/deps.ts (issue 20): every byte handed out once, each caller's bytes its
 * own, large requests and refills across the pool's end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cryptoRandom, pooledRandom } from '../src/deps.ts';

test('no two draws share bytes, across several refills of the 4 KiB pool', () => {
  const random = pooledRandom();
  const seen = new Set<string>();
  // 16-byte draws over 40 KiB, with odd sizes between them so that draws straddle the pool's end.
  for (let i = 0; i < 2560; i++) {
    const id = random(16).toString('hex');
    assert.equal(seen.has(id), false, `draw ${i} repeated an earlier one`);
    seen.add(id);
    assert.equal(random(1 + (i % 7)).length, 1 + (i % 7));
  }
});

test('a caller wiping its draw changes no other draw, before or after it', () => {
  const random = pooledRandom();
  const a = random(16);
  const b = random(16);
  const kept = Buffer.from(a);
  const before = Buffer.from(b);
  b.fill(0);
  a.fill(0);
  assert.notDeepEqual(kept, Buffer.alloc(16));
  assert.deepEqual(random(16).equals(Buffer.alloc(16)), false);
  assert.deepEqual(b, Buffer.alloc(16));
  assert.notDeepEqual(before, Buffer.alloc(16));
});

test('requests larger than the pooled size and of zero bytes', () => {
  const random = pooledRandom();
  assert.equal(random(0).length, 0);
  const big = random(10_000);
  assert.equal(big.length, 10_000);
  assert.notDeepEqual(big.subarray(0, 32), Buffer.alloc(32));
  assert.equal(cryptoRandom.bytes(32).length, 32);
  assert.notDeepEqual(cryptoRandom.bytes(16), cryptoRandom.bytes(16));
});

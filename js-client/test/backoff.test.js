// Full-jitter backoff (protocol.md 8.2): delay = random() * min(cap, base * 2**attempt).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { fullJitter } from '../src/backoff.js';

const ALMOST_ONE = 1 - Number.EPSILON / 2; // the largest double below 1

test('random() = 0 gives no delay, at any attempt', () => {
  for (const attempt of [0, 1, 5, 30, 100]) assert.equal(fullJitter(attempt, 0.5, 30, () => 0), 0);
});

test('the bound doubles per attempt from base until cap', () => {
  const bound = (attempt) => fullJitter(attempt, 0.5, 30, () => 1);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(bound), [0.5, 1, 2, 4, 8, 16, 30, 30]);
});

test('random() just below 1 stays strictly below the bound', () => {
  for (const [attempt, bound] of [[0, 0.5], [1, 1], [3, 4], [6, 30], [20, 30]]) {
    const delay = fullJitter(attempt, 0.5, 30, () => ALMOST_ONE);
    assert.ok(delay < bound, `attempt ${attempt}: ${delay} < ${bound}`);
    assert.ok(delay > bound * 0.999, `attempt ${attempt}: ${delay} close to ${bound}`);
  }
});

test('delays are uniform in [0, bound): scaled by random()', () => {
  assert.equal(fullJitter(2, 0.5, 30, () => 0.25), 0.5);
  assert.equal(fullJitter(0, 2, 30, () => 0.5), 1);
});

test('the defaults are base 0.5 s and cap 30 s', () => {
  assert.equal(fullJitter(0, undefined, undefined, () => 1), 0.5);
  assert.equal(fullJitter(50, undefined, undefined, () => 1), 30);
  const delay = fullJitter(3);
  assert.ok(delay >= 0 && delay < 4);
});

test('attempt 100 (and beyond) does not overflow: capped, finite', () => {
  for (const attempt of [64, 100, 1024, 1e6]) {
    const delay = fullJitter(attempt, 0.5, 30, () => ALMOST_ONE);
    assert.ok(Number.isFinite(delay) && delay < 30 && delay > 29.9, `attempt ${attempt}: ${delay}`);
  }
  // Even a cap of Infinity stays finite.
  assert.ok(Number.isFinite(fullJitter(100, 0.5, Infinity, () => 0.5)));
});

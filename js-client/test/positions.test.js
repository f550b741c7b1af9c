// Positions and cursors (protocol.md 4): src/positions.js, the mirror of
// rtlink/positions.py (tests/test_positions.py checks both give the same answers).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { formatCursor, isAfter, parseCursor } from '../src/positions.js';
import { pos } from './fakes.js';
import { isInvalidInput } from './helpers.js';

test('isAfter: new unless the same epoch at or below the last offset', () => {
  assert.equal(isAfter(pos('e', 1), null), true); // nothing delivered yet
  assert.equal(isAfter(pos('e', 6), pos('e', 5)), true);
  assert.equal(isAfter(pos('e', 9), pos('e', 5)), true); // after a gap: still new
  assert.equal(isAfter(pos('e', 5), pos('e', 5)), false); // a repeat
  assert.equal(isAfter(pos('e', 4), pos('e', 5)), false); // the replay/live seam
  assert.equal(isAfter(pos('f', 1), pos('e', 5)), true); // a new epoch is adopted
  assert.equal(isAfter(pos('f', 9), pos('e', 5)), true);
});

test('a cursor is written as compact JSON and read back', () => {
  const cursor = { news: pos('a1b2c3d4', 41), 'chat:lobby': null };
  const text = formatCursor(cursor);
  assert.equal(text, '{"news":{"epoch":"a1b2c3d4","offset":41},"chat:lobby":null}');
  assert.deepEqual(parseCursor(text), cursor);
  assert.deepEqual(parseCursor(''), {});
  assert.deepEqual(parseCursor(null), {});
  // Extra fields of a position are ignored; a repeated channel counts with its last value.
  assert.deepEqual(parseCursor('{"a":{"epoch":"e","offset":1,"x":2},"b":null,"b":{"epoch":"f","offset":0}}'),
    { a: pos('e', 1), b: pos('f', 0) });
});

test('a malformed cursor is InvalidInput, in the words of protocol.md 4.2', () => {
  const cases = {
    '[': 'subs must be a JSON object',
    '[]': 'subs must be a JSON object of channel -> position or null',
    null: 'subs must be a JSON object of channel -> position or null',
    '{"a b":null}': "invalid channel 'a b'",
    '{"a":1}': 'position must be a map',
    '{"a":{"epoch":"","offset":1}}': 'position.epoch must be a non-empty string',
    '{"a":{"epoch":"e","offset":-1}}': 'position.offset must be an integer >= 0',
    '{"a":{"epoch":"e","offset":1.5}}': 'position.offset must be an integer >= 0',
    '{"a":null,"b":null,"c":null}': 'at most 2 subscriptions',
  };
  for (const [text, message] of Object.entries(cases)) {
    assert.throws(() => parseCursor(text, 2), (error) => isInvalidInput(error) && error.message == message, text);
  }
});

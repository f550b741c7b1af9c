// Tests of src/msgpack.js against vectors generated from Python's msgpack
// (test/vectors/make_msgpack_vectors.py), plus direct tests of what vectors cannot show.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { encode, decode } from '../src/msgpack.js';

const vectors = JSON.parse(
  readFileSync(new URL('./vectors/msgpack.json', import.meta.url), 'utf8'),
);

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const bytes = (h) => new Uint8Array(Buffer.from(h, 'hex'));

// The value a `gen` vector stands for (see "about" in msgpack.json).
const generate = ({ kind, unit, count }) => {
  if (kind == 'str') return unit.repeat(count);
  if (kind == 'array') return Array(count).fill(unit);
  if (kind == 'map') {
    const map = {};
    for (let i = 0; i < count; i++) map[unit + i] = i;
    return map;
  }
  throw Error('unknown gen kind ' + kind);
};

for (const v of vectors.encode) {
  test(`encode: ${v.name}`, () => {
    if (v.gen) {
      const value = generate(v.gen);
      const out = encode(value);
      assert.equal(out.length, v.size);
      assert.equal(hex(out.subarray(0, 8)), v.head);
      assert.equal(createHash('sha256').update(out).digest('hex'), v.sha256);
      assert.deepEqual(decode(out), [value]);
    } else {
      assert.equal(hex(encode(v.value)), v.hex);
      assert.deepEqual(decode(bytes(v.hex)), [v.value]);
    }
  });
}

for (const v of vectors.decode) {
  test(`decode: ${v.name}`, () => {
    assert.deepEqual(decode(bytes(v.hex)), v.all ? v.value : [v.value]);
  });
}

for (const v of vectors.invalid) {
  test(`invalid: ${v.name}`, () => {
    assert.throws(() => decode(bytes(v.hex)), (e) => e instanceof Error && /^msgpack: /.test(e.message));
  });
}

test('200 frames concatenated round-trip', () => {
  const frames = [];
  for (let i = 0; i < 200; i++) {
    frames.push({
      type: 'publication',
      channel: 'chat:' + (i % 7),
      data: i % 3 ? { text: 'é'.repeat(i), n: i * 1000003, f: i / 7 } : [i, 1 - i, null, i % 2 == 0],
      position: { epoch: '9f3c2a1b', offset: 2 ** 40 + i },
    });
  }
  const parts = frames.map(encode);
  const message = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) message.set(p, at), (at += p.length);
  assert.deepEqual(decode(message), frames);
});

test('decode reads a Uint8Array view at an offset', () => {
  const whole = bytes('ff' + hex(encode({ a: [1, 2.5, 'x'] })) + 'ff');
  assert.deepEqual(decode(whole.subarray(1, whole.length - 1)), [{ a: [1, 2.5, 'x'] }]);
});

test('__proto__ key decodes as an own property and leaves the prototype alone', () => {
  // {"__proto__": {"polluted": true}}
  const [obj] = decode(bytes('81a95f5f70726f746f5f5f81a8706f6c6c75746564c3'));
  assert.equal(Object.getPrototypeOf(obj), Object.prototype);
  assert.ok(Object.hasOwn(obj, '__proto__'));
  assert.deepEqual(Object.keys(obj), ['__proto__']);
  assert.equal(obj.polluted, undefined);
  assert.equal({}.polluted, undefined);
  assert.deepEqual(Object.getOwnPropertyDescriptor(obj, '__proto__'), {
    value: { polluted: true },
    writable: true,
    enumerable: true,
    configurable: true,
  });
});

test('encode throws on values outside the protocol', () => {
  for (const bad of [undefined, NaN, Infinity, -Infinity, () => 1, Symbol('s'), 1n]) {
    assert.throws(() => encode(bad), /^Error: msgpack: /);
    assert.throws(() => encode({ a: [bad] }), /^Error: msgpack: /);
  }
  assert.throws(() => encode({ a: undefined }), /^Error: msgpack: /);
  // A hole in an array is undefined, not skipped.
  assert.throws(() => encode([1, , 3]), /^Error: msgpack: /);
});

test('-0 is written as the integer 0, as JSON.stringify writes it', () => {
  // Python writes -0.0 as float64 (cb80...); JS cannot tell -0 from a computed 0 cheaply,
  // and the JSON codec sends 0 too. Decoding float64 -0.0 gives -0 (a decode vector).
  assert.equal(hex(encode(-0)), '00');
});

test('unsafe integers are written as float64', () => {
  assert.equal(hex(encode(2 ** 53)), 'cb4340000000000000');
  assert.equal(hex(encode(-(2 ** 60))), 'cbc3b0000000000000');
});

test('nesting: 1000 deep decodes, 1001 deep throws', () => {
  const deep = (n) => bytes('91'.repeat(n - 1) + '90');
  let value = decode(deep(1000))[0];
  let depth = 1;
  while (value.length) (value = value[0]), depth++;
  assert.equal(depth, 1000);
  assert.throws(() => decode(deep(1001)), /^Error: msgpack: /);
  // Maps count too.
  assert.throws(() => decode(bytes('81a161'.repeat(1000) + '90')), /^Error: msgpack: /);
  decode(bytes('81a161'.repeat(999) + '90'));
});

test('a large buffer round-trips and grows the output', () => {
  const value = { text: 'x'.repeat(300000), list: Array.from({ length: 70000 }, (_, i) => i - 35000) };
  assert.deepEqual(decode(encode(value)), [value]);
});

// The outbox (protocol.md 8.4): publishes wait while offline, are sent on welcome
// oldest first, resent with the same key after a drop, bounded, validated locally,
// refused or retried by error code, and optionally kept in storage.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Client, RtlinkError } from '../src/index.js';
import { createFakes, pos, sleep, waitFor, welcome } from './fakes.js';
import { connectWebSocket, isInvalidInput, quiet, rejection, settled, setup, start, track, waitState, watchRetries } from './helpers.js';

const ack = (frame, offset) => ({ type: 'ack', id: frame.id, position: pos('e', offset) });

test('a publish made while disconnected waits, and is sent after welcome', async (t) => {
  const { client, fakes } = setup(t);
  const published = track(client.publish('chat', 'offline'));
  assert.equal(client.outboxSize, 1);
  await sleep(10);
  assert.equal(published.result, undefined, 'waits');
  start(client);
  const ws = await fakes.nextSocket();
  await ws.open();
  await sleep(10);
  assert.deepEqual(ws.sent, [], 'not before welcome');
  await ws.serverSends(welcome());
  await waitFor(() => ws.sent.length == 1);
  assert.equal(ws.sent[0].data, 'offline');
  await ws.serverSends(ack(ws.sent[0], 1));
  assert.deepEqual(await settled(published), ['resolved', pos('e', 1)]);
});

test('on welcome: subscribes first, then the outbox oldest first', async (t) => {
  const { client, fakes } = setup(t);
  for (const n of [1, 2, 3]) client.publish('chat', n).catch(() => {});
  client.subscribe('chat');
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 4);
  assert.deepEqual(
    ws.sent.map(({ type, data }) => [type, data]),
    [['subscribe', undefined], ['publish', 1], ['publish', 2], ['publish', 3]],
  );
});

test('an attempt in flight when the connection drops is sent again: same key, new id', async (t) => {
  const { client, fakes } = setup(t);
  const ws1 = await connectWebSocket(client, fakes);
  const published = track(client.publish('chat', 'x'));
  await waitFor(() => ws1.sent.length == 1);
  const [first] = ws1.sent;
  await ws1.serverCloses(1006);
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitFor(() => ws2.sent.length == 1);
  const [second] = ws2.sent;
  assert.equal(second.key, first.key);
  assert.notEqual(second.id, first.id);
  assert.deepEqual([second.channel, second.data], ['chat', 'x']);
  assert.equal(published.result, undefined);
  await ws2.serverSends(ack(second, 9));
  assert.deepEqual(await settled(published), ['resolved', pos('e', 9)]);
  assert.equal(client.outboxSize, 0);
});

test('an ack on the old connection does not count on the new one (ids are per connection)', async (t) => {
  const { client, fakes } = setup(t);
  const ws1 = await connectWebSocket(client, fakes);
  const published = track(client.publish('chat', 'x'));
  await waitFor(() => ws1.sent.length == 1);
  await ws1.serverCloses(1006);
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends([welcome(), ack(ws1.sent[0], 1)]);
  await sleep(10);
  assert.equal(published.result, undefined);
  assert.equal(client.outboxSize, 1);
});

test('outboxLimit reached: publish rejects OutboxFull at once, nothing queued', async (t) => {
  const { client, fakes } = setup(t, { outboxLimit: 2 });
  client.publish('c', 1).catch(() => {});
  client.publish('c', 2).catch(() => {});
  const error = await rejection(client.publish('c', 3));
  assert.ok(error instanceof RtlinkError);
  assert.deepEqual([error.name, error.code], ['OutboxFull', null]);
  assert.equal(client.outboxSize, 2);
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 2);
  assert.deepEqual(ws.sent.map((frame) => frame.data), [1, 2]);
  // Room again once one is acknowledged.
  await ws.serverSends(ack(ws.sent[0], 1));
  const fourth = track(client.publish('c', 4));
  await waitFor(() => ws.sent.length == 3);
  assert.equal(fourth.result, undefined);
});

test('a publish with a key already waiting is refused; the first one goes on', async (t) => {
  const { client, fakes } = setup(t);
  const first = track(client.publish('c', 1, { key: 'k1' }));
  const error = await rejection(client.publish('c', 2, { key: 'k1' }));
  assert.ok(error instanceof Error);
  assert.equal(client.outboxSize, 1);
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 1);
  assert.deepEqual([ws.sent[0].key, ws.sent[0].data], ['k1', 1]);
  await ws.serverSends(ack(ws.sent[0], 1));
  assert.equal((await settled(first))[0], 'resolved');
  // Acknowledged: the key may be used again.
  client.publish('c', 3, { key: 'k1' }).catch(() => {});
  await waitFor(() => ws.sent.length == 2);
});

test('error 403: the publish rejects with PublishError 403 and leaves the outbox', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const published = track(client.publish('news', 1));
  await waitFor(() => ws.sent.length == 1);
  await ws.serverSends({ type: 'error', code: 403, message: 'no', id: ws.sent[0].id, channel: 'news' });
  const [how, error] = await settled(published);
  assert.equal(how, 'rejected');
  assert.ok(error instanceof RtlinkError);
  assert.deepEqual([error.name, error.code, error.message], ['PublishError', 403, 'no']);
  assert.equal(client.outboxSize, 0);
  await ws.serverCloses(1001);
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await sleep(20);
  assert.deepEqual(ws2.sent, [], 'a refused publish is not sent again');
});

test('error 503: the publish is sent again later with the same key', async (t) => {
  t.mock.method(Math, 'random', () => 0.5);
  const { client, fakes } = setup(t, { backoffBase: 0.4, backoffCap: 1 });
  const ws = await connectWebSocket(client, fakes);
  const published = track(client.publish('chat', 'x'));
  await waitFor(() => ws.sent.length == 1);
  const [first] = ws.sent;
  await ws.serverSends({ type: 'error', code: 503, message: 'busy', id: first.id, channel: 'chat' });
  await sleep(40);
  assert.equal(ws.sent.length, 1, 'not at once');
  assert.equal(client.outboxSize, 1);
  await waitFor(() => ws.sent.length == 2);
  const [, retry] = ws.sent;
  assert.equal(retry.key, first.key);
  assert.notEqual(retry.id, first.id);
  await ws.serverSends(ack(retry, 2));
  assert.deepEqual(await settled(published), ['resolved', pos('e', 2)]);
});

test('error 429 is temporary too', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const published = track(client.publish('chat', 'x'));
  await waitFor(() => ws.sent.length == 1);
  await ws.serverSends({ type: 'error', code: 429, message: 'slow down', id: ws.sent[0].id, channel: 'chat' });
  await waitFor(() => ws.sent.length == 2);
  await ws.serverSends(ack(ws.sent[1], 1));
  assert.equal((await settled(published))[0], 'resolved');
});

test('a batch refused with 429 is retried in rounds: one retry pending, the attempt growing per round', async (t) => {
  t.mock.method(Math, 'random', () => 0.5); // a round waits 0.5 * 100 ms * 2 ** attempt
  const { client, fakes } = setup(t, { backoffBase: 0.1, backoffCap: 10 });
  const retries = watchRetries(t, (ms) => client.state == 'connected' && ms >= 50 && ms < 1000);
  const ws = await connectWebSocket(client, fakes);
  const published = [1, 2, 3, 4, 5].map((n) => track(client.publish('chat', n)));
  let batch = await waitFor(() => ws.sent.length == 5 && ws.sent.slice());
  const keys = batch.map((frame) => frame.key);
  const refuse = (frames) =>
    ws.serverSends(frames.map(({ id }) => ({ type: 'error', code: 429, message: 'slow down', id, channel: 'chat' })));
  for (let round = 1; round <= 3; round++) {
    const before = ws.sent.length;
    await refuse(batch); // five error frames: one retry round
    assert.equal(retries.scheduled.length, round);
    await waitFor(() => ws.sent.length == before + 5);
    batch = ws.sent.slice(before);
    assert.deepEqual(batch.map((frame) => frame.key), keys, 'the batch again, once, oldest first');
  }
  assert.deepEqual(retries.scheduled, [50, 100, 200], 'the attempt grows once per round');
  assert.equal(retries.mostPending, 1);
  await ws.serverSends(batch.map((frame, index) => ack(frame, index + 1)));
  for (const [index, tracked] of published.entries()) {
    assert.deepEqual(await settled(tracked), ['resolved', pos('e', index + 1)]);
  }
  assert.equal(ws.sent.length, 20);
  assert.equal(retries.pending, 0);

  // The acks started the backoff over; close() drops a pending retry.
  const last = track(client.publish('chat', 6));
  await waitFor(() => ws.sent.length == 21);
  await refuse(ws.sent.slice(20));
  assert.deepEqual(retries.scheduled, [50, 100, 200, 50]);
  client.close();
  assert.equal(retries.pending, 0);
  assert.equal((await settled(last))[1].name, 'ClientClosed');
});

test('a retry pending when the connection drops is dropped: the next welcome sends the outbox once', async (t) => {
  t.mock.method(Math, 'random', () => 0.5);
  const { client, fakes } = setup(t, { backoffBase: 1, backoffCap: 10 }); // the retry would wait 500 ms
  const retries = watchRetries(t, (ms) => client.state == 'connected' && ms >= 50 && ms < 1000);
  const ws = await connectWebSocket(client, fakes);
  const published = track(client.publish('chat', 'x'));
  await waitFor(() => ws.sent.length == 1);
  await ws.serverSends({ type: 'error', code: 503, message: 'busy', id: ws.sent[0].id, channel: 'chat' });
  assert.equal(retries.pending, 1);
  await ws.serverCloses(1001);
  assert.equal(retries.pending, 0);
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitFor(() => ws2.sent.length == 1);
  await ws2.serverSends(ack(ws2.sent[0], 1));
  assert.deepEqual(await settled(published), ['resolved', pos('e', 1)]);
  assert.deepEqual([ws.sent.length, ws2.sent.length, retries.pending], [1, 1, 0]);
});

test('a publish larger than max_message_size rejects with PublishError 413, nothing sent', async (t) => {
  const { client, fakes } = setup(t);
  // The first request of the client has id 1: the publish frame of 'x' * n is
  // exactly this long.
  const frameSize = (n, id) => JSON.stringify({ type: 'publish', id, channel: 'c', data: 'x'.repeat(n), key: 'k' }).length;
  const limit = frameSize(100, 1);
  const ws = await connectWebSocket(client, fakes, { max_message_size: limit });
  const exact = track(client.publish('c', 'x'.repeat(100), { key: 'k' }));
  await waitFor(() => ws.sent.length == 1);
  assert.equal(ws.messages[0].length, limit, 'a message of exactly max_message_size is allowed');
  assert.equal(frameSize(101, 2), limit + 1);
  const [how, error] = await settled(track(client.publish('c', 'x'.repeat(101), { key: 'l' })));
  assert.equal(how, 'rejected');
  assert.ok(error instanceof RtlinkError);
  assert.deepEqual([error.name, error.code], ['PublishError', 413]);
  await sleep(10);
  assert.equal(ws.sent.length, 1, 'the large one was not sent');
  assert.equal(client.outboxSize, 1, 'only the exact one waits');
  assert.equal(exact.result, undefined);
});

test('the size limit counts UTF-8 bytes', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes, { max_message_size: 100 });
  // 40 characters, 120 bytes.
  const error = await rejection(client.publish('c', 'é😀'.repeat(10)));
  assert.deepEqual([error.name, error.code], ['PublishError', 413]);
  assert.deepEqual(ws.sent, []);
});

test('a too large publish made offline rejects with 413 at welcome', async (t) => {
  const { client, fakes } = setup(t);
  const large = track(client.publish('c', 'x'.repeat(500)));
  const small = track(client.publish('c', 'y'));
  const ws = await connectWebSocket(client, fakes, { max_message_size: 200 });
  const [how, error] = await settled(large);
  assert.deepEqual([how, error.code], ['rejected', 413]);
  await waitFor(() => ws.sent.length == 1);
  assert.equal(ws.sent[0].data, 'y');
  assert.equal(small.result, undefined);
});

/** n arrays nested: a top-level array is depth 1. */
const nestedArrays = (n) => {
  let value = [];
  for (let i = 1; i < n; i++) value = [value];
  return value;
};
const nestedObjects = (n) => {
  let value = {};
  for (let i = 1; i < n; i++) value = { a: value };
  return value;
};

test('invalid channel or data is refused locally (InvalidInput), nothing queued', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  class Thing {}
  const invalid = {
    'NaN': NaN,
    'Infinity': Infinity,
    '-Infinity': [-Infinity],
    'undefined': undefined,
    'undefined in an object': { a: undefined },
    'a Date': new Date(0),
    'a Map': new Map(),
    'a class instance': new Thing(),
    'a function': () => 1,
    'a symbol': Symbol('s'),
    'a BigInt': 10n,
    'a lone surrogate': '\ud800',
    'a lone low surrogate in an array': ['ok', '\udc00'],
    'a lone surrogate in a key': { '\ud800': 1 },
    '65 nested arrays': nestedArrays(65),
    '65 nested objects': nestedObjects(65),
    '65 nested, mixed': [{ a: nestedArrays(63) }],
  };
  for (const [what, data] of Object.entries(invalid)) {
    const error = await rejection(client.publish('chat', data));
    assert.ok(isInvalidInput(error), `${what}: ${error}`);
  }
  for (const channel of ['', 'bad channel', 'a*', 'x'.repeat(256), 'é']) {
    const error = await rejection(client.publish(channel, 1));
    assert.ok(isInvalidInput(error), `channel ${channel}`);
  }
  assert.equal(client.outboxSize, 0);
  await sleep(10);
  assert.deepEqual(ws.sent, []);
});

test('a channel that is not a string is refused locally', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  for (const channel of [42, null, undefined, ['chat'], { toString: () => 'chat' }]) {
    const error = await rejection(client.publish(channel, 1), 200);
    assert.ok(isInvalidInput(error), `publish to ${String(channel)}: ${error}`);
    assert.throws(() => client.subscribe(channel), isInvalidInput, `subscribe to ${String(channel)}`);
  }
  await sleep(10);
  assert.deepEqual(ws.sent, []);
});

test('idempotency keys follow the protocol rule (1-128 characters, no lone surrogates), as in Python', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  for (const key of ['', 'k'.repeat(129), '\ud800', 'a\udfffb', 5, true, ['k'], {}]) {
    const error = await rejection(client.publish('chat', 1, { key }), 200);
    assert.ok(isInvalidInput(error), `key ${JSON.stringify(key)}: ${error}`);
  }
  assert.equal(client.outboxSize, 0);
  // 128 characters (code points, not UTF-16 units), or none: sent.
  for (const key of ['k'.repeat(128), '😀'.repeat(128), undefined, null]) client.publish('chat', 1, { key }).catch(() => {});
  await waitFor(() => ws.sent.length == 4);
  const keys = ws.sent.map((frame) => frame.key);
  assert.deepEqual(keys.slice(0, 2), ['k'.repeat(128), '😀'.repeat(128)]);
  for (const key of keys.slice(2)) assert.match(key, /^[0-9a-f]{32}$/);
  // A key already waiting is refused too.
  const error = await rejection(client.publish('chat', 2, { key: 'k'.repeat(128) }), 200);
  assert.ok(isInvalidInput(error) && /already waiting/.test(error.message));
});

test('valid data is accepted, including 64 nested arrays or objects', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const bare = Object.create(null);
  bare.k = 'v';
  const valid = [null, true, false, 0, -1.5, 2 ** 53, '', 'é😀\n"', [], {}, { a: [1, { b: null }] }, bare, nestedArrays(64), nestedObjects(64), [1, , 3]];
  for (const data of valid) client.publish('chat', data).catch(() => {});
  await waitFor(() => ws.sent.length == valid.length);
  assert.deepEqual(ws.sent[12].data, nestedArrays(64));
  assert.deepEqual(ws.sent[13].data, nestedObjects(64));
  assert.deepEqual(ws.sent[11].data, { k: 'v' });
  assert.equal(client.outboxSize, valid.length);
});

test('close(): waiting publishes (sent or not) reject with ClientClosed 1000', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const inFlight = track(client.publish('c', 1));
  await waitFor(() => ws.sent.length == 1);
  await ws.serverCloses(1006);
  await waitState(client, 'disconnected');
  const waiting = track(client.publish('c', 2));
  client.close();
  for (const published of [inFlight, waiting]) {
    const [how, error] = await settled(published);
    assert.equal(how, 'rejected');
    assert.ok(error instanceof RtlinkError);
    assert.deepEqual([error.name, error.code], ['ClientClosed', 1000]);
  }
  assert.equal(client.outboxSize, 0);
});

// --- persistence ---------------------------------------------------------------------

test("persist: waiting publishes are kept in storage as [[channel, data, key], ...]", async (t) => {
  const { client, fakes } = setup(t, { persist: 'outbox' });
  client.publish('a', { n: 1 }, { key: 'k1' }).catch(() => {});
  client.publish('b', [2], { key: 'k2' }).catch(() => {});
  assert.deepEqual(fakes.storage.outbox('outbox'), [['a', { n: 1 }, 'k1'], ['b', [2], 'k2']]);
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 2);
  await ws.serverSends(ack(ws.sent[0], 1));
  assert.deepEqual(fakes.storage.outbox('outbox'), [['b', [2], 'k2']]);
  await ws.serverSends(ack(ws.sent[1], 2));
  assert.equal(fakes.storage.outbox('outbox'), null, 'removed once all are acknowledged');
});

test('persist: a new client with the same storage and key sends them after welcome, same keys', async (t) => {
  const warnings = quiet(t);
  const fakes = createFakes();
  // A page that published offline and went away (never connected, never closed).
  const { client: before } = setup(t, { fakes, persist: 'outbox' });
  before.publish('a', 'one').catch(() => {});
  before.publish('b', 'two').catch(() => {});
  const keys = fakes.storage.outbox('outbox').map(([, , key]) => key);
  assert.equal(keys.length, 2);
  assert.match(keys[0], /^[0-9a-f]{32}$/);
  // The reloaded page.
  const { client: after } = setup(t, { fakes, persist: 'outbox' });
  assert.equal(after.outboxSize, 2);
  const ws = await connectWebSocket(after, fakes);
  await waitFor(() => ws.sent.length == 2);
  assert.deepEqual(ws.sent.map(({ channel, data, key }) => [channel, data, key]), [['a', 'one', keys[0]], ['b', 'two', keys[1]]]);
  await ws.serverSends([ack(ws.sent[0], 1), ack(ws.sent[1], 2)]);
  assert.equal(fakes.storage.outbox('outbox'), null);
  assert.equal(after.outboxSize, 0);
  assert.deepEqual(warnings, []);
});

test('persist: restored publishes that fail for good are logged; other keys are left alone', async (t) => {
  const warnings = quiet(t);
  const fakes = createFakes();
  fakes.storage.setItem('outbox', JSON.stringify([['news', 1, 'k1']]));
  fakes.storage.setItem('other', 'untouched');
  const { client } = setup(t, { fakes, persist: 'outbox' });
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 1);
  assert.equal(ws.sent[0].key, 'k1');
  await ws.serverSends({ type: 'error', code: 403, message: 'no', id: ws.sent[0].id, channel: 'news' });
  await waitFor(() => warnings.length == 1);
  assert.equal(fakes.storage.getItem('outbox'), null, 'taken over');
  assert.equal(fakes.storage.outbox('outbox'), null);
  assert.equal(fakes.storage.getItem('other'), 'untouched');
});

test('persist: unreadable storage content or a throwing storage does not break the client', async (t) => {
  const fakes = createFakes();
  fakes.storage.setItem('outbox', '{not json');
  const { client } = setup(t, { fakes, persist: 'outbox' });
  assert.equal(client.outboxSize, 0);
  const throwing = { getItem() { throw new Error('denied'); }, setItem() { throw new Error('full'); }, removeItem() { throw new Error('denied'); } };
  const other = new Client('http://test/rt', { WebSocket: fakes.WebSocket, storage: throwing, persist: 'outbox', transports: ['websocket'] });
  t.after(() => other.close());
  other.publish('c', 1).catch(() => {});
  assert.equal(other.outboxSize, 1);
});

test('without persist nothing is written to storage but the transport memory', async (t) => {
  const { client, fakes } = setup(t);
  client.publish('c', 1).catch(() => {});
  await connectWebSocket(client, fakes);
  assert.deepEqual([...fakes.storage.items.keys()], ['rtlink:transports']);
});

test('persist: the clients of several tabs share a key, each writing an item of its own', async (t) => {
  const fakes = createFakes();
  fakes.storage.setItem('outbox', JSON.stringify([['old', 0, 'k0']])); // an older client's item
  fakes.storage.setItem('outboxes', 'another key: left alone');
  const { client: a } = setup(t, { fakes, persist: 'outbox' }); // takes k0 over
  a.publish('a', 1, { key: 'ka' }).catch(() => {});
  const { client: b } = setup(t, { fakes, persist: 'outbox' }); // takes k0 and ka over too
  b.publish('b', 2, { key: 'kb' }).catch(() => {});
  a.publish('a', 3, { key: 'ka2' }).catch(() => {}); // a writes its own again
  const items = () => [...fakes.storage.items.keys()].filter((name) => name.startsWith('outbox ')).map((name) => fakes.storage.json(name).map(([, , key]) => key));
  assert.deepEqual(items().sort(), [['k0', 'ka', 'ka2'], ['k0', 'ka', 'kb']]);
  assert.equal(fakes.storage.getItem('outbox'), null);
  assert.equal(fakes.storage.getItem('outboxes'), 'another key: left alone');
  // a's publishes are acknowledged: they leave a's item; b's still holds its copies.
  const ws = await connectWebSocket(a, fakes);
  await waitFor(() => ws.sent.length == 3);
  await ws.serverSends(ws.sent.map((frame, index) => ack(frame, index + 1)));
  assert.equal(a.outboxSize, 0);
  assert.deepEqual(items(), [['k0', 'ka', 'kb']]);
  // A third page takes over what is left (b, if still open, sends it too: same keys).
  const { client: c } = setup(t, { fakes, persist: 'outbox' });
  assert.equal(c.outboxSize, 3);
});

// The named-event emitter of the client and its subscriptions.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Events } from '../src/events.js';
import { pos, publication, waitFor } from './fakes.js';
import { connectWebSocket, quiet, setup } from './helpers.js';

test('on() with an unknown event name throws', (t) => {
  const { client } = setup(t);
  assert.throws(() => client.on('message', () => {}), /unknown event/);
  assert.throws(() => client.on('State', () => {}), /unknown event/);
  const subscription = client.subscribe('chat');
  assert.throws(() => subscription.on('state', () => {}), /unknown event/);
  assert.throws(() => subscription.on('', () => {}), /unknown event/);
  for (const name of ['message', 'subscribed', 'error']) subscription.on(name, () => {});
});

test('on() with a name inherited from Object.prototype throws "unknown event" too', () => {
  for (const name of ['toString', 'constructor', 'hasOwnProperty', '__proto__']) {
    assert.throws(() => new Events(['a']).on(name, () => {}), /unknown event/, name);
  }
});

test('a throwing callback does not break delivery to the other callbacks (logged)', async (t) => {
  const logged = quiet(t);
  const { client, fakes } = setup(t);
  const seen = [];
  client.on('state', () => {
    throw new Error('state callback bug');
  });
  client.on('state', ({ newState }) => seen.push(newState));
  const subscription = client.subscribe('chat');
  const messages = [];
  subscription.on('message', () => {
    throw new Error('message callback bug');
  });
  subscription.on('message', (message) => messages.push(message.position.offset));
  const ws = await connectWebSocket(client, fakes);
  assert.deepEqual(seen, ['connecting', 'connected']);
  await waitFor(() => ws.sent.length == 1);
  await ws.serverSends([
    { type: 'subscribed', id: ws.sent[0].id, channel: 'chat', recovered: true, position: pos('e', 0) },
    publication('chat', 'e', 1),
    publication('chat', 'e', 2),
  ]);
  assert.deepEqual(messages, [1, 2], 'later frames of the message are still handled');
  assert.equal(client.state, 'connected');
  assert.deepEqual(subscription.position, pos('e', 2));
  assert.equal(logged.filter(([kind]) => kind == 'error').length, 4);
});

test('the remover returned by on() removes that callback only, once', () => {
  const events = new Events(['x']);
  const calls = [];
  const callback = (value) => calls.push(['a', value]);
  const removeA = events.on('x', callback);
  events.on('x', (value) => calls.push(['b', value]));
  events._emit('x', 1);
  removeA();
  events._emit('x', 2);
  removeA(); // twice: harmless
  events._emit('x', 3);
  assert.deepEqual(calls, [['a', 1], ['b', 1], ['b', 2], ['b', 3]]);
});

test('the same callback registered twice is called twice; one remover removes one', () => {
  const events = new Events(['x']);
  let count = 0;
  const callback = () => count++;
  const remove = events.on('x', callback);
  events.on('x', callback);
  events._emit('x');
  assert.equal(count, 2);
  remove();
  events._emit('x');
  assert.equal(count, 3);
});

test('removing a callback while emitting does not skip the others', () => {
  const events = new Events(['x']);
  const calls = [];
  const removeSelf = events.on('x', () => {
    calls.push('a');
    removeSelf();
  });
  events.on('x', () => calls.push('b'));
  events._emit('x');
  events._emit('x');
  assert.deepEqual(calls, ['a', 'b', 'b']);
});

test("the client's remover stops state callbacks", async (t) => {
  const { client, fakes } = setup(t);
  const seen = [];
  const remove = client.on('state', ({ newState }) => seen.push(newState));
  client.connect().catch(() => {});
  const ws = await fakes.nextSocket();
  remove();
  await ws.open();
  await ws.serverSends({ type: 'welcome', version: 1, session: 's', ping_interval: 25, pong_timeout: 10, max_message_size: 65536 });
  await waitFor(() => client.state == 'connected');
  assert.deepEqual(seen, ['connecting']);
});

test("a subscription's remover stops message callbacks", async (t) => {
  const { client, fakes } = setup(t);
  const subscription = client.subscribe('chat');
  const messages = [];
  const remove = subscription.on('message', (message) => messages.push(message.position.offset));
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 1);
  await ws.serverSends([
    { type: 'subscribed', id: ws.sent[0].id, channel: 'chat', recovered: true, position: pos('e', 0) },
    publication('chat', 'e', 1),
  ]);
  remove();
  await ws.serverSends(publication('chat', 'e', 2));
  assert.deepEqual(messages, [1]);
  assert.deepEqual(subscription.position, pos('e', 2), 'still delivered (and tracked) without callbacks');
});

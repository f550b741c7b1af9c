// Subscriptions over WebSocket: positions, resume, de-duplication by offset, epochs,
// confirmation events, refusals and retries (protocol.md 6.2, 8.3).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { RtlinkError } from '../src/index.js';
import { pos, publication, sleep, waitFor, welcome } from './fakes.js';
import { connectWebSocket, isInvalidInput, quiet, rejection, sentOf, setup, waitState, watchRetries } from './helpers.js';

/** A client connected over WebSocket with `channel` subscribed (with `since`), the
 * subscribe answered by `subscribed` at `position` unless `position` is null.
 * Returns what the test needs, with `messages` and `events` recorded. */
async function subscribed(t, { channel = 'chat', since, position = pos('e', 5), recovered = true, options } = {}) {
  const { client, fakes, states } = setup(t, options);
  const subscription = client.subscribe(channel, since ? { since } : {});
  const messages = [];
  const events = [];
  subscription.on('message', (message) => messages.push(message));
  subscription.on('subscribed', (event) => events.push(event));
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 1);
  const [subscribe] = ws.sent;
  if (position) {
    await ws.serverSends({ type: 'subscribed', id: subscribe.id, channel, recovered, position });
  }
  return { client, fakes, states, subscription, messages, events, ws, subscribe };
}

const offsets = (messages) => messages.map(({ position }) => `${position.epoch}:${position.offset}`);

// --- resume and de-duplication -------------------------------------------------------

test('a fresh subscription adopts the position of subscribed: {recovered: true, resumed: false}', async (t) => {
  const { subscription, events } = await subscribed(t);
  await subscription.waitSubscribed();
  assert.deepEqual(subscription.position, pos('e', 5));
  assert.equal(subscription.recovered, true);
  assert.deepEqual(events, [{ recovered: true, resumed: false, position: pos('e', 5), since: undefined }]);
});

test('publications with offset <= position are dropped; later ones delivered in order', async (t) => {
  const { ws, messages, subscription } = await subscribed(t);
  await ws.serverSends([
    publication('chat', 'e', 3),
    publication('chat', 'e', 5),
    publication('chat', 'e', 6, { text: 'six' }),
    publication('chat', 'e', 6),
    publication('chat', 'e', 4),
    publication('chat', 'e', 7),
  ]);
  assert.deepEqual(offsets(messages), ['e:6', 'e:7']);
  assert.deepEqual(messages[0], { channel: 'chat', data: { text: 'six' }, position: pos('e', 6) });
  assert.deepEqual(subscription.position, pos('e', 7));
});

test('a publication of a new epoch is adopted (and then deduplicated in that epoch)', async (t) => {
  const warnings = quiet(t);
  const { ws, messages, subscription } = await subscribed(t);
  await ws.serverSends([
    publication('chat', 'e', 6),
    publication('chat', 'f', 1),
    publication('chat', 'f', 1),
    publication('chat', 'f', 2),
    publication('chat', 'g', 9), // a new epoch not starting at 1: adopted (no warning: the
    // server says recovered=false when it resubscribes, 6.2; the Python client warns)
    publication('chat', 'g', 8),
  ]);
  assert.deepEqual(offsets(messages), ['e:6', 'f:1', 'f:2', 'g:9']);
  assert.deepEqual(subscription.position, pos('g', 9));
  assert.equal(warnings.filter(([kind]) => kind == 'warn').length, 0);
});

test('publications of a channel not subscribed, or not yet confirmed, are dropped', async (t) => {
  const { client, fakes } = setup(t);
  const subscription = client.subscribe('chat');
  const messages = [];
  subscription.on('message', (message) => messages.push(message));
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 1);
  await ws.serverSends([
    publication('chat', 'e', 1), // before subscribed: not confirmed yet
    publication('other', 'e', 2),
    { type: 'subscribed', id: ws.sent[0].id, channel: 'chat', recovered: true, position: pos('e', 1) },
    publication('other', 'e', 3),
    publication('chat', 'e', 2),
  ]);
  assert.deepEqual(offsets(messages), ['e:2']);
});

test('after a reconnect, publications before the new subscribed are dropped', async (t) => {
  const { fakes, ws, messages } = await subscribed(t);
  await ws.serverCloses(1001);
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends([welcome(), publication('chat', 'e', 6)]);
  await waitFor(() => ws2.sent.length == 1);
  assert.deepEqual(messages, [], 'not confirmed on the new connection');
  assert.deepEqual(ws2.sent[0].since, pos('e', 5));
  await ws2.serverSends([
    { type: 'subscribed', id: ws2.sent[0].id, channel: 'chat', recovered: true, position: pos('e', 6) },
    publication('chat', 'e', 6),
  ]);
  assert.deepEqual(offsets(messages), ['e:6']);
});

test('since given and recovered: the position is kept, the replay advances it', async (t) => {
  const { ws, messages, events, subscription, subscribe } = await subscribed(t, {
    since: pos('e', 2),
    position: pos('e', 4),
  });
  assert.deepEqual(subscribe.since, pos('e', 2));
  assert.deepEqual(events, [{ recovered: true, resumed: true, position: pos('e', 4), since: undefined }]);
  assert.deepEqual(subscription.position, pos('e', 2), 'kept until the replay arrives');
  await ws.serverSends([publication('chat', 'e', 3), publication('chat', 'e', 4)]);
  assert.deepEqual(offsets(messages), ['e:3', 'e:4']);
  assert.deepEqual(subscription.position, pos('e', 4));
});

test("recovered false: 'subscribed' says {recovered: false, resumed: true}, the position is adopted", async (t) => {
  const { ws, messages, events, subscription } = await subscribed(t, {
    since: pos('old', 2),
    position: pos('new', 10),
    recovered: false,
  });
  assert.deepEqual(events, [{ recovered: false, resumed: true, position: pos('new', 10), since: undefined }]);
  assert.deepEqual(subscription.position, pos('new', 10));
  assert.equal(subscription.recovered, false);
  await ws.serverSends([publication('chat', 'new', 10), publication('chat', 'new', 11)]);
  assert.deepEqual(offsets(messages), ['new:11']);
});

test('a resubscription after reconnect reports resumed: true', async (t) => {
  const { fakes, ws, events } = await subscribed(t);
  await ws.serverCloses(4002);
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitFor(() => ws2.sent.length == 1);
  await ws2.serverSends({ type: 'subscribed', id: ws2.sent[0].id, channel: 'chat', recovered: false, position: pos('x', 0) });
  assert.deepEqual(events.at(-1), { recovered: false, resumed: true, position: pos('x', 0), since: undefined });
});

test('several subscriptions keep separate positions', async (t) => {
  const { client, fakes } = setup(t);
  const a = client.subscribe('a');
  const b = client.subscribe('b', { since: pos('eb', 1) });
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 2);
  const [sa, sb] = ws.sent;
  await ws.serverSends([
    { type: 'subscribed', id: sa.id, channel: 'a', recovered: true, position: pos('ea', 7) },
    { type: 'subscribed', id: sb.id, channel: 'b', recovered: true, position: pos('eb', 2) },
    publication('b', 'eb', 2),
    publication('a', 'ea', 8),
  ]);
  assert.deepEqual([a.position, b.position], [pos('ea', 8), pos('eb', 2)]);
});

// --- refusals and retries ------------------------------------------------------------

test("a subscribe refused with 403: 'error' event, waitSubscribed rejects, the subscription is removed", async (t) => {
  const { client, ws, subscription, subscribe } = await subscribed(t, { position: null });
  const errors = [];
  subscription.on('error', (error) => errors.push(error));
  const waiting = rejection(subscription.waitSubscribed());
  await ws.serverSends({ type: 'error', code: 403, message: 'forbidden', id: subscribe.id, channel: 'chat' });
  const error = await waiting;
  assert.ok(error instanceof RtlinkError);
  assert.deepEqual([error.name, error.code], ['SubscribeError', 403]);
  assert.deepEqual(errors, [error]);
  // Removed: a second subscribe to the channel is allowed and sent.
  const again = client.subscribe('chat');
  await waitFor(() => sentOf(ws, 'subscribe').length == 2);
  const [, second] = sentOf(ws, 'subscribe');
  assert.equal(second.channel, 'chat');
  assert.notEqual(second.id, subscribe.id);
  await ws.serverSends({ type: 'subscribed', id: second.id, channel: 'chat', recovered: true, position: pos('e', 1) });
  await again.waitSubscribed();
});

test('a refused subscription is not subscribed again on the next connection', async (t) => {
  const { fakes, ws, subscribe } = await subscribed(t, { position: null });
  await ws.serverSends({ type: 'error', code: 404, message: 'unknown channel', id: subscribe.id, channel: 'chat' });
  await ws.serverCloses(1001);
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await sleep(20);
  assert.deepEqual(ws2.sent, []);
});

test('a subscribe refused with 503 is retried after a delay with a new subscribe frame', async (t) => {
  t.mock.method(Math, 'random', () => 0.5);
  const { ws, subscription, subscribe } = await subscribed(t, {
    position: null,
    options: { backoffBase: 0.4, backoffCap: 1 }, // first retry after 0.5 * 0.4 s
  });
  await ws.serverSends({ type: 'error', code: 503, message: 'backend unavailable', id: subscribe.id, channel: 'chat' });
  await sleep(40);
  assert.equal(sentOf(ws, 'subscribe').length, 1, 'not at once');
  await waitFor(() => sentOf(ws, 'subscribe').length == 2);
  const retry = sentOf(ws, 'subscribe')[1];
  assert.equal(retry.channel, 'chat');
  assert.notEqual(retry.id, subscribe.id);
  await ws.serverSends({ type: 'subscribed', id: retry.id, channel: 'chat', recovered: true, position: pos('e', 3) });
  await subscription.waitSubscribed();
  assert.deepEqual(subscription.position, pos('e', 3));
});

test('a 503 retry is dropped when the connection ended meanwhile (the next welcome resubscribes)', async (t) => {
  t.mock.method(Math, 'random', () => 0.5);
  const { fakes, ws, subscribe } = await subscribed(t, { position: null, options: { backoffBase: 0.1, backoffCap: 1 } });
  await ws.serverSends({ type: 'error', code: 503, message: 'later', id: subscribe.id, channel: 'chat' });
  await ws.serverCloses(1001);
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await sleep(120);
  assert.equal(sentOf(ws, 'subscribe').length, 1);
  assert.equal(sentOf(ws2, 'subscribe').length, 1);
});

test('subscribes refused together are retried together in rounds, apart from publish retries', async (t) => {
  t.mock.method(Math, 'random', () => 0.5); // a round waits 0.5 * 100 ms * 2 ** attempt
  const { client, fakes } = setup(t, { backoffBase: 0.1, backoffCap: 10 });
  const retries = watchRetries(t, (ms) => client.state == 'connected' && ms >= 50 && ms < 1000);
  const subscriptions = ['a', 'b', 'c'].map((channel) => client.subscribe(channel));
  const ws = await connectWebSocket(client, fakes);
  let batch = await waitFor(() => sentOf(ws, 'subscribe').length == 3 && sentOf(ws, 'subscribe'));
  const refusals = (frames) => frames.map(({ id, channel }) => ({ type: 'error', code: 503, message: 'later', id, channel }));
  for (let round = 1; round <= 2; round++) {
    await ws.serverSends(refusals(batch));
    assert.equal(retries.scheduled.length, round, 'one retry for the three refusals');
    await waitFor(() => sentOf(ws, 'subscribe').length == 3 * (round + 1));
    batch = sentOf(ws, 'subscribe').slice(3 * round);
    assert.deepEqual(batch.map((frame) => frame.channel), ['a', 'b', 'c']);
  }
  // A publish refused with them has a retry of its own, with its own attempt.
  client.publish('a', 'x').catch(() => {});
  const publish = await waitFor(() => sentOf(ws, 'publish').length == 1 && sentOf(ws, 'publish'));
  await ws.serverSends(refusals([...publish, ...batch]));
  assert.deepEqual(retries.scheduled, [50, 100, 50, 200]);
  assert.equal(retries.mostPending, 2);
  await waitFor(() => sentOf(ws, 'subscribe').length == 12 && sentOf(ws, 'publish').length == 2);
  batch = sentOf(ws, 'subscribe').slice(9);
  await ws.serverSends(batch.map(({ id, channel }) => ({ type: 'subscribed', id, channel, recovered: true, position: pos('e', 0) })));
  await Promise.all(subscriptions.map((subscription) => subscription.waitSubscribed()));
  assert.equal(retries.pending, 0);
  assert.equal(sentOf(ws, 'subscribe').length, 12);
});

test('unsubscribe() while a 503 retry is pending: the channel is not subscribed again', async (t) => {
  t.mock.method(Math, 'random', () => 0.5);
  const { ws, subscription, subscribe } = await subscribed(t, { position: null, options: { backoffBase: 0.1, backoffCap: 1 } });
  await ws.serverSends({ type: 'error', code: 503, message: 'later', id: subscribe.id, channel: 'chat' });
  subscription.unsubscribe();
  await sleep(150);
  assert.deepEqual(sentOf(ws, 'subscribe').length, 1, 'no subscribe after unsubscribe');
});

test('a subscribe refused without channel (400 on an invalid since) removes the subscription', async (t) => {
  const { client, fakes, ws, subscription, subscribe } = await subscribed(t, { since: pos('e', 1), position: null });
  const waiting = rejection(subscription.waitSubscribed());
  await ws.serverSends({ type: 'error', code: 400, message: 'invalid since', id: subscribe.id });
  assert.deepEqual([(await waiting).name, (await waiting).code], ['SubscribeError', 400]);
  await ws.serverCloses(1001);
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await sleep(20);
  assert.deepEqual(sentOf(ws2, 'subscribe'), [], 'the refused subscription is gone');
  assert.doesNotThrow(() => client.subscribe('chat'));
});

// --- subscribe / unsubscribe API -----------------------------------------------------

test('unsubscribe(): unsubscribe frame, later publications dropped, the channel can be subscribed again', async (t) => {
  const { client, ws, subscription, messages } = await subscribed(t);
  subscription.unsubscribe();
  await waitFor(() => sentOf(ws, 'unsubscribe').length == 1);
  const [frame] = sentOf(ws, 'unsubscribe');
  assert.deepEqual(frame, { type: 'unsubscribe', id: frame.id, channel: 'chat' });
  await ws.serverSends([publication('chat', 'e', 6), { type: 'ack', id: frame.id }]);
  assert.deepEqual(messages, []);
  client.subscribe('chat');
  await waitFor(() => sentOf(ws, 'subscribe').length == 2);
});

test('unsubscribe() before confirmation: waitSubscribed rejects; a late subscribed is ignored', async (t) => {
  const { ws, subscription, subscribe, events } = await subscribed(t, { position: null });
  const waiting = rejection(subscription.waitSubscribed());
  subscription.unsubscribe();
  assert.ok(await waiting);
  await ws.serverSends({ type: 'subscribed', id: subscribe.id, channel: 'chat', recovered: true, position: pos('e', 1) });
  assert.deepEqual(events, []);
});

test('unsubscribe() while disconnected sends nothing, and the next welcome leaves it out', async (t) => {
  const { client, fakes } = setup(t);
  const subscription = client.subscribe('gone');
  client.subscribe('kept');
  subscription.unsubscribe();
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 1);
  await sleep(10);
  assert.deepEqual(ws.sent.map((frame) => [frame.type, frame.channel]), [['subscribe', 'kept']]);
});

test('subscribe(): a second subscription to a channel, or an invalid name, throws', async (t) => {
  const { client } = setup(t);
  client.subscribe('ok:chan_1-2.3@x/y=z+w,v#u');
  assert.throws(() => client.subscribe('ok:chan_1-2.3@x/y=z+w,v#u'), (error) => isInvalidInput(error) && /already/.test(error.message));
  for (const bad of ['', 'has space', 'star*', 'q?', 'x'.repeat(256), 'é']) {
    assert.throws(() => client.subscribe(bad), isInvalidInput, JSON.stringify(bad));
  }
  client.subscribe('x'.repeat(255));
});

test('subscribe() on a closed client returns an ended subscription', async (t) => {
  const { client } = setup(t);
  client.close();
  const subscription = client.subscribe('chat');
  const error = await rejection(subscription.waitSubscribed());
  assert.equal(error.name, 'ClientClosed');
  await waitState(client, 'closed');
});

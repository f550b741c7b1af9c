// History on subscribe (`last`, subscribed.since: protocol.md 5.2, 5.3, 8.3) in the core
// client, on every transport, and the opt-in module 'rtlink-client/history'
// (src/history.js: pages read on the connection, reads.js, 5.11).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { history } from '../src/history.js';
import { RtlinkError } from '../src/index.js';
import { pos, publication, waitFor } from './fakes.js';
import { connectSse, connectWebSocket, isInvalidInput, sentOf, settled, setup, track } from './helpers.js';

const offsets = (messages) => messages.map(({ position }) => `${position.epoch}:${position.offset}`);

test("subscribe({last}) sends last on every subscribe; 'all' is 2**53-1", async (t) => {
  const { client, fakes } = setup(t);
  client.subscribe('a', { last: 3 });
  client.subscribe('b', { last: 'all', since: pos('e', 4) });
  client.subscribe('c');
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 3);
  assert.deepEqual(ws.sent.map(({ id, ...frame }) => frame), [
    { type: 'subscribe', channel: 'a', last: 3 },
    { type: 'subscribe', channel: 'b', since: pos('e', 4), last: 2 ** 53 - 1 },
    { type: 'subscribe', channel: 'c' },
  ]);
});

test('subscribed.since sets the position of a fresh or unrecovered subscription; the replay follows', async (t) => {
  const { client, fakes } = setup(t);
  const fresh = client.subscribe('a', { last: 2 });
  const lost = client.subscribe('b', { since: pos('old', 9) });
  const messages = { a: [], b: [] };
  const events = { a: [], b: [] };
  for (const sub of [fresh, lost]) {
    sub.on('message', (message) => messages[sub.channel].push(message));
    sub.on('subscribed', (event) => events[sub.channel].push(event));
  }
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 2);
  const [a, b] = ws.sent;
  await ws.serverSends([
    { type: 'subscribed', id: a.id, channel: 'a', recovered: true, position: pos('e', 7), since: pos('e', 5) },
    publication('a', 'e', 6),
    publication('a', 'e', 7),
    publication('a', 'e', 7), // a repeat at the seam
    { type: 'subscribed', id: b.id, channel: 'b', recovered: false, position: pos('new', 2), since: pos('new', 0) },
    publication('b', 'new', 1),
    publication('b', 'new', 2),
  ]);
  assert.deepEqual(offsets(messages.a), ['e:6', 'e:7']);
  assert.deepEqual(offsets(messages.b), ['new:1', 'new:2']);
  assert.deepEqual(events.a, [{ recovered: true, resumed: false, position: pos('e', 7), since: pos('e', 5) }]);
  assert.deepEqual(events.b, [{ recovered: false, resumed: true, position: pos('new', 2), since: pos('new', 0) }]);
});

test('the cursor of the HTTP transports carries last in the object form (4.2)', async (t) => {
  const { client, fakes } = setup(t, { transports: ['longpoll'] });
  client.subscribe('a', { last: 3 });
  client.subscribe('b');
  client.connect().catch(() => {});
  await waitFor(() => fakes.requests.some((request) => request.path == '/rt/poll'));
  const poll = fakes.requests.find((request) => request.path == '/rt/poll');
  assert.deepEqual(poll.subs, { a: { last: 3 }, b: null });
  await poll.respond(200, [
    { type: 'welcome', version: 1, session: 's', ping_interval: 25, pong_timeout: 10, max_message_size: 65536 },
    { type: 'subscribed', channel: 'a', recovered: true, position: pos('e', 4), since: pos('e', 3) },
    publication('a', 'e', 4),
    { type: 'subscribed', channel: 'b', recovered: true, position: pos('e', 0) },
  ]);
  await waitFor(() => fakes.requests.filter((request) => request.path == '/rt/poll').length == 2);
  const next = fakes.requests.filter((request) => request.path == '/rt/poll')[1];
  assert.deepEqual(next.subs, { a: { ...pos('e', 4), last: 3 }, b: pos('e', 0) });
  client.close();
});

const page = { channel: 'news', publications: [{ data: 1, position: pos('e', 4) }], position: pos('e', 9), recovered: true };

test('history() sends one history frame on the connection, once connected, and resolves with the page', async (t) => {
  const { client, fakes } = setup(t);
  const read = track(history(client, 'news', { since: pos('e', 3), limit: 1 }));
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => sentOf(ws, 'history').length == 1);
  const [{ id, ...frame }] = sentOf(ws, 'history');
  assert.deepEqual(frame, { type: 'history', channel: 'news', limit: 1, reverse: false, since: pos('e', 3) });
  assert.ok(id >= 2 ** 52, "a read's id does not meet the client's");
  await ws.serverSends({ type: 'history', id, ...page });
  assert.deepEqual(await settled(read), ['resolved', page]);
});

test('history() on SSE goes by POST {path}/send with the credentials, its answer in the response', async (t) => {
  const { client, fakes } = setup(t, { transports: ['sse'], token: 'tok' });
  fakes.handler = (request) => {
    if (request.path == '/rt/ticket') return [200, { ticket: 't' }];
    const [frame] = request.path == '/rt/send' ? request.frames : [];
    if (frame?.type == 'history') return [200, { type: 'history', id: frame.id, ...page }];
  };
  await connectSse(client, fakes);
  assert.deepEqual(await history(client, 'news', { reverse: true }), page);
  const [request] = fakes.requestsTo('/rt/send');
  assert.equal(request.authorization, 'Bearer tok');
  assert.deepEqual(request.frames.map(({ id, ...frame }) => frame), [{ type: 'history', channel: 'news', limit: 100, reverse: true }]);
});

test('history() rejects with ReadError when refused for good, ClientClosed when the client stops, and InvalidInput on a bad limit', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const refused = track(history(client, 'x'));
  await waitFor(() => sentOf(ws, 'history').length == 1);
  await ws.serverSends({ type: 'error', id: sentOf(ws, 'history')[0].id, code: 403, message: 'no', channel: 'x' });
  const [, error] = await settled(refused);
  assert.ok(error instanceof RtlinkError);
  assert.deepEqual([error.name, error.code, error.message], ['ReadError', 403, 'no']);
  for (const limit of [0, 1001, 2.5, '10']) {
    assert.ok(isInvalidInput(await history(client, 'x', { limit }).catch((error) => error)));
  }
  const waiting = track(history(client, 'x'));
  client.close();
  const [, closed] = await settled(waiting);
  assert.deepEqual([closed instanceof RtlinkError, closed.name, closed.code], [true, 'ClientClosed', 1000]);
  const late = await history(client, 'x').catch((error) => error);
  assert.equal(late.name, 'ClientClosed');
});

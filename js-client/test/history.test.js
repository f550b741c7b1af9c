// History on subscribe (`last`, subscribed.since: protocol.md 5.2, 5.3, 8.3) in the core
// client, on every transport, and the opt-in module 'rtlink-client/history'
// (src/history.js: pages by POST {path}/send, 5.11).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { history } from '../src/history.js';
import { RtlinkError } from '../src/index.js';
import { pos, publication, waitFor } from './fakes.js';
import { connectWebSocket, isInvalidInput, setup } from './helpers.js';

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

test('history() posts one history frame to {path}/send with the credentials and returns the page', async (t) => {
  const { client, fakes } = setup(t, { token: async () => 'tok' });
  const page = { channel: 'news', publications: [{ data: 1, position: pos('e', 4) }], position: pos('e', 9), recovered: true };
  fakes.handler = (request) => (request.path == '/rt/send' ? [200, { type: 'history', id: 1, ...page }] : undefined);
  assert.deepEqual(await history(client, 'news', { since: pos('e', 3), limit: 1 }), page);
  const [request] = fakes.requests;
  assert.equal(request.method, 'POST');
  assert.equal(request.authorization, 'Bearer tok');
  assert.deepEqual(request.frames, [{ type: 'history', id: 1, channel: 'news', limit: 1, reverse: false, since: pos('e', 3) }]);
});

test('history() rejects with ReadError on an error or close frame, and InvalidInput on a bad limit', async (t) => {
  const { client, fakes } = setup(t);
  fakes.handler = () => [200, { type: 'error', id: 1, code: 403, message: 'no', channel: 'x' }];
  const refused = await history(client, 'x').catch((error) => error);
  assert.ok(refused instanceof RtlinkError);
  assert.deepEqual([refused.name, refused.code, refused.message], ['ReadError', 403, 'no']);
  fakes.handler = () => [401, { type: 'close', code: 4500, reason: 'who are you' }];
  const closed = await history(client, 'x').catch((error) => error);
  assert.deepEqual([closed.name, closed.code], ['ReadError', 4500]);
  for (const limit of [0, 1001, 2.5, '10']) {
    assert.ok(isInvalidInput(await history(client, 'x', { limit }).catch((error) => error)));
  }
});

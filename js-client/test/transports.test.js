// The transports: batching on WebSocket, server-sent events with POST /send, and long
// polling (protocol.md 2.2, 2.3, 2.4, 2.6, 3, 4.2, 8.5, 8.6).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { encode } from '../src/msgpack.js';
import { byteSize, decodeMessage, issueTickets, pos, publication, sleep, waitFor, welcome } from './fakes.js';
import { connectSse, connectWebSocket, quiet, rejection, sentOf, settled, setup, start, track, waitState } from './helpers.js';

// --- WebSocket batching --------------------------------------------------------------

test('WebSocket: frames queued in one tick go as one message', async (t) => {
  const { client, fakes } = setup(t);
  for (const channel of ['a', 'b', 'c']) client.subscribe(channel);
  client.publish('a', 1).catch(() => {});
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => ws.sent.length == 4);
  assert.equal(ws.messages.length, 1, `messages: ${JSON.stringify(ws.messages)}`);
});

test('WebSocket JSON: a batch is the frames joined by newlines', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  for (const n of [1, 2, 3, 4, 5]) client.publish('a', n).catch(() => {});
  await waitFor(() => ws.sent.length == 5);
  assert.ok(ws.messages.length < 5, 'batched');
  for (const message of ws.messages) {
    assert.equal(typeof message, 'string');
    const lines = message.split('\n');
    assert.deepEqual(lines.map((line) => JSON.parse(line).type), lines.map(() => 'publish'));
  }
  assert.deepEqual(ws.sent.map((frame) => frame.data), [1, 2, 3, 4, 5]);
});

test('WebSocket msgpack: a batch is the frames concatenated', async (t) => {
  const { client, fakes } = setup(t, { codec: 'msgpack' });
  const ws = await connectWebSocket(client, fakes);
  for (const n of [1, 2, 3, 4, 5]) client.publish('a', n).catch(() => {});
  await waitFor(() => ws.sent.length == 5);
  assert.ok(ws.messages.length < 5, 'batched');
  let offset = 0;
  const all = Buffer.concat(ws.messages.map((message) => Buffer.from(message)));
  for (const frame of ws.sent) {
    const bytes = encode(frame);
    assert.deepEqual(all.subarray(offset, offset + bytes.length), Buffer.from(bytes));
    offset += bytes.length;
  }
  assert.equal(offset, all.length, 'nothing between the frames');
});

for (const codec of ['json', 'msgpack']) {
  test(`WebSocket ${codec}: no message exceeds max_message_size (200), in order, still batched`, async (t) => {
    const { client, fakes } = setup(t, { codec });
    for (const channel of ['a', 'b', 'c', 'd']) client.subscribe(channel);
    for (let n = 0; n < 10; n++) client.publish('a', 'x'.repeat(n * 5)).catch(() => {});
    const ws = await connectWebSocket(client, fakes, { max_message_size: 200 });
    for (let n = 10; n < 20; n++) client.publish('b', 'y'.repeat(n * 3)).catch(() => {});
    await waitFor(() => ws.sent.length == 24);
    for (const message of ws.messages) assert.ok(byteSize(message) <= 200, `message of ${byteSize(message)} bytes`);
    assert.ok(ws.messages.some((message) => decodeMessage(codec, message).length > 1), 'some message batches frames');
    assert.ok(ws.messages.length < 24);
    assert.deepEqual(sentOf(ws, 'publish').map((frame) => frame.data.length), [
      ...Array.from({ length: 10 }, (_, n) => n * 5),
      ...Array.from({ length: 10 }, (_, n) => (n + 10) * 3),
    ]);
  });
}

test('WebSocket: a batch of exactly max_message_size is allowed (separators counted)', async (t) => {
  const { client, fakes } = setup(t);
  // Frames of 80 bytes: two make 161 bytes joined with the newline, three do not fit.
  const frame = (id, data) => JSON.stringify({ type: 'publish', id, channel: 'c', data, key: 'k' + id });
  const pad = (id) => 'x'.repeat(80 - frame(id, '').length);
  assert.equal(frame(2, pad(2)).length, 80);
  const ws = await connectWebSocket(client, fakes, { max_message_size: 161 });
  for (const id of [1, 2, 3]) client.publish('c', pad(id), { key: 'k' + id }).catch(() => {});
  await waitFor(() => ws.sent.length == 3);
  assert.deepEqual(ws.messages.map(byteSize).sort((a, b) => a - b), [80, 161]);
});

test('WebSocket: two frames whose batch would be one byte too large go separately', async (t) => {
  const { client, fakes } = setup(t);
  const frame = (id, data) => JSON.stringify({ type: 'publish', id, channel: 'c', data, key: 'k' + id });
  const pad = (id) => 'x'.repeat(80 - frame(id, '').length);
  const ws = await connectWebSocket(client, fakes, { max_message_size: 160 });
  for (const id of [1, 2, 3]) client.publish('c', pad(id), { key: 'k' + id }).catch(() => {});
  await waitFor(() => ws.sent.length == 3);
  assert.deepEqual(ws.messages.map(byteSize), [80, 80, 80]);
});

// --- server-sent events --------------------------------------------------------------

const SSE = { transports: ['sse'] };

/** Answer every POST /send: an ack for each publish (offsets from 1), nothing else. */
function ackPosts(fakes) {
  let offset = 0;
  fakes.handler = (request) =>
    request.path == '/rt/send'
      ? [200, request.frames.filter((frame) => frame.type == 'publish').map((frame) => ({ type: 'ack', id: frame.id, position: pos('e', ++offset) }))]
      : undefined;
}

test('SSE: the stream URL is /rt/sse with codec, subs (positions or null) and a ticket', async (t) => {
  const { client, fakes } = setup(t, { ...SSE, token: 'tok' });
  client.subscribe('news');
  client.subscribe('chat:lobby', { since: pos('e1', 41) });
  start(client);
  assert.equal((await fakes.answerTicket()).authorization, 'Bearer tok');
  const stream = await fakes.nextStream();
  assert.equal(stream.path, '/rt/sse');
  assert.equal(stream.codec, 'json');
  assert.equal(stream.ticket, 'ticket-1');
  assert.equal(stream.token, null);
  assert.deepEqual(stream.subs, { news: null, 'chat:lobby': pos('e1', 41) });
  assert.equal(stream.connect, null);
  assert.equal(new URL(stream.url).origin, 'http://test');
});

test('SSE: a channel with + is percent-encoded in subs', async (t) => {
  const { client, fakes } = setup(t, SSE);
  client.subscribe('a+b#c=d,e');
  start(client);
  const stream = await fakes.nextStream();
  const raw = new URL(stream.url).search.slice(1).split('&').find((part) => part.startsWith('subs=')).slice(5);
  assert.ok(!/[+#,=]/.test(raw), raw);
  assert.deepEqual(stream.subs, { 'a+b#c=d,e': null });
});

test('SSE: welcome, subscribed without id (matched by channel), publications', async (t) => {
  const { client, fakes, states } = setup(t, SSE);
  const subscription = client.subscribe('news');
  const messages = [];
  const events = [];
  subscription.on('message', (message) => messages.push(message.data));
  subscription.on('subscribed', (event) => events.push(event));
  await connectSse(client, fakes, {}, [
    { type: 'subscribed', channel: 'news', recovered: true, position: pos('e', 3) },
    publication('news', 'e', 4, 'four'),
  ]);
  assert.equal(client.transport, 'sse');
  assert.equal(states.at(-1).transport, 'sse');
  await subscription.waitSubscribed();
  assert.deepEqual(messages, ['four']);
  assert.deepEqual(events, [{ recovered: true, resumed: false, position: pos('e', 3), since: undefined }]);
  assert.deepEqual(fakes.requests, [], 'nothing posted');
});

test('SSE msgpack: codec=msgpack, events are base64 msgpack', async (t) => {
  const { client, fakes } = setup(t, { ...SSE, codec: 'msgpack' });
  const subscription = client.subscribe('news');
  const messages = [];
  subscription.on('message', (message) => messages.push(message.data));
  const stream = await connectSse(client, fakes, {}, [
    { type: 'subscribed', channel: 'news', recovered: true, position: pos('e', 0) },
  ]);
  assert.equal(stream.codec, 'msgpack');
  await stream.serverSends([publication('news', 'e', 1, { text: 'é😀', n: 2 ** 40, f: 1.5 }), { type: 'ping' }]);
  assert.deepEqual(messages, [{ text: 'é😀', n: 2 ** 40, f: 1.5 }]);
});

test('SSE: a publish goes by POST /rt/send with the codec content type; the ack in the response resolves it', async (t) => {
  for (const codec of ['json', 'msgpack']) {
    const { client, fakes } = setup(t, { ...SSE, codec, token: 'tok' });
    issueTickets(fakes);
    await connectSse(client, fakes);
    const published = track(client.publish('chat', { text: 'hi' }));
    const request = await fakes.nextRequest('/rt/send');
    assert.equal(request.method, 'POST');
    assert.equal(request.codec, codec);
    assert.equal(request.authorization, 'Bearer tok');
    assert.deepEqual([request.token, request.ticket], [null, null]);
    assert.equal(request.subs, undefined);
    assert.equal(Object.entries(request.headers).find(([name]) => name.toLowerCase() == 'content-type')?.[1], `application/${codec}`);
    assert.equal(codec == 'json' ? typeof request.body : request.body.constructor.name, codec == 'json' ? 'string' : 'Uint8Array');
    const [frame] = request.frames;
    assert.deepEqual([frame.type, frame.channel, frame.data], ['publish', 'chat', { text: 'hi' }]);
    assert.match(frame.key, /^[0-9a-f]{32}$/);
    await request.respond(200, [{ type: 'ack', id: frame.id, position: pos('e', 7) }]);
    assert.deepEqual(await settled(published), ['resolved', pos('e', 7)], codec);
    client.close();
  }
});

test('SSE: an empty 200 answer to a POST is fine (the connection stays)', async (t) => {
  const { client, fakes } = setup(t, SSE);
  await connectSse(client, fakes);
  const published = track(client.publish('chat', 1));
  const request = await fakes.nextRequest('/rt/send');
  await request.respond(200, '');
  await sleep(10);
  assert.equal(client.state, 'connected');
  assert.equal(published.result, undefined);
  assert.equal(client.outboxSize, 1);
  assert.equal(fakes.streams.length, 1);
});

test('SSE: publishes made while a POST is in flight go in the next POST, batched', async (t) => {
  const { client, fakes } = setup(t, SSE);
  await connectSse(client, fakes);
  const all = [1, 2, 3].map((n) => track(client.publish('chat', n)));
  const first = await fakes.nextRequest('/rt/send');
  assert.equal(fakes.requestsTo('/rt/send').length, 1, 'one POST at a time');
  ackPosts(fakes);
  await first.respond(200, first.frames.map((frame) => ({ type: 'ack', id: frame.id, position: pos('e', frame.data) })));
  await waitFor(() => all.every((published) => published.result));
  const posts = fakes.requestsTo('/rt/send');
  assert.deepEqual(posts.map((request) => request.frames.map((frame) => frame.data)).flat(), [1, 2, 3]);
  assert.ok(posts.length <= 2);
});

for (const [what, fail] of [
  ['fetch rejects', (request) => request.fail()],
  ['HTTP 500', (request) => request.respond(500, 'oops')],
  ['HTTP 502', (request) => request.respond(502, '')],
]) {
  test(`SSE: a POST that fails (${what}) drops the connection; the publish is re-sent with the same key`, async (t) => {
    const { client, fakes, states } = setup(t, SSE);
    const stream1 = await connectSse(client, fakes);
    const published = track(client.publish('chat', 'x'));
    const post1 = await fakes.nextRequest('/rt/send');
    await fail(post1);
    await waitFor(() => stream1.closed);
    assert.ok(states.some(({ newState, code }) => newState == 'disconnected' && code == 1006));
    const stream2 = await fakes.nextStream();
    await sleep(10);
    assert.equal(fakes.requestsTo('/rt/send').length, 1, 'nothing posted before welcome');
    await stream2.serverSends(welcome());
    const post2 = await fakes.nextRequest('/rt/send');
    assert.equal(post2.frames[0].key, post1.frames[0].key);
    assert.notEqual(post2.frames[0].id, post1.frames[0].id);
    await post2.respond(200, [{ type: 'ack', id: post2.frames[0].id, position: pos('e', 1) }]);
    assert.deepEqual(await settled(published), ['resolved', pos('e', 1)]);
  });
}

test('SSE: the stream asks for refusals with status 200 (refusal=200), whose close frame it reads', async (t) => {
  // A browser's EventSource shows nothing of a 401 or 403: the client asks the server
  // for a 200 and reads the close frame of a refusal like any event (protocol.md 2.6).
  const { client, fakes, states } = setup(t, SSE);
  start(client);
  const stream = await fakes.nextStream();
  assert.equal(stream.refusal, '200');
  await stream.serverSends([{ type: 'close', code: 4500, reason: 'bad token' }]);
  await waitState(client, 'closed');
  assert.deepEqual(states.at(-1).code, 4500);
  assert.ok(stream.closed, 'the client closed the EventSource: no reconnect by the browser');
});

test('SSE: a POST answered 400 with a close frame 1007 stops the client', async (t) => {
  const { client, fakes } = setup(t, SSE);
  await connectSse(client, fakes);
  client.publish('chat', 1).catch(() => {});
  const request = await fakes.nextRequest('/rt/send');
  await request.respond(400, [{ type: 'close', code: 1007, reason: 'invalid JSON' }]);
  await waitState(client, 'closed');
});

test('SSE: subscribing after connect opens a new stream, and closes the old one once the new one spoke', async (t) => {
  const { client, fakes } = setup(t, SSE);
  const chat = client.subscribe('chat');
  const chatMessages = [];
  chat.on('message', (message) => chatMessages.push(message.position.offset));
  const stream1 = await connectSse(client, fakes, {}, [
    { type: 'subscribed', channel: 'chat', recovered: true, position: pos('e', 1) },
  ]);
  const news = client.subscribe('news');
  const stream2 = await fakes.nextStream();
  assert.deepEqual(stream2.subs, { chat: pos('e', 1), news: null });
  assert.equal(stream1.closed, false, 'the old stream keeps delivering meanwhile');
  await stream1.serverSends(publication('chat', 'e', 2));
  assert.deepEqual(chatMessages, [2]);
  assert.equal(fakes.streams.length, 2);
  await stream2.serverSends([
    welcome(),
    { type: 'subscribed', channel: 'chat', recovered: true, position: pos('e', 2) },
    publication('chat', 'e', 2), // a repeat at the seam: dropped
    { type: 'subscribed', channel: 'news', recovered: true, position: pos('n', 5) },
  ]);
  assert.equal(stream1.closed, true, 'closed once the new stream spoke');
  assert.equal(stream2.closed, false);
  await news.waitSubscribed();
  assert.deepEqual(chatMessages, [2]);
  assert.equal(client.state, 'connected');
  assert.deepEqual(fakes.requests, [], 'no subscribe frame is posted');
});

test('SSE: unsubscribe reopens the stream without the channel', async (t) => {
  const { client, fakes } = setup(t, SSE);
  const a = client.subscribe('a');
  client.subscribe('b');
  await connectSse(client, fakes, {}, [
    { type: 'subscribed', channel: 'a', recovered: true, position: pos('e', 1) },
    { type: 'subscribed', channel: 'b', recovered: true, position: pos('e', 2) },
  ]);
  a.unsubscribe();
  const stream2 = await fakes.nextStream();
  assert.deepEqual(stream2.subs, { b: pos('e', 2) });
});

test('SSE: a stream error reconnects with the positions reached in subs', async (t) => {
  const { client, fakes, states } = setup(t, SSE);
  client.subscribe('a');
  client.subscribe('b', { since: pos('eb', 3) });
  const stream1 = await connectSse(client, fakes, {}, [
    { type: 'subscribed', channel: 'a', recovered: true, position: pos('ea', 10) },
    { type: 'subscribed', channel: 'b', recovered: true, position: pos('eb', 5) },
    publication('b', 'eb', 4),
    publication('a', 'ea', 11),
  ]);
  await stream1.fail();
  assert.equal(stream1.closed, true, 'the client closes it (EventSource would reconnect by itself)');
  const stream2 = await fakes.nextStream();
  assert.ok(states.some(({ newState, code }) => newState == 'disconnected' && code == 1006));
  assert.deepEqual(stream2.subs, { a: pos('ea', 11), b: pos('eb', 4) });
});

test('SSE: a ping is not answered (no POST)', async (t) => {
  const { client, fakes } = setup(t, SSE);
  const stream = await connectSse(client, fakes);
  await stream.serverSends({ type: 'ping' });
  await sleep(20);
  assert.deepEqual(fakes.requests, []);
});

test('SSE: silence longer than ping_interval + pong_timeout closes the stream (4000) and reconnects', async (t) => {
  const { client, fakes, states } = setup(t, SSE);
  const stream1 = await connectSse(client, fakes, { ping_interval: 0.03, pong_timeout: 0.03 });
  await fakes.nextStream();
  assert.ok(stream1.closed);
  assert.equal(states.find(({ newState }) => newState == 'disconnected').code, 4000);
});

test('SSE: a close event 4500 stops and closes the stream; 1001 reconnects', async (t) => {
  const { client, fakes } = setup(t, SSE);
  const stream1 = await connectSse(client, fakes);
  await stream1.serverSends({ type: 'close', code: 1001, reason: 'server shutting down' });
  assert.ok(stream1.closed);
  const stream2 = await fakes.nextStream();
  await stream2.serverSends({ type: 'close', code: 4500, reason: 'bad token' });
  await waitState(client, 'closed');
  assert.ok(stream2.closed);
  await sleep(20);
  assert.equal(fakes.streams.length, 2);
});

test('SSE: a channel refused (error without id, 404) fails its subscription and is left out later', async (t) => {
  const { client, fakes } = setup(t, SSE);
  const bad = client.subscribe('nope');
  client.subscribe('ok');
  const errors = [];
  bad.on('error', (error) => errors.push(error));
  const stream1 = await connectSse(client, fakes, {}, [
    { type: 'error', code: 404, message: "unknown channel 'nope'", channel: 'nope' },
    { type: 'subscribed', channel: 'ok', recovered: true, position: pos('e', 1) },
  ]);
  const error = await rejection(bad.waitSubscribed());
  assert.deepEqual([error.name, error.code], ['SubscribeError', 404]);
  assert.deepEqual(errors, [error]);
  await stream1.fail();
  const stream2 = await fakes.nextStream();
  assert.deepEqual(stream2.subs, { ok: pos('e', 1) });
});

test('SSE: a re-confirmation (recovered true) of a confirmed channel is not reported; recovered false is', async (t) => {
  const { client, fakes } = setup(t, SSE);
  const chat = client.subscribe('chat');
  const events = [];
  chat.on('subscribed', (event) => events.push(event));
  await connectSse(client, fakes, {}, [{ type: 'subscribed', channel: 'chat', recovered: true, position: pos('e', 1) }]);
  client.subscribe('other');
  const stream2 = await fakes.nextStream();
  await stream2.serverSends([
    welcome(),
    { type: 'subscribed', channel: 'chat', recovered: true, position: pos('e', 1) },
    { type: 'subscribed', channel: 'other', recovered: true, position: pos('o', 1) },
  ]);
  assert.equal(events.length, 1);
  client.subscribe('third');
  const stream3 = await fakes.nextStream();
  await stream3.serverSends([welcome(), { type: 'subscribed', channel: 'chat', recovered: false, position: pos('f', 9) }]);
  assert.deepEqual(events.at(-1), { recovered: false, resumed: true, position: pos('f', 9), since: undefined });
  assert.deepEqual(chat.position, pos('f', 9));
});

// --- long polling --------------------------------------------------------------------

const POLL = { transports: ['longpoll'] };

/** Answer the next poll with welcome and `frames`. */
async function answerPoll(fakes, frames = [], status = 200) {
  const request = await fakes.nextRequest('/rt/poll');
  await request.respond(status, status == 200 ? [welcome(), ...frames] : frames);
  return request;
}

const subscribedFrame = (channel, epoch, offset, recovered = true) => ({
  type: 'subscribed',
  channel,
  recovered,
  position: pos(epoch, offset),
});

test('long polling: the first poll has connect=1, later ones not; codec, token (a header) and subs', async (t) => {
  const { client, fakes, states } = setup(t, { ...POLL, token: 'tok', codec: 'msgpack' });
  client.subscribe('chat');
  const connected = track(client.connect());
  const first = await fakes.nextRequest('/rt/poll');
  assert.deepEqual([first.path, first.method, first.codec, first.authorization, first.connect], ['/rt/poll', 'GET', 'msgpack', 'Bearer tok', '1']);
  assert.deepEqual([first.token, first.ticket], [null, null]);
  assert.deepEqual(fakes.requestsTo('/rt/ticket'), [], 'no ticket for fetch');
  assert.deepEqual(first.subs, { chat: null });
  assert.equal(client.state, 'connecting');
  await first.respond(200, [welcome(), subscribedFrame('chat', 'e', 0)]);
  await settled(connected);
  assert.equal(client.transport, 'longpoll');
  assert.equal(states.at(-1).transport, 'longpoll');
  const second = await fakes.nextRequest('/rt/poll');
  assert.equal(second.connect, null);
  assert.equal(second.authorization, 'Bearer tok');
  assert.deepEqual(second.subs, { chat: pos('e', 0) });
  await second.respond(200, [welcome(), subscribedFrame('chat', 'e', 0)]);
  const third = await fakes.nextRequest('/rt/poll');
  assert.equal(third.connect, null);
});

test("long polling: each poll's subs carries the positions reached by the previous answer", async (t) => {
  const { client, fakes } = setup(t, POLL);
  const chat = client.subscribe('chat');
  client.subscribe('news', { since: pos('n', 4) });
  const messages = [];
  chat.on('message', (message) => messages.push(message.data));
  start(client);
  const first = await answerPoll(fakes, [subscribedFrame('chat', 'e', 1), subscribedFrame('news', 'n', 4)]);
  assert.deepEqual(first.subs, { chat: null, news: pos('n', 4) });
  const second = await answerPoll(fakes, [
    subscribedFrame('chat', 'e', 3),
    publication('chat', 'e', 2, 'two'),
    publication('chat', 'e', 3, 'three'),
    subscribedFrame('news', 'n', 4),
  ]);
  assert.deepEqual(second.subs, { chat: pos('e', 1), news: pos('n', 4) });
  const third = await fakes.nextRequest('/rt/poll');
  assert.deepEqual(third.subs, { chat: pos('e', 3), news: pos('n', 4) });
  assert.deepEqual(messages, ['two', 'three']);
  assert.ok(first.answered && second.answered && !third.answered);
  assert.equal(fakes.requestsTo('/rt/poll').length, 3, 'one poll at a time');
});

test('long polling: a new subscribe aborts the poll in flight and polls at once with the new cursor', async (t) => {
  const { client, fakes } = setup(t, POLL);
  client.subscribe('a');
  start(client);
  await answerPoll(fakes, [subscribedFrame('a', 'e', 1)]);
  const held = await fakes.nextRequest('/rt/poll');
  client.subscribe('b');
  await waitFor(() => held.aborted);
  const next = await fakes.nextRequest('/rt/poll');
  assert.deepEqual(next.subs, { a: pos('e', 1), b: null });
  assert.equal(next.connect, null);
  assert.equal(client.state, 'connected', 'an aborted poll is not a failure');
  await next.respond(200, [welcome(), subscribedFrame('a', 'e', 1), subscribedFrame('b', 'f', 0)]);
  await fakes.nextRequest('/rt/poll');
  assert.equal(fakes.requestsTo('/rt/poll').filter((request) => request.pending).length, 1);
});

test('long polling: error 404 for a channel fails its subscription; it is left out of the next poll', async (t) => {
  const { client, fakes } = setup(t, POLL);
  const bad = client.subscribe('nope');
  client.subscribe('ok');
  start(client);
  await answerPoll(fakes, [
    { type: 'error', code: 404, message: 'unknown channel', channel: 'nope' },
    subscribedFrame('ok', 'e', 1),
  ]);
  const error = await rejection(bad.waitSubscribed());
  assert.deepEqual([error.name, error.code], ['SubscribeError', 404]);
  const next = await fakes.nextRequest('/rt/poll');
  assert.deepEqual(next.subs, { ok: pos('e', 1) });
});

test('long polling: error 503 for a channel leaves it out of the next poll, then puts it back after a delay', async (t) => {
  t.mock.method(Math, 'random', () => 0.5);
  const { client, fakes } = setup(t, { ...POLL, backoffBase: 0.4, backoffCap: 1 });
  const flaky = client.subscribe('flaky');
  client.subscribe('ok');
  start(client);
  await answerPoll(fakes, [
    { type: 'error', code: 503, message: 'backend unavailable', channel: 'flaky' },
    subscribedFrame('ok', 'e', 1),
  ]);
  const without = await fakes.nextRequest('/rt/poll');
  assert.deepEqual(without.subs, { ok: pos('e', 1) });
  await sleep(30);
  assert.ok(without.pending, 'held: not put back at once');
  await waitFor(() => without.aborted);
  const back = await fakes.nextRequest('/rt/poll');
  assert.deepEqual(back.subs, { ok: pos('e', 1), flaky: null });
  await back.respond(200, [welcome(), subscribedFrame('ok', 'e', 1), subscribedFrame('flaky', 'f', 2)]);
  await flaky.waitSubscribed();
});

test('long polling: a channel refused on a later poll (403 after it was confirmed) is removed from the cursor', async (t) => {
  quiet(t);
  const { client, fakes } = setup(t, POLL);
  const chat = client.subscribe('chat');
  const errors = [];
  chat.on('error', (error) => errors.push(error));
  client.subscribe('ok');
  start(client);
  await answerPoll(fakes, [subscribedFrame('chat', 'e', 1), subscribedFrame('ok', 'o', 1)]);
  await answerPoll(fakes, [{ type: 'error', code: 403, message: 'forbidden', channel: 'chat' }, subscribedFrame('ok', 'o', 1)]);
  const next = await fakes.nextRequest('/rt/poll');
  assert.deepEqual(next.subs, { ok: pos('o', 1) });
  assert.deepEqual(errors.map(({ name, code }) => [name, code]), [['SubscribeError', 403]]);
});

test('long polling: HTTP 500 on a poll reconnects (1006), with connect=1 again', async (t) => {
  const { client, fakes, states } = setup(t, POLL);
  client.subscribe('chat');
  start(client);
  await answerPoll(fakes, [subscribedFrame('chat', 'e', 5)]);
  await answerPoll(fakes, [], 500);
  const again = await fakes.nextRequest('/rt/poll');
  assert.ok(states.some(({ newState, code }) => newState == 'disconnected' && code == 1006));
  assert.equal(again.connect, '1');
  assert.deepEqual(again.subs, { chat: pos('e', 5) });
});

test('long polling: a failed request or an undecodable answer reconnects', async (t) => {
  for (const fail of [(request) => request.fail(), (request) => request.respond(200, 'not json'), (request) => request.respond(200, '')]) {
    const { client, fakes, states } = setup(t, POLL);
    start(client);
    await answerPoll(fakes);
    await fail(await fakes.nextRequest('/rt/poll'));
    const again = await fakes.nextRequest('/rt/poll');
    assert.equal(again.connect, '1');
    assert.ok(states.some(({ newState, code }) => newState == 'disconnected' && code == 1006));
    client.close();
  }
});

test('long polling: a close frame stops polling and applies its code', async (t) => {
  const { client, fakes } = setup(t, POLL);
  start(client);
  await answerPoll(fakes, [{ type: 'close', code: 4500, reason: 'unauthorized' }]);
  await waitState(client, 'closed');
  await sleep(20);
  assert.equal(fakes.requestsTo('/rt/poll').length, 1);
});

// A refused request has a status that stops a native EventSource and `curl -f` (401,
// 403) and its close frame in the body (protocol.md 2.6): the client applies the code.
for (const [status, code, state] of [
  [401, 4500, 'closed'],
  [403, 4501, 'closed'],
  [401, 4003, 'disconnected'],
]) {
  test(`long polling: a poll refused with HTTP ${status} applies the close frame ${code} of its body`, async (t) => {
    const { client, fakes, states } = setup(t, POLL);
    start(client);
    await answerPoll(fakes, [{ type: 'close', code, reason: 'refused' }], status);
    await waitFor(() => states.some((change) => change.newState == state && change.code == code));
  });

  test(`SSE: a POST refused with HTTP ${status} applies the close frame ${code} of its body`, async (t) => {
    const { client, fakes, states } = setup(t, SSE);
    await connectSse(client, fakes);
    client.publish('chat', 1).catch(() => {});
    const request = await fakes.nextRequest('/rt/send');
    await request.respond(status, [{ type: 'close', code, reason: 'refused' }]);
    await waitFor(() => states.some((change) => change.newState == state && change.code == code));
  });
}

test('long polling: publishes go by POST /rt/send; the ack resolves them', async (t) => {
  const { client, fakes } = setup(t, POLL);
  ackPosts(fakes);
  start(client);
  await answerPoll(fakes);
  const published = await settled(track(client.publish('chat', 'x')));
  assert.deepEqual(published, ['resolved', pos('e', 1)]);
  const [post] = fakes.requestsTo('/rt/send');
  assert.equal(post.codec, 'json');
  assert.deepEqual(post.frames.map(({ type, data }) => [type, data]), [['publish', 'x']]);
});

test('long polling: close() aborts the poll in flight', async (t) => {
  const { client, fakes } = setup(t, POLL);
  start(client);
  await answerPoll(fakes);
  const held = await fakes.nextRequest('/rt/poll');
  client.close();
  await waitFor(() => held.aborted);
  await sleep(20);
  assert.equal(fakes.requestsTo('/rt/poll').length, 2);
});

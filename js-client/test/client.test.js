// The client over WebSocket: URL and token, subprotocol, welcome, subscribe and
// publish frames, ping/pong, close codes, failures that count as 1006, the silence
// watchdog, reconnect() and the browser's 'online' event (protocol.md 2.1, 6, 7.2, 8).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { RtlinkError } from '../src/index.js';
import { pos, publication, sleep, waitFor, welcome } from './fakes.js';
import { connectWebSocket, isInvalidInput, rejection, sentOf, settled, setup, start, track, waitState } from './helpers.js';

// --- URL and token (more in auth.test.js) --------------------------------------------

test('the WebSocket URL is ws://host/path/ws; a token from a string buys a ticket for it', async (t) => {
  const { client, fakes } = setup(t, { token: 'secret' });
  start(client);
  const request = await fakes.answerTicket();
  assert.deepEqual([request.url, request.method, request.authorization], ['http://test/rt/ticket', 'POST', 'Bearer secret']);
  const ws = await fakes.nextSocket();
  assert.equal(ws.url, 'ws://test/rt/ws?ticket=ticket-1');
});

test('https becomes wss, and a token in the URL (no tickets there) is percent-encoded', async (t) => {
  const { fakes } = setup(t);
  const { Client } = await import('../src/index.js');
  const client = new Client('https://example.com/rt/', {
    WebSocket: fakes.WebSocket,
    fetch: fakes.fetch,
    storage: fakes.storage,
    transports: ['websocket'],
    token: 'a+b c&d=%',
  });
  t.after(() => client.close());
  start(client);
  const request = await waitFor(() => fakes.requests[0]);
  assert.equal(request.url, 'https://example.com/rt/ticket');
  assert.equal(request.authorization, 'Bearer a+b c&d=%');
  await request.respond(404, 'not found');
  const ws = await fakes.nextSocket();
  assert.equal(new URL(ws.url).origin + new URL(ws.url).pathname, 'wss://example.com/rt/ws');
  assert.equal(ws.token, 'a+b c&d=%');
  assert.ok(!ws.url.includes('+b'), `'+' must be percent-encoded: ${ws.url}`);
});

test('the token from a synchronous function', async (t) => {
  const { client, fakes } = setup(t, { token: () => 'sync-token' });
  start(client);
  assert.equal((await fakes.answerTicket()).authorization, 'Bearer sync-token');
  const ws = await fakes.nextSocket();
  assert.equal(ws.url, 'ws://test/rt/ws?ticket=ticket-1');
});

test('an async token function is called again before every connection', async (t) => {
  let calls = 0;
  const token = async () => {
    await sleep(5);
    return `t${++calls}`;
  };
  const { client, fakes } = setup(t, { token });
  start(client);
  assert.equal((await fakes.answerTicket()).authorization, 'Bearer t1');
  const ws1 = await fakes.nextSocket();
  await ws1.open();
  await ws1.serverSends(welcome());
  await waitState(client, 'connected');
  await ws1.serverCloses(1001, 'going away');
  assert.equal((await fakes.answerTicket()).authorization, 'Bearer t2');
  const ws2 = await fakes.nextSocket();
  assert.equal(ws2.ticket, 'ticket-2');
  await ws2.fail();
  assert.equal((await fakes.answerTicket()).authorization, 'Bearer t3');
  const ws3 = await fakes.nextSocket();
  assert.equal(ws3.ticket, 'ticket-3');
  assert.equal(calls, 3);
  assert.ok([ws1, ws2, ws3].every((ws) => ws.token == null), 'never the token in the URL');
});

test('an empty token is left out: no ticket, nothing in the URL', async (t) => {
  for (const token of ['', null, () => '', async () => null]) {
    const { client, fakes } = setup(t, { token });
    start(client);
    const ws = await fakes.nextSocket();
    assert.equal(ws.url, 'ws://test/rt/ws', `token ${token}`);
    assert.deepEqual(fakes.requests, []);
    client.close();
  }
});

// --- subprotocol ---------------------------------------------------------------------

test('the subprotocol is rtlink.v1.json, or rtlink.v1.msgpack with codec msgpack', async (t) => {
  for (const [codec, subprotocol] of [[undefined, 'rtlink.v1.json'], ['json', 'rtlink.v1.json'], ['msgpack', 'rtlink.v1.msgpack']]) {
    const { client, fakes } = setup(t, codec ? { codec } : {});
    start(client);
    const ws = await fakes.nextSocket();
    assert.deepEqual([ws.protocols].flat(), [subprotocol]);
    client.close();
  }
});

test('a server that selects no subprotocol: the client closes with 4502 and stops', async (t) => {
  const { client, fakes, states } = setup(t);
  const connected = track(client.connect());
  const ws = await fakes.nextSocket();
  await ws.open('');
  await waitState(client, 'closed');
  assert.equal(ws.closedByClient?.code, 4502);
  assert.equal(states.at(-1).code, 4502);
  const [how, error] = await settled(connected);
  assert.equal(how, 'rejected');
  assert.ok(error instanceof RtlinkError);
  assert.equal(error.name, 'ClientClosed');
  assert.equal(error.code, 4502);
  await sleep(30);
  assert.equal(fakes.sockets.length, 1, 'no reconnect after 4502');
});

test('a welcome of another protocol version stops the client with 4502', async (t) => {
  const { client, fakes } = setup(t);
  start(client);
  const ws = await fakes.nextSocket();
  await ws.open();
  await ws.serverSends(welcome({ version: 2 }));
  await waitState(client, 'closed');
  await sleep(30);
  assert.equal(fakes.sockets.length, 1);
});

// --- connect, welcome, states --------------------------------------------------------

test('connect() resolves on welcome; states disconnected -> connecting -> connected', async (t) => {
  const { client, fakes, states } = setup(t);
  assert.equal(client.state, 'disconnected');
  const connected = track(client.connect());
  const ws = await fakes.nextSocket();
  assert.equal(client.state, 'connecting');
  await ws.open();
  assert.equal(client.state, 'connecting', 'an open socket is not connected yet: welcome is');
  assert.equal(connected.result, undefined);
  await ws.serverSends(welcome({ session: 'abc123' }));
  assert.deepEqual(await settled(connected), ['resolved', undefined]);
  assert.equal(client.state, 'connected');
  assert.equal(client.transport, 'websocket');
  assert.equal(client.sessionId, 'abc123');
  assert.deepEqual(
    states.map(({ oldState, newState, transport }) => [oldState, newState, transport]),
    [['disconnected', 'connecting', 'websocket'], ['connecting', 'connected', 'websocket']],
  );
  assert.deepEqual(ws.sent, [], 'nothing sent before welcome, nothing to send after');
});

test('on welcome the client subscribes its channels, with since when it has a position', async (t) => {
  const { client, fakes } = setup(t);
  client.subscribe('news');
  client.subscribe('chat:lobby', { since: pos('e1', 41) });
  start(client);
  const ws = await fakes.nextSocket();
  await ws.open();
  assert.deepEqual(ws.sent, [], 'nothing before welcome');
  await ws.serverSends(welcome());
  await waitFor(() => ws.sent.length == 2);
  const [news, chat] = ws.sent;
  assert.deepEqual(news, { type: 'subscribe', id: news.id, channel: 'news' });
  assert.deepEqual(chat, { type: 'subscribe', id: chat.id, channel: 'chat:lobby', since: pos('e1', 41) });
  assert.ok(Number.isInteger(news.id) && news.id >= 1);
  assert.notEqual(news.id, chat.id);
});

test('a subscription made while connected is sent at once', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const subscription = client.subscribe('news');
  await waitFor(() => ws.sent.length == 1);
  const [frame] = ws.sent;
  assert.deepEqual(frame, { type: 'subscribe', id: frame.id, channel: 'news' });
  await ws.serverSends({ type: 'subscribed', id: frame.id, channel: 'news', recovered: true, position: pos('e', 7) });
  await subscription.waitSubscribed();
  assert.deepEqual(subscription.position, pos('e', 7));
});

test('a subscription made in the connected state callback is sent once', async (t) => {
  const { client, fakes } = setup(t);
  client.subscribe('a');
  client.on('state', ({ newState }) => newState == 'connected' && client.subscribe('b'));
  const ws = await connectWebSocket(client, fakes);
  await sleep(10);
  assert.deepEqual(sentOf(ws, 'subscribe').map((frame) => frame.channel), ['a', 'b']);
});

test('publish: the frame has id, channel, data and a 32-hex key; the ack resolves it', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const published = track(client.publish('chat:lobby', { text: 'hi' }));
  await waitFor(() => ws.sent.length == 1);
  const [frame] = ws.sent;
  assert.equal(frame.type, 'publish');
  assert.ok(Number.isInteger(frame.id) && frame.id >= 1);
  assert.equal(frame.channel, 'chat:lobby');
  assert.deepEqual(frame.data, { text: 'hi' });
  assert.match(frame.key, /^[0-9a-f]{32}$/);
  assert.equal(client.outboxSize, 1);
  await ws.serverSends({ type: 'ack', id: frame.id, position: pos('e', 44) });
  assert.deepEqual(await settled(published), ['resolved', pos('e', 44)]);
  assert.equal(client.outboxSize, 0);
});

test('publish: keys differ between publishes; the application key is used as is', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  client.publish('c', 1).catch(() => {});
  client.publish('c', 2).catch(() => {});
  client.publish('c', 3, { key: 'my-key' }).catch(() => {});
  await waitFor(() => ws.sent.length == 3);
  const [a, b, c] = ws.sent;
  assert.notEqual(a.key, b.key);
  assert.equal(c.key, 'my-key');
  assert.equal(new Set(ws.sent.map((frame) => frame.id)).size, 3, 'distinct ids');
});

test('an ack for an unknown id, or a publication of an unknown channel, changes nothing', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const published = track(client.publish('c', 1));
  await waitFor(() => ws.sent.length == 1);
  await ws.serverSends([{ type: 'ack', id: 999, position: pos('e', 1) }, publication('other', 'e', 1)]);
  assert.equal(published.result, undefined);
  assert.equal(client.state, 'connected');
  await ws.serverSends({ type: 'ack', id: ws.sent[0].id, position: pos('e', 2) });
  assert.deepEqual(await settled(published), ['resolved', pos('e', 2)]);
});

test('a ping is answered with a pong', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  await ws.serverSends({ type: 'ping' });
  await waitFor(() => ws.sent.length == 1);
  assert.deepEqual(ws.sent, [{ type: 'pong' }]);
});

test('a ping with msgpack is answered with a binary pong', async (t) => {
  const { client, fakes } = setup(t, { codec: 'msgpack' });
  const ws = await connectWebSocket(client, fakes);
  await ws.serverSends({ type: 'ping' });
  await waitFor(() => ws.sent.length == 1);
  assert.deepEqual(ws.sent, [{ type: 'pong' }]);
  assert.ok(ws.messages[0] instanceof Uint8Array, 'msgpack goes as a binary message');
});

test('frames of unknown type are ignored', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  await ws.serverSends([{ type: 'future-frame', x: 1 }, { type: 'ping' }]);
  await waitFor(() => ws.sent.length == 1);
  assert.equal(client.state, 'connected');
});

// --- close codes ---------------------------------------------------------------------

test("a 'close' frame 4001: reconnect and resubscribe from the last delivered position", async (t) => {
  const { client, fakes, states } = setup(t);
  const subscription = client.subscribe('chat');
  const ws1 = await connectWebSocket(client, fakes);
  const [subscribe] = ws1.sent;
  await ws1.serverSends([
    { type: 'subscribed', id: subscribe.id, channel: 'chat', recovered: true, position: pos('e', 3) },
    publication('chat', 'e', 4),
    publication('chat', 'e', 5),
  ]);
  assert.deepEqual(subscription.position, pos('e', 5));
  states.length = 0;
  await ws1.serverSends({ type: 'close', code: 4001, reason: 'slow consumer' });
  const ws2 = await fakes.nextSocket();
  assert.deepEqual(
    states.map(({ newState, code }) => [newState, code]),
    [['disconnected', 4001], ['connecting', null]],
  );
  assert.equal(states[0].reason, 'slow consumer');
  assert.deepEqual([client.transport, client.sessionId], [null, null], 'no transport while not connected');
  assert.ok(ws1.closedByClient, 'the client closed the old socket');
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitFor(() => ws2.sent.length == 1);
  const [again] = ws2.sent;
  assert.deepEqual(again, { type: 'subscribe', id: again.id, channel: 'chat', since: pos('e', 5) });
  assert.ok(again.id > subscribe.id, 'request ids are not reused');
});

test('a WebSocket close with a reconnect code (1001, 1011, 1012, 1013, 4000, 4002, 4499) reconnects', async (t) => {
  for (const code of [1001, 1011, 1012, 1013, 4000, 4002, 4499]) {
    const { client, fakes, states } = setup(t);
    const ws = await connectWebSocket(client, fakes);
    await ws.serverCloses(code, 'bye');
    await fakes.nextSocket();
    assert.deepEqual(states.at(-2).code, code);
    assert.equal(states.at(-1).newState, 'connecting', `code ${code}`);
    client.close();
  }
});

test('a WebSocket close with a stop code (1000, 1005, 1007, 1008, 1009, 3000, 4500, 4501, 4502, 4999) stops', async (t) => {
  for (const code of [1000, 1005, 1007, 1008, 1009, 3000, 4500, 4501, 4502, 4999]) {
    const { client, fakes, states } = setup(t);
    const ws = await connectWebSocket(client, fakes);
    await ws.serverCloses(code, 'bye');
    await waitState(client, 'closed');
    assert.deepEqual([states.at(-1).code, states.at(-1).reason], [code, 'bye']);
    await sleep(20);
    assert.equal(fakes.sockets.length, 1, `no reconnect after ${code}`);
  }
});

test("a 'close' frame 4500: closed; a waiting publish rejects with ClientClosed 4500", async (t) => {
  const { client, fakes, states } = setup(t);
  const subscription = client.subscribe('chat');
  const ws = await connectWebSocket(client, fakes);
  const published = track(client.publish('chat', 'hello'));
  await waitFor(() => sentOf(ws, 'publish').length == 1);
  await ws.serverSends({ type: 'close', code: 4500, reason: 'unauthorized' });
  await waitState(client, 'closed');
  assert.deepEqual(
    states.slice(-1).map(({ oldState, newState, code, reason }) => [oldState, newState, code, reason]),
    [['connected', 'closed', 4500, 'unauthorized']],
  );
  const [how, error] = await settled(published);
  assert.equal(how, 'rejected');
  assert.ok(error instanceof RtlinkError);
  assert.equal(error.name, 'ClientClosed');
  assert.equal(error.code, 4500);
  const refused = await rejection(subscription.waitSubscribed());
  assert.equal(refused.name, 'ClientClosed');
  assert.equal(client.outboxSize, 0);
  // A closed client refuses new publishes at once.
  const late = await rejection(client.publish('chat', 1));
  assert.equal(late.name, 'ClientClosed');
});

test("a 'close' frame instead of welcome (refused authentication) stops with its code", async (t) => {
  const { client, fakes } = setup(t);
  const connected = track(client.connect());
  const ws = await fakes.nextSocket();
  await ws.open();
  await ws.serverSends({ type: 'close', code: 4500, reason: 'bad token' });
  const [how, error] = await settled(connected);
  assert.equal(how, 'rejected');
  assert.deepEqual([error.name, error.code], ['ClientClosed', 4500]);
  assert.equal(client.state, 'closed');
});

test("a 'close' frame 1011 instead of welcome reconnects", async (t) => {
  const { client, fakes, states } = setup(t);
  start(client);
  const ws = await fakes.nextSocket();
  await ws.open();
  await ws.serverSends({ type: 'close', code: 1011, reason: 'authentication failed' });
  await fakes.nextSocket();
  assert.ok(states.some(({ newState, code }) => newState == 'disconnected' && code == 1011));
});

// --- failures that count as 1006 -----------------------------------------------------

test('a first frame that is not welcome counts as 1006: reconnect', async (t) => {
  const { client, fakes, states } = setup(t);
  start(client);
  const ws1 = await fakes.nextSocket();
  await ws1.open();
  await ws1.serverSends({ type: 'ping' });
  const ws2 = await fakes.nextSocket();
  assert.ok(ws1.closedByClient, 'the failed socket is closed');
  assert.deepEqual(ws1.sent, [], 'the ping before welcome is not answered');
  assert.deepEqual(
    states.map(({ newState, code }) => [newState, code]),
    [['connecting', null], ['disconnected', 1006], ['connecting', null]],
  );
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitState(client, 'connected');
});

test('an undecodable message counts as 1006: reconnect', async (t) => {
  for (const [codec, garbage] of [['json', '{"type":"ping"'], ['json', '[1,2]'], ['json', '{"no":"type"}'], ['msgpack', new Uint8Array([0xc1])]]) {
    const { client, fakes, states } = setup(t, { codec });
    const ws = await connectWebSocket(client, fakes);
    await ws.serverSends(garbage);
    await fakes.nextSocket();
    assert.ok(states.some(({ newState, code }) => newState == 'disconnected' && code == 1006), `${codec} ${garbage}`);
    client.close();
  }
});

test('a socket that fails (error, close 1006) reconnects', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  await ws.fail();
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitState(client, 'connected');
});

test('no welcome within connectTimeout: the socket is closed and the client tries again', async (t) => {
  const { client, fakes, states } = setup(t, { connectTimeout: 0.05 });
  start(client);
  const ws1 = await fakes.nextSocket();
  await ws1.open();
  const ws2 = await fakes.nextSocket();
  assert.ok(ws1.closedByClient);
  assert.equal(states[1].code, 1006);
  assert.equal(ws2.url, ws1.url);
});

test('silence longer than ping_interval + pong_timeout: the client closes the socket, 4000, reconnects', async (t) => {
  const { client, fakes, states } = setup(t);
  const ws1 = await connectWebSocket(client, fakes, { ping_interval: 0.1, pong_timeout: 0.1 });
  const connectedAt = Date.now();
  // Frames keep it alive.
  for (let i = 0; i < 4; i++) {
    await sleep(40);
    await ws1.serverSends({ type: 'ping' });
  }
  assert.equal(client.state, 'connected', 'pings every 40 ms keep a 200 ms watchdog happy');
  assert.equal(fakes.sockets.length, 1);
  const ws2 = await fakes.nextSocket();
  assert.ok(Date.now() - connectedAt >= 160 + 190, 'the watchdog waited for the silence');
  assert.ok(ws1.closedByClient, 'the silent socket was closed by the client');
  const drop = states.find(({ newState }) => newState == 'disconnected');
  assert.equal(drop.code, 4000);
  assert.equal(states.at(-1).newState, 'connecting');
  assert.equal(ws2.url, ws1.url);
});

// --- reconnect(), close(), online ----------------------------------------------------

/** Math.random() = 0.5: a backoff of base 100 s waits 50 s, surely longer than a test. */
function slowBackoff(t) {
  t.mock.method(Math, 'random', () => 0.5);
  return { backoffBase: 100, backoffCap: 100 };
}

test('reconnect(): drops the connection and reconnects at once, without backoff', async (t) => {
  const { client, fakes, states } = setup(t, slowBackoff(t));
  const subscription = client.subscribe('chat');
  const ws1 = await connectWebSocket(client, fakes);
  await ws1.serverSends([
    { type: 'subscribed', id: ws1.sent[0].id, channel: 'chat', recovered: true, position: pos('e', 1) },
  ]);
  client.reconnect();
  const ws2 = await fakes.nextSocket();
  assert.ok(ws1.closedByClient);
  assert.ok(states.some(({ newState }) => newState == 'disconnected'));
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitFor(() => ws2.sent.length == 1);
  assert.deepEqual(ws2.sent[0].since, pos('e', 1));
  assert.equal(subscription.position.offset, 1);
});

test('reconnect() while waiting in backoff reconnects at once', async (t) => {
  const { client, fakes } = setup(t, slowBackoff(t));
  const ws1 = await connectWebSocket(client, fakes);
  await ws1.serverCloses(1001);
  await waitState(client, 'disconnected');
  await sleep(50);
  assert.equal(fakes.sockets.length, 1, 'waiting in backoff');
  client.reconnect();
  await fakes.nextSocket();
});

test('the backoff after a lost connection is waited (no busy reconnect loop)', async (t) => {
  const { client, fakes } = setup(t, slowBackoff(t));
  const ws1 = await connectWebSocket(client, fakes);
  await ws1.serverCloses(1001);
  await sleep(100);
  assert.equal(fakes.sockets.length, 1);
  assert.equal(client.state, 'disconnected');
});

test("the browser's 'online' event ends the backoff wait at once", async (t) => {
  // Node has no window events: give globalThis an EventTarget's methods, as in a
  // browser, before the client starts listening (in connect()).
  const target = new EventTarget();
  const names = ['addEventListener', 'removeEventListener', 'dispatchEvent'];
  for (const name of names) globalThis[name] = target[name].bind(target);
  t.after(() => names.forEach((name) => delete globalThis[name]));
  const { client, fakes } = setup(t, slowBackoff(t));
  const ws1 = await connectWebSocket(client, fakes);
  await ws1.serverCloses(1006);
  await sleep(50);
  assert.equal(fakes.sockets.length, 1, 'waiting in backoff');
  globalThis.dispatchEvent(new Event('online'));
  const ws2 = await fakes.nextSocket();
  // While connected, 'online' does nothing.
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitState(client, 'connected');
  globalThis.dispatchEvent(new Event('online'));
  await sleep(20);
  assert.equal(fakes.sockets.length, 2);
  assert.equal(client.state, 'connected');
  // After close() the client no longer listens.
  client.close();
  globalThis.dispatchEvent(new Event('online'));
  await sleep(20);
  assert.equal(fakes.sockets.length, 2);
});

test('close(): state closed with 1000, the socket closed, waiting publishes reject', async (t) => {
  const { client, fakes, states } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const published = track(client.publish('c', 1));
  client.close();
  assert.equal(client.state, 'closed');
  assert.deepEqual([states.at(-1).code, states.at(-1).newState], [1000, 'closed']);
  assert.equal(ws.closedByClient?.code, 1000);
  const [how, error] = await settled(published);
  assert.equal(how, 'rejected');
  assert.deepEqual([error.name, error.code], ['ClientClosed', 1000]);
  const late = track(client.connect());
  assert.equal((await settled(late))[0], 'rejected', 'a closed client does not connect again');
  await sleep(20);
  assert.equal(fakes.sockets.length, 1);
});

test('close() while waiting in backoff stops at once', async (t) => {
  const { client, fakes } = setup(t, slowBackoff(t));
  const ws1 = await connectWebSocket(client, fakes);
  await ws1.serverCloses(1001);
  await waitState(client, 'disconnected');
  client.close();
  assert.equal(client.state, 'closed');
  await sleep(20);
  assert.equal(fakes.sockets.length, 1);
});

test('close() before connect(): closed, and connect() rejects', async (t) => {
  const { client, fakes } = setup(t);
  client.close();
  const error = await rejection(client.connect());
  assert.equal(error.name, 'ClientClosed');
  assert.equal(fakes.sockets.length, 0);
});

test('publish() right after reconnect() (same tick) waits in the outbox', async (t) => {
  const { client, fakes } = setup(t);
  const ws1 = await connectWebSocket(client, fakes);
  client.reconnect();
  const published = track(client.publish('c', 'x'));
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitFor(() => sentOf(ws2, 'publish').length == 1);
  await ws2.serverSends({ type: 'ack', id: sentOf(ws2, 'publish')[0].id, position: pos('e', 1) });
  assert.deepEqual(await settled(published), ['resolved', pos('e', 1)]);
  assert.deepEqual(ws1.sent, []);
});

test('publish() from an ack callback when the same message also closed the connection', async (t) => {
  const { client, fakes } = setup(t);
  const ws1 = await connectWebSocket(client, fakes);
  const second = [];
  const first = client.publish('c', 1).then(() => second.push(track(client.publish('c', 2))));
  await waitFor(() => ws1.sent.length == 1);
  await ws1.serverSends([{ type: 'ack', id: ws1.sent[0].id, position: pos('e', 1) }, { type: 'close', code: 4001, reason: '' }]);
  await first;
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitFor(() => sentOf(ws2, 'publish').length == 1);
  await ws2.serverSends({ type: 'ack', id: sentOf(ws2, 'publish')[0].id, position: pos('e', 2) });
  assert.deepEqual(await settled(second[0]), ['resolved', pos('e', 2)]);
});

test('subscribe() and unsubscribe() right after reconnect() (same tick) do not throw', async (t) => {
  const { client, fakes } = setup(t);
  await connectWebSocket(client, fakes);
  client.reconnect();
  const subscription = client.subscribe('late');
  subscription.unsubscribe();
  const ws2 = await fakes.nextSocket();
  await ws2.open();
  await ws2.serverSends(welcome());
  await waitState(client, 'connected');
  assert.deepEqual(sentOf(ws2, 'subscribe'), []);
});

test('invalid options are refused by the constructor (InvalidInput)', async (t) => {
  const { Client } = await import('../src/index.js');
  assert.throws(() => new Client('http://test/rt', { codec: 'xml' }), isInvalidInput);
  assert.throws(() => new Client('http://test/rt', { transports: ['carrier-pigeon'] }), isInvalidInput);
  assert.throws(() => new Client('http://test/rt', { transports: [] }), isInvalidInput);
});


// Credentials: the token goes in an Authorization header on everything made with
// fetch, and WebSocket / EventSource (which cannot send headers) first trade it for a
// single-use ticket at POST {url}/ticket. 404 there: the token in the URL instead;
// 401: the client stops as after close code 4500; anything else: a failed attempt.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { issueTickets, pos, publication, sleep, waitFor, welcome } from './fakes.js';
import { connectSse, rejection, settled, setup, start, track, waitState } from './helpers.js';

const SSE = { transports: ['sse'] };
const POLL = { transports: ['longpoll'] };

/** A token function that counts its calls: tokens 'tok1', 'tok2', ... */
function countingToken() {
  const token = async () => `tok${++token.calls}`;
  token.calls = 0;
  return token;
}

/** [newState, code, reason] of each state change. */
const changes = (states) => states.map(({ newState, code, reason }) => [newState, code, reason]);

// --- tickets for WebSocket and EventSource ---------------------------------------------

test('WebSocket: the token buys a ticket (POST /rt/ticket, Bearer header); the socket carries only the ticket', async (t) => {
  const token = countingToken();
  const { client, fakes } = setup(t, { token });
  start(client);
  const request = await fakes.answerTicket();
  assert.deepEqual([request.url, request.method, request.authorization], ['http://test/rt/ticket', 'POST', 'Bearer tok1']);
  const ws = await fakes.nextSocket();
  assert.equal(ws.url, 'ws://test/rt/ws?ticket=ticket-1');
  await ws.open();
  await ws.serverSends(welcome());
  await waitState(client, 'connected');
  assert.equal(token.calls, 1);
  assert.equal(fakes.requests.length, 1, 'nothing else went by fetch');
});

test('SSE: every stream gets a ticket of its own, from the one token of the connection', async (t) => {
  const token = countingToken();
  const { client, fakes, states } = setup(t, { ...SSE, token });
  issueTickets(fakes);
  client.subscribe('news');
  const stream1 = await connectSse(client, fakes);
  assert.deepEqual([stream1.ticket, stream1.token], ['ticket-1', null]);
  // A new subscription reopens the stream (its URL carries the subscriptions).
  client.subscribe('chat');
  const stream2 = await fakes.nextStream();
  assert.deepEqual([stream2.ticket, stream2.token], ['ticket-2', null]);
  assert.deepEqual(stream2.subs, { news: null, chat: null });
  const tickets = fakes.requestsTo('/rt/ticket');
  assert.deepEqual(tickets.map((request) => request.authorization), ['Bearer tok1', 'Bearer tok1']);
  assert.equal(token.calls, 1, 'the token function is called once per connection attempt');
  assert.deepEqual(changes(states).map(([state]) => state), ['connecting', 'connected']);
});

test('SSE: POST /rt/send carries the token in a header, never in the URL', async (t) => {
  const { client, fakes } = setup(t, { ...SSE, token: 'tok' });
  issueTickets(fakes);
  await connectSse(client, fakes);
  client.publish('chat', 1).catch(() => {});
  const send = await fakes.nextRequest('/rt/send');
  assert.equal(send.authorization, 'Bearer tok');
  assert.deepEqual([send.token, send.ticket], [null, null]);
});

test('long polling: every poll and send carries the header; no ticket is asked for', async (t) => {
  const token = countingToken();
  const { client, fakes } = setup(t, { ...POLL, token });
  start(client);
  const first = await fakes.nextRequest('/rt/poll');
  await first.respond(200, [welcome()]);
  await waitState(client, 'connected');
  client.publish('chat', 1).catch(() => {});
  const send = await fakes.nextRequest('/rt/send');
  const second = await fakes.nextRequest('/rt/poll');
  for (const request of [first, second, send]) {
    assert.equal(request.authorization, 'Bearer tok1', request.path);
    assert.deepEqual([request.token, request.ticket], [null, null], request.path);
  }
  assert.deepEqual(fakes.requestsTo('/rt/ticket'), []);
  assert.equal(token.calls, 1);
});

test('without a token nothing asks for a ticket and no request has an Authorization header', async (t) => {
  for (const transports of [['websocket'], ['sse'], ['longpoll']]) {
    const { client, fakes } = setup(t, { transports });
    start(client);
    if (transports[0] == 'websocket') assert.equal((await fakes.nextSocket()).url, 'ws://test/rt/ws');
    else if (transports[0] == 'sse') assert.equal((await fakes.nextStream()).ticket, null);
    else {
      await (await fakes.nextRequest('/rt/poll')).respond(200, [welcome()]);
      client.publish('chat', 1).catch(() => {});
      await fakes.nextRequest('/rt/send');
    }
    assert.deepEqual(fakes.requestsTo('/rt/ticket'), [], `${transports}`);
    assert.ok(fakes.requests.every((request) => request.authorization == null), `${transports}`);
    client.close();
  }
});

// --- 404: no tickets on this server --------------------------------------------------

test('404 from /rt/ticket (a custom authenticate hook): the token goes in the URL', async (t) => {
  for (const transport of ['websocket', 'sse']) {
    const { client, fakes } = setup(t, { transports: [transport], token: 'tok' });
    start(client);
    await fakes.answerTicket(404, 'not found');
    const opened = transport == 'websocket' ? await fakes.nextSocket() : await fakes.nextStream();
    assert.deepEqual([opened.token, opened.ticket], ['tok', null], transport);
    client.close();
  }
});

// --- 401: the token is refused -------------------------------------------------------------

test('401 from /rt/ticket stops the client as close code 4500 would, with the server reason', async (t) => {
  for (const transport of ['websocket', 'sse']) {
    const { client, fakes, states } = setup(t, { transports: [transport, 'longpoll'], token: 'bad' });
    const subscription = client.subscribe('news');
    const connected = track(client.connect());
    await fakes.answerTicket(401, { error: 'token expired' });
    const [how, error] = await settled(connected);
    assert.equal(how, 'rejected');
    assert.deepEqual([error.name, error.code], ['ClientClosed', 4500]);
    assert.match(error.message, /token expired/);
    assert.deepEqual(changes(states), [['connecting', null, ''], ['closed', 4500, 'token expired']], transport);
    assert.equal((await rejection(subscription.waitSubscribed())).code, 4500);
    await sleep(30);
    assert.deepEqual([fakes.sockets.length, fakes.streams.length], [0, 0], 'nothing opened');
    assert.equal(fakes.requests.length, 1, 'no other attempt, no other transport');
  }
});

test('401 without a JSON body still stops the client (empty reason)', async (t) => {
  const { client, fakes, states } = setup(t, { token: 'bad' });
  start(client);
  await fakes.answerTicket(401, '<html>Unauthorized</html>');
  await waitState(client, 'closed');
  assert.deepEqual(changes(states).at(-1), ['closed', 4500, '']);
});

test('401 for the ticket of a reopened SSE stream stops the client', async (t) => {
  const { client, fakes, states } = setup(t, { ...SSE, token: 'tok' });
  start(client);
  await fakes.answerTicket();
  const stream = await fakes.nextStream();
  await stream.serverSends(welcome());
  await waitState(client, 'connected');
  client.subscribe('news');
  await fakes.answerTicket(401, { error: 'token revoked' });
  await waitState(client, 'closed');
  assert.deepEqual(changes(states).at(-1), ['closed', 4500, 'token revoked']);
  assert.ok(stream.closed);
  assert.equal(fakes.streams.length, 1);
});

// --- other failures: a failed attempt ---------------------------------------------------------

test('a ticket request that fails (5xx, network, no ticket in a 200) is a failed attempt: next transport, fresh token', async (t) => {
  const failures = [
    (request) => request.respond(503, JSON.stringify({ error: 'backend unavailable' })),
    (request) => request.fail(),
    (request) => request.respond(200, '<html>captive portal</html>'),
    (request) => request.respond(200, JSON.stringify({ expires_in: 30 })),
  ];
  for (const fail of failures) {
    const token = countingToken();
    const { client, fakes, states } = setup(t, { transports: ['websocket', 'longpoll'], token });
    start(client);
    await fail(await fakes.nextRequest('/rt/ticket'));
    const poll = await fakes.nextRequest('/rt/poll');
    assert.equal(poll.authorization, 'Bearer tok2', 'the token function was called again');
    assert.equal(fakes.sockets.length, 0, 'no WebSocket without a ticket');
    const [, disconnected] = states;
    assert.deepEqual([disconnected.newState, disconnected.code], ['disconnected', 1006]);
    assert.match(disconnected.reason, /ticket: HTTP 503|Failed to fetch|ticket: HTTP 200/);
    await poll.respond(200, [welcome()]);
    await waitState(client, 'connected');
    client.close();
  }
});

test('a failed ticket request on the only transport retries after backoff, with a new ticket', async (t) => {
  const { client, fakes } = setup(t, { token: 'tok' });
  start(client);
  await fakes.answerTicket(500, 'oops');
  await fakes.answerTicket();
  const ws = await fakes.nextSocket();
  assert.equal(ws.ticket, 'ticket-2');
  await ws.open();
  await ws.serverSends(welcome());
  await waitState(client, 'connected');
});

test('a failed ticket request for a reopened SSE stream drops the connection (1006), which reconnects', async (t) => {
  const { client, fakes, states } = setup(t, { ...SSE, token: 'tok' });
  start(client);
  await fakes.answerTicket();
  const stream1 = await fakes.nextStream();
  await stream1.serverSends(welcome());
  await waitState(client, 'connected');
  client.subscribe('news');
  await (await fakes.nextRequest('/rt/ticket')).fail();
  await fakes.answerTicket();
  const stream2 = await fakes.nextStream();
  assert.ok(stream1.closed);
  assert.deepEqual([stream2.ticket, stream2.subs], ['ticket-3', { news: null }]);
  const drop = states.find(({ newState }) => newState == 'disconnected');
  assert.equal(drop.code, 1006);
  await stream2.serverSends(welcome());
  await waitState(client, 'connected');
});

// --- ended while the ticket is on its way --------------------------------------------------

test('close() while the ticket is on its way: no socket or stream stays open', async (t) => {
  for (const transport of ['websocket', 'sse']) {
    const { client, fakes } = setup(t, { transports: [transport], token: 'tok' });
    start(client);
    const request = await fakes.nextRequest('/rt/ticket');
    client.close();
    await request.respond(200, JSON.stringify({ ticket: 'late' }));
    await sleep(10);
    for (const socket of fakes.sockets) assert.ok(socket.closedByClient, 'socket closed at once');
    for (const stream of fakes.streams) assert.ok(stream.closed, 'stream closed at once');
    assert.equal(client.state, 'closed');
  }
});

test('close() while the ticket of a reopened SSE stream is on its way: no new stream', async (t) => {
  const { client, fakes } = setup(t, { ...SSE, token: 'tok' });
  start(client);
  await fakes.answerTicket();
  const stream = await fakes.nextStream();
  await stream.serverSends(welcome());
  await waitState(client, 'connected');
  client.subscribe('news');
  const request = await fakes.nextRequest('/rt/ticket');
  client.close();
  await request.respond(200, JSON.stringify({ ticket: 'late' }));
  await sleep(10);
  assert.equal(fakes.streams.length, 1);
  assert.ok(stream.closed);
});

test('no welcome in time while the ticket request hangs: a failed attempt like any other', async (t) => {
  const { client, fakes, states } = setup(t, { transports: ['websocket', 'longpoll'], token: 'tok', connectTimeout: 0.1 });
  start(client);
  const request = await fakes.nextRequest('/rt/ticket');
  const poll = await fakes.nextRequest('/rt/poll');
  assert.match(states[1].reason, /no welcome within/);
  await request.respond(200, JSON.stringify({ ticket: 'late' }));
  await sleep(10);
  for (const socket of fakes.sockets) assert.ok(socket.closedByClient, 'a late socket is closed at once');
  await poll.respond(200, [welcome()]);
  await waitState(client, 'connected');
});

// --- probes and token expiry -----------------------------------------------------------------

test('a background probe calls the token function and buys its own ticket', async (t) => {
  const token = countingToken();
  const { client, fakes } = setup(t, { transports: ['websocket', 'sse'], token, probeInterval: 0.05 });
  issueTickets(fakes);
  start(client);
  await (await fakes.nextSocket()).fail();
  const stream = await fakes.nextStream();
  await stream.serverSends(welcome());
  await waitState(client, 'connected');
  const probe = await fakes.nextSocket();
  assert.equal(token.calls, 3, 'websocket attempt, sse attempt, probe');
  assert.deepEqual([probe.ticket, probe.token], ['ticket-3', null]);
  assert.equal(fakes.requestsTo('/rt/ticket').at(-1).authorization, 'Bearer tok3');
  await probe.open();
  await probe.serverSends(welcome());
  const ws = await fakes.nextSocket();
  assert.equal(ws.ticket, 'ticket-4', 'the switch is a new connection attempt: a new ticket');
  assert.equal(token.calls, 4);
  await ws.open();
  await ws.serverSends(welcome());
  await waitFor(() => client.transport == 'websocket');
});

test('TOKEN_EXPIRED (4003): the client reconnects at once with a fresh token and resumes', async (t) => {
  const token = countingToken();
  const { client, fakes, states } = setup(t, { token });
  issueTickets(fakes);
  const news = client.subscribe('news');
  const ws1 = await (async () => {
    start(client);
    const ws = await fakes.nextSocket();
    await ws.open();
    await ws.serverSends(welcome());
    await waitState(client, 'connected');
    return ws;
  })();
  const subscribe = await waitFor(() => ws1.sent.find((frame) => frame.type == 'subscribe'));
  await ws1.serverSends([{ type: 'subscribed', id: subscribe.id, channel: 'news', recovered: true, position: pos('e', 2) }, publication('news', 'e', 3)]);
  await ws1.serverCloses(4003, 'token expired');
  const ws2 = await fakes.nextSocket();
  assert.equal(fakes.requestsTo('/rt/ticket').at(-1).authorization, 'Bearer tok2');
  assert.equal(ws2.ticket, 'ticket-2');
  await ws2.open();
  await ws2.serverSends(welcome());
  const resubscribe = await waitFor(() => ws2.sent.find((frame) => frame.type == 'subscribe'));
  assert.deepEqual(resubscribe.since, pos('e', 3));
  assert.deepEqual(changes(states).find(([state]) => state == 'disconnected'), ['disconnected', 4003, 'token expired']);
  assert.equal(news.position.offset, 3);
});

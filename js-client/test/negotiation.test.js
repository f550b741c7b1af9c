// Negotiation and fallback between transports (protocol.md 8.7): health check by
// first frame, strikes, fallback without backoff, the transport remembered per
// origin, and probing better transports while on a fallback.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { forgetTransports } from '../src/index.js';
import { createFakes, MemoryStorage, pos, publication, sleep, waitFor, welcome } from './fakes.js';
import { connectSse, setup, start, waitState } from './helpers.js';

const ALL = ['websocket', 'sse', 'longpoll'];

/** The transports of the 'connecting' state changes, in order. */
const tried = (states) => states.filter(({ newState }) => newState == 'connecting').map(({ transport }) => transport);

test('a WebSocket that never sends welcome: connecting(websocket) -> disconnected -> connecting(sse), no backoff', async (t) => {
  t.mock.method(Math, 'random', () => 0.5); // a backoff would wait 50 s
  const { client, fakes, states } = setup(t, { transports: ALL, connectTimeout: 0.15, backoffBase: 100, backoffCap: 100 });
  start(client);
  const ws = await fakes.nextSocket();
  await ws.open(); // an open socket proves nothing
  const stream = await fakes.nextStream();
  assert.ok(ws.closedByClient, 'the silent socket is closed');
  assert.deepEqual(
    states.map(({ newState, transport }) => [newState, transport]),
    [['connecting', 'websocket'], ['disconnected', null], ['connecting', 'sse']],
  );
  assert.equal(states[1].code, 1006);
  await stream.serverSends(welcome());
  await waitState(client, 'connected');
  assert.equal(client.transport, 'sse');
  assert.deepEqual(states.at(-1).transport, 'sse');
});

test('sse failing too falls back to longpoll at once', async (t) => {
  t.mock.method(Math, 'random', () => 0.5);
  const { client, fakes, states } = setup(t, { transports: ALL, connectTimeout: 0.5, backoffBase: 100, backoffCap: 100 });
  start(client);
  await (await fakes.nextSocket()).fail();
  await (await fakes.nextStream()).fail();
  const poll = await fakes.nextRequest('/rt/poll');
  assert.deepEqual(tried(states), ALL);
  await poll.respond(200, [welcome()]);
  await waitState(client, 'connected');
  assert.equal(client.transport, 'longpoll');
});

test('a transport that worked falls back only at its second consecutive strike', async (t) => {
  const { client, fakes, states } = setup(t, { transports: ['websocket', 'sse'], connectTimeout: 0.3 });
  start(client);
  const ws1 = await fakes.nextSocket();
  await ws1.open();
  await ws1.serverSends(welcome({ ping_interval: 0.02, pong_timeout: 0.02 }));
  await waitState(client, 'connected');
  // Strike 1: went silent after working. Back on the WebSocket (after backoff).
  const ws2 = await fakes.nextSocket();
  assert.equal(states.find(({ newState }) => newState == 'disconnected').code, 4000);
  assert.deepEqual(tried(states), ['websocket', 'websocket']);
  // Strike 2: no welcome within connectTimeout. Now SSE, at once.
  await ws2.open();
  await fakes.nextStream();
  assert.deepEqual(tried(states), ['websocket', 'websocket', 'sse']);
  assert.equal(fakes.sockets.length, 2);
});

test('drops that are not strikes keep the transport: 1001 three times stays on websocket', async (t) => {
  const { client, fakes, states } = setup(t, { transports: ['websocket', 'sse'] });
  start(client);
  for (let i = 0; i < 3; i++) {
    const ws = await fakes.nextSocket();
    await ws.open();
    await ws.serverSends(welcome());
    await waitState(client, 'connected');
    await ws.serverCloses(1001);
  }
  await fakes.nextSocket();
  assert.deepEqual(tried(states), ['websocket', 'websocket', 'websocket', 'websocket']);
  assert.equal(fakes.streams.length, 0);
});

test('after all transports failed, the client starts again at the best one that worked for it', async (t) => {
  // WebSocket works, then fails twice (silent, then no welcome): fallback to SSE,
  // which works (and is the one remembered for the origin), then fails twice too.
  // Starting over, the WebSocket comes first again: it worked for this client.
  const { client, fakes, states } = setup(t, { transports: ['websocket', 'sse'], connectTimeout: 0.15 });
  const silentSoon = welcome({ ping_interval: 0.02, pong_timeout: 0.02 });
  start(client);
  const ws1 = await fakes.nextSocket();
  await ws1.open();
  await ws1.serverSends(silentSoon);
  await fakes.nextSocket(); // strike 1, then no welcome: strike 2
  const stream1 = await fakes.nextStream();
  await stream1.serverSends(silentSoon);
  await waitState(client, 'connected');
  assert.equal(fakes.storage.json('rtlink:transports')['http://test'][0], 'sse');
  await fakes.nextStream(); // strike 1, then no welcome: strike 2
  await fakes.nextSocket(2);
  assert.deepEqual(tried(states), ['websocket', 'websocket', 'sse', 'sse', 'websocket']);
});

test('reconnect() while connecting retries the same transport (no strike)', async (t) => {
  const { client, fakes, states } = setup(t, { transports: ['websocket', 'sse'] });
  start(client);
  await fakes.nextSocket();
  client.reconnect();
  await waitFor(() => tried(states).length == 2);
  assert.deepEqual(tried(states), ['websocket', 'websocket']);
});

test('when every transport fails: back off, then start again at the first', async (t) => {
  t.mock.method(Math, 'random', () => 0.5);
  // connectTimeout 0.15 s per transport; the backoff after both failed: 0.5 * 1 s.
  const { client, fakes, states } = setup(t, { transports: ['websocket', 'sse'], connectTimeout: 0.15, backoffBase: 1, backoffCap: 10 });
  start(client);
  const secondSocket = await fakes.nextSocket(1);
  const gap = (i) => states[i].at - states[i - 1].at;
  assert.ok(gap(2) < 400, `websocket -> sse without backoff (${gap(2)} ms)`);
  assert.ok(gap(4) >= 450, `backed off ${gap(4)} ms before starting again`);
  assert.deepEqual(tried(states), ['websocket', 'sse', 'websocket']);
  const timeline = states.map(({ newState, transport }) => `${newState}:${transport}`);
  assert.deepEqual(timeline, [
    'connecting:websocket', 'disconnected:null', 'connecting:sse', 'disconnected:null', 'connecting:websocket',
  ]);
  await secondSocket.open();
  await secondSocket.serverSends(welcome());
  await waitState(client, 'connected');
});

test('the working transport is remembered in storage per origin; a new client starts on it', async (t) => {
  const fakes = createFakes();
  const { client } = setup(t, { fakes, transports: ALL, connectTimeout: 0.5 });
  start(client);
  await (await fakes.nextSocket()).fail();
  const stream = await fakes.nextStream();
  await stream.serverSends(welcome());
  await waitState(client, 'connected');
  const memory = fakes.storage.json('rtlink:transports');
  assert.deepEqual(Object.keys(memory), ['http://test']);
  const [name, until] = memory['http://test'];
  assert.equal(name, 'sse');
  assert.ok(Math.abs(until - (Date.now() + 600e3)) < 5000, 'remembered for 600 s');
  client.close();

  // A new page: the in-memory map is gone (cleared with a throwaway storage), the
  // storage stays.
  forgetTransports(new MemoryStorage());
  const fresh = createFakes({ storage: fakes.storage });
  const { client: second, states } = setup(t, { fakes: fresh, keepTransports: true, transports: ALL });
  start(second);
  const stream2 = await fresh.nextStream();
  assert.equal(fresh.sockets.length, 0, 'no WebSocket tried first');
  assert.deepEqual(tried(states), ['sse']);
  await stream2.serverSends(welcome());
  await waitState(second, 'connected');
});

test('a remembered transport that expired is not used', async (t) => {
  const storage = new MemoryStorage({ 'rtlink:transports': JSON.stringify({ 'http://test': ['sse', Date.now() - 1] }) });
  const fakes = createFakes({ storage });
  const { client, states } = setup(t, { fakes, transports: ALL });
  start(client);
  await fakes.nextSocket();
  assert.deepEqual(tried(states), ['websocket']);
});

test('a transport remembered for another origin is not used', async (t) => {
  const storage = new MemoryStorage({ 'rtlink:transports': JSON.stringify({ 'http://elsewhere': ['sse', Date.now() + 60e3] }) });
  const fakes = createFakes({ storage });
  const { client, states } = setup(t, { fakes, transports: ALL });
  start(client);
  await fakes.nextSocket();
  assert.deepEqual(tried(states), ['websocket']);
});

test('forgetTransports(storage) clears the memory: a new client starts at the first transport', async (t) => {
  const storage = new MemoryStorage({ 'rtlink:transports': JSON.stringify({ 'http://test': ['longpoll', Date.now() + 60e3] }) });
  forgetTransports(new MemoryStorage());
  const fakes1 = createFakes({ storage });
  const { client: first, states: states1 } = setup(t, { fakes: fakes1, keepTransports: true, transports: ALL });
  start(first);
  await fakes1.nextRequest('/rt/poll');
  assert.deepEqual(tried(states1), ['longpoll'], 'the remembered one first');
  first.close();

  forgetTransports(storage);
  assert.equal(storage.getItem('rtlink:transports'), null);
  const fakes2 = createFakes({ storage });
  const { client: second, states: states2 } = setup(t, { fakes: fakes2, keepTransports: true, transports: ALL });
  start(second);
  await fakes2.nextSocket();
  assert.deepEqual(tried(states2), ['websocket']);
});

/** A client that fell back to SSE (its WebSocket failed at once) with 'chat'
 * subscribed at e:3 and delivered up to e:4; probes every 50 ms. */
async function onSseWithProbes(t, options = {}) {
  const { client, fakes, states } = setup(t, { transports: ['websocket', 'sse'], probeInterval: 0.05, connectTimeout: 1, ...options });
  const chat = client.subscribe('chat');
  const messages = [];
  chat.on('message', (message) => messages.push(message.position.offset));
  start(client);
  await (await fakes.nextSocket()).fail();
  const stream = await connectSse(client, fakes, {}, [
    { type: 'subscribed', channel: 'chat', recovered: true, position: pos('e', 3) },
    publication('chat', 'e', 4),
  ]);
  return { client, fakes, states, chat, messages, stream };
}

test('on a fallback, a probe WebSocket that answers welcome moves the client to websocket without loss', async (t) => {
  const { client, fakes, states, messages, stream } = await onSseWithProbes(t);
  const probe = await fakes.nextSocket();
  assert.equal(client.state, 'connected', 'the probe runs beside the connection');
  assert.equal(client.transport, 'sse');
  await probe.open();
  await probe.serverSends(welcome());
  const ws = await fakes.nextSocket();
  assert.ok(probe.closedByClient, 'the probe is closed after its health check');
  assert.deepEqual(probe.sent, [], 'a probe sends nothing');
  assert.ok(stream.closed, 'the SSE connection was dropped');
  const drop = states.findLast(({ newState }) => newState == 'disconnected');
  assert.equal(drop.reason, 'switching transport');
  assert.equal(states.at(-1).newState, 'connecting');
  assert.equal(states.at(-1).transport, 'websocket');
  await ws.open();
  await ws.serverSends(welcome());
  await waitFor(() => ws.sent.length == 1);
  assert.deepEqual(ws.sent[0], { type: 'subscribe', id: ws.sent[0].id, channel: 'chat', since: pos('e', 4) });
  await ws.serverSends([
    { type: 'subscribed', id: ws.sent[0].id, channel: 'chat', recovered: true, position: pos('e', 5) },
    publication('chat', 'e', 5),
  ]);
  assert.deepEqual(messages, [4, 5]);
  assert.equal(client.transport, 'websocket');
});

test('on a fallback, a probe WebSocket that stays silent changes nothing; probes go on', async (t) => {
  const { client, fakes, stream } = await onSseWithProbes(t, { connectTimeout: 0.2 });
  const probe1 = await fakes.nextSocket();
  await probe1.open();
  await waitFor(() => probe1.closedByClient, { message: 'the probe gave up' });
  await fakes.nextSocket(); // the next probe
  assert.equal(client.transport, 'sse');
  assert.equal(stream.closed, false);
  assert.equal(fakes.streams.length, 1);
});

test('on a fallback, a probe WebSocket that fails (closes) does not move the client', async (t) => {
  const { client, fakes, stream, states } = await onSseWithProbes(t);
  const probe = await fakes.nextSocket();
  await probe.fail();
  await sleep(30);
  assert.equal(stream.closed, false, 'the SSE connection is kept');
  assert.equal(client.transport, 'sse');
  assert.ok(!states.some(({ reason }) => reason == 'switching transport'));
});

test('on the first transport, no probes are made', async (t) => {
  const { client, fakes } = setup(t, { transports: ['websocket', 'sse'], probeInterval: 0.02 });
  start(client);
  const ws = await fakes.nextSocket();
  await ws.open();
  await ws.serverSends(welcome());
  await waitState(client, 'connected');
  await sleep(80);
  assert.equal(fakes.sockets.length, 1);
});

test('close() in the connected callback of a fallback transport leaves no probes running', async (t) => {
  // The leaked interval would keep this process alive: record intervals to clear them.
  const intervals = [];
  const realSetInterval = globalThis.setInterval;
  t.mock.method(globalThis, 'setInterval', (...args) => {
    const id = realSetInterval(...args);
    intervals.push(id);
    return id;
  });
  t.after(() => intervals.forEach((id) => clearInterval(id)));
  const { client, fakes } = setup(t, { transports: ['websocket', 'sse'], probeInterval: 0.02, connectTimeout: 0.2 });
  client.on('state', ({ newState }) => newState == 'connected' && client.close());
  start(client);
  await (await fakes.nextSocket()).fail();
  const stream = await fakes.nextStream();
  // (A short watchdog: the one set after the callback, on the dead connection, would
  // keep this process alive for ping_interval + pong_timeout otherwise.)
  await stream.serverSends(welcome({ ping_interval: 0.01, pong_timeout: 0.01 }));
  await waitState(client, 'closed');
  await sleep(100);
  assert.equal(fakes.sockets.length, 1, 'no probe WebSocket after close()');
});

// --- the Negotiation itself (src/negotiation.js), with plain calls ---------------------

test('Negotiation: strikes, fallback, backoff and a probe that passed', async (t) => {
  const { Negotiation } = await import('../src/negotiation.js');
  t.mock.method(Math, 'random', () => 0.5);
  const options = { storage: new MemoryStorage(), backoffBase: 1, backoffCap: 8 };
  forgetTransports(options.storage);
  const negotiation = new Negotiation(['websocket', 'sse', 'longpoll'], 'http://unit', options);
  negotiation._restart();
  assert.equal(negotiation._transport(), 'websocket');
  assert.equal(negotiation._ended(1006, false), 0); // never worked: the next one at once
  assert.equal(negotiation._transport(), 'sse');
  negotiation._connected();
  assert.equal(options.storage.json('rtlink:transports')['http://unit'][0], 'sse');
  assert.equal(negotiation._ended(4000, true), 500); // worked: one strike, backoff (attempt 0)
  assert.equal(negotiation._ended(1006, false, true), 1000); // requested: no strike (attempt 1)
  assert.equal(negotiation._transport(), 'sse');
  assert.equal(negotiation._ended(1006, false), 2000); // strike 1 again
  assert.equal(negotiation._ended(1006, false), 0); // strike 2 in a row: fall back
  assert.equal(negotiation._transport(), 'longpoll');
  assert.equal(negotiation._ended(1006, false), 4000); // the last one failed too: backoff ...
  assert.equal(negotiation._transport(), 'sse'); // ... from the best that worked here
  negotiation._switchTo = 0; // a probe passed
  assert.equal(negotiation._ended(1006, true), 0); // switch at once
  assert.equal(negotiation._transport(), 'websocket');
  assert.equal(negotiation._ended(1000, true), null); // a stop code
});

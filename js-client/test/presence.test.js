// rtlink-client/presence and the little the core does for it: subscribe's `presence`
// (a frame field, a cursor object), client.onframe and client.send, the session id
// carried to the next stream (protocol.md 4.2, 5.11-5.13, 6.8).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { memberKey, onPresence, presence, trackPresence } from '../src/presence.js';
import { RtlinkError } from '../src/index.js';
import { pos, waitFor, welcome } from './fakes.js';
import { connectSse, connectWebSocket, rejection, sentOf, setup, settled, track, waitState } from './helpers.js';

const alice = { client: 's1', user: 'alice', info: { name: 'Alice' } };
const bob = { client: 's2', user: 'bob', info: null };
const answer = (id, members, count = members.length) => ({ type: 'presence', id, channel: 'room', count, members });
const diff = (fields) => ({ type: 'presence_diff', channel: 'room', count: 0, joins: [], leaves: [], ...fields });

test('subscribe with {presence: true} sends presence: true; without it, no field', async (t) => {
  const { client, fakes } = setup(t);
  client.subscribe('room', { presence: true });
  client.subscribe('news');
  const ws = await connectWebSocket(client, fakes);
  await waitFor(() => sentOf(ws, 'subscribe').length == 2);
  const [room, news] = sentOf(ws, 'subscribe');
  assert.equal(room.presence, true);
  assert.ok(!('presence' in news));
});

test('presence() sends a read and resolves with the answer', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const read = track(presence(client, 'room'));
  await waitFor(() => sentOf(ws, 'presence').length == 1);
  const [frame] = sentOf(ws, 'presence');
  assert.equal(frame.channel, 'room');
  assert.ok(frame.id > 2 ** 52, 'ids of the module do not meet the client\'s');
  await ws.serverSends(answer(frame.id, [alice, bob]));
  assert.deepEqual(await settled(read), ['resolved', { channel: 'room', count: 2, members: [alice, bob] }]);
});

test('a refused read rejects with a ReadError; one refused for now is sent again', async (t) => {
  const { client, fakes } = setup(t);
  const ws = await connectWebSocket(client, fakes);
  const refused = track(presence(client, 'plain'));
  await waitFor(() => sentOf(ws, 'presence').length == 1);
  await ws.serverSends({ type: 'error', id: sentOf(ws, 'presence')[0].id, code: 400, message: 'no presence' });
  const [how, error] = await settled(refused);
  assert.equal(how, 'rejected');
  assert.ok(error instanceof RtlinkError, "the core's error class");
  assert.equal(error.name, 'ReadError');
  assert.equal(error.code, 400);
  const later = track(presence(client, 'room'));
  await waitFor(() => sentOf(ws, 'presence').length == 2);
  const { id } = sentOf(ws, 'presence')[1];
  await ws.serverSends({ type: 'error', id, code: 503, message: 'backend' });
  await waitFor(() => sentOf(ws, 'presence').length == 3, { timeout: 3000 });
  await ws.serverSends(answer(id, [alice]));
  assert.equal((await settled(later))[1].count, 1);
});

test('a read waits for a connection, and is sent again on the next one', async (t) => {
  const { client, fakes } = setup(t);
  const read = track(presence(client, 'room'));
  const first = await connectWebSocket(client, fakes);
  await waitFor(() => sentOf(first, 'presence').length == 1);
  await first.fail();
  const second = await fakes.nextSocket();
  await second.open();
  await second.serverSends(welcome());
  await waitState(client, 'connected');
  await waitFor(() => sentOf(second, 'presence').length == 1);
  await second.serverSends(answer(sentOf(second, 'presence')[0].id, [bob]));
  assert.deepEqual((await settled(read))[1].members, [bob]);
});

test('a read rejects with ClientClosed when the client stops', async (t) => {
  const { client, fakes } = setup(t);
  await connectWebSocket(client, fakes);
  const read = presence(client, 'room');
  client.close();
  assert.equal((await rejection(read)).name, 'ClientClosed');
});

test('onPresence gets the diffs of its channel only, while subscribed with presence', async (t) => {
  const { client, fakes } = setup(t);
  client.subscribe('room', { presence: true });
  client.subscribe('plain'); // (a shared connection's leader relays every tab's events)
  const ws = await connectWebSocket(client, fakes);
  const diffs = [];
  const off = onPresence(client, 'room', (d) => diffs.push(d));
  onPresence(client, 'plain', (d) => diffs.push(d));
  await ws.serverSends([diff({ count: 1, joins: [alice] }), { ...diff({}), channel: 'other' }, { ...diff({}), channel: 'plain' }]);
  assert.deepEqual(diffs.map((d) => d.joins), [[alice]]);
  off();
  await ws.serverSends(diff({ leaves: [alice] }));
  assert.equal(diffs.length, 1);
});

test('trackPresence reads the list, applies joins and leaves, and reads again after a truncated diff', async (t) => {
  const { client, fakes } = setup(t);
  client.subscribe('room', { presence: true });
  const ws = await connectWebSocket(client, fakes);
  const seen = [];
  const stop = trackPresence(client, 'room', ({ members, count }) => seen.push([[...members.values()].map((m) => m.user), count]));
  await waitFor(() => sentOf(ws, 'presence').length == 1);
  await ws.serverSends(answer(sentOf(ws, 'presence')[0].id, [alice]));
  await ws.serverSends(diff({ count: 2, joins: [bob] }));
  await ws.serverSends(diff({ count: 1, leaves: [alice] }));
  await ws.serverSends(diff({ count: 700, truncated: true }));
  await waitFor(() => sentOf(ws, 'presence').length == 2);
  await ws.serverSends(answer(sentOf(ws, 'presence')[1].id, [alice, bob], 700));
  await waitFor(() => seen.length == 4);
  assert.deepEqual(seen, [[['alice'], 1], [['alice', 'bob'], 2], [['bob'], 1], [['alice', 'bob'], 700]]);
  assert.notEqual(memberKey(alice), memberKey({ ...alice, user: 'mallory' }));
  stop();
});

test('SSE: a presence subscription is an object in subs, and the next stream carries the session id', async (t) => {
  const { client, fakes } = setup(t, { transports: ['sse'] });
  client.subscribe('room', { presence: true });
  client.subscribe('news', { since: pos('e1', 4) });
  const stream = await connectSse(client, fakes, { session: 'abc123' });
  assert.deepEqual(JSON.parse(stream.url && new URL(stream.url).searchParams.get('subs')), {
    room: { presence: true },
    news: pos('e1', 4),
  });
  assert.equal(new URL(stream.url).searchParams.get('session'), null); // the first knows none
  client.subscribe('more', { presence: true });
  const next = await fakes.nextStream();
  const query = new URL(next.url).searchParams;
  assert.equal(query.get('session'), 'abc123');
  assert.deepEqual(JSON.parse(query.get('subs')).more, { presence: true });
});

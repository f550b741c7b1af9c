// Tab sharing (src/tabs.js): the tabs of a fake browser (tabfakes.js) share one
// connection to a small fake server; each tab keeps its own subscriptions, positions
// and outbox; the leader hands over when it closes, crashes or is frozen, and nothing
// is lost or repeated.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { history } from '../src/history.js';
import { forgetTransports } from '../src/index.js';
import { onPresence, presence } from '../src/presence.js';
import { createFakes, MemoryStorage, pos, publication, sleep, waitFor, welcome } from './fakes.js';
import { testOptions, URL_BASE } from './helpers.js';
import { createBrowser } from './tabfakes.js';

/**
 * A fake rtlink server over the fake WebSockets: it accepts and welcomes every socket
 * (unless `offline`), answers
 * subscribe (replaying its history after `since`), unsubscribe and publish (once per
 * key, as the real one: the same key gets the first position), and sends each
 * publication to the sockets subscribed to its channel.
 */
class Server {
  constructor(t, fakes) {
    this.fakes = fakes;
    this.history = {}; // channel -> [data]
    this.keys = new Map(); // key -> position
    this.applied = []; // every publish applied: {channel, data, key}
    this.ignore = new Set(); // keys of publishes it neither applies nor answers
    this.connections = [];
    this.offline = false;
    this.refuse = new Set(); // channels whose reads it refuses (403)
    this.holdReads = false; // reads it neither answers nor remembers
    this._timer = setInterval(() => {
      const { sockets } = this.fakes;
      if (!this.offline && this.connections.length < sockets.length) this._accept(sockets[this.connections.length]);
      this.connections.forEach((connection) => this._read(connection));
    }, 1);
    t.after(() => clearInterval(this._timer));
  }

  _accept(ws) {
    const connection = { ws, channels: new Set(), read: 0 };
    this.connections.push(connection);
    ws.open().then(() => ws.serverSends(welcome()));
  }

  /** Wait for the connection number `number` (1 for the first) and return it. */
  async connection(number) {
    await waitFor(() => this.connections.length >= number, { message: `connection #${number}` });
    return this.connections[number - 1];
  }

  /** The sockets still open. */
  get open() {
    return this.connections.filter(({ ws }) => !ws.closed);
  }

  top(channel) {
    return pos('e', (this.history[channel] || []).length);
  }

  publish(channel, data) {
    const list = (this.history[channel] ||= []);
    list.push(data);
    const position = pos('e', list.length);
    for (const { ws, channels } of this.open) {
      if (channels.has(channel)) ws.serverSends(publication(channel, 'e', list.length, data));
    }
    return position;
  }

  /** The answer to a read: the channel's whole history, or one member per
   * connection subscribed to it (protocol.md 5.11-5.13). */
  _answer({ type, id, channel }) {
    if (type == 'history') {
      const publications = (this.history[channel] || []).map((data, index) => ({ data, position: pos('e', index + 1) }));
      return { type, id, channel, publications, position: this.top(channel), recovered: true };
    }
    const members = this.open.filter(({ channels }) => channels.has(channel)).map((_, index) => ({ client: `s${index}`, user: null, info: null }));
    return { type, id, channel, count: members.length, members };
  }

  /** A presence_diff of `channel` to the connections subscribed to it. */
  presenceDiff(channel, joins) {
    for (const { ws, channels } of this.open) {
      if (channels.has(channel)) ws.serverSends({ type: 'presence_diff', channel, count: joins.length, joins, leaves: [] });
    }
  }

  /** Server-side subscribe (protocol.md 6.8) of the first open connection. */
  serverSubscribe(channel) {
    const { ws, channels } = this.open[0];
    channels.add(channel);
    ws.serverSends({ type: 'subscribed', channel, recovered: true, position: this.top(channel), server: true });
  }

  /** Server-side unsubscribe of the first open connection. */
  serverUnsubscribe(channel) {
    const { ws, channels } = this.open[0];
    channels.delete(channel);
    ws.serverSends({ type: 'unsubscribed', channel, code: 403, reason: 'gone' });
  }

  _read(connection) {
    const { ws, channels } = connection;
    while (connection.read < ws.sent.length && !ws.closed) {
      const frame = ws.sent[connection.read++];
      const { type, id, channel } = frame;
      if (type == 'subscribe') {
        channels.add(channel);
        const list = this.history[channel] || [];
        // (With last and no since: the last kept, after subscribed.since: 5.3.)
        const after = frame.since ? frame.since.offset : Math.max(0, list.length - (frame.last || 0));
        const since = after < list.length ? { since: pos('e', after) } : {};
        ws.serverSends([
          { type: 'subscribed', id, channel, recovered: true, position: this.top(channel), ...since },
          ...list.slice(after).map((data, index) => publication(channel, 'e', after + index + 1, data)),
        ]);
      } else if (type == 'unsubscribe') channels.delete(channel);
      else if (type == 'publish' && !this.ignore.has(frame.key)) {
        if (!this.keys.has(frame.key)) {
          this.applied.push({ channel, data: frame.data, key: frame.key });
          this.keys.set(frame.key, this.publish(channel, frame.data));
        }
        ws.serverSends({ type: 'ack', id, position: this.keys.get(frame.key) });
      } else if ((type == 'history' || type == 'presence') && !this.holdReads) {
        ws.serverSends(this.refuse.has(channel) ? { type: 'error', id, code: 403, message: 'no', channel } : this._answer(frame));
      }
    }
  }
}

/** A browser with `count` tabs (more with open()) on one fake server. */
function setupTabs(t, count, options = {}) {
  forgetTransports(new MemoryStorage());
  const fakes = createFakes();
  const browser = createBrowser(t);
  const server = new Server(t, fakes);
  const base = { ...testOptions(fakes), ...options };
  const open = (extra = {}, how) => browser.open(URL_BASE, { ...base, ...extra }, how);
  const tabs = Array.from({ length: count }, () => open());
  return { browser, fakes, server, tabs, open };
}

/** Subscribe the tab's client to `channel`, recording what it delivers in tab.got
 * and its confirmations in tab.confirmed. */
function subscribe(tab, channel, since, last) {
  const subscription = tab.client.subscribe(channel, { since, last });
  (tab.got ||= {})[channel] = [];
  (tab.confirmed ||= {})[channel] = 0;
  subscription.on('message', ({ data, position }) => tab.got[channel].push([data, position.offset]));
  subscription.on('subscribed', () => tab.confirmed[channel]++);
  return subscription;
}

const connected = (tabs) => waitFor(() => tabs.every((tab) => tab.client.state == 'connected'), { message: 'every tab connected' });
const subscribed = (tab, channel) => waitFor(() => tab.confirmed[channel], { message: `tab ${tab.number} on ${channel}` });
/** What `tab` delivered on `channel`: the data in order. */
const data = (tab, channel) => tab.got[channel].map(([value]) => value);

test('three tabs share one connection; each gets the channels it subscribed to', async (t) => {
  const { browser, fakes, server, tabs } = setupTabs(t, 3);
  const [a, b, c] = tabs;
  subscribe(a, 'news');
  subscribe(b, 'sport');
  subscribe(c, 'news');
  subscribe(c, 'sport');
  await server.connection(1);
  await connected(tabs);
  await Promise.all([subscribed(a, 'news'), subscribed(b, 'sport'), subscribed(c, 'news'), subscribed(c, 'sport')]);
  assert.equal(fakes.sockets.length, 1, 'one connection');
  assert.equal(browser.leader(), a, 'the first tab leads');
  server.publish('news', 'n1');
  server.publish('sport', 's1');
  server.publish('news', 'n2');
  await waitFor(() => c.got.news.length == 2 && c.got.sport.length == 1 && a.got.news.length == 2 && b.got.sport.length == 1);
  await sleep(20);
  assert.deepEqual([data(a, 'news'), data(b, 'sport'), data(c, 'news'), data(c, 'sport')], [['n1', 'n2'], ['s1'], ['n1', 'n2'], ['s1']]);
  assert.equal(b.got.news, undefined);
  // The same state, transport and session in every tab.
  const sessions = new Set(tabs.map((tab) => tab.client.sessionId));
  assert.equal(sessions.size, 1);
  assert.ok([...sessions][0]);
  for (const tab of tabs) {
    assert.equal(tab.client.transport, 'websocket');
    assert.deepEqual(tab.states.map((change) => change.newState), ['connecting', 'connected']);
  }
});

test('a channel no tab wants any more is unsubscribed; one another tab still wants is not', async (t) => {
  const { server, tabs } = setupTabs(t, 2);
  const [a, b] = tabs;
  const news = subscribe(a, 'news');
  const [sport] = [subscribe(a, 'sport'), subscribe(b, 'sport')];
  const connection = await server.connection(1);
  await connected(tabs);
  await Promise.all([subscribed(a, 'news'), subscribed(b, 'sport')]);
  news.unsubscribe();
  sport.unsubscribe(); // b still wants it
  await waitFor(() => !connection.channels.has('news'));
  await sleep(20);
  assert.ok(connection.channels.has('sport'));
  server.publish('sport', 1);
  await waitFor(() => b.got.sport.length == 1);
  assert.deepEqual(a.got.sport, []);
});

test('a tab that subscribes from an earlier position gets what it missed; the others nothing twice', async (t) => {
  const { server, tabs, open } = setupTabs(t, 1);
  const [a] = tabs;
  subscribe(a, 'feed');
  const connection = await server.connection(1);
  await subscribed(a, 'feed');
  for (const n of [1, 2, 3, 4]) server.publish('feed', n);
  await waitFor(() => a.got.feed.length == 4);
  // A second tab resumes after offset 1: the connection subscribes again from there.
  const b = open();
  subscribe(b, 'feed', pos('e', 1));
  await waitFor(() => b.got?.feed.length == 3, { message: 'b caught up' });
  server.publish('feed', 5);
  await waitFor(() => a.got.feed.length == 5 && b.got.feed.length == 4);
  await sleep(20);
  assert.deepEqual(data(a, 'feed'), [1, 2, 3, 4, 5]);
  assert.deepEqual(data(b, 'feed'), [2, 3, 4, 5]);
  const resubscribes = connection.ws.sent.filter((frame) => frame.type == 'subscribe');
  assert.deepEqual(resubscribes.map((frame) => frame.since?.offset ?? null), [null, 1]);
  // A third tab from now: confirmed at once, at the connection's position.
  const c = open();
  subscribe(c, 'feed');
  await subscribed(c, 'feed');
  assert.deepEqual(c.client._subscriptions.get('feed').position, pos('e', 5));
  assert.equal(connection.ws.sent.filter((frame) => frame.type == 'subscribe').length, 2, 'no new subscribe');
});

test("a tab that subscribes with last gets the channel's latest; the others nothing twice", async (t) => {
  const { server, tabs, open } = setupTabs(t, 1);
  const [a] = tabs;
  subscribe(a, 'feed');
  const connection = await server.connection(1);
  await subscribed(a, 'feed');
  for (const n of [1, 2, 3, 4]) server.publish('feed', n);
  await waitFor(() => a.got.feed.length == 4);
  // The cursor entry {last: 2} reaches the leader: it subscribes again with last.
  const b = open();
  subscribe(b, 'feed', undefined, 2);
  await waitFor(() => b.got?.feed.length == 2, { message: 'b got the last 2' });
  server.publish('feed', 5);
  await waitFor(() => a.got.feed.length == 5 && b.got.feed.length == 3);
  await sleep(20);
  assert.deepEqual(data(a, 'feed'), [1, 2, 3, 4, 5]);
  assert.deepEqual(data(b, 'feed'), [3, 4, 5]);
  // (Each cursor of b sent before its confirmation asks again: the repeats are dropped.)
  const resubscribes = connection.ws.sent.filter((frame) => frame.type == 'subscribe');
  assert.equal(resubscribes[0].last, undefined);
  assert.ok(resubscribes.length > 1 && resubscribes.slice(1).every((frame) => frame.last == 2));
});

test('a publish from a follower goes out on the leader connection; the answer comes to that tab', async (t) => {
  const { fakes, server, tabs } = setupTabs(t, 2);
  const [a, b] = tabs;
  await server.connection(1);
  await connected(tabs);
  const position = await b.client.publish('chat', { text: 'hi' }, { key: 'k1' });
  assert.deepEqual(position, pos('e', 1));
  assert.deepEqual(server.applied, [{ channel: 'chat', data: { text: 'hi' }, key: 'k1' }]);
  assert.equal(fakes.sockets.length, 1);
  assert.equal(a.client.outboxSize + b.client.outboxSize, 0);
  // A refusal for good comes back as the tab's PublishError.
  server.ignore.add('k2'); // the fake server does not answer it: the test does
  const refused = b.client.publish('chat', 'x', { key: 'k2' });
  const ws = fakes.sockets[0];
  const frame = await waitFor(() => ws.sent.find((sent) => sent.key == 'k2'));
  await ws.serverSends({ type: 'error', id: frame.id, code: 403, message: 'forbidden' });
  await assert.rejects(refused, (error) => error.name == 'PublishError' && error.code == 403 && error.message == 'forbidden');
});

test('the same key from two tabs (a persisted outbox loaded twice) is published once, both answered', async (t) => {
  const { server, tabs } = setupTabs(t, 2);
  const [a, b] = tabs;
  await server.connection(1);
  await connected(tabs);
  const [first, second] = await Promise.all([
    a.client.publish('chat', 'once', { key: 'same' }),
    b.client.publish('chat', 'once', { key: 'same' }),
  ]);
  assert.deepEqual([first, second], [pos('e', 1), pos('e', 1)]);
  assert.equal(server.applied.length, 1);
});

/** Three tabs on 'feed', the first leading; returns what setupTabs does. */
async function feedTabs(t, count = 3) {
  const setup = setupTabs(t, count);
  for (const tab of setup.tabs) subscribe(tab, 'feed');
  await connected(setup.tabs);
  await Promise.all(setup.tabs.map((tab) => subscribed(tab, 'feed')));
  return setup;
}

/** Publish `count` messages to 'feed', one every `every` ms, calling `during(n)`
 * before each. */
async function feed(server, count, during = () => {}, every = 2) {
  for (let n = 0; n < count; n++) {
    await during(n);
    server.publish('feed', n);
    await sleep(every);
  }
}

/** Every tab of `tabs` delivered 0..count-1 once, in order. */
async function allDelivered(tabs, count) {
  await waitFor(() => tabs.every((tab) => tab.got.feed.length >= count), {
    timeout: 5000,
    message: `every tab has ${count} messages: ${tabs.map((tab) => tab.got.feed.length)}`,
  });
  await sleep(30); // and nothing more
  const expected = Array.from({ length: count }, (_, n) => n);
  for (const tab of tabs) assert.deepEqual(data(tab, 'feed'), expected, `tab ${tab.number}`);
}

test('the leader closes mid-stream: the next tab leads, resumes from the positions, loses and repeats nothing', async (t) => {
  const { browser, server, tabs } = await feedTabs(t);
  const [a, b, c] = tabs;
  await feed(server, 60, (n) => n == 20 && a.client.close());
  await allDelivered([b, c], 60);
  assert.equal(browser.leader(), b);
  assert.equal(server.open.length, 1, 'the old connection closed');
  const resubscribe = server.connections[1].ws.sent.find((frame) => frame.type == 'subscribe');
  assert.ok(resubscribe.since.offset >= 20, `resumed from ${JSON.stringify(resubscribe.since)}`);
  for (const tab of [b, c]) {
    assert.deepEqual(tab.states.map((change) => change.newState), ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
    assert.equal(tab.states[2].code, 1001);
  }
});

test('the leader crashes: its lock goes, the next tab leads without a word from it', async (t) => {
  const { browser, server, tabs } = await feedTabs(t);
  const [a, b, c] = tabs;
  // Its socket stays open: the server does not know yet.
  await feed(server, 40, (n) => n == 15 && a.crash());
  await allDelivered([b, c], 40);
  assert.equal(browser.leader(), b);
});

test('a frozen leader is replaced within 3 checks; when it thaws it follows, nothing twice', async (t) => {
  const { browser, server, tabs } = await feedTabs(t);
  const [a, b, c] = tabs;
  const frozenAt = Date.now();
  a.freeze();
  await feed(server, 5); // the frozen leader's socket gets them: relayed after the thaw
  await server.connection(2); // someone took over
  const took = Date.now() - frozenAt;
  assert.ok(took < 3500, `took over after ${took} ms`);
  await feed(server, 10, () => {}, 1);
  a.thaw();
  await feed(server, 10, () => {}, 1);
  // The old leader left its connection (when it lost the lock) and follows: every
  // tab has everything once. (The feed restarted at 0: offsets tell what is new.)
  await waitFor(() => server.connections[0].ws.closed, { message: 'old connection closed' });
  for (const tab of [a, b, c]) {
    await waitFor(() => tab.got.feed.length == 25, { message: `tab ${tab.number}: ${tab.got.feed.length}` });
    await sleep(30);
    assert.deepEqual(tab.got.feed.map(([, offset]) => offset), Array.from({ length: 25 }, (_, n) => n + 1));
  }
  assert.equal(server.open.length, 1);
  assert.notEqual(browser.leader(), a);
  console.log(`[tabs] frozen leader: taken over in ${took} ms, ${server.connections.length - 1} new connections`);
});

test('publishes waiting in any tab are sent once, with their keys, whichever tab leads', async (t) => {
  const { fakes, server, tabs } = setupTabs(t, 3);
  const [a, b, c] = tabs;
  server.offline = true;
  const sent = tabs.flatMap((tab, i) => [1, 2].map((n) => tab.client.publish('notes', `${i}.${n}`, { key: `k${i}.${n}` })));
  const outcomes = Promise.allSettled(sent);
  await sleep(20);
  // The leader goes before it ever connected; the next one connects and every tab sends.
  a.client.close();
  await waitFor(() => fakes.sockets.length == 2);
  server.offline = false;
  const results = await outcomes;
  assert.deepEqual(results.map((result) => result.status), ['rejected', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
  assert.deepEqual(server.applied.map((entry) => entry.key).sort(), ['k1.1', 'k1.2', 'k2.1', 'k2.2']);
  assert.equal(b.client.outboxSize + c.client.outboxSize, 0);
});

test("publishes in flight when the leader's connection drops are sent again and applied once", async (t) => {
  const { server, tabs } = setupTabs(t, 2);
  const [, b] = tabs;
  const first = await server.connection(1);
  await connected(tabs);
  server.ignore.add('lost'); // lost with the connection
  const lost = b.client.publish('notes', 'x', { key: 'lost' });
  await waitFor(() => first.ws.sent.some((frame) => frame.key == 'lost'));
  server.ignore.delete('lost');
  await first.ws.serverCloses(1006);
  await waitFor(() => b.client.state != 'connected');
  const waiting = b.client.publish('notes', 'y', { key: 'offline' }); // while the leader reconnects
  assert.deepEqual(await lost, pos('e', 1));
  assert.deepEqual(await waiting, pos('e', 2));
  assert.deepEqual(server.applied.map((entry) => entry.key), ['lost', 'offline']);
});

test('a tab that closes takes its subscriptions with it', async (t) => {
  const { server, tabs } = setupTabs(t, 2);
  const [a, b] = tabs;
  subscribe(a, 'mine');
  subscribe(b, 'theirs');
  const connection = await server.connection(1);
  await Promise.all([subscribed(a, 'mine'), subscribed(b, 'theirs')]);
  b.client.close();
  await waitFor(() => !connection.channels.has('theirs'));
  assert.ok(connection.channels.has('mine'));
  assert.equal(b.client.state, 'closed');
  assert.equal(a.client.state, 'connected');
});

test('a page hidden into the back/forward cache leaves, and joins again when shown', async (t) => {
  const { browser, server, tabs } = await feedTabs(t, 2);
  const [a, b] = tabs;
  b.fire('pagehide', { persisted: true });
  await sleep(20);
  server.publish('feed', 0);
  await waitFor(() => a.got.feed.length == 1);
  b.fire('pageshow', { persisted: true });
  await waitFor(() => b.got.feed.length == 1, { message: 'b resumed' });
  await allDelivered([a, b], 1);
  assert.equal(browser.leader(), a);
});

test('the leader hidden into the back/forward cache hands over', async (t) => {
  const { browser, server, tabs } = await feedTabs(t, 2);
  const [a, b] = tabs;
  a.fire('pagehide', { persisted: true });
  await waitFor(() => browser.leader() == b);
  server.publish('feed', 0);
  await allDelivered([b], 1);
  assert.equal(server.open.length, 1);
});

test('a refusal that stops the client stops every tab', async (t) => {
  const { fakes, server, tabs } = setupTabs(t, 2);
  server.offline = true;
  const ws = await fakes.nextSocket();
  await ws.open();
  await ws.serverSends({ type: 'close', code: 4500, reason: 'no' });
  await waitFor(() => tabs.every((tab) => tab.client.state == 'closed'));
  for (const tab of tabs) assert.deepEqual([tab.states.at(-1).code, tab.states.at(-1).reason], [4500, 'no']);
});

test('reconnect() in a follower reconnects the shared connection', async (t) => {
  const { server, tabs } = await feedTabs(t, 2);
  tabs[1].client.reconnect();
  await server.connection(2);
  await feed(server, 3);
  await allDelivered(tabs, 3);
  assert.equal(server.open.length, 1);
});

test('shareConnection: false, no Web Locks, or locks refused: a connection per tab', async (t) => {
  for (const how of ['option', 'no locks', 'refused']) {
    const { browser, server, open } = setupTabs(t, 0);
    const tabs = [0, 1].map(() => open(how == 'option' ? { shareConnection: false } : {}, { connect: false }));
    for (const tab of tabs) {
      tab.refuse = how == 'refused';
      subscribe(tab, 'news');
      tab.client.publish('chat', tab.number).catch(() => {});
      browser.start(tab, { locks: how != 'no locks' });
    }
    await connected(tabs);
    await Promise.all(tabs.map((tab) => subscribed(tab, 'news')));
    server.publish('news', how);
    await waitFor(() => tabs.every((tab) => tab.got.news.length == 1), { message: how });
    assert.equal(server.connections.length, 2, how);
    assert.deepEqual(server.applied.map((entry) => entry.data).sort(), [1, 2]);
  }
});

test("a follower's wake-up (back online, or shown) ends the leader's wait to reconnect", async (t) => {
  t.mock.method(Math, 'random', () => 0.99); // the longest wait
  const { server, tabs } = setupTabs(t, 2, { connectTimeout: 0.05, backoffBase: 60, backoffCap: 60 });
  server.offline = true;
  await waitFor(() => tabs.every((tab) => tab.states?.some((change) => change.newState == 'disconnected')));
  server.offline = false;
  await sleep(100);
  assert.equal(tabs[1].client.state, 'disconnected', 'waiting a minute');
  tabs[1].client._wakeUp(); // what 'online' and 'visibilitychange' call
  await connected(tabs);
  assert.equal(server.connections.length, 2); // the first never answered
});

test('a server-side subscription reaches every tab, is kept by the leader, and ends in every tab', async (t) => {
  const { server, tabs } = setupTabs(t, 2);
  const [a, b] = tabs;
  subscribe(a, 'chat');
  const connection = await server.connection(1);
  await connected(tabs);
  await subscribed(a, 'chat');
  const adopted = tabs.map(() => []);
  tabs.forEach((tab, index) =>
    tab.client.on('subscription', (subscription) => {
      const got = [];
      const ended = [];
      subscription.on('message', ({ data }) => got.push(data));
      subscription.on('unsubscribed', (event) => ended.push(event.reason));
      adopted[index].push({ subscription, got, ended });
    }),
  );
  server.serverSubscribe('alerts');
  await waitFor(() => adopted.every((list) => list.length == 1), { message: 'adopted in every tab' });
  server.publish('alerts', 'fire');
  await waitFor(() => adopted.every(([{ got }]) => got.length == 1));
  // The tabs told the leader: a later cursor does not drop it from the connection.
  subscribe(b, 'other');
  await subscribed(b, 'other');
  await sleep(20);
  assert.ok(connection.channels.has('alerts'));
  assert.deepEqual(Object.keys(a.client._cursor()).sort(), ['alerts', 'chat']);
  server.serverUnsubscribe('alerts');
  await waitFor(() => adopted.every(([{ ended }]) => ended.length == 1), { message: 'ended in every tab' });
  assert.deepEqual(adopted.map(([{ got, ended }]) => [got, ended]), [[['fire'], ['gone']], [['fire'], ['gone']]]);
  assert.ok(!('alerts' in a.client._cursor()) && !('alerts' in b.client._cursor()));
  // The tabs told the leader: a later cursor does not subscribe it again.
  for (const tab of tabs) subscribe(tab, 'third');
  await Promise.all(tabs.map((tab) => subscribed(tab, 'third')));
  await sleep(20);
  assert.ok(!connection.channels.has('alerts'));
});

test('history and presence reads from any tab go on the shared connection; each answer comes to the tab that asked', async (t) => {
  const { fakes, server, tabs } = setupTabs(t, 3);
  const [, b, c] = tabs;
  await server.connection(1);
  await connected(tabs);
  server.publish('news', 'one');
  server.publish('news', 'two');
  subscribe(b, 'room');
  await subscribed(b, 'room');
  const [page, sameTime, members] = await Promise.all([
    history(b.client, 'news', { limit: 10 }),
    history(c.client, 'news', { limit: 10 }),
    presence(c.client, 'room'),
  ]);
  assert.deepEqual(page.publications.map(({ data }) => data), ['one', 'two']);
  assert.deepEqual(sameTime, page);
  assert.equal(members.count, 1);
  assert.equal(fakes.sockets.length, 1);
  const reads = fakes.sockets[0].sent.filter(({ type }) => type == 'history' || type == 'presence');
  assert.equal(new Set(reads.map(({ id }) => id)).size, 3, 'every read under an id of its own');
  // A refusal for good is the asking tab's ReadError.
  server.refuse.add('secret');
  await assert.rejects(history(c.client, 'secret'), (error) => error.name == 'ReadError' && error.code == 403);
});

test('presence_diff events reach the tabs that watch them; a read in flight when the leader leaves is answered by the next', async (t) => {
  const { fakes, server, tabs } = setupTabs(t, 2);
  const [a, b] = tabs;
  await server.connection(1);
  await connected(tabs);
  b.client.subscribe('room', { presence: true });
  const diffs = [];
  onPresence(b.client, 'room', (diff) => diffs.push(diff.joins.map(({ user }) => user)));
  const notAsked = [];
  onPresence(a.client, 'room', (diff) => notAsked.push(diff)); // a has no such subscription
  await waitFor(() => fakes.sockets[0].sent.some((frame) => frame.type == 'subscribe' && frame.presence === true));
  await waitFor(() => server.open[0].channels.has('room'), { message: 'the server subscribed the connection' });
  server.presenceDiff('room', [{ client: 's9', user: 'zoe', info: null }]);
  await waitFor(() => diffs.length == 1);
  assert.deepEqual(diffs, [['zoe']]);
  assert.deepEqual(notAsked, [], 'relayed to every tab, taken by those that asked');
  server.holdReads = true;
  const read = history(b.client, 'news');
  await waitFor(() => fakes.sockets[0].sent.some((frame) => frame.type == 'history'));
  server.holdReads = false;
  a.client.close();
  const next = await server.connection(2);
  assert.deepEqual((await read).publications, []);
  assert.ok(next.ws.sent.some((frame) => frame.type == 'history'), 'sent again on the new connection');
});

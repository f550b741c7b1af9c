// The client's core without I/O (src/core.js): driven with plain calls through a
// small subclass that records what it asks for, as tests/client/test_core.py does
// for the Python core.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { codecs } from '../src/codec.js';
import { ClientCore, RESEND, RESUBSCRIBE } from '../src/core.js';
import { Subscription } from '../src/subscription.js';
import { pos, publication, welcome } from './fakes.js';
import { isInvalidInput, quiet } from './helpers.js';

class Recorder extends ClientCore {
  constructor(options = {}) {
    super(codecs.json, { outboxLimit: 1000, backoffBase: 0.5, backoffCap: 30, ...options });
    this.sent = [];
    this.changed = 0;
    this.retries = [];
  }
  _send(part) {
    this.sent.push(JSON.parse(part));
  }
  _subscriptionsChanged() {
    this.changed++;
  }
  _retryLater(kind) {
    this.retries.push([kind, this._retryAttempts[kind]++]);
  }
  take() {
    const sent = this.sent;
    this.sent = [];
    return sent;
  }
  subscribe(channel, since) {
    const subscription = new Subscription(channel, since, this);
    subscription.messages = [];
    subscription.events = [];
    subscription.on('message', (message) => subscription.messages.push(message));
    subscription.on('subscribed', (event) => subscription.events.push(event));
    this._subscribe(subscription);
    return subscription;
  }
  publish(channel, data, key) {
    const result = {};
    this._publish(channel, data, key, (error, position) => Object.assign(result, { error, position }));
    return result;
  }
}

test('_start: a welcome of version 1 subscribes and sends the outbox; anything else says why not', () => {
  const core = new Recorder();
  assert.deepEqual(core._start({ type: 'close', code: 4500, reason: 'who' }, false), [4500, 'who']);
  assert.deepEqual(core._start({ type: 'ping' }, false), [1006, 'no welcome']);
  assert.deepEqual(core._start(welcome({ version: 2 }), false), [4502, 'protocol version 2']);
  core.subscribe('a', pos('e', 5));
  core.publish('a', 'offline', 'k1');
  assert.deepEqual(core.take(), []);
  assert.equal(core._start(welcome(), false), undefined);
  assert.deepEqual(core.take(), [
    { type: 'subscribe', id: 1, channel: 'a', since: pos('e', 5) },
    { type: 'publish', id: 2, channel: 'a', data: 'offline', key: 'k1' },
  ]);
});

test('_receive: subscribed, then publications deduplicated by offset, new epochs adopted', (t) => {
  quiet(t);
  const core = new Recorder();
  const chat = core.subscribe('chat');
  core._start(welcome(), false);
  const [subscribe] = core.take();
  core._receive(publication('chat', 'e', 1)); // not confirmed yet: dropped
  core._receive({ type: 'subscribed', id: subscribe.id, channel: 'chat', recovered: true, position: pos('e', 5) });
  assert.deepEqual(chat.events, [{ recovered: true, resumed: false, position: pos('e', 5), since: undefined }]);
  for (const [epoch, offset] of [['e', 5], ['e', 6], ['e', 6], ['e', 4], ['f', 1], ['f', 1], ['g', 9]]) {
    core._receive(publication('chat', epoch, offset));
  }
  assert.deepEqual(chat.messages.map(({ position }) => `${position.epoch}:${position.offset}`), ['e:6', 'f:1', 'g:9']);
  assert.deepEqual(chat.position, pos('g', 9));
  assert.deepEqual(core._receive({ type: 'close', code: 4003, reason: 'expired' }), [4003, 'expired']);
});

test('temporary refusals are retried in rounds; permanent ones end the request', () => {
  const core = new Recorder();
  core._start(welcome(), false);
  const publishes = ['k0', 'k1'].map((key) => core.publish('c', 1, key));
  for (const frame of core.take()) core._receive({ type: 'error', id: frame.id, code: 429, message: 'slow' });
  assert.deepEqual(core.retries.map(([kind]) => kind), [RESEND, RESEND]); // the client keeps one timer
  core._retry(RESEND);
  const again = core.take();
  assert.deepEqual(again.map(({ key }) => key), ['k0', 'k1']);
  core._receive({ type: 'ack', id: again[0].id, position: pos('e', 1) });
  core._receive({ type: 'error', id: again[1].id, code: 403, message: 'no' });
  assert.deepEqual(publishes[0], { error: null, position: pos('e', 1) });
  assert.deepEqual([publishes[1].error.name, publishes[1].error.code], ['PublishError', 403]);
  assert.equal(core._outbox._entries.size, 0);
});

test('on a transport that carries the subscriptions, changes ask for a new request', () => {
  const core = new Recorder();
  core.subscribe('a');
  core._start(welcome(), true, 'a');
  assert.equal(core.changed, 0);
  core.subscribe('b');
  assert.equal(core.changed, 1);
  core._receive({ type: 'error', channel: 'b', code: 503, message: 'later' });
  assert.deepEqual(core._cursor(), { a: null }); // held out until the retry
  core._retry(RESUBSCRIBE);
  assert.deepEqual(core._cursor(), { a: null, b: null });
  assert.equal(core.changed, 2);
  core._receive({ type: 'ping' });
  assert.deepEqual(core.take(), []); // no pong on SSE or long polling
});

test('bad input is InvalidInput, as in Python', () => {
  const core = new Recorder();
  for (const bad of [() => core.subscribe('a b'), () => core.publish('c', NaN), () => core.publish('c', 1, '')]) {
    assert.throws(bad, isInvalidInput);
  }
  core.subscribe('a');
  assert.throws(() => core.subscribe('a'), isInvalidInput);
});

test('_stop fails what waits; later calls are refused', async () => {
  const core = new Recorder();
  const chat = core.subscribe('chat');
  const result = core.publish('c', 1);
  const closed = new Error('closed');
  core._stop(closed);
  assert.equal(result.error, closed);
  await assert.rejects(chat.waitSubscribed(), (error) => error == closed);
  assert.throws(() => core.publish('c', 1), (error) => error == closed);
});

for (const carries of [false, true]) {
  test(`server-side subscribed adds a subscription, resumed as the client's own (carries: ${carries})`, () => {
    const core = new Recorder();
    const adopted = [];
    core.on('subscription', (subscription) => {
      subscription.messages = [];
      subscription.events = [];
      subscription.on('message', (message) => subscription.messages.push(message));
      subscription.on('subscribed', (event) => subscription.events.push(event));
      adopted.push(subscription);
    });
    core._start(welcome(), carries, '');
    core.take();
    core._receive({ type: 'subscribed', channel: 'other', recovered: true, position: pos('e', 5) });
    assert.equal(adopted.length, 0); // not marked server: not the client's, ignored
    core._receive({ type: 'subscribed', channel: 'news', recovered: true, position: pos('e', 5), server: true });
    const [news] = adopted;
    assert.equal(news.channel, 'news');
    assert.equal(core._subscriptions.get('news'), news);
    assert.deepEqual(news.events, [{ recovered: true, resumed: false, position: pos('e', 5), since: undefined }]);
    core._receive(publication('news', 'e', 6));
    assert.deepEqual(news.messages.map(({ position }) => position), [pos('e', 6)]);
    assert.deepEqual(news.position, pos('e', 6));
    assert.deepEqual([core.take(), core.changed], [[], 0]); // the server has it already
    core._end();
    core._start(welcome(), carries, carries ? 'news' : '');
    if (carries) assert.deepEqual(core._cursor(), { news: pos('e', 6) });
    else assert.deepEqual(core.take(), [{ type: 'subscribe', id: 1, channel: 'news', since: pos('e', 6) }]);
  });
}

test("a server-side subscribed crossing the client's own subscribe settles it: its 409 refuses nothing", async () => {
  const core = new Recorder();
  const chat = core.subscribe('chat');
  core._start(welcome(), false);
  const [subscribe] = core.take();
  core._receive({ type: 'subscribed', channel: 'chat', recovered: true, position: pos('e', 5), server: true });
  await chat.waitSubscribed();
  core._receive({ type: 'error', id: subscribe.id, code: 409, message: 'already subscribed', channel: 'chat' });
  assert.equal(core._subscriptions.get('chat'), chat);
  assert.equal(chat._active, true);
});

test('unsubscribed drops the subscription for good, with the event', () => {
  const core = new Recorder();
  const chat = core.subscribe('chat');
  core._start(welcome(), false);
  const [subscribe] = core.take();
  core._receive({ type: 'subscribed', id: subscribe.id, channel: 'chat', recovered: true, position: pos('e', 5) });
  const ended = [];
  chat.on('unsubscribed', (event) => ended.push(event));
  const frame = { type: 'unsubscribed', channel: 'chat', code: 403, reason: 'kicked' };
  core._receive(frame);
  assert.deepEqual(ended, [frame]);
  assert.deepEqual(core._cursor(), {});
  core._receive({ ...frame, reason: 'again' }); // unknown now: ignored
  assert.equal(ended.length, 1);
  core._end();
  core._start(welcome(), false);
  assert.deepEqual(core.take(), []);
});

// The client's core, without I/O: subscriptions, the outbox, the requests in flight,
// and what each frame from the server means for them (protocol.md 8.3-8.5), as
// rtlink/client/core.py.
//
// It is driven by plain calls: the application's _subscribe/_unsubscribe/_publish,
// then per connection _start(first frame), _receive(frame) for every later one, _end()
// when it is gone, _retry(kind) when a retry round's delay passed, _stop(error) when
// the client stops for good. It answers through three methods of its subclass, the
// client (client.js), which does the I/O:
//   _send(part)                 an encoded frame for the current connection
//   _subscriptionsChanged()     the transport carries the subscriptions in its
//                               requests (SSE, long polling): make a new one
//   _retryLater(kind)           unless a retry of `kind` is pending, call _retry(kind)
//                               after the backoff delay of attempt
//                               _retryAttempts[kind]++, unless the connection ends
//                               first: a burst of refusals (a flushed outbox over the
//                               publish rate) makes one round, and the attempt grows
//                               once per round
// (The Python client holds its core instead of extending it; in JS the subclass
// saves the bytes of an indirection. Tests drive the core through a small subclass.)
import { isTemporary } from './codes.js';
import { invalidInput, RtlinkError } from './errors.js';
import { Events } from './events.js';
import { checkChannel, checkKey } from './names.js';
import { Outbox } from './outbox.js';
import { Subscription } from './subscription.js';
import { isAfter } from './positions.js';

const MAX_DEPTH = 64;

/** The kinds of retry rounds: what is sent again (numbers, for bytes). */
export const RESEND = 0;
export const RESUBSCRIBE = 1;

/** Throw InvalidInput unless `value` is data both codecs carry identically (3.4). */
function checkData(value, depth = 0) {
  const type = typeof value;
  const fail = (reason) => {
    throw invalidInput('invalid data: ' + reason);
  };
  if (type == 'string') (value.isWellFormed?.() ?? true) || fail('lone surrogate');
  else if (type == 'number') isFinite(value) || fail(value);
  else if (value && type == 'object') {
    if (depth == MAX_DEPTH) fail('too deep');
    const prototype = Object.getPrototypeOf(value);
    if (!Array.isArray(value) && prototype && prototype != Object.prototype) fail('not plain');
    // An array's keys are its indices: the same loop checks its items.
    for (const key in value) {
      checkData(key); // a string: well-formed
      checkData(value[key], depth + 1);
    }
  } else if (value !== null && type != 'boolean') fail(type);
}

function randomKey() {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((byte) => (256 + byte).toString(16).slice(1)).join('');
}

export class ClientCore extends Events {
  /**
   * @param {object} codec the codec frames are encoded with (codec.js)
   * @param {object} options the client's: outboxLimit, storage, persist, backoffBase, backoffCap
   */
  constructor(codec, options) {
    // The client's events: 'state' (client.js), 'subscription' (a subscription the
    // server made: 8.8).
    super(['state', 'subscription']);
    this._codec = codec;
    this._options = options;
    this._subscriptions = new Map(); // channel -> Subscription
    this._outbox = new Outbox(options.outboxLimit, options.storage, options.persist);
    this._requests = new Map(); // id -> subscription or outbox entry (null: unsubscribe)
    this._lastId = 0; // request ids are never reused in a client's lifetime
    // The backoff attempt of the retry rounds after temporary refusals, per kind
    // (rounds since a request of that kind last succeeded). At most one round of a
    // kind is pending, dropped with the connection: the client keeps its timer.
    this._retryAttempts = [0, 0]; // by kind
    // Set later: _welcome (of the current connection), _carries (its transport carries
    // the subscriptions in its requests), _closed (the error that stopped the client).
  }

  /** The subscriptions and their positions, for the transports that carry them
   * (with its `last`, a subscription's entry is {epoch?, offset?, last}: 4.2); one
   * refused for now waits out of it until its retry. */
  _cursor() {
    const cursor = {};
    for (const [channel, { position, last, presence, _held }] of this._subscriptions) {
      // With last or presence: an object (protocol.md 4.2).
      if (!_held) cursor[channel] = last || presence ? { ...position, last, presence } : position;
    }
    return cursor;
  }

  // --- the application -----------------------------------------------------------

  _subscribe(subscription) {
    const { channel } = subscription;
    checkChannel(channel);
    if (this._subscriptions.has(channel)) throw invalidInput(`already subscribed to '${channel}'`);
    if (this._closed) subscription._end(this._closed);
    else {
      this._subscriptions.set(channel, subscription);
      if (this._welcome) this._resubscribe(1);
    }
  }

  _unsubscribe(subscription) {
    const { channel } = subscription;
    if (this._subscriptions.get(channel) == subscription) {
      this._subscriptions.delete(channel);
      if (this._welcome) {
        this._requests.delete(subscription._requestId);
        if (this._carries) this._subscriptionsChanged();
        else this.send({ type: 'unsubscribe', id: this._request(null), channel });
      }
    }
    subscription._end();
  }

  /** Queue a publish (send it if connected); `settle(error, position)` gets its fate. */
  _publish(channel, data, key, settle) {
    if (this._closed) throw this._closed;
    checkChannel(channel);
    checkData(data);
    checkKey(key);
    const entry = { channel, data, key: key || randomKey(), _settle: settle };
    this._outbox._add(entry);
    if (this._welcome) this._sendPublish(entry);
  }

  // --- the connection ------------------------------------------------------------

  /** A connection's first frame arrived: if it is a welcome, subscribe and send the
   * outbox. `carries`: the transport carries the subscriptions in its requests, the
   * channels of its request being `requested` (joined). Returns [code, reason] to
   * end the connection with if it cannot start. */
  _start(first, carries, requested) {
    // A close frame first (e.g. 4500 unauthorized) applies its code.
    if (first.type == 'close') return [first.code, first.reason];
    if (first.type != 'welcome') return [1006, 'no welcome'];
    if (first.version != 1) return [4502, `protocol version ${first.version}`];
    this._welcome = first;
    this._carries = carries;
    // On SSE and long polling, a new request if subscribed while this one was on its way.
    this._resubscribe(requested != Object.keys(this._cursor()).join());
    this._resend();
  }

  /** Handle a frame of the current connection; returns [code, reason] if it ends it. */
  _receive(frame) {
    const { type, id, channel, position } = frame;
    const requests = this._requests;
    const subscription = this._subscriptions.get(channel);
    let target = requests.get(id);
    requests.delete(id);
    // Every frame, for opt-in modules (rtlink-client/presence: presence answers and
    // presence_diff events; client.send() sends their frames).
    this.onframe?.(frame);
    if (type == 'publication') {
      // Not subscribed, not confirmed on this connection yet, or delivered already. (A
      // new epoch is adopted: the server's replay already said recovered=false.)
      if (!subscription?._active || !isAfter(position, subscription.position)) return;
      subscription.position = position;
      subscription._emit('message', { channel, data: frame.data, position });
    } else if (type == 'ack') {
      if (target?._settle) {
        this._retryAttempts[RESEND] = 0;
        if (position) target._settle(null, position); // the outbox takes it out
      }
    } else if (type == 'subscribed') {
      const { recovered, since } = frame;
      if (id == null) {
        // The transport's request carried the subscription (SSE, long polling); a
        // confirmation of what is known already tells nothing new. With `server`,
        // the server subscribed the client on its own (8.8): the client adds it.
        target = subscription;
        if (target?._active && recovered) return;
        if (!target && frame.server) this._subscriptions.set(channel, (target = new Subscription(channel, 0, this))), this._emit('subscription', target);
      }
      if (target && !target._settle) {
        const resumed = !!target.position;
        this._retryAttempts[RESUBSCRIBE] = 0;
        target._active = true;
        // A server-side subscribed may cross the client's own subscribe: that request
        // is settled, its 409 refuses nothing (8.8).
        requests.delete(target._requestId);
        target._requestId = 0;
        target.recovered = recovered;
        // Recovered: the replay follows and moves the position on. Otherwise the gap
        // is lost for good: go on from what is replayed (after `since`), or from the
        // channel's current position (8.3).
        if (!resumed || !recovered) target.position = since || position;
        target._resolve();
        target._emit('subscribed', { recovered, resumed, position, since });
      }
    } else if (type == 'unsubscribed') {
      // The server ended the subscription (8.8): drop it for good.
      this._subscriptions.delete(channel);
      subscription?._end(0, frame);
    } else if (type == 'error') {
      // On transports that carry subscriptions, their errors have no request id.
      if (id == null) target = subscription;
      if (!target) return console.warn('rtlink:', frame);
      target._requestId = 0;
      const temporary = isTemporary(frame.code);
      if (!target._settle) {
        if (temporary) {
          // Out of the cursor until the retry, or every poll would fail at once again.
          target._held = true;
          target._active = false;
          this._retryLater(RESUBSCRIBE);
        } else {
          this._subscriptions.delete(target.channel);
          target._end(new RtlinkError('SubscribeError', frame.code, frame.message));
        }
      } else if (temporary) this._retryLater(RESEND);
      else target._settle(new RtlinkError('PublishError', frame.code, frame.message));
    } else if (type == 'ping') {
      // Over SSE there is no way back on the stream and no need to answer (6.6).
      if (!this._carries) this.send({ type: 'pong' });
    } else if (type == 'close') return [frame.code, frame.reason];
  }

  /** The connection is gone: its requests are forgotten, pending retries dropped (the
   * next welcome sends everything again), nothing is confirmed. */
  _end() {
    this._welcome = 0;
    this._requests.clear();
    this._outbox._resetAttempts();
    for (const subscription of this._subscriptions.values()) {
      subscription._active = subscription._held = false;
      subscription._requestId = 0;
    }
  }

  /** The client stopped for good (its connection ended first): waiting publishes
   * fail, subscriptions end. */
  _stop(error) {
    this._closed = error;
    for (const entry of this._outbox._entries.values()) entry._settle(error);
    for (const subscription of this._subscriptions.values()) subscription._end(error);
    this._subscriptions.clear();
  }

  /** A retry round of `kind` is due: send again what was refused for now (every
   * waiting publish, oldest first; every held subscription). */
  _retry(kind) {
    if (kind == RESEND) this._resend();
    else {
      for (const subscription of this._subscriptions.values()) subscription._held = false;
      this._resubscribe(1);
    }
  }

  // --- outbound ------------------------------------------------------------------

  _request(target) {
    this._requests.set(++this._lastId, target);
    return this._lastId;
  }

  /** Send a frame on the current connection (public for opt-in modules: the
   * `presence` read of rtlink-client/presence, whose answer comes to `onframe`). */
  send(frame) {
    this._send(this._codec._encode(frame));
  }

  _sendSubscribe(subscription) {
    const { channel, position, last, presence } = subscription;
    const frame = { type: 'subscribe', id: this._request(subscription), channel };
    if (position) frame.since = position;
    if (last) frame.last = last;
    if (presence) frame.presence = presence;
    subscription._requestId = frame.id;
    subscription._active = false;
    this.send(frame);
  }

  _sendPublish(entry) {
    const { channel, data, key } = entry;
    const limit = this._welcome.max_message_size;
    const frame = { type: 'publish', id: this._request(entry), channel, data, key };
    const part = this._codec._encode(frame);
    const size = this._codec._size(part);
    if (size > limit) {
      this._requests.delete(frame.id);
      entry._settle(new RtlinkError('PublishError', 413, `${size} > ${limit} bytes`));
    } else {
      entry._requestId = frame.id;
      this._send(part);
    }
  }

  /** Send every waiting publish without an attempt in flight, oldest first. */
  _resend() {
    if (this._welcome) for (const entry of this._outbox._unsent()) this._sendPublish(entry);
  }

  /** Subscribe every subscription neither held, confirmed nor on its way; where the
   * transport's requests carry the subscriptions, ask for a new request if `renew`. */
  _resubscribe(renew) {
    if (!this._welcome) return;
    for (const subscription of this._subscriptions.values()) {
      if (!this._carries && !subscription._held && !subscription._active && !subscription._requestId) this._sendSubscribe(subscription);
    }
    if (renew && this._carries) this._subscriptionsChanged();
  }
}

// The client: connect over the best transport that works, subscribe, publish, and
// survive disconnects (protocol.md section 8).
//
// Everything needed to resume lives here: each subscription's last position and an
// outbox of unacknowledged publishes. When a connection drops, the client reconnects
// with full-jitter backoff, subscribes every channel again from its position (the
// server replays the gap, repeats are dropped by offset) and sends the outbox again
// with the same idempotency keys (the server applies each publish once).
import { fullJitter } from './backoff.js';
import { codecs, decodeFrames } from './codec.js';
import { isTemporary, shouldReconnect } from './codes.js';
import { RtlinkError } from './errors.js';
import { Events } from './events.js';
import { Outbox } from './outbox.js';
import { Subscription } from './subscription.js';
import { transports } from './transports.js';

const CHANNEL_NAME = /^[\w\-.:@/=+,#]{1,255}$/;
const MAX_DEPTH = 64;
// The transport that worked for an origin is tried first for this long (8.7).
const REMEMBER_TRANSPORT_FOR = 600e3;
const TRANSPORT_MEMORY = 'rtlink:transports';
const workingTransports = {}; // origin -> [transport name, until (ms)]

function defaultStorage() {
  try {
    return globalThis.localStorage;
  } catch {} // access denied (sandboxed frame, privacy settings)
}

/** Forget which transport worked for which origin (new clients start at the top). */
export function forgetTransports(storage = defaultStorage()) {
  for (const origin in workingTransports) delete workingTransports[origin];
  try {
    storage.removeItem(TRANSPORT_MEMORY);
  } catch {}
}

function checkChannel(channel) {
  if (typeof channel != 'string' || !CHANNEL_NAME.test(channel)) {
    throw TypeError(`invalid channel name '${channel}'`); // protocol.md 9
  }
}

const wellFormed = (text) => text.isWellFormed?.() ?? true;

/** Throw unless `value` is data both codecs carry identically (protocol.md 3.4). */
function checkData(value, depth = 0) {
  const type = typeof value;
  const fail = (reason) => {
    throw TypeError('invalid data: ' + reason);
  };
  if (type == 'string') wellFormed(value) || fail('lone surrogate');
  else if (type == 'number') isFinite(value) || fail(value);
  else if (value && type == 'object') {
    if (depth == MAX_DEPTH) fail('too deep');
    const prototype = Object.getPrototypeOf(value);
    if (Array.isArray(value)) value.forEach((item) => checkData(item, depth + 1));
    else if (prototype && prototype != Object.prototype) fail('not a plain object');
    else {
      for (const key in value) {
        checkData(key); // a string: well-formed
        checkData(value[key], depth + 1);
      }
    }
  } else if (value !== null && type != 'boolean') fail(type);
}

function randomKey() {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((byte) => (256 + byte).toString(16).slice(1)).join('');
}

export class Client {
  /**
   * @param {string} url where the server mounted rtlink, e.g. '/rt' (relative to the
   *   page) or 'https://example.com/rt'
   * @param {object} options see ClientOptions in index.d.ts
   */
  constructor(url, options = {}) {
    const scope = globalThis;
    this._options = options = {
      transports: ['websocket', 'sse', 'longpoll'],
      codec: 'json',
      outboxLimit: 1000,
      backoffBase: 0.5,
      backoffCap: 30,
      connectTimeout: 3,
      probeInterval: 60,
      WebSocket: scope.WebSocket,
      EventSource: scope.EventSource,
      fetch: (...args) => scope.fetch(...args), // called as a method of another object
      storage: defaultStorage(),
      ...options,
    };
    const base = new URL(url, scope.location?.href);
    this._url = base.href.replace(/\/$/, '');
    this._origin = base.origin;
    this._codec = codecs[options.codec];
    const unknown = options.transports.filter((name) => !transports[name]);
    if (!this._codec || unknown.length || !options.transports.length) {
      throw TypeError(`unknown codec or transport: ${options.codec} ${unknown}`);
    }
    /** 'disconnected', 'connecting', 'connected' or 'closed'. */
    this.state = 'disconnected';
    /** The transport in use while connected, else null. */
    /** The server's session id of the current connection (for logs), else null. */
    this.transport = this.sessionId = null;
    this._events = new Events(['state']);
    this._subscriptions = new Map(); // channel -> Subscription
    this._outbox = new Outbox(options.outboxLimit, options.storage, options.persist);
    this._worked = new Set(); // transports that got a welcome in this client
    this._lastId = 0; // request ids are never reused in a client's lifetime
    // Backoff attempts of the retries after temporary refusals: rounds since a
    // request of that kind last succeeded.
    this._retryAttempts = { resend: 0, resubscribe: 0 };
    // Reconnect at once when the browser is back online, or a hidden tab is shown.
    this._wakeUp = () => scope.document?.visibilityState != 'hidden' && this._wake?.();
    try {
      Object.assign(workingTransports, JSON.parse(options.storage.getItem(TRANSPORT_MEMORY)), { ...workingTransports });
    } catch {}
  }

  /** Publishes waiting for acknowledgement. */
  get outboxSize() {
    return this._outbox._entries.size;
  }

  /** Call `callback` with {newState, oldState, code, reason, transport} on 'state'. */
  on(event, callback) {
    return this._events.on(event, callback);
  }

  /** Start (if needed); resolves once connected, rejects if the client stops first. */
  connect() {
    if (!this._running && !this._closedBy) {
      this._running = true;
      globalThis.addEventListener?.('online', this._wakeUp);
      globalThis.document?.addEventListener('visibilitychange', this._wakeUp);
      this._run();
    }
    return new Promise((resolve, reject) => {
      const settled = () =>
        this.state == 'connected' ? resolve() : this._closedBy ? reject(this._closedBy) : 0;
      const remove = this.on('state', () => settled() != 0 && remove());
      settled() != 0 && remove();
    });
  }

  /** Close and stop; waiting publishes reject with ClientClosed. */
  close() {
    if (this._closedBy) return;
    this._connection?._ended(1000, 'client closed');
    this._stop(1000, 'client closed');
  }

  /** Drop the current connection (if any) and reconnect at once, resuming. */
  reconnect() {
    this._hurry = true; // skip the backoff delay once
    this._connection?._ended(1006, 'reconnect');
    this._wake?.();
  }

  /** Subscribe to `channel`; with `since`, resume after that position. */
  subscribe(channel, { since } = {}) {
    checkChannel(channel);
    if (this._subscriptions.has(channel)) throw Error(`already subscribed to '${channel}'`);
    const subscription = new Subscription(this, channel, since);
    if (this._closedBy) subscription._end(this._closedBy);
    else {
      this._subscriptions.set(channel, subscription);
      if (this._connection?._welcome) this._resubscribePending(1);
    }
    return subscription;
  }

  _unsubscribe(subscription) {
    const { channel } = subscription;
    if (this._subscriptions.get(channel) == subscription) {
      this._subscriptions.delete(channel);
      const connection = this._connection;
      if (connection?._welcome) {
        connection._requests.delete(subscription._requestId);
        if (connection._transport._changed) connection._transport._changed();
        else this._send({ type: 'unsubscribe', id: this._request(null), channel });
      }
    }
    subscription._end();
  }

  /** Publish; resolves with the position once the server acknowledged it. */
  publish(channel, data, { key } = {}) {
    return new Promise((resolve, reject) => {
      if (this._closedBy) throw this._closedBy;
      checkChannel(channel);
      checkData(data);
      const entry = { channel, data, key: key || randomKey(), _settle: (error, position) => (error ? reject(error) : resolve(position)) };
      this._outbox._add(entry);
      if (this._connection?._welcome) this._sendPublish(entry);
    });
  }

  // --- connection loop -------------------------------------------------------------

  _setState(newState, code, reason, transport = null) {
    const oldState = this.state;
    if (newState != oldState) {
      this.state = newState;
      this._events.emit('state', { newState, oldState, code, reason, transport });
    }
  }

  async _run() {
    const { transports: names } = this._options;
    let attempt = 0; // backoff attempts since the last working connection
    let strikes = 0; // consecutive failures of the current transport
    let index = this._initialTransport();
    while (!this._closedBy) {
      const name = names[index];
      this._setState('connecting', null, '', name);
      const [code, reason, connected] = await this._connect(name, index);
      if (this._closedBy) return;
      if (!shouldReconnect(code)) return this._stop(code, reason);
      if (this._switchTo != null) {
        // A background probe found a better transport: go there at once.
        this._setState('disconnected', code, reason); // 'switching transport'
        [index, this._switchTo, strikes, attempt] = [this._switchTo, null, 0, 0];
        continue;
      }
      // A transport that never answered, or went silent, has failed; one that worked
      // before gets a second chance before it is given up (a drop is usually the
      // network, not the proxy).
      const failed = !this._hurry && (!connected || code == 4000);
      strikes = failed ? strikes + 1 : 0;
      if (connected) attempt = 0;
      this._setState('disconnected', code, reason);
      if (failed && (!this._worked.has(name) || strikes > 1)) {
        strikes = 0;
        if (++index < names.length) continue; // the next transport at once, no backoff
        index = this._initialTransport(); // all failed: start over after backoff
      }
      const delay = this._backoff(attempt++);
      if (!this._hurry) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, delay);
          this._wake = () => resolve(clearTimeout(timer));
        });
      }
      this._wake = this._hurry = null;
    }
  }

  /** Index of the transport to try first: the best one known to work here. */
  _initialTransport() {
    const names = this._options.transports;
    const [remembered, until] = workingTransports[this._origin] || [];
    const known = names.findIndex((name) => this._worked.has(name));
    return known >= 0 ? known : until > Date.now() && names.includes(remembered) ? names.indexOf(remembered) : 0;
  }

  /** One connection on transport `name`; resolves with [code, reason, connected]
   * when it ends. */
  _connect(name, index) {
    return new Promise((resolve) => {
      const { connectTimeout, probeInterval } = this._options;
      const connection = (this._connection = { _requests: new Map(), _queue: [], _retries: {} });
      const watchdog = (seconds, code, reason) => {
        clearTimeout(connection._timer);
        connection._timer = setTimeout(() => end(code, reason), seconds * 1e3);
      };
      const end = (connection._ended = (code, reason = '') => {
        if (connection._dead) return;
        connection._dead = true;
        this._connection = this.transport = this.sessionId = null;
        clearTimeout(connection._timer);
        clearInterval(connection._prober);
        Object.values(connection._retries).map(clearTimeout); // the next welcome sends all again
        connection._transport?._close();
        this._outbox._resetAttempts();
        for (const subscription of this._subscriptions.values()) {
          subscription._active = subscription._held = false;
          subscription._requestId = null;
        }
        resolve([code, reason, !!connection._welcome]);
      });
      connection._received = (message) => {
        let frames;
        try {
          frames = decodeFrames(this._codec, message);
        } catch (error) {
          return end(1006, `invalid message: ${error.message}`);
        }
        if (!connection._welcome) {
          // The health check: a transport works only once the server's first frame
          // arrived. A close frame first (e.g. 4500 unauthorized) applies its code.
          const welcome = frames.shift();
          if (welcome.type == 'close') return end(welcome.code, welcome.reason);
          if (welcome.type != 'welcome') return end(1006, 'no welcome');
          if (welcome.version != 1) return end(4502, `protocol version ${welcome.version}`);
          connection._welcome = welcome;
          this._worked.add(name);
          workingTransports[this._origin] = [name, Date.now() + REMEMBER_TRANSPORT_FOR];
          try {
            this._options.storage.setItem(TRANSPORT_MEMORY, JSON.stringify(workingTransports));
          } catch {}
          this.transport = name;
          this.sessionId = welcome.session;
          // Send before announcing 'connected': a state callback that subscribes must
          // not have its subscription sent twice. On SSE and long polling, a new request
          // if subscribed while this one was on its way.
          this._resubscribePending(connection._channels != Object.keys(this._cursor()).join());
          this._resendOutbox();
          this._setState('connected', null, '', name);
          if (connection._dead) return; // a state callback closed or reconnected
          if (index) connection._prober = setInterval(() => this._probe(connection, index), probeInterval * 1e3);
        }
        // Every frame proves the connection alive; nothing for this long means dead.
        watchdog(connection._welcome.ping_interval + connection._welcome.pong_timeout, 4000, 'silent');
        for (const frame of frames) if (!connection._dead) this._handle(connection, frame);
      };
      watchdog(connectTimeout, 1006, `no welcome within ${connectTimeout} s`);
      this._open(name, connection).catch((error) => end(1006, String(error)));
    });
  }

  /** Open transport `name` for `holder` (a connection or a probe), which gets
   * `holder._transport`; its `received`/`ended` are called until `holder._dead`. */
  async _open(name, holder) {
    let token = this._options.token;
    if (typeof token == 'function') token = await token(); // a fresh one every time
    if (holder._dead) return;
    // The token goes in a header, never in a URL (logs keep URLs): fetch sets headers;
    // WebSocket and EventSource cannot, so they carry a short-lived single-use ticket.
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    const link = {
      ...this._options, // WebSocket, EventSource, fetch
      _codec: this._codec,
      _headers: headers,
      _received: (message) => holder._dead || holder._received(message),
      _ended: (code, reason) => holder._dead || holder._ended(code, reason),
      _url: (endpoint, withCursor, extra) => {
        const url = new URL(this._url + endpoint);
        const query = url.searchParams;
        if (endpoint != '/ws') query.set('codec', this._codec.name);
        if (withCursor) {
          const cursor = this._cursor();
          holder._channels = Object.keys(cursor).join();
          query.set('subs', JSON.stringify(cursor));
        }
        for (const key in extra) query.set(key, extra[key]);
        return url.href;
      },
      _stream: async (endpoint, withCursor) => {
        const extra = {};
        if (token) {
          const response = await link.fetch(this._url + '/ticket', { method: 'POST', headers });
          // 404: no tickets here (a custom authenticate hook): the token in the URL.
          if (response.status == 404) extra.token = token;
          else {
            const body = await response.json().catch(() => ({}));
            if (response.status == 401) link._ended(4500, body.error); // as a close frame
            if (!(extra.ticket = body.ticket)) throw Error('ticket: HTTP ' + response.status);
          }
        }
        return link._url(endpoint, withCursor, extra);
      },
    };
    const transport = (holder._transport = await transports[name](link));
    if (holder._dead) transport._close(); // ended while the ticket was on its way
  }

  /** The subscriptions and their positions, for the transports that carry them. */
  _cursor() {
    const cursor = {};
    for (const [channel, subscription] of this._subscriptions) {
      if (!subscription._held) cursor[channel] = subscription.position;
    }
    return cursor;
  }

  /** While on a fallback transport, try the better ones (8.7 step 4); switch to the
   * first that answers with welcome. Positions make the switch lossless. */
  async _probe(connection, index) {
    if (connection._probing) return;
    connection._probing = true;
    for (let better = 0; better < index; better++) {
      const works = await new Promise((resolve) => {
        const probe = {
          _received: (message) => {
            try {
              done(decodeFrames(this._codec, message)[0].type == 'welcome');
            } catch {
              done(); // not a server that works: the probe failed
            }
          },
        };
        const done = (works) => {
          if (probe._dead) return;
          probe._dead = true;
          clearTimeout(timer);
          probe._transport?._close();
          resolve(works);
        };
        const failed = (probe._ended = () => done());
        const timer = setTimeout(failed, this._options.connectTimeout * 1e3);
        this._open(this._options.transports[better], probe).catch(failed);
      });
      if (works && !connection._dead) {
        this._switchTo = better;
        return connection._ended(1006, 'switching transport');
      }
    }
    connection._probing = false;
  }

  _stop(code, reason) {
    const error = (this._closedBy = new RtlinkError('ClientClosed', code, `closed: ${code} ${reason}`));
    globalThis.removeEventListener?.('online', this._wakeUp);
    globalThis.document?.removeEventListener('visibilitychange', this._wakeUp);
    this._wake?.();
    for (const entry of this._outbox._entries.values()) entry._settle(error);
    for (const subscription of this._subscriptions.values()) subscription._end(error);
    this._subscriptions.clear();
    this._setState('closed', code, reason);
  }

  // --- outbound ----------------------------------------------------------------------

  _request(target) {
    this._connection._requests.set(++this._lastId, target);
    return this._lastId;
  }

  _send(frame) {
    const part = this._codec._encode(frame);
    const connection = this._connection;
    connection._queue.push(part);
    queueMicrotask(() => this._flush(connection)); // what is sent in this tick goes as one
  }

  /** Send what is queued, as few messages as the server's size limit allows, one
   * message at a time (an HTTP send waits for its answer before the next). */
  _flush(connection) {
    const { _queue: queue, _welcome: welcome } = connection;
    if (connection._sending || !queue.length || connection._dead) return;
    const { _separator: separator, _size: size, _join: join } = this._codec;
    let count = 0;
    for (let total = -separator; count < queue.length; count++) {
      total += separator + size(queue[count]);
      if (count && total > welcome.max_message_size) break;
    }
    const message = join(queue.splice(0, count));
    connection._sending = true;
    connection._transport._send(message).then(
      () => {
        connection._sending = false;
        this._flush(connection);
      },
      // Nothing is lost: a publish without an answer is sent again on reconnect.
      (error) => connection._ended(1006, `send failed: ${error.message}`),
    );
  }

  _sendSubscribe(subscription) {
    const frame = { type: 'subscribe', id: this._request(subscription), channel: subscription.channel };
    if (subscription.position) frame.since = subscription.position;
    subscription._requestId = frame.id;
    subscription._active = false;
    this._send(frame);
  }

  _sendPublish(entry) {
    const { channel, data, key } = entry;
    const limit = this._connection._welcome.max_message_size;
    const frame = { type: 'publish', id: this._request(entry), channel, data, key };
    const size = this._codec._size(this._codec._encode(frame));
    if (size > limit) {
      this._connection._requests.delete(frame.id);
      entry._settle(new RtlinkError('PublishError', 413, `publish too large: ${size} > ${limit} bytes`));
    } else {
      entry._requestId = frame.id;
      this._send(frame);
    }
  }

  /** Send every waiting publish without an attempt in flight, oldest first. */
  _resendOutbox() {
    for (const entry of this._outbox._unsent()) this._sendPublish(entry);
  }

  /** Subscribe every subscription neither held, confirmed nor on its way; where the
   * transport's requests carry the subscriptions, send a new request if `renew`. */
  _resubscribePending(renew) {
    const { _changed: changed } = this._connection._transport;
    for (const subscription of this._subscriptions.values()) {
      if (!changed && !subscription._held && !subscription._active && !subscription._requestId) this._sendSubscribe(subscription);
    }
    if (renew && changed) changed();
  }


  // --- inbound -----------------------------------------------------------------------

  _handle(connection, frame) {
    const { type, id, channel } = frame;
    const { _requests: requests } = connection;
    let target = requests.get(id);
    requests.delete(id);
    if (type == 'publication') {
      const subscription = this._subscriptions.get(channel);
      if (subscription?._active) subscription._deliver(frame);
    } else if (type == 'ack') {
      if (target?._settle && frame.position) {
        this._retryAttempts.resend = 0;
        target._settle(null, frame.position);
      }
    } else if (type == 'subscribed') {
      if (id == null) {
        // The transport's request carried the subscription (SSE, long polling); a
        // confirmation of what is known already tells nothing new.
        target = this._subscriptions.get(channel);
        if (target?._active && frame.recovered) return;
      }
      if (target instanceof Subscription) {
        this._retryAttempts.resubscribe = 0;
        target._confirm(frame.recovered, frame.position);
      }
    } else if (type == 'error') {
      // On transports that carry subscriptions, their errors have no request id.
      if (id == null && channel != null) target = this._subscriptions.get(channel);
      if (!target) return console.warn(`rtlink: error ${frame.code} ${frame.message}`);
      target._requestId = null;
      const temporary = isTemporary(frame.code);
      if (target instanceof Subscription) {
        if (temporary) {
          // Out of the cursor until the retry, or every poll would fail at once again.
          target._held = true;
          target._active = false;
          this._retryLater('resubscribe', () => {
            for (const subscription of this._subscriptions.values()) subscription._held = false;
            this._resubscribePending(1);
          });
        } else {
          this._subscriptions.delete(target.channel);
          target._end(new RtlinkError('SubscribeError', frame.code, frame.message));
        }
      } else if (temporary) {
        this._retryLater('resend', () => this._resendOutbox());
      } else target._settle(new RtlinkError('PublishError', frame.code, frame.message));
    } else if (type == 'ping') {
      // Over SSE there is no way back on the stream and no need to answer (6.6).
      if (!connection._transport._changed) this._send({ type: 'pong' });
    } else if (type == 'close') {
      connection._ended(frame.code, frame.reason);
    }
  }

  /** Run `action`, a retry of `kind` ('resend' or 'resubscribe'), after a full-jitter
   * delay unless one is pending already: a burst of refusals (a flushed outbox over
   * the publish rate) makes one round, and the attempt grows once per round. The
   * timer lives and dies with the connection. */
  _retryLater(kind, action) {
    const { _retries: retries } = this._connection;
    retries[kind] ||= setTimeout(() => {
      retries[kind] = 0;
      action();
    }, this._backoff(this._retryAttempts[kind]++));
  }

  /** The full-jitter delay in ms before attempt `attempt` (protocol.md 8.2). */
  _backoff(attempt) {
    return fullJitter(attempt, this._options.backoffBase, this._options.backoffCap) * 1e3;
  }
}

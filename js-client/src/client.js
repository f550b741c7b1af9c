// The client: connect over the best transport that works, subscribe, publish, and
// survive disconnects (protocol.md section 8).
//
// This is only the runner: it opens transports, reads, writes, keeps the timers and
// reports the state. The decisions are made without I/O, by a Negotiation (which
// transport to try next, and when: negotiation.js) and a ClientCore (subscriptions,
// outbox, requests, what each frame means: core.js), as in the Python client
// (rtlink/client/). The core keeps what is needed to resume: each subscription's
// position and the outbox of unacknowledged publishes.
import { backoff } from './backoff.js';
import { codecs, decodeFrames } from './codec.js';
import { ClientCore } from './core.js';
import { invalidInput, RtlinkError } from './errors.js';
import { defaultStorage, Negotiation } from './negotiation.js';
import { formatCursor } from './positions.js';
import { Subscription } from './subscription.js';
import { share } from './tabs.js';
import { transports } from './transports.js';

const scope = globalThis;

export class Client extends ClientCore {
  /**
   * @param {string} url where the server mounted rtlink, e.g. '/rt' (relative to the
   *   page) or 'https://example.com/rt'
   * @param {object} options see ClientOptions in index.d.ts
   */
  constructor(url, options = {}) {
    options = {
      transports: Object.keys(transports),
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
    const codec = codecs[options.codec];
    const unknown = options.transports.filter((name) => !transports[name]);
    if (!codec || unknown.length || !options.transports.length) {
      throw invalidInput(`unknown: ${options.codec} ${unknown}`);
    }
    super(codec, options);
    this._url = base.href.replace(/\/$/, '');
    /** 'disconnected', 'connecting', 'connected' or 'closed'. */
    this.state = 'disconnected';
    /** The transport in use while connected, else null. */
    /** The server's session id of the current connection (for logs), else null. */
    this.transport = this.sessionId = null;
    this._negotiation = new Negotiation(options.transports, base.origin, options);
    // Reconnect at once when the browser is back online, or a hidden tab is shown.
    this._wakeUp = () => scope.document?.visibilityState != 'hidden' && this._wake?.();
  }

  /** Publishes waiting for acknowledgement. */
  get outboxSize() {
    return this._outbox._entries.size;
  }

  // on(event, callback) (events.js): 'state' with {newState, oldState, code, reason,
  // transport}, or 'subscription' with a new Subscription (the server subscribed this
  // client); returns a remover.

  /** Start (if needed); resolves once connected, rejects if the client stops first. */
  connect() {
    if (!this._running && !this._closed) {
      this._running = true;
      scope.addEventListener?.('online', this._wakeUp);
      scope.document?.addEventListener('visibilitychange', this._wakeUp);
      // One connection per browser: the tabs share it (tabs.js), where they can.
      share(this) || this._run();
    }
    return new Promise((resolve, reject) => {
      const settled = () =>
        this.state == 'connected' ? resolve() : this._closed ? reject(this._closed) : 0;
      const remove = this.on('state', () => settled() != 0 && remove());
      settled() != 0 && remove();
    });
  }

  /** Close and stop; waiting publishes reject with ClientClosed. */
  close() {
    if (this._closed) return;
    this._connection?._ended(1000, 'client closed');
    this._finish(1000, 'client closed');
  }

  /** Drop the current connection (if any) and reconnect at once, resuming. */
  reconnect() {
    this._hurry = true; // skip the backoff delay once
    this._connection?._ended(1006, 'reconnect');
    this._wake?.();
  }

  /** Subscribe to `channel`; with `since`, resume after that position; with `last`
   * (a number, or "all"), replay the latest publications the channel keeps first; with
   * `presence`, also get its presence events. */
  subscribe(channel, { since, last, presence } = {}) {
    const subscription = new Subscription(channel, since, this, last == 'all' ? 2 ** 53 - 1 : last, presence);
    this._subscribe(subscription);
    return subscription;
  }

  /** Publish; resolves with the position once the server acknowledged it. */
  publish(channel, data, { key } = {}) {
    return new Promise((resolve, reject) =>
      this._publish(channel, data, key, (error, position) => (error ? reject(error) : resolve(position))),
    );
  }

  // --- connection loop -------------------------------------------------------------

  _setState(newState, code, reason, transport = null) {
    const oldState = this.state;
    if (newState != oldState) {
      this.state = newState;
      this._emit('state', { newState, oldState, code, reason, transport });
    }
  }

  async _run() {
    const negotiation = this._negotiation;
    negotiation._restart();
    while (!this._closed) {
      const name = negotiation._transport();
      this._setState('connecting', null, '', name);
      const [code, reason, connected] = await this._connect(name, negotiation._index);
      if (this._closed) return;
      const delay = negotiation._ended(code, connected, this._hurry);
      if (delay == null) return this._finish(code, reason);
      this._setState('disconnected', code, reason);
      if (delay && !this._hurry) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, delay);
          this._wake = () => resolve(clearTimeout(timer));
        });
      }
      this._wake = this._hurry = null;
    }
  }

  /** One connection on transport `name`; resolves with [code, reason, connected]
   * when it ends. */
  _connect(name, index) {
    return new Promise((resolve) => {
      const { connectTimeout, probeInterval } = this._options;
      const connection = (this._connection = { _queue: [], _retries: [] }); // (retry timers by kind)
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
        connection._retries.map(clearTimeout); // the next welcome sends all again
        connection._transport?._close();
        resolve([code, reason, !!this._welcome]);
        this._end();
      });
      connection._received = (message) => {
        let frames;
        try {
          frames = decodeFrames(this._codec, message);
        } catch (error) {
          return end(1006, String(error));
        }
        if (!this._welcome) {
          // The health check: a transport works only once the server's first frame
          // arrived. The core sends the subscriptions and the outbox before
          // 'connected' is announced: a state callback that subscribes must not have
          // its subscription sent twice.
          const refused = this._start(frames.shift(), !!connection._transport._subscriptionsChanged, connection._requestedChannels);
          if (refused) return end(...refused);
          this._negotiation._connected();
          this.transport = name;
          // Carried to the next stream or poll (also after a reconnect): one member
          // of its presence channels across requests (protocol.md 6.8).
          this._session = this.sessionId = this._welcome.session;
          this._setState('connected', null, '', name);
          if (connection._dead) return; // a state callback closed or reconnected
          if (index) connection._prober = setInterval(() => this._probe(connection, index), probeInterval * 1e3);
        }
        // Every frame proves the connection alive; nothing for this long means dead.
        watchdog(this._welcome.ping_interval + this._welcome.pong_timeout, 4000, 'silent');
        for (const frame of frames) {
          const closed = connection._dead || this._receive(frame);
          if (closed?.[0]) end(...closed);
        }
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
          holder._requestedChannels = Object.keys(cursor).join();
          query.set('subs', formatCursor(cursor));
          if (this._session) query.set('session', this._session);
        }
        for (const key in extra) query.set(key, extra[key]);
        return url.href;
      },
      _stream: async (endpoint, withCursor, extra = {}) => {
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
        this._negotiation._switchTo = better;
        return connection._ended(1006, 'switching transport');
      }
    }
    connection._probing = false;
  }

  /** Stop for good with close `code`. */
  _finish(code, reason) {
    scope.removeEventListener?.('online', this._wakeUp);
    scope.document?.removeEventListener('visibilitychange', this._wakeUp);
    this._wake?.();
    this._stop(new RtlinkError('ClientClosed', code, `closed: ${code} ${reason}`));
    this._setState('closed', code, reason);
  }

  // --- what the core asks for ------------------------------------------------------

  /** Queue an encoded frame on the current connection: what is sent in this tick goes
   * as one message (or as few as the server's size limit allows). */
  _send(part) {
    const connection = this._connection;
    connection._queue.push(part);
    queueMicrotask(() => this._flush(connection));
  }

  _subscriptionsChanged() {
    this._connection._transport._subscriptionsChanged();
  }

  _retryLater(kind) {
    const retries = this._connection._retries;
    retries[kind] ||= setTimeout(() => {
      retries[kind] = 0;
      this._retry(kind);
    }, backoff(this._retryAttempts[kind]++, this._options));
  }

  /** Send what is queued, as few messages as the server's size limit allows, one
   * message at a time (an HTTP send waits for its answer before the next). */
  _flush(connection) {
    const { _queue: queue } = connection;
    if (connection._sending || !queue.length || connection._dead) return;
    const { _separator: separator, _size: size, _join: join } = this._codec;
    let count = 0;
    for (let total = -separator; count < queue.length; count++) {
      total += separator + size(queue[count]);
      if (count && total > this._welcome.max_message_size) break;
    }
    const message = join(queue.splice(0, count));
    connection._sending = true;
    connection._transport._send(message).then(
      () => {
        connection._sending = false;
        this._flush(connection);
      },
      // Nothing is lost: a publish without an answer is sent again on reconnect.
      (error) => connection._ended(1006, String(error)),
    );
  }
}

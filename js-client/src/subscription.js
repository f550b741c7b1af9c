// A client's subscription to one channel: its position, its messages, its events.
// What the server's frames mean for it (its position, whether a publication is new)
// is decided by the client's core (core.js), which calls the _methods here.
import { RtlinkError } from './errors.js';
import { Events } from './events.js';

export class Subscription extends Events {
  /**
   * @param {string} channel the channel
   * @param {object|null} since the position to resume after, or none
   * @param {object} core the client (its core), which unsubscribes it
   * @param {number} [last] replay at most this many of the latest kept publications
   *   first (when there is no `since`, or its gap cannot be filled)
   * @param {boolean} [presence] ask for the channel's presence events
   */
  constructor(channel, since, core, last, presence) {
    super(['message', 'subscribed', 'unsubscribed', 'error']);
    this.channel = channel;
    /** Whether it asks for the channel's presence events (rtlink-client/presence). */
    this.presence = presence;
    /** The `last` it was subscribed with (sent on every resubscribe). */
    this.last = last;
    /** Position of the last message delivered (or of the channel when confirmed):
     * the client resumes after it. */
    this.position = since || null;
    /** The `recovered` flag of the latest confirmation. */
    this.recovered = true;
    this._core = core;
    // Kept by the core: _active (confirmed on the current connection), _requestId (of
    // the subscribe in flight), _held (out of the cursor until a retry).
    this._confirmed = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this._confirmed.catch(() => {}); // not "unhandled" when nobody waits for it
  }

  // on(event, callback) (events.js): 'message', 'subscribed', 'unsubscribed' (the
  // server ended it: {channel, code, reason}) or 'error'; returns a remover.

  /** Resolves once the server confirmed the subscription; rejects if refused. */
  waitSubscribed() {
    return this._confirmed;
  }

  /** Stop the subscription. */
  unsubscribe() {
    this._core._unsubscribe(this);
  }

  /** End the subscription: unsubscribed (no error; by the server: its `unsubscribed`
   * frame), refused, or the client stopped. */
  _end(error, unsubscribed) {
    if (this._ended) return;
    this._ended = true;
    this._active = false;
    this._reject(error || new RtlinkError('RtlinkError', null, 'unsubscribed'));
    if (error?.name == 'SubscribeError') this._emit('error', error);
    if (unsubscribed) this._emit('unsubscribed', unsubscribed);
  }
}

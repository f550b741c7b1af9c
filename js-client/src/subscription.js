// A client's subscription to one channel: its position, its messages, its events.
import { Events } from './events.js';

export class Subscription {
  constructor(client, channel, since) {
    this.channel = channel;
    /** Position of the last message delivered (or of the channel when confirmed):
     * the client resumes after it. */
    this.position = since || null;
    /** The `recovered` flag of the latest confirmation. */
    this.recovered = true;
    this._client = client;
    this._events = new Events(['message', 'subscribed', 'error']);
    // Set later: _active (confirmed on the current connection), _requestId (of the
    // subscribe in flight), _held (out of the cursor until a retry).
    this._confirmed = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this._confirmed.catch(() => {}); // not "unhandled" when nobody waits for it
  }

  /** Call `callback` on 'message', 'subscribed' or 'error'; returns a remover. */
  on(event, callback) {
    return this._events.on(event, callback);
  }

  /** Resolves once the server confirmed the subscription; rejects if refused. */
  waitSubscribed() {
    return this._confirmed;
  }

  /** Stop the subscription. */
  unsubscribe() {
    this._client._unsubscribe(this);
  }

  _confirm(recovered, position) {
    const resumed = !!this.position;
    this._active = true;
    this._requestId = null;
    this.recovered = recovered;
    // Recovered: the replay follows and moves the position on. Otherwise the gap is
    // lost for good: go on from the channel's current position.
    if (!resumed || !recovered) this.position = position;
    this._resolve();
    this._events.emit('subscribed', { recovered, resumed, position });
  }

  _deliver({ channel, data, position }) {
    const current = this.position;
    if (current?.epoch == position.epoch) {
      if (position.offset <= current.offset) return; // delivered already (replay/live seam)
    } else if (current && position.offset != 1) {
      console.warn(`rtlink: ${channel}: new epoch, messages may be missed`);
    }
    this.position = position;
    this._events.emit('message', { channel, data, position });
  }

  /** End the subscription: unsubscribed (no error), refused, or the client stopped. */
  _end(error) {
    if (this._ended) return;
    this._ended = true;
    this._active = false;
    this._reject(error || Error('unsubscribed'));
    if (error?.name == 'SubscribeError') this._events.emit('error', error);
  }
}

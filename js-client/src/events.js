// Named-event callbacks, shared by the client and its subscriptions. A failing
// callback is reported on the console and does not disturb the client.
import { invalidInput } from './errors.js';

// The base class of the client (through its core) and of subscriptions: their public
// on(), and _emit() for them.
export class Events {
  /** @param {string[]} names the events this emitter knows */
  constructor(names) {
    this._callbacks = new Map(names.map((name) => [name, []]));
  }

  /** Register `callback` for `event`; returns a function that removes it. */
  on(event, callback) {
    const list = this._callbacks.get(event);
    if (!list) throw invalidInput(`unknown event '${event}'`);
    list.push(callback);
    return () => list.includes(callback) && list.splice(list.indexOf(callback), 1);
  }

  _emit(event, value) {
    for (const callback of [...this._callbacks.get(event)]) {
      try {
        callback(value);
      } catch (error) {
        console.error('rtlink:', event, error);
      }
    }
  }
}

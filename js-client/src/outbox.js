// The outbox: publishes not yet acknowledged by the server, oldest first (8.4).
//
// A publish enters when the application calls publish() and leaves when the server
// acknowledges it or refuses it for good. While offline, or after a connection
// dropped with a publish in flight, it waits here and is sent again on reconnect
// with the same idempotency key, so the server applies it once. The outbox is
// bounded: when full, publish() fails at once (OutboxFull) instead of dropping old
// publishes silently. With a storage key, the waiting publishes are also kept in
// storage (localStorage), so a page reload does not lose them.
//
// The clients of several tabs may use one storage key. Browsers pass a tab's writes
// to the others asynchronously, so they must not write the same item: each outbox
// writes under the key and a suffix of its own, and a new one takes over (reads and
// removes) the items of every outbox of the key before it: what a closed page left,
// and what the open ones hold too, which they write again at their next change. Each
// entry then waits in two outboxes and is sent by both, with the same idempotency key:
// it lands once.
import { invalidInput, RtlinkError } from './errors.js';

export class Outbox {
  constructor(limit, storage, storageKey) {
    this._limit = limit;
    this._entries = new Map(); // key -> entry
    this._storage = storageKey && storage;
    this._storageKey = storageKey + ' ' + Math.random();
    const saved = [];
    try {
      for (let index = this._storage.length; index--; ) {
        const name = storage.key(index);
        // (The key alone: an item of an older client.)
        if (name == storageKey || name.startsWith(storageKey + ' ')) {
          const text = storage.getItem(name);
          storage.removeItem(name); // (first: an unreadable one goes too)
          saved.push(...JSON.parse(text));
        }
      }
    } catch {} // nothing kept, unreadable storage, or storage not allowed
    for (const [channel, data, key] of saved.slice(0, limit)) {
      // Their publish() calls belong to an earlier page: failures can only be logged.
      this._add({ channel, data, key, _settle: (error) => error && console.warn('rtlink:', error) });
    }
  }

  /** Append an entry; throws OutboxFull when full, or if its key is already waiting. */
  _add(entry) {
    if (this._entries.size >= this._limit) {
      throw new RtlinkError('OutboxFull', null, `outbox full (${this._limit})`);
    }
    if (this._entries.has(entry.key)) throw invalidInput(`key '${entry.key}' already waiting`);
    const settle = entry._settle;
    // Settling (ack, refusal, client stopped) takes the entry out, once.
    entry._settle = (error, position) => {
      if (this._entries.get(entry.key) != entry) return;
      this._entries.delete(entry.key);
      this._save();
      settle(error, position);
    };
    this._entries.set(entry.key, entry);
    this._save();
  }

  /** Entries with no attempt in flight on the current connection, oldest first. */
  _unsent() {
    return [...this._entries.values()].filter((entry) => !entry._requestId);
  }

  /** The connection is gone: every entry is unsent again. */
  _resetAttempts() {
    for (const entry of this._entries.values()) entry._requestId = 0;
  }

  _save() {
    if (!this._storage) return;
    try {
      const entries = [...this._entries.values()].map((entry) => [entry.channel, entry.data, entry.key]);
      if (entries.length) this._storage.setItem(this._storageKey, JSON.stringify(entries));
      else this._storage.removeItem(this._storageKey);
    } catch {} // not persisted, or storage full: the outbox still works in memory
  }
}

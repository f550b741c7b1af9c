// Negotiation: which transport to try next, when, and what to remember (protocol.md
// 8.2, 8.7), as rtlink/client/negotiation.py. No I/O but the storage it is given.
//
// A client walks down its list of transports when one fails its health check or goes
// silent, backs off when the whole list failed, and moves back up when a background
// probe finds a better one working again. What worked is remembered per origin for a
// while, in memory and in storage (localStorage), so the next page starts there.
import { backoff } from './backoff.js';
import { shouldReconnect } from './codes.js';

// The transport that worked for an origin is tried first for this long (8.7).
const REMEMBER_TRANSPORT_FOR = 600e3;
const TRANSPORT_MEMORY = 'rtlink:transports';
let workingTransports = {}; // origin -> [transport name, until (ms)]

export function defaultStorage() {
  try {
    return localStorage; // (none: a ReferenceError, caught)
  } catch {} // access denied (sandboxed frame, privacy settings)
}

/** Forget which transport worked for which origin (new clients start at the top). */
export function forgetTransports(storage = defaultStorage()) {
  workingTransports = {};
  try {
    storage.removeItem(TRANSPORT_MEMORY);
  } catch {}
}

export class Negotiation {
  /**
   * @param {string[]} transports names, best first
   * @param {string} origin under which working transports are remembered
   * @param {object} options the client's: storage, backoffBase, backoffCap
   */
  constructor(transports, origin, options) {
    this._transports = transports;
    this._origin = origin;
    this._options = options;
    this._attempt = 0; // _index and _strikes are set by _restart()
    // _switchTo: the index of a transport a probe found working (set by the client):
    // the next attempt goes there.
    this._worked = new Set(); // transports that got a welcome in this client
    try {
      Object.assign(workingTransports, JSON.parse(options.storage.getItem(TRANSPORT_MEMORY)), { ...workingTransports });
    } catch {}
  }

  /** The name of the transport to try next (or in use). */
  _transport() {
    return this._transports[this._index];
  }

  /** Start again from the best transport known to work: one that worked in this
   * client, else the one remembered for the origin, else the first. */
  _restart() {
    const names = this._transports;
    const [remembered, until] = workingTransports[this._origin] || [];
    const known = names.findIndex((name) => this._worked.has(name));
    this._strikes = 0;
    this._index = known >= 0 ? known : until > Date.now() && names.includes(remembered) ? names.indexOf(remembered) : 0;
  }

  /** The current transport passed its health check (a welcome arrived). */
  _connected() {
    const name = this._transport();
    this._worked.add(name);
    workingTransports[this._origin] = [name, Date.now() + REMEMBER_TRANSPORT_FOR];
    try {
      this._options.storage.setItem(TRANSPORT_MEMORY, JSON.stringify(workingTransports));
    } catch {}
  }

  /** A connection ended with close `code`: decide the next attempt. A transport that
   * never answered, or went silent, gets a strike; one that never worked falls back
   * at its first strike, one that worked at its second in a row; falling back means
   * the next transport at once, and after the last one, backoff from _restart().
   * `requested`: the application asked for it (never a strike). Returns null to stop,
   * else the delay in ms before the next attempt (0: at once). */
  _ended(code, connected, requested) {
    if (!shouldReconnect(code)) return null;
    if (this._switchTo != null) {
      this._index = this._switchTo;
      this._switchTo = null;
      return (this._strikes = this._attempt = 0);
    }
    const failed = !requested && (!connected || code == 4000);
    this._strikes = failed ? this._strikes + 1 : 0;
    if (connected) this._attempt = 0;
    if (failed && (!this._worked.has(this._transport()) || this._strikes > 1)) {
      this._strikes = 0;
      if (++this._index < this._transports.length) return 0;
      this._restart();
    }
    return backoff(this._attempt++, this._options);
  }
}

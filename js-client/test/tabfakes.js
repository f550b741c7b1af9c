// A fake browser for the tab-sharing tests: tabs with a BroadcastChannel and a Web
// Locks manager (request with signal and steal, release, AbortError), which a test can
// close, crash or freeze. Nothing here is a test of its own.
//
// The client reads these from globals when connect() is called (document,
// navigator.locks, BroadcastChannel, addEventListener), as in a browser, so a tab is
// opened with the globals pointing at it:
//
//   const browser = createBrowser(t);          // restores the globals after the test
//   const a = browser.open(URL_BASE, options); // a.client: a Client, connecting
//   a.freeze(); a.thaw(); a.crash();           // a.client.close() closes it
//   browser.leader()                            // the tab holding the lock, if any
import { Client } from '../src/index.js';

const abortError = () => new DOMException('The operation was aborted.', 'AbortError');

/** One lock manager for every tab of the browser (the spec's, for exclusive locks). */
class LockManager {
  constructor() {
    this.held = new Map(); // name -> request
    this.queues = new Map(); // name -> [request]
  }

  request(tab, name, options, callback) {
    return new Promise((resolve, reject) => {
      const request = { tab, name, callback, resolve, reject };
      if (tab.refuse) return reject(new DOMException('refused', 'SecurityError'));
      const { signal, steal } = options;
      if (signal && steal) return reject(new DOMException('signal and steal', 'NotSupportedError'));
      if (signal?.aborted) return reject(abortError());
      signal?.addEventListener('abort', () => {
        const queue = this.queues.get(name) || [];
        if (queue.includes(request)) {
          queue.splice(queue.indexOf(request), 1);
          reject(abortError());
        }
      });
      if (steal) {
        const holder = this.held.get(name);
        if (holder) {
          this.held.delete(name);
          holder.tab._run(() => holder.reject(abortError())); // its callback goes on, without the lock
        }
        this._grant(request);
      } else {
        if (!this.queues.has(name)) this.queues.set(name, []);
        this.queues.get(name).push(request);
        this._pump(name);
      }
    });
  }

  _pump(name) {
    const queue = this.queues.get(name) || [];
    if (this.held.has(name) || !queue.length) return;
    this._grant(queue.shift());
  }

  _grant(request) {
    const { name } = request;
    this.held.set(name, request);
    request.tab._run(async () => {
      let outcome;
      try {
        outcome = ['resolve', await request.callback({ name, mode: 'exclusive' })];
      } catch (error) {
        outcome = ['reject', error];
      }
      this._done(request);
      request[outcome[0]](outcome[1]);
    });
  }

  /** `request` is over (released, or its tab gone): the next one gets the lock. */
  _done(request) {
    if (this.held.get(request.name) != request) return; // stolen before
    this.held.delete(request.name);
    setTimeout(() => this._pump(request.name), 0);
  }

  /** A tab crashed or closed: its lock is released, its queued requests dropped. */
  _forget(tab) {
    for (const [name, request] of [...this.held]) if (request.tab == tab) this._done(request);
    for (const queue of this.queues.values()) {
      for (const request of [...queue]) if (request.tab == tab) queue.splice(queue.indexOf(request), 1);
    }
  }
}

/** The tab's own view of the page events (pagehide, pageshow). */
class Tab {
  constructor(browser, number) {
    this.browser = browser;
    this.number = number;
    this.channels = [];
    this.listeners = {};
    this.frozen = false;
    this.gone = false;
    this._held = []; // tasks waiting for the tab to thaw
    const tab = this;
    this.BroadcastChannel = class {
      constructor(name) {
        this.name = name;
        this.onmessage = null;
        this.closed = false;
        tab.channels.push(this);
        browser.channels.add(this);
      }
      postMessage(data) {
        if (this.closed) throw new DOMException('closed', 'InvalidStateError');
        data = structuredClone(data);
        // What a frozen tab's timers or sockets make it post waits for the thaw.
        tab._run(() => {
          browser.posted.push({ from: tab.number, data });
          for (const other of browser.channels) {
            if (other != this && other.name == this.name) other._deliver(structuredClone(data));
          }
        });
      }
      _deliver(data) {
        const owner = browser.tabOf(this);
        setTimeout(() => owner._run(() => this.closed || this.onmessage?.({ data })), 0);
      }
      close() {
        this.closed = true;
        browser.channels.delete(this);
      }
    };
    this.locks = { request: (name, options, callback) => browser.locks.request(this, name, options, callback) };
  }

  /** Run `task` as this tab's: at once, later if frozen, never if gone. */
  _run(task) {
    if (this.gone) return;
    if (this.frozen) this._held.push(task);
    else task();
  }

  /** The browser freezes the tab: nothing of it runs (its messages and lock grants
   * wait) until thaw(). Its server connection is the test's to hold back. */
  freeze() {
    this.frozen = true;
  }

  thaw() {
    this.frozen = false;
    for (const task of this._held.splice(0)) task();
  }

  /** The tab dies without a word: its lock is released, its channels go quiet. (Its
   * client is closed when the test ends, saying nothing: its timers stop.) */
  crash() {
    this.gone = true;
    this.browser.locks._forget(this);
  }

  /** The page is hidden (`persisted`: into the back/forward cache) or shown again. */
  fire(type, event = {}) {
    for (const listener of this.listeners[type] || []) listener({ type, ...event });
  }
}

/**
 * A browser whose tabs share the rtlink connection. Sets the globals a page has
 * (document, navigator.locks, BroadcastChannel, addEventListener) while a tab's
 * client starts, and restores them when the test ends.
 */
export function createBrowser(t) {
  const saved = Object.fromEntries(
    ['document', 'navigator', 'BroadcastChannel', 'addEventListener'].map((name) => [name, Object.getOwnPropertyDescriptor(globalThis, name)]),
  );
  const set = (name, value) => Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  const browser = {
    tabs: [],
    channels: new Set(),
    /** Every message posted, cloned: {from: tab number, data}. */
    posted: [],
    locks: new LockManager(),
    tabOf: (channel) => browser.tabs.find((tab) => tab.channels.includes(channel)),
    /**
     * Open a tab with a Client(url, options) in it; `connect` (default true) calls
     * connect() with the globals of the tab. Returns the Tab, with `client`.
     */
    open(url, options = {}, { connect = true, locks = true } = {}) {
      const tab = new Tab(browser, browser.tabs.length + 1);
      browser.tabs.push(tab);
      tab.client = new Client(url, options);
      tab.client.on('state', (change) => (tab.states ||= []).push(change));
      t.after(() => tab.client.close());
      if (connect) browser.start(tab, { locks });
      return tab;
    },
    /** Call connect() on the tab's client with the globals of the tab. */
    start(tab, { locks = true } = {}) {
      set('document', { visibilityState: 'visible', addEventListener() {}, removeEventListener() {} });
      set('navigator', { locks: locks ? tab.locks : undefined });
      set('BroadcastChannel', tab.BroadcastChannel);
      set('addEventListener', (type, listener) => (tab.listeners[type] ||= []).push(listener));
      try {
        tab.client.connect().catch(() => {});
      } finally {
        restore();
      }
    },
    /** The tab holding the lock, if any. */
    leader: () => browser.tabs.find((tab) => [...browser.locks.held.values()].some((request) => request.tab == tab)),
  };
  const restore = () => {
    for (const [name, descriptor] of Object.entries(saved)) {
      if (descriptor) Object.defineProperty(globalThis, name, descriptor);
      else delete globalThis[name];
    }
  };
  t.after(restore);
  return browser;
}

// Tab sharing: the clients of one URL in the tabs of one browser share one connection
// (js-client/README.md, "Tabs share one connection").
//
// Why: a browser opens at most 6 HTTP/1.1 connections per host, and an SSE stream or a
// held long poll keeps one busy for as long as it lasts. Over HTTP/1.1 a seventh tab
// of the same site, and the page loads of every tab, would queue behind them.
//
// How: one tab, the leader, holds the Web Lock named after the URL. Its Client runs a
// hidden Client (shareConnection off) holding the real connection, subscribed to the
// union of every tab's channels. The tabs talk over a BroadcastChannel of the same
// name; the leader's own tab goes through the same messages, delivered to itself.
// (A SharedWorker would need a script of its own served by the application, could not
// call the application's token function, and came to Chrome on Android only in 2026.)
//
// Every tab's Client keeps its own subscriptions, positions and outbox: to its core
// (core.js) the leader is a connection whose requests carry the subscriptions, as SSE
// and long polling do, so nothing in the core is particular to tabs:
//   - a tab sends its cursor (channel -> position) whenever its subscriptions change,
//     and its publishes as frames;
//   - the leader subscribes every channel from the earliest position any tab asked
//     for (again, if a tab asks for one before what the connection reached), and
//     relays publications, confirmations and refusals to every tab, acks and publish
//     errors to the tab that asked; each tab drops what it has already, by offset;
//   - the hidden client's state changes are relayed as the state of every tab.
//
// Handover: when the leader closes or crashes, the browser releases its lock and the
// next tab in the lock's queue leads: it announces itself (its state), every tab sends
// it its cursor and its waiting publishes again (same keys), and the new connection
// resumes from those positions. A leader that is alive answers a probe at once; a
// follower that heard nothing from the leader since its last check (CHECK_INTERVAL)
// probes, and if the next check still heard nothing, takes the lock away ('steal'):
// a frozen leader is replaced within 3 checks. When it wakes up, its lock is gone and
// it follows.
//
// Messages on the BroadcastChannel: [from, [item, ...]], the sender's tab id and what
// it said in one task, in order. Each item is [to, kind, body]: the tab it is for (0
// or null: every tab; the leader takes what the tabs send to the leader they know, or
// to none yet), and
//   PROBE                      who leads? (the leader answers with its state)
//   CURSOR, cursor             a tab's subscriptions; none: the tab left
//   SEND, [frames]             a tab's publish frames
//   RECONNECT, wake            a tab's reconnect(), or (wake) its wake-up
//   FRAME, frame               from the leader: a frame of the server (publication,
//                              subscribed, unsubscribed, error, ack; a server-side
//                              subscription's first subscribed has `server`: every
//                              tab adds it and sends its cursor), or a state change of the
//                              connection: a frame without a type ({newState, ...,
//                              welcome}), which also announces the leader
// The channel's name has a version: change it with this format.
import { isAfter } from './positions.js';

/** Milliseconds between a follower's checks that the leader is alive. */
const CHECK_INTERVAL = 1e3;

const PROBE = 0;
const CURSOR = 1;
const SEND = 2;
const RECONNECT = 3;
const FRAME = 4;

/**
 * Run `client` (a Client whose connect() was called) in tab sharing, unless its
 * option shareConnection is false or the page lacks Web Locks (they need a secure
 * context: HTTPS, or http://localhost). Returns whether it did; if
 * not, the client opens a connection of its own.
 * @param {object} client the Client (client.js)
 */
export function share(client) {
  const scope = globalThis;
  // (Every browser with Web Locks has BroadcastChannel.)
  const locks = scope.document && scope.navigator.locks;
  if (client._options.shareConnection == false || !locks) return;

  const id = Math.random(); // this tab's
  const name = 'rtlink/1 ' + client._url;
  const channel = new BroadcastChannel(name);
  const queue = []; // what this tab says in this task
  // This tab: left (closed, or in the back/forward cache), leader (its id), abort (of
  // the lock request), heard and silent (the liveness check).
  let left, leader, abort, heard, silent, timer;
  // Leading: hidden (the client with the connection), release (of the lock),
  // cursors (tab -> cursor), state (the last state frame).
  let hidden, release, cursors, state;

  /** Say something to the other tabs, and to this one (a BroadcastChannel does not
   * deliver to its sender): what is said in a task goes in one message at its end. */
  const post = (to, kind, body) =>
    left ||
    (queue.push([to, kind, body]) == 1 &&
      queueMicrotask(() => {
        const message = [id, queue.splice(0)];
        channel.postMessage(message);
        handle(message);
      }));
  const sendCursor = () => post(leader, CURSOR, client._cursor());

  // To the runner (client.js) the leader is the connection: reconnect() asks the
  // leader, close() leaves.
  client._connection = { _ended: (code) => (code == 1000 ? leave(1) : post(leader, RECONNECT)) };
  // Back online, or shown: the runner's wake-up (client.js) ends the leader's wait
  // before its next attempt, as in the leader's own tab.
  client._wake = () => post(leader, RECONNECT, 1);

  const join = () => {
    left = leader = null;
    // A follower's check: a leader that said nothing since the last check is asked;
    // one that did not answer by the next is replaced.
    timer = setInterval(() => {
      if (heard || hidden) heard = silent = 0;
      else if (silent++) {
        silent = 0;
        abort.abort();
        elect(1);
      } else post(0, PROBE);
    }, CHECK_INTERVAL);
    post(0, PROBE); // who leads?
    elect();
  };

  /** Leave for good (`final`: close()) or for a while (pagehide): the leader forgets
   * this tab's subscriptions and unsent publishes; a leader hands over. */
  const leave = (final) => {
    if (!left) {
      post(leader, CURSOR); // none
      left = 1;
      clearInterval(timer);
      abort.abort(); // a request still queued for the lock
      resign(); // (this tab's link: ended by the next leader's first word, if it joins again)
    }
    if (final) queueMicrotask(() => channel.close()); // once the last words are out
  };

  /** Queue for the lock (or take it: `steal`), lead while holding it; queue again
   * when it is lost or released, unless this tab left. A lock manager that refuses
   * (a sandboxed frame) leaves this client on a connection of its own. */
  const elect = (steal) => {
    const mine = (abort = new AbortController());
    locks
      .request(name, steal ? { steal } : { signal: mine.signal }, () => new Promise(lead))
      .catch((error) => error.name == 'AbortError' || (leave(1), client._run()))
      .then(() => {
        if (mine != abort) return; // replaced by a steal
        resign();
        left || elect(); // (a check finds the new leader)
      });
  };

  const handle = ([from, items]) => {
    for (const [to, kind, body] of items) {
      if (left || (to && to != id)) continue;
      if (hidden) {
        // Leading: what the tabs ask for.
        if (kind == PROBE) out(state);
        if (kind == CURSOR) sync(from, (cursors[from] = body || {}));
        // A publish has a key. A read (reads.js) has none: sent while connected (each
        // tab sends its reads again whenever the leader is connected again).
        if (kind == SEND) for (const frame of body) frame.key ? publish(from, frame) : hidden._welcome && hidden.send(frame);
        if (kind == RECONNECT) body ? hidden._wake?.() : hidden.reconnect();
      }
      if (kind == FRAME) {
        const { newState, code, reason, transport, welcome } = body;
        // A state from another tab announces a new leader. A leader follows only
        // itself: another's state is stale (this tab took the lock from it), and
        // that tab finds out from its lock.
        if (newState && from != leader && (from == id || !hidden)) {
          leader = from;
          client._end(); // the link to the previous leader is gone
          sendCursor();
        }
        if (from != leader) continue;
        heard = 1;
        // A server-side subscription (protocol.md 8.8): the tab adds it, and tells the
        // leader, which keeps what some tab's cursor has.
        if (!newState) client._receive(body), body.server && sendCursor();
        else {
          // Linked once the leader is connected, until the leader changes: the
          // leader keeps the subscriptions across its own reconnects. It takes
          // publishes only while connected: each time it is (again), this tab sends
          // what is waiting (those already on their way get the same answer).
          if (welcome && client.state != 'connected') {
            if (!client._welcome) {
              // What the core asks of its client (core.js), which it does only once
              // started, goes to the leader: its frames (publishes) and its cursor,
              // as for a transport that carries the subscriptions. (No retries to
              // schedule: the leader retries what the server refused for now.)
              client._send = (part) => post(leader, SEND, client._codec._parse(part));
              client._subscriptionsChanged = sendCursor;
              client._start(welcome, 1);
            } else {
              client._outbox._resetAttempts();
              client._resend();
            }
          }
          client.transport = welcome ? transport : null;
          client.sessionId = welcome ? welcome.session : null;
          if (newState == 'closed') {
            leave(1);
            client._finish(code, reason);
          } else client._setState(newState, code, reason, transport);
        }
      }
    }
  };

  // --- leading -----------------------------------------------------------------------

  /** This tab holds the lock (until `resolve` is called): open the shared
   * connection, announce it. */
  const lead = (resolve) => {
    resign();
    if (left) return resolve();
    const connection = (hidden = new client.constructor(client._url, {
      ...client._options,
      shareConnection: false,
      persist: '', // none: every tab keeps its own outbox
      outboxLimit: Infinity, // bounded by the tabs' outboxes
    }));
    release = resolve;
    cursors = {};
    // Answers to reads (their ids are random from 2**52 > 4e15: reads.js) and presence
    // events (presence_diff: the frame with `joins`) go to every tab: the tab that
    // asked knows its id, and the tabs hold the subscriptions that asked for presence.
    connection.onframe = (frame) => (frame.id > 4e15 || frame.joins) && out(frame);
    const relay = (change) => connection == hidden && out((state = { ...change, welcome: connection._welcome }));
    connection.on('state', relay);
    connection.on('subscription', (subscription) => forward(subscription, 1));
    relay({ newState: 'disconnected', code: 1001, reason: 'new leader' });
  };

  /** Stop leading (lock lost or released, tab leaving); the hidden client's waiting
   * publishes are not failed: every tab sends its own to the next leader. */
  const resign = () => {
    const connection = hidden;
    hidden = null;
    connection?.close();
    release?.();
  };

  /** A frame for every tab, or for tab `to` alone. */
  const out = (frame, to) => post(to, FRAME, frame);

  /** The tab `from` sent its `cursor` (none: it left): subscribe the connection to what is new in it,
   * or again from the tab's position if the tab needs what came before the
   * connection's position (the tabs drop the repeats); confirm the channels that
   * the connection has confirmed already; drop the channels that no tab wants any
   * more. */
  const sync = (from, cursor) => {
    const subscriptions = hidden._subscriptions;
    for (const [channel, subscription] of subscriptions) {
      Object.values(cursors).some((other) => channel in other) || subscription.unsubscribe();
    }
    for (const channel in cursor) {
      const since = cursor[channel];
      let subscription = subscriptions.get(channel);
      if (!subscription || (since && (!subscription.position || isAfter(subscription.position, since)))) {
        subscription?.unsubscribe();
        // (An entry may carry `last` and `presence`, alone or with a position: 4.2.)
        forward((subscription = hidden.subscribe(channel, { ...since, since: since?.epoch && since })));
      } else if (subscription._active) {
        // Confirmed already: confirm again, at the connection's position (the tabs
        // that have the channel confirmed already ignore it).
        subscription._emit('subscribed', { recovered: true, position: subscription.position });
      }
    }
    // Connect once the leader's own cursor is in (it comes first), so that the first
    // request of SSE or long polling carries it.
    hidden._running || hidden.connect().catch(() => {});
  };

  /** The events of a subscription of the connection ('message', 'subscribed',
   * 'unsubscribed', 'error') go to the tabs as the frames that made them; the first
   * of a server-side subscription (its confirmation) marked `server`, so that every
   * tab adds it and tells the leader (once). (An error's code is enumerable, its
   * message is not.) */
  const forward = (subscription, server) =>
    (subscription._emit = (event, value) => {
      out({ type: event == 'message' ? 'publication' : event, channel: subscription.channel, server, message: value.message, ...value });
      server = 0;
    });

  /** Publish a tab's frame on the connection, and answer the tab. Only while
   * connected, so that what the leader holds is on its way: a tab that leaves takes
   * its other publishes with it (its outbox decides their fate, as without sharing).
   * A publish whose key is on its way already (sent again after a reconnect, or a
   * copy of a persisted outbox in another tab) gets the same answer. */
  const publish = (from, { id, channel, data, key }) => {
    const connection = hidden;
    const entry = connection._outbox._entries.get(key);
    // (An error's code is enumerable, its message is not.)
    const answer = (error, position) =>
      connection == hidden && out({ ...error, message: error?.message, type: error ? 'error' : 'ack', id, position }, from);
    if (entry) {
      const settle = entry._settle;
      entry._settle = (...outcome) => settle(...outcome) & answer(...outcome);
    } else if (connection._welcome) connection._publish(channel, data, key, answer);
  };

  // A page put in the back/forward cache leaves, and joins again when shown.
  addEventListener('pagehide', () => leave());
  addEventListener('pageshow', (event) => event.persisted && !client._closed && join());
  channel.onmessage = (event) => handle(event.data);
  join();
  return 1;
}

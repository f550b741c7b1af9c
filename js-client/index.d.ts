// Type declarations for the rtlink browser client (src/index.js, dist/rtlink.mjs,
// and the script-tag build dist/rtlink.js, which exposes the same names on the
// global `rtlink`). Names match the Python client (rtlink.client) in camelCase.

/** A publication's place in its channel's history (protocol.md section 4); the
 * functions on positions and cursors are in 'rtlink-client/positions'. */
export interface Position {
  /** Identifies one unbroken history of the channel; opaque. */
  epoch: string;
  /** 1 for the first publication of an epoch, +1 for each next one; 0 = none yet. */
  offset: number;
}

/** Connection states, as in the Python client's ConnectionState. */
export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'closed';

/** Transport names, in the default order of preference. */
export type TransportName = 'websocket' | 'sse' | 'longpoll';

/** Emitted as `'state'` on every state change. */
export interface StateChange {
  newState: ConnectionState;
  oldState: ConnectionState;
  /** The close code that caused it, if a connection ended. */
  code: number | null;
  /** The close reason, if any ('' otherwise). */
  reason: string;
  /** The transport being tried (connecting) or in use (connected), else null. */
  transport: TransportName | null;
}

/** One publication delivered to the application. */
export interface Message {
  channel: string;
  data: unknown;
  /** Pass it as `since` to resume after this message later. */
  position: Position;
}

/** Emitted as `'subscribed'` each time the server confirms a subscription. */
export interface SubscribedEvent {
  /**
   * False when the client asked to resume but the server could not fill the gap
   * (history window exceeded or history lost): messages were missed for good and
   * the application should re-sync by other means. True otherwise.
   */
  recovered: boolean;
  /** Whether the client asked to resume from a position. */
  resumed: boolean;
  /** The channel's position when the subscription was confirmed. */
  position: Position;
  /** Set when replayed publications follow (delivered as messages): every
   * publication the channel keeps after it (protocol.md 5.3). */
  since: Position | undefined;
}

/** The server ended a subscription on its own (protocol.md 8.8): the `unsubscribed`
 * frame, as Python's UnsubscribedEvent. The subscription has ended; the client does
 * not subscribe it again. */
export interface UnsubscribedEvent {
  readonly channel: string;
  /** Why, as an error code (protocol.md 7.1; 403 unless the server said otherwise). */
  readonly code: number;
  readonly reason: string;
}

/**
 * Every error the client reports. `name` tells the kind, and is the name of the Python
 * client's exception class for the same error (rtlink.errors):
 * - `'InvalidInput'`: a call was refused locally, before anything was sent: an
 *   invalid channel name, data that a codec cannot carry, an invalid idempotency key
 *   (1-128 characters, no lone surrogates), a second subscription to a channel, a key
 *   already waiting, an unknown option or event (Python: InvalidInput, a ValueError);
 * - `'ClientClosed'`: the client stopped (`code` is the close code, e.g. 1000 after
 *   `close()`, 4500 when the server refused the credentials);
 * - `'PublishError'` / `'SubscribeError'`: the server refused the request (`code` is
 *   the error code: 403, 404, 413, 422, ...; Python: both are RequestErrors);
 * - `'ReadError'`: a read was refused: `history()` of 'rtlink-client/history' or
 *   `presence()` of 'rtlink-client/presence' (the error code, or the close code of
 *   refused credentials);
 * - `'OutboxFull'`: `outboxLimit` publishes are waiting already (nothing was queued);
 * - `'RtlinkError'`: `waitSubscribed()` of a subscription unsubscribed before the
 *   server confirmed it.
 * `code` is null for the kinds without one.
 */
export class RtlinkError extends Error {
  name: 'InvalidInput' | 'ClientClosed' | 'PublishError' | 'SubscribeError' | 'ReadError' | 'OutboxFull' | 'RtlinkError';
  code: number | null;
}

export interface ClientOptions {
  /** Transports to use, in order of preference (default all three, as listed). */
  transports?: TransportName[];
  /** `'json'` (default) or `'msgpack'`. */
  codec?: 'json' | 'msgpack';
  /**
   * Credentials (e.g. a JWT). A function is called again before every connection
   * attempt and every background probe of a better transport (so it can return a
   * fresh, short-lived token); empty or null means none.
   *
   * Never put in a URL when the server has tickets: requests made with `fetch` (long
   * polling, and `POST {url}/send` of SSE and long polling) send the header
   * `Authorization: Bearer <token>`; WebSocket and EventSource, which cannot send
   * headers, first trade it at `POST {url}/ticket` (with that header) for a
   * short-lived single-use ticket and open with `?ticket=<ticket>` (SSE gets a new
   * ticket for each stream it opens). Answers of `/ticket`:
   * - 404 (no tickets: the server has a custom authenticate hook): `?token=<token>`;
   * - 401: the client stops as after close code 4500 (state `'closed'`, `connect()`
   *   rejects with ClientClosed 4500), with the server's `error` as the reason;
   * - anything else (network error, 5xx): a failed connection attempt, retried
   *   (next transport, or backoff) like any other.
   *
   * When the credentials expire the server closes the connection with 4003
   * (TOKEN_EXPIRED): the client reconnects and calls the function again.
   */
  token?: string | null | (() => string | null | Promise<string | null>);
  /** Most publishes waiting for acknowledgement; beyond it publish() rejects
   * with OutboxFull (default 1000). */
  outboxLimit?: number;
  /**
   * Keep the outbox in `storage` (default: localStorage) under this key, so publishes
   * made offline survive a page reload: a client created later with the same key
   * sends them (same idempotency keys, so each lands once). Default: not persisted.
   * Clients in several tabs may use the same key: each writes an item of its own,
   * named the key, a space and a suffix, and a new client takes over (reads and
   * removes) every item of the key, and one named the key alone (older clients).
   */
  persist?: string | null;
  /** First reconnect delay bound in seconds; doubles per attempt (default 0.5). */
  backoffBase?: number;
  /** Largest reconnect delay bound in seconds (default 30). */
  backoffCap?: number;
  /** Seconds to open a transport and receive the server's first frame (default 3). */
  connectTimeout?: number;
  /** While on a fallback transport, seconds between tries of better ones (default 60). */
  probeInterval?: number;
  /**
   * Share one connection with the clients of the same URL in the other tabs of this
   * browser (default true; js-client/README.md, "Tabs share one connection"). A
   * browser opens at most 6 HTTP/1.1 connections to a host and each SSE stream or
   * held long poll keeps one: unshared, six tabs take them all.
   *
   * One tab (the leader) holds the connection, with its own options (`token`,
   * `transports`, `codec`, ...); every tab keeps its own subscriptions, positions and
   * outbox, and its `state`, `transport` and `sessionId` are the shared connection's.
   * When the leader's tab closes or crashes, the next tab takes over at once and every
   * tab resumes from its positions and sends its waiting publishes again (same keys:
   * each lands once); a frozen leader (it answers nothing for 2 checks, 1 s apart) is
   * replaced within 3 s. `false` gives this client a connection of its own; so do
   * pages without Web Locks (they need a secure context: HTTPS or localhost) and
   * sandboxed frames that are refused them.
   */
  shareConnection?: boolean;
  /** Injected for tests and non-browser hosts; default: the global ones. */
  WebSocket?: typeof WebSocket;
  EventSource?: typeof EventSource;
  fetch?: typeof fetch;
  /** Where the outbox (`persist`) and the working transport per origin are kept
   * (default: localStorage when available). With `persist`, its items are listed
   * through `length` and `key()`. */
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem' | 'key' | 'length'> | null;
}

/** Messages of one channel, resumed across reconnects without loss or duplicates. */
export class Subscription {
  readonly channel: string;
  /** Position of the last message delivered (or of the channel when confirmed). */
  readonly position: Position | null;
  /** The `recovered` flag of the latest confirmation. */
  readonly recovered: boolean;
  /** The `last` it was subscribed with ("all": 2**53-1), sent on every resubscribe. */
  readonly last: number | undefined;
  /** Whether it asks for the channel's presence events (rtlink-client/presence). */
  readonly presence: boolean | undefined;
  on(event: 'message', callback: (message: Message) => void): () => void;
  on(event: 'subscribed', callback: (event: SubscribedEvent) => void): () => void;
  /** The server ended the subscription (protocol.md 8.8; it has ended). */
  on(event: 'unsubscribed', callback: (event: UnsubscribedEvent) => void): () => void;
  /** The server refused the subscription for good (the subscription has ended). */
  on(event: 'error', callback: (error: RtlinkError) => void): () => void;
  /** Resolves once the server confirmed the subscription; rejects if refused. */
  waitSubscribed(): Promise<void>;
  /** Stop the subscription. */
  unsubscribe(): void;
}

/**
 * A client. While tabs share a connection (`shareConnection`), its `state`,
 * `transport`, `sessionId` and 'state' events are those of the shared connection;
 * a tab that joins a connected one goes from 'disconnected' straight to 'connected',
 * and a change of leader is seen as 'disconnected' with code 1001 ('new leader'),
 * then 'connecting' and 'connected' again.
 */
export class Client {
  /**
   * @param url where the server mounted rtlink, e.g. `'/rt'` (relative to the page)
   *   or `'https://example.com/rt'`.
   */
  constructor(url: string, options?: ClientOptions);
  readonly state: ConnectionState;
  /** The transport in use while connected, else null. */
  readonly transport: TransportName | null;
  /** The server's session id of the current connection (for logs), else null. */
  readonly sessionId: string | null;
  /** Publishes waiting for acknowledgement. */
  readonly outboxSize: number;
  on(event: 'state', callback: (change: StateChange) => void): () => void;
  /** The server subscribed this client to a channel (protocol.md 8.8): its new
   * Subscription, resumed across reconnects like the client's own. Register the
   * subscription's callbacks in this callback. While tabs share a connection, every
   * tab's client gets it. */
  on(event: 'subscription', callback: (subscription: Subscription) => void): () => void;
  /** Start (if needed) and resolve once connected; rejects with ClientClosed if the
   * client stopped first (e.g. unauthorized). */
  connect(): Promise<void>;
  /** Close and stop; waiting publishes reject with ClientClosed and leave the outbox
   * (also the persisted one): close() means they will not be sent (those on their way
   * may still land). Sharing a connection, this closes this tab's client only. */
  close(): void;
  /** Drop the current connection (if any) and reconnect at once, resuming; the shared
   * one, if shared. */
  reconnect(): void;
  /** Subscribe; with `since`, resume after that position. With `last` (a count, or
   * `'all'`), the latest publications the channel keeps are delivered first (at most
   * that many); with `since` too, only when its gap cannot be filled (then
   * `recovered` is false). With `presence`, also get the channel's presence_diff
   * events (read them with rtlink-client/presence). Throws InvalidInput on an invalid
   * channel name or a second subscription to the same channel. */
  subscribe(channel: string, options?: { since?: Position | null; last?: number | 'all'; presence?: boolean }): Subscription;
  /** Low level, for opt-in modules (rtlink-client/history and /presence make their
   * reads with it: src/reads.js): send a frame on the current connection (connected
   * only; over SSE and long polling by POST {path}/send, the answers coming back in
   * its response). Where tabs share a connection, the leader sends a tab's frames
   * without a `key` (reads) and relays the answers to ids from 2**52 to every tab. */
  send(frame: { type: string; [field: string]: unknown }): void;
  /** Low level, for opt-in modules: called with every frame received from the server,
   * before the client handles it (in a tab sharing a connection, the frames the
   * leader relays: subscriptions' frames, answers to reads, presence_diff events).
   * Several modules share it through src/reads.js's watch(). */
  onframe?: (frame: { type: string; [field: string]: unknown }) => void;
  /**
   * Publish; resolves with the position once the server acknowledged it. While
   * offline the publish waits in the outbox and is sent on reconnect, always with
   * the same idempotency key (`key`, or a random one), so it lands once. Rejects with
   * InvalidInput (nothing queued) for an invalid channel, data or key.
   */
  publish(channel: string, data: unknown, options?: { key?: string }): Promise<Position>;
}

// The name tables CloseCode and ErrorCode: import from 'rtlink-client/codes'
// (codes.d.ts); they are not in the bundle, to keep it within its size budget.
/** Whether a connection that ended with this close code should be reopened. */
export function shouldReconnect(code: number): boolean;
/** Whether an error code is temporary (the same request may succeed later). */
export function isTemporary(code: number): boolean;
/** Forget which transport worked for which origin (new clients start at the top);
 * `storage` defaults to localStorage. */
export function forgetTransports(storage?: Pick<Storage, 'removeItem'> | null): void;

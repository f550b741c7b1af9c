// A small fake server side for the client tests: WebSocket, EventSource, fetch and
// storage, injected through the Client options. Nothing here is a test of its own.
//
// The test plays the server: it opens sockets, sends frames (encoded with the codec
// the client asked for, delivered asynchronously like a browser would), answers
// fetch requests and closes things. Everything the client sends is recorded decoded.
//
//   const fakes = createFakes();
//   new Client('http://test/rt', { WebSocket: fakes.WebSocket, EventSource: fakes.EventSource,
//                                  fetch: fakes.fetch, storage: fakes.storage });
//   const ws = await fakes.nextSocket();       // the client opened a WebSocket
//   await ws.open();                           // server accepts the offered subprotocol
//   await ws.serverSends(welcome());           // one message (a frame or an array of frames)
//   ws.sent                                    // frames the client sent, decoded
import { decode, encode } from '../src/msgpack.js';

const utf8 = new TextEncoder();

// --- encoding ------------------------------------------------------------------------

/** One transport message holding `frames` (a frame or an array of frames). */
export function encodeMessage(codec, frames) {
  const list = Array.isArray(frames) ? frames : [frames];
  if (codec == 'msgpack') {
    const parts = list.map((frame) => encode(frame));
    const message = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
    let offset = 0;
    for (const part of parts) message.set(part, (offset += part.length) - part.length);
    return message;
  }
  return list.map((frame) => JSON.stringify(frame)).join('\n');
}

/** The frames of one transport message (a string, Uint8Array or ArrayBuffer). */
export function decodeMessage(codec, message) {
  if (codec == 'msgpack') {
    if (typeof message == 'string') throw new Error('msgpack message sent as text');
    return decode(new Uint8Array(message));
  }
  if (typeof message != 'string') message = new TextDecoder().decode(message);
  return message
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

/** Size in bytes of a transport message, as the server counts it. */
export const byteSize = (message) =>
  typeof message == 'string' ? utf8.encode(message).length : new Uint8Array(message).length;

// --- frames --------------------------------------------------------------------------

export const welcome = (fields = {}) => ({
  type: 'welcome',
  version: 1,
  session: 'S' + Math.random().toString(36).slice(2, 10),
  ping_interval: 25,
  pong_timeout: 10,
  max_message_size: 65536,
  ...fields,
});

export const pos = (epoch, offset) => ({ epoch, offset });

export const publication = (channel, epoch, offset, data = offset) => ({
  type: 'publication',
  channel,
  data,
  position: pos(epoch, offset),
});

// --- time ----------------------------------------------------------------------------

/** After every pending microtask and I/O callback. */
export const tick = () => new Promise((resolve) => setImmediate(resolve));

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wait until `condition()` is truthy (polling); returns its value. Fails after
 * `timeout` ms with `message`. */
export async function waitFor(condition, { timeout = 3000, message = String(condition) } = {}) {
  const until = Date.now() + timeout;
  for (;;) {
    const value = condition();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for: ${message}`);
    await sleep(2);
  }
}

// --- storage -------------------------------------------------------------------------

export class MemoryStorage {
  constructor(items = {}) {
    this.items = new Map(Object.entries(items));
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
  get length() {
    return this.items.size;
  }
  key(index) {
    return [...this.items.keys()][index] ?? null;
  }
  /** The parsed JSON value under `key`, or null. */
  json(key) {
    const text = this.getItem(key);
    return text == null ? null : JSON.parse(text);
  }
  /** The entries of the outboxes persisted under `key` (each outbox writes its own
   * item, named `key` and a suffix), or null if there is none. */
  outbox(key) {
    const names = [...this.items.keys()].filter((name) => name.startsWith(key + ' '));
    return names.length ? names.flatMap((name) => this.json(name)) : null;
  }
}

// --- WebSocket -----------------------------------------------------------------------

const SUBPROTOCOL = /^rtlink\.v1\.(json|msgpack)$/;

export class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url, protocols) {
    this.url = url;
    /** What the client offered (a string or an array). */
    this.protocols = protocols;
    const offered = [protocols ?? []].flat();
    /** The codec of the first offered rtlink subprotocol (json if none). */
    this.codec = offered.map((name) => SUBPROTOCOL.exec(name)?.[1]).find(Boolean) || 'json';
    this.protocol = '';
    this.binaryType = 'blob';
    this.readyState = FakeWebSocket.CONNECTING;
    /** Frames the client sent, decoded, in order. */
    this.sent = [];
    /** Raw messages the client sent. */
    this.messages = [];
    /** Set when the client called close(): {code, reason}. */
    this.closedByClient = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
  }

  get closed() {
    return this.readyState == FakeWebSocket.CLOSED || this.readyState == FakeWebSocket.CLOSING;
  }

  /** The token query parameter, or null. */
  get token() {
    return new URL(this.url).searchParams.get('token');
  }

  /** The ticket query parameter, or null. */
  get ticket() {
    return new URL(this.url).searchParams.get('ticket');
  }

  _dispatch(action) {
    return new Promise((resolve) =>
      setTimeout(() => {
        action();
        setImmediate(resolve);
      }, 0),
    );
  }

  /** The server accepts the connection with `protocol` (default: the one offered;
   * '' for none). Resolves once onopen ran. */
  open(protocol = [this.protocols ?? []].flat()[0] ?? '') {
    return this._dispatch(() => {
      if (this.readyState != FakeWebSocket.CONNECTING) return;
      this.readyState = FakeWebSocket.OPEN;
      this.protocol = protocol;
      this.onopen?.({ type: 'open' });
    });
  }

  /** The server sends one message holding `frames` (a frame or an array). A string,
   * Uint8Array or ArrayBuffer is sent as is. Resolves once onmessage ran. */
  serverSends(frames) {
    let data = typeof frames == 'string' || frames instanceof Uint8Array || frames instanceof ArrayBuffer
      ? frames
      : encodeMessage(this.codec, frames);
    if (data instanceof Uint8Array) {
      data = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength); // binaryType arraybuffer
    }
    return this._dispatch(() => {
      if (this.readyState == FakeWebSocket.OPEN) this.onmessage?.({ type: 'message', data });
    });
  }

  /** The server closes the WebSocket with `code`. Resolves once onclose ran. */
  serverCloses(code = 1006, reason = '') {
    return this._dispatch(() => {
      if (this.readyState == FakeWebSocket.CLOSED) return;
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose?.({ type: 'close', code, reason, wasClean: code != 1006 });
    });
  }

  /** The connection fails (error, then close 1006). */
  fail() {
    return this._dispatch(() => {
      if (this.readyState == FakeWebSocket.CLOSED) return;
      this.readyState = FakeWebSocket.CLOSED;
      this.onerror?.({ type: 'error' });
      this.onclose?.({ type: 'close', code: 1006, reason: '', wasClean: false });
    });
  }

  send(data) {
    if (this.readyState != FakeWebSocket.OPEN) {
      throw new Error(`InvalidStateError: send() in readyState ${this.readyState}`);
    }
    if (this.codec == 'msgpack' && typeof data == 'string') throw new Error('msgpack sent as text');
    if (this.codec == 'json' && typeof data != 'string') throw new Error('json sent as binary');
    this.messages.push(data);
    this.sent.push(...decodeMessage(this.codec, data));
  }

  close(code = 1000, reason = '') {
    if (code != 1000 && !(code >= 3000 && code <= 4999)) {
      throw new Error(`InvalidAccessError: close code ${code}`); // as browsers do
    }
    if (this.closed) return;
    this.closedByClient ??= { code, reason };
    this.readyState = FakeWebSocket.CLOSING;
    setTimeout(() => {
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose?.({ type: 'close', code, reason, wasClean: true });
    }, 0);
  }
}

// --- EventSource ---------------------------------------------------------------------

/** The rtlink query parameters of a URL, decoded: codec, subs (parsed), token,
 * ticket, connect. */
export function params(url) {
  const query = new URL(url).searchParams;
  const subs = query.get('subs');
  return {
    codec: query.get('codec'),
    subs: subs == null ? undefined : JSON.parse(subs),
    token: query.get('token'),
    ticket: query.get('ticket'),
    connect: query.get('connect'),
    refusal: query.get('refusal'),
  };
}

export class FakeEventSource {
  constructor(url) {
    this.url = url;
    Object.assign(this, params(url));
    this.path = new URL(url).pathname;
    this.readyState = 0;
    this.closed = false;
    this.onmessage = this.onerror = this.onopen = null;
  }

  /** The server sends one event holding `frames` (JSON as is, msgpack in base64).
   * Resolves once onmessage ran. */
  serverSends(frames) {
    const message = encodeMessage(this.codec || 'json', frames);
    const data = typeof message == 'string' ? message : Buffer.from(message).toString('base64');
    return new Promise((resolve) =>
      setTimeout(() => {
        if (!this.closed) {
          this.readyState = 1;
          this.onmessage?.({ type: 'message', data, lastEventId: '' });
        }
        setImmediate(resolve);
      }, 0),
    );
  }

  /** The stream fails or ends (as EventSource reports it: an error event). */
  fail() {
    return new Promise((resolve) =>
      setTimeout(() => {
        if (!this.closed) this.onerror?.({ type: 'error' });
        setImmediate(resolve);
      }, 0),
    );
  }

  close() {
    this.closed = true;
    this.readyState = 2;
  }
}

// --- fetch ---------------------------------------------------------------------------

function makeResponse(status, body) {
  const bytes = typeof body == 'string' ? utf8.encode(body) : new Uint8Array(body);
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: new Map(),
    text: async () => new TextDecoder().decode(bytes),
    json: async () => JSON.parse(new TextDecoder().decode(bytes)),
    arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  };
}

/** One request the client made with fetch: `url`, `path`, `method`, the decoded URL
 * parameters (`codec`, `subs`, `token`, `ticket`, `connect`), `body`, `frames` (the
 * decoded body of a POST), `headers`, `authorization` (the Authorization header or
 * null), `aborted`; the test answers it once with respond() or fail(). */
class FakeRequest {
  constructor(url, init = {}) {
    this.url = String(url);
    this.path = new URL(this.url).pathname;
    Object.assign(this, params(this.url));
    this.method = init.method || 'GET';
    this.headers = init.headers || {};
    this.authorization = Object.entries(this.headers).find(([name]) => name.toLowerCase() == 'authorization')?.[1] ?? null;
    this.body = init.body;
    this.frames = init.body == null ? [] : decodeMessage(this.codec || 'json', init.body);
    this.signal = init.signal;
    this.aborted = false;
    this.answered = false;
    this.promise = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    init.signal?.addEventListener('abort', () => {
      this.aborted = true;
      if (!this.answered) {
        this.answered = true;
        this._reject(new DOMException('The operation was aborted.', 'AbortError'));
      }
    });
  }

  get pending() {
    return !this.answered;
  }

  /** Answer with `status` and `body`: frames (a frame or an array, encoded with the
   * request's codec), a string, or bytes. Resolves once the client had time to
   * handle the answer. */
  respond(status = 200, body = '') {
    if (this.answered) throw new Error(`${this.method} ${this.path} answered twice (or aborted)`);
    this.answered = true;
    const raw = typeof body == 'string' || body instanceof Uint8Array ? body : encodeMessage(this.codec || 'json', body);
    this._resolve(makeResponse(status, raw));
    return tick().then(tick);
  }

  /** The request fails without an answer (network error). */
  fail(error = new TypeError('Failed to fetch')) {
    if (this.answered) throw new Error(`${this.method} ${this.path} answered twice (or aborted)`);
    this.answered = true;
    this._reject(error);
    return tick().then(tick);
  }
}

// --- all together --------------------------------------------------------------------

/** Make `fakes` answer every ticket request (POST /rt/ticket) at once with a fresh
 * ticket: 'ticket-1', 'ticket-2', ... */
export function issueTickets(fakes) {
  let issued = 0;
  fakes.handler = (request) =>
    request.path == '/rt/ticket' ? [200, JSON.stringify({ ticket: `ticket-${++issued}`, expires_in: 30 })] : undefined;
}

/** A fresh set of fakes for one test, recording every socket, stream and request. */
export function createFakes({ storage = new MemoryStorage() } = {}) {
  const sockets = [];
  const streams = [];
  const requests = [];
  const fakes = {
    sockets,
    streams,
    requests,
    storage,
    /** Called with each new request; a non-undefined result [status, body] answers
     * it at once. */
    handler: null,
    WebSocket: class extends FakeWebSocket {
      constructor(url, protocols) {
        super(url, protocols);
        sockets.push(this);
      }
    },
    EventSource: class extends FakeEventSource {
      constructor(url) {
        super(url);
        streams.push(this);
      }
    },
    fetch: async (url, init) => {
      const request = new FakeRequest(url, init);
      requests.push(request);
      const answer = fakes.handler?.(request);
      if (answer !== undefined) request.respond(...answer);
      return request.promise;
    },
    /** Wait for the socket number `index` (default: the next one not yet taken). */
    async nextSocket(index = fakes._socketsTaken) {
      await waitFor(() => sockets.length > index, { message: `WebSocket #${index + 1}` });
      fakes._socketsTaken = Math.max(fakes._socketsTaken, index + 1);
      return sockets[index];
    },
    _socketsTaken: 0,
    async nextStream(index = fakes._streamsTaken) {
      await waitFor(() => streams.length > index, { message: `EventSource #${index + 1}` });
      fakes._streamsTaken = Math.max(fakes._streamsTaken, index + 1);
      return streams[index];
    },
    _streamsTaken: 0,
    /** Wait for an unanswered request to `path` (e.g. '/rt/poll'). */
    async nextRequest(path) {
      return waitFor(() => requests.find((request) => request.pending && request.path == path), {
        message: `a pending request to ${path}`,
      });
    },
    /** Requests to `path`, in order. */
    requestsTo: (path) => requests.filter((request) => request.path == path),
    /** Answer the next ticket request (POST /rt/ticket) as the server does: 200 with
     * a ticket (default: 'ticket-' and the number of the request), or `status` with
     * `body` (an object is sent as JSON). Returns the request. */
    async answerTicket(status = 200, body) {
      const request = await fakes.nextRequest('/rt/ticket');
      const number = fakes.requestsTo('/rt/ticket').indexOf(request) + 1;
      body ??= status == 200 ? { ticket: `ticket-${number}`, expires_in: 30 } : { error: 'refused' };
      await request.respond(status, typeof body == 'string' ? body : JSON.stringify(body));
      return request;
    },
  };
  return fakes;
}

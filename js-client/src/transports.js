// Transports open one connection to the server and move transport messages; they
// know nothing about frames. Each is a function of a `link` given by the client:
//
//   link._url(endpoint, withCursor, extra)     the URL of an endpoint (codec, subs)
//   link._stream(endpoint, withCursor, extra)  the same, authenticated for a WebSocket
//                                              or EventSource (ticket or token), async
//   link._headers                              headers of every fetch (Authorization)
//   link._codec                                the codec (codec.js)
//   link._received(message)                    a transport message arrived
//   link._ended(code, reason)                  the connection is over (1006: no close code)
//   link.WebSocket, link.EventSource, link.fetch  injectable for tests
//
// and returns (or resolves with) { _send(message) -> Promise, _close() } plus, for the
// transports that carry the subscriptions in their requests (SSE, long polling),
// _subscriptionsChanged(): the subscription set changed, so the stream is reopened or
// the next poll made at once. The link's _url(endpoint, true) records the channels of
// the request in the holder's _requestedChannels. These are the names of the Python
// client's transport contract (rtlink/client/transports.py: send, close,
// subscriptions_changed, requested_channels) in camelCase with a leading underscore,
// which the build shortens.

const WEBSOCKET_SUBPROTOCOL = 'rtlink.v1.';

/** POST {path}/send (2.4): client frames of the HTTP transports; the answers (ack,
 * error, pong) come back in the response and reach the client like stream frames. */
const post = (link) => async (message) => {
  const response = await link.fetch(link._url('/send'), {
    method: 'POST',
    body: message,
    headers: { ...link._headers, 'Content-Type': 'application/' + link._codec.name },
  });
  // A refusal (401, 403; 400: undecodable) carries a close frame whose code applies.
  // An empty 200 answers frames that needed no answer; any other answer that is no
  // message of the codec (a proxy's 502) ends the connection with 1006 when decoded.
  const body = await link._codec._read(response);
  if (body.length || !response.ok) link._received(body);
};

export const transports = {
  async websocket(link) {
    const subprotocol = WEBSOCKET_SUBPROTOCOL + link._codec.name;
    const socket = new link.WebSocket((await link._stream('/ws')).replace(/^http/, 'ws'), subprotocol);
    const close = (code = 1000) => {
      socket.onclose = socket.onmessage = null;
      socket.close(code);
    };
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => {
      if (socket.protocol != subprotocol) {
        close(4502);
        link._ended(4502, 'subprotocol');
      }
    };
    socket.onmessage = (event) => link._received(event.data);
    socket.onclose = (event) => link._ended(event.code || 1006, event.reason);
    return { _send: async (message) => socket.send(message), _close: close };
  },

  async sse(link) {
    let current, previous, closed;
    const open = async () => {
      // Each stream needs a ticket of its own (single use). refusal=200: a refused
      // stream comes as a 200 whose close frame is read, as an EventSource shows
      // nothing of a 401 (protocol.md 2.6).
      const url = await link._stream('/sse', true, { refusal: 200 });
      if (closed) return;
      // The stream in use keeps delivering until the new one (with the new
      // subscriptions) speaks, so nothing is missed; repeats at the seam are dropped
      // by offset. A new stream that has not spoken yet is simply replaced.
      if (current?._spoke) {
        previous?.close();
        previous = current;
      } else current?.close();
      const stream = (current = new link.EventSource(url));
      stream.onmessage = (event) => {
        stream._spoke = true;
        if (stream == current) previous = previous?.close();
        link._received(link._codec._fromEvent(event.data));
      };
      // EventSource would reconnect by itself; the client reconnects with its own
      // positions and backoff instead.
      stream.onerror = () => {
        stream.close();
        if (stream == current) link._ended(1006, 'stream ended');
      };
    };
    await open();
    return {
      _send: post(link),
      _subscriptionsChanged: () => open().catch((error) => link._ended(1006, String(error))),
      _close: () => {
        closed = 1;
        current.close();
        previous?.close();
      },
    };
  },

  longpoll(link) {
    let poller;
    let first = { connect: 1 }; // answered at once: the health check of the transport
    const poll = async () => {
      const mine = (poller = new AbortController());
      try {
        const response = await link.fetch(link._url('/poll', true, first), { signal: mine.signal, headers: link._headers });
        // Every answer holds frames (a refusal, 401 or 403, its close frame); one that
        // does not (a proxy's 502) is undecodable: the connection ends with 1006.
        const body = await link._codec._read(response);
        if (mine != poller) return; // replaced by a poll with new subscriptions
        first = null;
        // The client handles the answer synchronously, so the next poll carries the
        // positions it reached.
        link._received(body);
        if (!mine.signal.aborted) poll();
      } catch (error) {
        if (mine == poller && !mine.signal.aborted) link._ended(1006, String(error));
      }
    };
    poll();
    return {
      _send: post(link),
      // Drop the poll in flight (what it would have brought is replayed from history
      // by the next one, which carries the same positions) and poll at once.
      _subscriptionsChanged: () => {
        poller.abort();
        poll();
      },
      _close: () => poller.abort(),
    };
  },
};

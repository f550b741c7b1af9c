// Reads (a page of history, a presence list) for the opt-in modules
// (rtlink-client/history, rtlink-client/presence), as the Python client's core makes
// them (rtlink/client/core.py Read, _on_read_error). Kept out of the core bundle for
// size: the core only sends a frame with client.send() and shows every frame it
// receives to client.onframe.
//
// A read's frame goes on the client's connection, whatever its transport: over SSE and
// long polling client.send() posts it to {path}/send and its answer comes back in the
// response. Where tabs share a connection, the leader relays it and its answer
// (tabs.js). It is sent once connected, again on every new connection and after a
// temporary refusal (reading twice does no harm), until it is answered or refused for
// good.
import { backoff } from './backoff.js';
import { isTemporary, RtlinkError } from './index.js';

/**
 * Call `callback` with every frame `client` receives; several modules may watch one
 * client (they share its onframe). Returns a function that stops it.
 * @param {object} client a Client
 * @param {(frame: object) => void} callback
 * @returns {() => void}
 */
export function watch(client, callback) {
  const hooks = (client._frameHooks ||= new Set());
  client.onframe = (frame) => hooks.forEach((hook) => hook(frame));
  hooks.add(callback);
  return () => hooks.delete(callback);
}

/**
 * Send `request` (a frame without id) as a read on `client`'s connection; resolves
 * with the answer (the frame of the same type, without type and id). Rejects with an
 * RtlinkError named 'ReadError' (refused for good: its error code) or 'ClientClosed'.
 * @param {object} client a Client
 * @param {{type: string}} request
 * @returns {Promise<object>}
 */
export function read(client, request) {
  return new Promise((resolve, reject) => {
    if (client._closed) return reject(client._closed);
    // A read's id is random from 2**52, the client's own count up from 1: they never
    // meet, and the reads of the tabs that share a connection do not either (a leader
    // relays the answers to reads, ids from 2**52, to every tab: tabs.js).
    const id = 2 ** 52 + Math.floor(Math.random() * 2 ** 52);
    let attempt = 0;
    let timer;
    const send = () => client.state == 'connected' && client.send({ ...request, id });
    const done = (settle, value) => {
      unwatch();
      offState();
      clearTimeout(timer);
      settle(value);
    };
    const unwatch = watch(client, ({ type, id: answered, ...answer }) => {
      if (answered != id) return;
      if (type == request.type) done(resolve, answer);
      else if (type != 'error') return;
      // Refused for now (a rate limit, an overloaded backend): again after a backoff
      // delay, growing with each refusal, unless a new connection sends it first.
      else if (isTemporary(answer.code)) timer = setTimeout(send, backoff(attempt++, client._options));
      else done(reject, new RtlinkError('ReadError', answer.code, answer.message));
    });
    const offState = client.on('state', ({ newState }) => {
      if (newState == 'connected') clearTimeout(timer), send();
      if (newState == 'closed') done(reject, client._closed);
    });
    send();
  });
}

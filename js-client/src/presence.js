// rtlink-client/presence: who is in a channel, and its join/leave events (protocol.md
// 5.11-5.13, 6.8), as the Python client's Client.presence() and the 'presence' event
// of its subscriptions. Opt-in, to keep the core small: the core only sends
// `presence: true` for subscribe(channel, {presence: true}), passes every frame it
// receives to client.onframe, and sends frames with client.send().
//
// Tab sharing (the default where Web Locks exist) does not carry presence reads: a
// client that uses this module must be made with {shareConnection: false}.
import { isTemporary } from './codes.js';

// Request ids of this module count down from the top; the client's count up from 1,
// so the two never meet.
let lastId = 2 ** 53;

/** The frame hooks of `client`, each called with every frame (several modules may
 * watch one client). */
function watch(client, callback) {
  const hooks = (client._presenceHooks ||= new Set());
  client.onframe = (frame) => hooks.forEach((hook) => hook(frame));
  hooks.add(callback);
  return () => hooks.delete(callback);
}

/** An error like the client's (`name` 'ReadError', the error code), for a refused read. */
function readError({ code, message }) {
  return Object.assign(new Error(message), { name: 'ReadError', code });
}

/**
 * Who is subscribed to `channel` (a channel whose options keep presence): resolves
 * with {channel, count, members}: the member count, and at most 1,000 members
 * {client, user, info}. Sent once connected (and again if the connection ends
 * first; after a delay if refused for now); rejects with a 'ReadError' (404, 401,
 * 403, 400: no presence kept) or the client's 'ClientClosed'.
 */
export function presence(client, channel) {
  return new Promise((resolve, reject) => {
    const id = --lastId;
    const send = () => client.state == 'connected' && client.send({ type: 'presence', id, channel });
    const done = () => (unwatch(), offState(), clearTimeout(timer));
    let timer;
    const unwatch = watch(client, (frame) => {
      if (frame.id != id || (frame.type != 'presence' && frame.type != 'error')) return;
      if (frame.type == 'presence') {
        done();
        resolve({ channel: frame.channel, count: frame.count, members: frame.members });
      } else if (isTemporary(frame.code)) timer = setTimeout(send, 1e3 * (0.5 + Math.random()));
      else {
        done();
        reject(readError(frame));
      }
    });
    const offState = client.on('state', ({ newState, code, reason }) => {
      if (newState == 'connected') send();
      if (newState == 'closed') {
        done();
        reject(Object.assign(new Error(`closed: ${code} ${reason}`), { name: 'ClientClosed', code }));
      }
    });
    send();
  });
}

/**
 * Call `callback` with each presence_diff of `channel` ({channel, count, joins,
 * leaves, truncated}); the client must be subscribed with {presence: true}. Returns
 * a function that removes the callback.
 */
export function onPresence(client, channel, callback) {
  return watch(client, (frame) => frame.type == 'presence_diff' && frame.channel == channel && callback(frame));
}

/** What identifies a member: its client id and its user (protocol.md 5.12). */
export const memberKey = ({ client, user }) => JSON.stringify([client, user]);

/**
 * Keep the member list of `channel` up to date: read it on each connection, apply
 * the joins and leaves, read it again after a truncated diff. `onchange` gets
 * ({members, count}) each time the list changed (`members` a Map of memberKey ->
 * member). The client must be subscribed with {presence: true}. Returns a function
 * that stops it.
 */
export function trackPresence(client, channel, onchange) {
  let members = new Map();
  let count = 0;
  let stopped;
  let reading;
  const changed = () => stopped || onchange({ members, count });
  const read = () => {
    const mine = (reading = presence(client, channel).then(
      (answer) => {
        if (mine != reading) return; // a newer read is on its way
        members = new Map(answer.members.map((member) => [memberKey(member), member]));
        count = answer.count;
        changed();
      },
      () => {}, // refused or closed: nothing to track
    ));
  };
  const offDiff = onPresence(client, channel, (diff) => {
    if (diff.truncated) return read();
    for (const member of diff.leaves) members.delete(memberKey(member));
    for (const member of diff.joins) members.set(memberKey(member), member);
    count = diff.count;
    changed();
  });
  const offState = client.on('state', ({ newState }) => newState == 'connected' && read());
  if (client.state == 'connected') read();
  return () => {
    stopped = true;
    offDiff();
    offState();
  };
}

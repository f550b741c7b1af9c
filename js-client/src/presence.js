// rtlink-client/presence: who is in a channel, and its join/leave events (protocol.md
// 5.11-5.13, 6.8), as the Python client's Client.presence() and the 'presence' event
// of its subscriptions. Opt-in, to keep the core small: the core only sends
// `presence: true` for subscribe(channel, {presence: true}), passes every frame it
// receives to client.onframe, and sends frames with client.send(). A presence read is
// a read as history's (reads.js): on every transport, and from every tab when tabs
// share a connection (the leader relays reads, answers and presence_diff events).
import { read, watch } from './reads.js';

/**
 * Who is subscribed to `channel` (a channel whose options keep presence): resolves
 * with {channel, count, members}: the member count, and at most 1,000 members
 * {client, user, info}. Sent once connected (and again if the connection ends
 * first; after a backoff delay if refused for now); rejects with an RtlinkError named
 * 'ReadError' (404, 401, 403, 400: no presence kept) or 'ClientClosed'.
 */
export const presence = (client, channel) => read(client, { type: 'presence', channel });

/**
 * Call `callback` with each presence_diff of `channel` ({channel, count, joins,
 * leaves, truncated}) while the client is subscribed to it with {presence: true}.
 * (Where tabs share a connection the leader relays the channel's events to every
 * tab: a tab whose own subscription did not ask for them gets none, as without
 * sharing.) Returns a function that removes the callback.
 */
export function onPresence(client, channel, callback) {
  return watch(
    client,
    (frame) =>
      frame.type == 'presence_diff' &&
      frame.channel == channel &&
      client._subscriptions.get(channel)?.presence &&
      callback(frame),
  );
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

// Type declarations for src/presence.js ('rtlink-client/presence'): presence reads and
// join/leave events (protocol.md 6.8), with the names of the Python client
// (Client.presence(), the subscription's 'presence' event). Opt-in: not in the core.
import type { Client } from './index.js';

/** One client present in a channel (protocol.md 5.12). */
export interface Member {
  /** The client's session id. */
  client: string;
  /** The subject of its identity (the token's `sub`), or null for an anonymous one. */
  user: string | null;
  /** The `info` claim of its identity (at most 1 KiB of JSON), or null. */
  info: unknown;
}

/** The answer of presence(): the member count and at most 1,000 members. */
export interface PresenceInfo {
  channel: string;
  count: number;
  members: Member[];
}

/** A presence_diff (protocol.md 5.13): joins and leaves of about 0.25 s. */
export interface PresenceDiff {
  type: 'presence_diff';
  channel: string;
  /** The member count after these changes. */
  count: number;
  joins: Member[];
  leaves: Member[];
  /** More changed than a diff names: joins and leaves are empty; read the list again. */
  truncated?: boolean;
}

/**
 * Who is subscribed to `channel` (a channel whose options keep presence). A read on
 * the client's connection, as history()'s: on every transport, from any tab sharing a
 * connection; sent once connected, again on a new connection and after a temporary
 * refusal. Rejects with an RtlinkError named 'ReadError' (with the error `code`: 404,
 * 401, 403; 400 when the channel keeps no presence) or 'ClientClosed'.
 */
export function presence(client: Client, channel: string): Promise<PresenceInfo>;

/** Call `callback` with each presence_diff of `channel` (subscribe it with
 * `{presence: true}`; where tabs share a connection, the leader relays the events to
 * every tab); returns a function that removes the callback. */
export function onPresence(client: Client, channel: string, callback: (diff: PresenceDiff) => void): () => void;

/** What identifies a member: its client id and user together. */
export function memberKey(member: Member): string;

/** Keep the member list of `channel` (subscribed with `{presence: true}`) up to date;
 * `onchange` gets the members by memberKey and the count. Returns a stopper. */
export function trackPresence(
  client: Client,
  channel: string,
  onchange: (state: { members: Map<string, Member>; count: number }) => void,
): () => void;

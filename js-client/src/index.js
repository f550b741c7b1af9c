// rtlink browser client: realtime pub/sub over WebSocket, server-sent events or long
// polling, with resume on reconnect, an offline outbox, and JSON or msgpack.
// See index.d.ts for the API and docs/protocol.md for the wire protocol.
//
// (The order of these exports is the order of the modules in the build, which moves
// its gzipped size by up to 60 bytes: this one is the smallest of the 120.)
//
// The code name tables (CloseCode, ErrorCode) are left out of the bundle to keep it
// small; import them from 'rtlink-client/codes' (src/codes.js) when wanted.
export { isTemporary, shouldReconnect } from './codes.js';
export { forgetTransports } from './negotiation.js';
export { RtlinkError } from './errors.js';
export { Client } from './client.js';
export { Subscription } from './subscription.js';

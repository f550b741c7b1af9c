// rtlink browser client: realtime pub/sub over WebSocket, server-sent events or long
// polling, with resume on reconnect, an offline outbox, and JSON or msgpack.
// See index.d.ts for the API and docs/protocol.md for the wire protocol.
export { Client } from './client.js';
export { forgetTransports } from './negotiation.js';
// The code name tables (CloseCode, ErrorCode) are left out of the bundle to keep it
// small; import them from 'rtlink-client/codes' (src/codes.js) when wanted.
export { isTemporary, shouldReconnect } from './codes.js';
export { RtlinkError } from './errors.js';
export { Subscription } from './subscription.js';

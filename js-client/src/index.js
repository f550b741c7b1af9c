// rtlink browser client: realtime pub/sub over WebSocket, server-sent events or long
// polling, with resume on reconnect, an offline outbox, and JSON or msgpack.
// See index.d.ts for the API and docs/protocol.md for the wire protocol.
export { Client, forgetTransports } from './client.js';
export { CloseCode, ErrorCode, isTemporary, shouldReconnect } from './codes.js';
export { RtlinkError } from './errors.js';
export { Subscription } from './subscription.js';

// Close codes (protocol.md 7.2) and error codes (7.1), with the names of
// rtlink/codes.py, and the two rules a client needs: reconnect or stop, retry or fail.

/** Close codes: of a WebSocket close, or of the server's `close` frame. */
export const CloseCode = {
  NORMAL: 1000, GOING_AWAY: 1001, ABNORMAL: 1006, INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008, MESSAGE_TOO_BIG: 1009, INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012, TRY_AGAIN_LATER: 1013, HEARTBEAT_TIMEOUT: 4000,
  SLOW_CONSUMER: 4001, RECONNECT: 4002, TOKEN_EXPIRED: 4003, UNAUTHORIZED: 4500,
  FORBIDDEN: 4501, UNSUPPORTED_PROTOCOL: 4502, DISCONNECTED: 4503,
};

/** Error codes of `error` frames (modelled on HTTP statuses). */
export const ErrorCode = {
  BAD_REQUEST: 400, UNAUTHORIZED: 401, FORBIDDEN: 403, UNKNOWN_CHANNEL: 404,
  ALREADY_SUBSCRIBED: 409, TOO_LARGE: 413, INVALID_CHANNEL: 422, RATE_LIMITED: 429,
  LIMIT_EXCEEDED: 430, INTERNAL_ERROR: 500, BACKEND_UNAVAILABLE: 503,
};

/** Whether a connection that ended with `code` should be reopened: 4000-4499 and
 * the restart/abnormal codes say reconnect; 4500-4999 and everything else say stop. */
export const shouldReconnect = (code) =>
  code >= 4000 ? code < 4500 : [1001, 1006, 1011, 1012, 1013].includes(code);

/** Whether an error code is temporary (429 and 5xx): the request may succeed later. */
export const isTemporary = (code) => code == 429 || (code >= 500 && code < 600);

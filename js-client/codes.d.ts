// Type declarations for src/codes.js ('rtlink-client/codes'): the code name tables,
// with the names of rtlink.codes in Python. Kept out of the main bundle for size.

/** Close codes (protocol.md 7.2), as in rtlink.codes.CloseCode. */
export const CloseCode: Readonly<{
  NORMAL: 1000; GOING_AWAY: 1001; ABNORMAL: 1006; INVALID_PAYLOAD: 1007;
  POLICY_VIOLATION: 1008; MESSAGE_TOO_BIG: 1009; INTERNAL_ERROR: 1011;
  SERVICE_RESTART: 1012; TRY_AGAIN_LATER: 1013; HEARTBEAT_TIMEOUT: 4000;
  SLOW_CONSUMER: 4001; RECONNECT: 4002; TOKEN_EXPIRED: 4003; UNAUTHORIZED: 4500;
  FORBIDDEN: 4501; UNSUPPORTED_PROTOCOL: 4502; DISCONNECTED: 4503;
}>;
/** Error codes (protocol.md 7.1), as in rtlink.codes.ErrorCode. */
export const ErrorCode: Readonly<{
  BAD_REQUEST: 400; UNAUTHORIZED: 401; FORBIDDEN: 403; UNKNOWN_CHANNEL: 404;
  ALREADY_SUBSCRIBED: 409; TOO_LARGE: 413; INVALID_CHANNEL: 422; RATE_LIMITED: 429;
  LIMIT_EXCEEDED: 430; INTERNAL_ERROR: 500; BACKEND_UNAVAILABLE: 503;
}>;
/** Whether a connection that ended with this close code should be reopened. */
export function shouldReconnect(code: number): boolean;
/** Whether an error code is temporary (the same request may succeed later). */
export function isTemporary(code: number): boolean;

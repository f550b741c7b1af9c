// Close codes (protocol.md 7.2) and error codes (7.1): reconnect or stop, retry or fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { isTemporary, shouldReconnect } from '../src/index.js';
// The name tables live in a subpath ('rtlink-client/codes'), out of the bundle.
import * as codes from '../src/codes.js';

const { CloseCode, ErrorCode } = codes;

test('shouldReconnect: every close code of the 7.2 table', () => {
  const table = {
    1000: false, // NORMAL
    1001: true, // GOING_AWAY
    1006: true, // ABNORMAL
    1007: false, // INVALID_PAYLOAD
    1008: false, // POLICY_VIOLATION
    1009: false, // MESSAGE_TOO_BIG
    1011: true, // INTERNAL_ERROR
    1012: true, // SERVICE_RESTART
    1013: true, // TRY_AGAIN_LATER
    4000: true, // HEARTBEAT_TIMEOUT
    4001: true, // SLOW_CONSUMER
    4002: true, // RECONNECT
    4003: true, // TOKEN_EXPIRED: reconnect with a fresh token
    4500: false, // UNAUTHORIZED
    4501: false, // FORBIDDEN
    4502: false, // UNSUPPORTED_PROTOCOL
  };
  for (const [code, expected] of Object.entries(table)) {
    assert.equal(shouldReconnect(Number(code)), expected, `close code ${code}`);
  }
});

test('shouldReconnect: codes not in the table follow the range rules', () => {
  for (const code of [4004, 4100, 4250, 4498, 4499]) assert.equal(shouldReconnect(code), true, `${code}`);
  for (const code of [4500, 4503, 4700, 4998, 4999]) assert.equal(shouldReconnect(code), false, `${code}`);
  // Any other code stops: only 1001, 1006, 1011, 1012, 1013 reconnect outside 4000-4999.
  for (const code of [0, 999, 1002, 1003, 1004, 1005, 1010, 1014, 1015, 2000, 3000, 3999, 5000, 65535]) {
    assert.equal(shouldReconnect(code), false, `${code}`);
  }
});

test('isTemporary: 429 and 500-599 are temporary, everything else permanent', () => {
  for (const code of [429, 500, 501, 503, 550, 599]) assert.equal(isTemporary(code), true, `${code}`);
  for (const code of [400, 401, 403, 404, 409, 413, 422, 428, 430, 499, 600, 1006]) {
    assert.equal(isTemporary(code), false, `${code}`);
  }
});

test('the subpath exports the same rules as the main module', () => {
  assert.equal(codes.shouldReconnect, shouldReconnect);
  assert.equal(codes.isTemporary, isTemporary);
});

test('CloseCode and ErrorCode carry the values of the protocol', () => {
  assert.deepEqual(CloseCode, {
    NORMAL: 1000, GOING_AWAY: 1001, ABNORMAL: 1006, INVALID_PAYLOAD: 1007,
    POLICY_VIOLATION: 1008, MESSAGE_TOO_BIG: 1009, INTERNAL_ERROR: 1011,
    SERVICE_RESTART: 1012, TRY_AGAIN_LATER: 1013, HEARTBEAT_TIMEOUT: 4000,
    SLOW_CONSUMER: 4001, RECONNECT: 4002, TOKEN_EXPIRED: 4003, UNAUTHORIZED: 4500,
    FORBIDDEN: 4501, UNSUPPORTED_PROTOCOL: 4502, DISCONNECTED: 4503,
  });
  assert.deepEqual(ErrorCode, {
    BAD_REQUEST: 400, UNAUTHORIZED: 401, FORBIDDEN: 403, UNKNOWN_CHANNEL: 404,
    ALREADY_SUBSCRIBED: 409, TOO_LARGE: 413, INVALID_CHANNEL: 422, RATE_LIMITED: 429,
    LIMIT_EXCEEDED: 430, INTERNAL_ERROR: 500, BACKEND_UNAVAILABLE: 503,
  });
});

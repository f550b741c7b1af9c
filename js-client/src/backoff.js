// Reconnect delays: exponential backoff with full jitter (protocol.md 8.2), the same
// formula as rtlink/backoff.py. Full jitter spreads a crowd of clients that lost the
// same server over the whole window instead of bringing them back in waves.

/** Delay in seconds before attempt `attempt` (0-based): uniform in
 * [0, min(cap, base * 2**attempt)). */
export const fullJitter = (attempt, base = 0.5, cap = 30, random = Math.random) =>
  random() * Math.min(cap, base * 2 ** Math.min(attempt, 64));

/** The delay in milliseconds before attempt `attempt` with a client's options
 * (backoffBase, backoffCap). */
export const backoff = (attempt, options) => fullJitter(attempt, options.backoffBase, options.backoffCap) * 1e3;

// Helpers shared by the client tests: a client wired to the fakes, connected to a
// welcome on each transport. (Node's runner also loads this file as a test file of
// its own; it has no tests.)
import { Client, forgetTransports, RtlinkError } from '../src/index.js';
import { createFakes, MemoryStorage, waitFor, welcome } from './fakes.js';

export const URL_BASE = 'http://test/rt';

/**
 * A client on fresh fakes, closed when the test ends. Options override the test
 * defaults: WebSocket only, short connect timeout, tiny backoff. The client's state
 * changes are recorded in `states` (each with `at`, the time in ms).
 *
 * The client remembers the transport that worked per origin in a module-level map
 * too: it is cleared first unless `keepTransports` is set.
 */
export function setup(t, { keepTransports = false, fakes = createFakes(), ...options } = {}) {
  if (!keepTransports) forgetTransports(new MemoryStorage());
  const client = new Client(URL_BASE, { ...testOptions(fakes), ...options });
  const states = [];
  client.on('state', (change) => states.push({ ...change, at: Date.now() }));
  t.after(() => client.close());
  return { client, fakes, states };
}

/** The test defaults of a client on `fakes`: WebSocket only, short connect timeout,
 * tiny backoff. */
export const testOptions = (fakes) => ({
  WebSocket: fakes.WebSocket,
  EventSource: fakes.EventSource,
  fetch: fakes.fetch,
  storage: fakes.storage,
  transports: ['websocket'],
  connectTimeout: 2,
  backoffBase: 0.01,
  backoffCap: 0.05,
});

/** Start the client without caring whether connect() resolves. */
export function start(client) {
  client.connect().catch(() => {});
}

/** Wait until the client is in `state`. */
export const waitState = (client, state, timeout) =>
  waitFor(() => client.state == state, { timeout, message: `state ${state} (is ${client.state})` });

/** Connect `client` over WebSocket: opens the next socket, sends `welcomeFields`
 * as welcome; returns the socket once the client is connected. */
export async function connectWebSocket(client, fakes, welcomeFields = {}) {
  start(client);
  const ws = await fakes.nextSocket();
  await ws.open();
  await ws.serverSends(welcome(welcomeFields));
  await waitState(client, 'connected');
  return ws;
}

/** Connect `client` over SSE: the next stream gets `frames` after a welcome. */
export async function connectSse(client, fakes, welcomeFields = {}, frames = []) {
  start(client);
  const stream = await fakes.nextStream();
  await stream.serverSends([welcome(welcomeFields), ...frames]);
  await waitState(client, 'connected');
  return stream;
}

/** A promise that records how it settled: `.result` is ['resolved', value] or
 * ['rejected', error] once settled, undefined before. */
export function track(promise) {
  const tracked = promise.then(
    (value) => (tracked.result = ['resolved', value]),
    (error) => (tracked.result = ['rejected', error]),
  );
  return tracked;
}

/** Wait until `tracked` (from track()) settled; returns its result. */
export const settled = (tracked, timeout) => waitFor(() => tracked.result, { timeout, message: 'promise settled' });

/** Wait until `promise` rejects; returns the error (fails if it resolves, or has
 * not settled within `timeout` ms). */
export async function rejection(promise, timeout = 3000) {
  const [how, value] = await settled(track(promise), timeout);
  if (how == 'rejected') return value;
  throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
}

/** Silence console.warn/error during a test (the client logs dropped frames and
 * failing callbacks); returns the recorded calls. */
export function quiet(t) {
  const calls = [];
  for (const name of ['warn', 'error']) {
    t.mock.method(console, name, (...args) => calls.push([name, ...args]));
  }
  return calls;
}

/** The frames of `types` sent on `ws` (all if none given). */
export const sentOf = (ws, ...types) => ws.sent.filter((frame) => !types.length || types.includes(frame.type));

/**
 * Watch the client's retry timers (protocol.md 8.3, retry rounds): every setTimeout
 * for which `isRetry(ms)` holds is counted (tell them from the reconnect delay by
 * the client's state). Mock Math.random first so that the delays are known. Returns
 * `scheduled` (the delays, in order), `pending` (how many wait now) and
 * `mostPending` (the most that ever waited at once).
 */
export function watchRetries(t, isRetry) {
  const { setTimeout: schedule, clearTimeout: cancel } = globalThis;
  const waiting = new Set();
  const watch = { scheduled: [], mostPending: 0, get pending() { return waiting.size; } };
  t.mock.method(globalThis, 'setTimeout', (callback, ms, ...args) => {
    if (!isRetry(ms)) return schedule(callback, ms, ...args);
    const timer = schedule(() => {
      waiting.delete(timer);
      callback(...args);
    }, ms);
    waiting.add(timer);
    watch.scheduled.push(ms);
    watch.mostPending = Math.max(watch.mostPending, waiting.size);
    return timer;
  });
  t.mock.method(globalThis, 'clearTimeout', (timer) => {
    waiting.delete(timer);
    cancel(timer);
  });
  return watch;
}

/** Whether `error` is the client's refusal of bad input (RtlinkError 'InvalidInput',
 * the Python client's InvalidInput); for assert.throws and assert.ok. */
export const isInvalidInput = (error) => error instanceof RtlinkError && error.name == 'InvalidInput' && error.code === null;

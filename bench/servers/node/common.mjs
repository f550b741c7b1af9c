// What the Node peers share: the command line, the payload, the control routes.
//
// Same contract as the Python servers (bench/servers/__init__.py), so the same raw
// readers (bench/clients.py, bench/scenarios/_support.py) read every system:
//
//   node bench/servers/node/<ws|socketio>.mjs --port P [--transport ws] [--backend memory://]
//
// listens on 127.0.0.1:P and prints "ready". Clients subscribe to the channel named by
// the query parameter `channel` of their WebSocket URL ("bench" without one). Routes:
//
//   POST /control/burst?count=N&size=B[&rate=R]   N publications to "bench", back to
//        back (one synchronous loop) or R per second; answered once all were handed
//        to the publish call.
//   POST /control/users?channels=C&count=M&size=B  M publications back to back,
//        publication i to channel "user:<i mod C>"; the last one of each channel
//        carries "end":1.
//   POST /control/subscribers                      subscribers (connections), as text.
//
// The data of publication i is {"n": i, "t": <wall clock, s>, ["end": 1,] "pad": "xx…"}
// of about B bytes of JSON. "t" must be comparable with Python's time.time() to the
// microsecond: Date.now() has milliseconds only, so wallSeconds() is the monotonic
// performance.now() plus an offset taken at the instant Date.now() ticks.

import { performance } from "node:perf_hooks";
import { setImmediate as yieldNow, setTimeout as sleep } from "node:timers/promises";

export const CHANNEL = "bench";
export const USER_PREFIX = "user:";

/**
 * The offset of performance.now() to the wall clock in ms, exact to a few µs: read
 * right after Date.now() ticks, performance.now() is late by the time of one read, so
 * of several readings the largest offset is the closest (the first call of
 * performance.now() is slow, hence the warm-up).
 */
const OFFSET_MS = (() => {
    performance.now();
    let best = -Infinity;
    for (let i = 0; i < 5; i++) {
        const start = Date.now();
        let now = start;
        while (now === start) now = Date.now(); // the wall clock just entered ms `now`
        best = Math.max(best, now - performance.now());
    }
    return best;
})();

/** The wall clock in seconds (like Python's time.time()), to the microsecond. */
export function wallSeconds() {
    return (OFFSET_MS + performance.now()) / 1000;
}

/** The command line: --port P, --transport ws (the only one), --backend memory://. */
export function parseArgs(argv = process.argv.slice(2)) {
    const args = { port: 0, transport: "ws", backend: "memory://" };
    for (let i = 0; i < argv.length; i += 2) {
        const name = argv[i].replace(/^--/, "");
        if (!(name in args) || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
        args[name] = name === "port" ? Number(argv[i + 1]) : argv[i + 1];
    }
    if (!args.port) throw new Error("--port is required");
    if (args.transport !== "ws") throw new Error(`transport ${args.transport}: only ws`);
    if (args.backend !== "memory://") throw new Error(`backend ${args.backend}: memory only`);
    return args;
}

/** The data of publication `index`: about `size` bytes of JSON (as payload() in Python). */
export function payload(index, size, last) {
    const data = { n: index, t: wallSeconds() };
    if (last) data.end = 1;
    const used = JSON.stringify(data).length + ',"pad":""'.length;
    data.pad = "x".repeat(Math.max(0, size - used));
    return data;
}

/** `count` publications to "bench", back to back or `rate` per second. */
async function burst(publish, count, size, rate) {
    const start = performance.now();
    for (let i = 0; i < count; i++) {
        publish(CHANNEL, payload(i, size, i === count - 1));
        if (rate) {
            // Always yield, like the Python servers' burst(): a timer while ahead of
            // schedule, else one turn of the event loop.
            const wait = start + ((i + 1) * 1000) / rate - performance.now();
            await (wait > 0 ? sleep(wait) : yieldNow());
        }
    }
}

/** `count` publications back to back, publication i to "user:<i mod channels>". */
function users(publish, channels, count, size) {
    for (let i = 0; i < count; i++) {
        publish(USER_PREFIX + (i % channels), payload(i, size, i >= count - channels));
    }
}

/**
 * A request listener for the control routes; `publish(channel, data)` hands one
 * publication to the system, `subscribers()` counts its subscribers.
 */
export function controlRoutes(publish, subscribers) {
    return (request, response) => {
        const url = new URL(request.url, "http://127.0.0.1");
        const query = (name, otherwise) => Number(url.searchParams.get(name) ?? otherwise);
        const answer = (text, status = 200) => {
            response.writeHead(status, { "Content-Type": "text/plain" });
            response.end(text);
        };
        request.resume(); // no body is read, but it must be consumed
        if (url.pathname === "/control/burst") {
            const count = query("count", 200);
            const rate = url.searchParams.has("rate") ? query("rate") : 0;
            burst(publish, count, query("size", 100), rate).then(
                () => answer(`published ${count}`),
                (error) => answer(String(error), 500));
        } else if (url.pathname === "/control/users") {
            const channels = query("channels", 1000);
            const count = query("count", channels);
            users(publish, channels, count, query("size", 100));
            answer(`published ${count}`);
        } else if (url.pathname === "/control/subscribers") {
            answer(String(subscribers()));
        } else {
            answer("not found", 404);
        }
    };
}

/** Listen on 127.0.0.1:port with a large backlog, then print "ready". */
export function listen(server, port) {
    server.listen({ host: "127.0.0.1", port, backlog: 4096 }, () => {
        process.stdout.write("ready\n");
    });
}

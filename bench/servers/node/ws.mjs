// Node peer: a server on the `ws` package, written the way its README broadcasts.
//
// A WebSocketServer on the HTTP server at /ws (default options: no permessage-deflate,
// client tracking on). A client subscribes to the channel named by ?channel= ("bench"
// without one): a Map of channel name -> Set of sockets. It then gets
// {"type":"subscribed","channel":...}, so its reader knows it is counted. A publication
// is JSON.stringify({channel, data}) once, then ws.send(text) to every open socket of
// the channel. Frames from clients are ignored. See common.mjs for the command line and
// the control routes.

import http from "node:http";
import { WebSocket, WebSocketServer } from "ws";
import { CHANNEL, controlRoutes, listen, parseArgs } from "./common.mjs";

const args = parseArgs();
/** @type {Map<string, Set<WebSocket>>} */
const channels = new Map();
let connections = 0;

function publish(channel, data) {
    const sockets = channels.get(channel);
    if (sockets === undefined) return;
    const text = JSON.stringify({ channel, data });
    for (const ws of sockets) {
        if (ws.readyState === WebSocket.OPEN) ws.send(text);
    }
}

const server = http.createServer(controlRoutes(publish, () => connections));
const wss = new WebSocketServer({ server, path: "/ws" });
wss.on("connection", (ws, request) => {
    const name = new URL(request.url, "http://127.0.0.1").searchParams.get("channel") ?? CHANNEL;
    let sockets = channels.get(name);
    if (sockets === undefined) channels.set(name, (sockets = new Set()));
    sockets.add(ws);
    connections += 1;
    ws.on("close", () => {
        connections -= 1;
        sockets.delete(ws);
        if (sockets.size === 0 && channels.get(name) === sockets) channels.delete(name);
    });
    ws.on("error", () => {}); // a reset by a reader that exits is not news
    ws.send(JSON.stringify({ type: "subscribed", channel: name }));
});
listen(server, args.port);

// Node peer: socket.io's Server, set up the way its documentation does.
//
// Attached to the HTTP server (path /socket.io/, the websocket transport only, the
// default in-memory adapter). On "connection" a client joins the room named by the
// query parameter `channel` of its handshake URL ("bench" without one); the join is
// synchronous, so it is in place before any control request is read. A publication is
// io.to(channel).emit("msg", data) (socket.io encodes the packet once per emit). See
// common.mjs for the command line and the control routes.

import http from "node:http";
import { Server } from "socket.io";
import { CHANNEL, controlRoutes, listen, parseArgs } from "./common.mjs";

const args = parseArgs();
// socket.io answers /socket.io/ itself and hands every other request to this listener.
const server = http.createServer(controlRoutes(
    (channel, data) => io.to(channel).emit("msg", data),
    () => io.engine.clientsCount));
const io = new Server(server, { transports: ["websocket"], cors: { origin: "*" } });
io.on("connection", (socket) => {
    const channel = socket.handshake.query.channel;
    socket.join(typeof channel === "string" ? channel : CHANNEL);
});
listen(server, args.port);

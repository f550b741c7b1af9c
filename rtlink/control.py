"""Control messages between the nodes of one server: a node asks every node to act on
its own clients, and adds up their answers.

The server API (:meth:`rtlink.Hub.disconnect`, :meth:`~rtlink.Hub.unsubscribe`,
:meth:`~rtlink.Hub.subscribe`, :meth:`~rtlink.Hub.channels`) must reach clients
connected to any node. The node that is asked sends a **request** to every node,
itself included, through the backend (:meth:`~rtlink.backends.Backend.send_control`);
each node runs it on its own clients and sends an **answer** back to the asking node
only. Both are JSON objects:

* request: ``{"op": <name>, "args": {...}, "id": <int>, "from": <node>}``;
* answer: ``{"answer": <id of the request>, "node": <node>, "result": <JSON value>}``
  (``"error": <message>`` instead of ``result`` when the node failed to run it).

The asking node waits for as many answers as the backend says the request reached
(Redis: the receivers ``PUBLISH`` counted), or ``timeout`` seconds when it cannot
tell or a node does not answer, and returns what it got. A node's name is random per
hub start, so a restarted node never gets answers meant for its predecessor.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from .backends import Backend

__all__ = ["ControlPlane", "Gathered", "ControlHandler"]

logger = logging.getLogger("rtlink.control")

#: Runs one request's ``args`` on this node's clients; its result must be JSON.
ControlHandler = Callable[[Mapping[str, Any]], Awaitable[Any]]


@attrs.frozen
class Gathered:
    """The answers to one request.

    Attributes:
        results: the result of each node that answered (failures left out).
        nodes: how many nodes the request reached (None: the backend cannot tell).
    """

    results: list[Any]
    nodes: int | None


class _Waiting:
    """The answers of one request so far, and when to stop waiting for more."""

    __slots__ = ("results", "answers", "expected", "done")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.results: list[Any] = []
        self.answers = 0  # results and failures
        self.expected: int | None = None
        self.done = done

    def check(self) -> None:
        if (self.expected is not None and self.answers >= self.expected
                and not self.done.done()):
            self.done.set_result(None)


class ControlPlane:
    """Requests to every node and their answers (see the module docstring).

    Args:
        backend: carries the messages.
        handlers: the operations this node runs, by name.
        timeout: seconds to wait for the answers of one request at most.
    """

    def __init__(self, backend: Backend, handlers: Mapping[str, ControlHandler], *,
                 timeout: float = 2.0) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        self.node = secrets.token_hex(8)
        self.timeout = timeout
        self._backend = backend
        self._handlers = dict(handlers)
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Waiting] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False

    async def start(self) -> None:
        """Listen for requests and answers."""
        self._running = True
        await self._backend.start_control(self.node, self._received)

    async def close(self) -> None:
        """Stop answering; requests of this node still waiting end with what they have."""
        self._running = False
        for waiting in self._waiting.values():
            if not waiting.done.done():
                waiting.done.set_result(None)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def ask(self, op: str, args: Mapping[str, Any]) -> Gathered:
        """Have every node run ``op`` with ``args``; their results.

        Raises:
            BackendUnavailable: the backend could not send the request.
        """
        request_id = next(self._ids)
        waiting = _Waiting(asyncio.get_running_loop().create_future())
        # Before sending: an answer may arrive before send_control returns.
        self._waiting[request_id] = waiting
        try:
            message = {"op": op, "args": dict(args), "id": request_id, "from": self.node}
            reached = await self._backend.send_control(_encode(message))
            waiting.expected = reached
            waiting.check()
            try:
                async with asyncio.timeout(self.timeout):
                    await waiting.done
            except TimeoutError:
                if reached is not None:
                    logger.warning("%s: %d of %d nodes answered in %g s", op,
                                   waiting.answers, reached, self.timeout)
            return Gathered(list(waiting.results), reached)
        finally:
            del self._waiting[request_id]

    def _received(self, raw: bytes) -> None:
        """Backend listener: a request to run, or an answer to one of ours."""
        if not self._running:
            return
        try:
            message = json.loads(raw)
            if "answer" in message:
                self._answered(message)
                return
            handler = self._handlers[message["op"]]
            request_id, sender, args = message["id"], message["from"], message["args"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring an invalid control message: %.200r", raw)
            return
        task = asyncio.get_running_loop().create_task(
            self._run(handler, args, request_id, sender), name="rtlink-control")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answered(self, message: Mapping[str, Any]) -> None:
        waiting = self._waiting.get(message["answer"])
        if waiting is None:
            return  # too late: the request gave up waiting
        if "error" in message:
            logger.warning("node %s failed a control request: %s", message.get("node"),
                           message["error"])
        else:
            waiting.results.append(message["result"])
        waiting.answers += 1
        waiting.check()

    async def _run(self, handler: ControlHandler, args: Mapping[str, Any],
                   request_id: int, sender: str) -> None:
        answer: dict[str, Any] = {"answer": request_id, "node": self.node}
        try:
            answer["result"] = await handler(args)
        except Exception as exc:
            logger.exception("control request %s failed", request_id)
            answer["error"] = str(exc) or type(exc).__name__
        try:
            await self._backend.send_control(_encode(answer), sender)
        except Exception as exc:
            logger.warning("could not answer control request %s of node %s: %s",
                           request_id, sender, exc)


def _encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()

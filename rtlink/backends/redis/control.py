"""Control messages between the nodes on Redis (:meth:`Backend.send_control
<rtlink.backends.base.Backend.send_control>`): plain pub/sub on two channels per node.

Every node subscribes ``{prefix}:{control}`` (requests to all nodes) and
``{prefix}:{control}:<node>`` (answers to it), on a pub/sub connection of its own,
apart from the channel feeds (:mod:`.feed`): control messages are rare, so redis-py's
``PubSub`` reads them, and a failed connection is opened again and subscribed anew
after a full-jitter backoff. ``PUBLISH`` answers how many subscribers got the
message: the number of nodes a request reached, which the asking node waits for.

On a Redis Cluster the two names share the hash tag ``{control}``, so they live in
one slot: every node subscribes them with ``SSUBSCRIBE`` on the master of that slot
(redis-py's ``ClusterPubSub`` follows the slot when it moves) and sends with
``SPUBLISH``, whose count is then that master's subscribers, every node. Classic
``PUBLISH`` would be broadcast over the cluster bus, but counted only on the node it
was sent to. While the slot fails over, control messages are lost: a request then
reaches fewer nodes, and says so in its count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster

from ...backoff import full_jitter
from ..base import ControlListener
from .errors import translated
from .topology import Client

__all__ = ["ControlBus"]

logger = logging.getLogger("rtlink.backends.redis")


class ControlBus:
    """One node's control channels on Redis (see the module docstring).

    Args:
        client: the backend's redis-py client (a pub/sub connection is taken from it).
        prefix: the backend's prefix.
        address: names the server for messages.
        timeout: seconds :meth:`start` waits for the subscription at most.
        ping_interval: seconds of silence after which the connection is pinged; as
            long again without an answer, it is presumed dead and opened again.
    """

    def __init__(self, client: Client, prefix: str, *, address: Callable[[], str],
                 timeout: float, ping_interval: float) -> None:
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._all = f"{prefix}:{{control}}"
        self._address = address
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._task: asyncio.Task[None] | None = None

    def _name(self, node: str | None) -> str:
        return self._all if node is None else f"{self._all}:{node}"

    async def start(self, node: str, listener: ControlListener) -> None:
        """Subscribe this node's control channels: returns once Redis confirmed them,
        or once the first attempt failed, or after ``timeout`` seconds (without Redis
        the node starts all the same, and the connection is tried again in the
        background)."""
        if self._task is not None:
            return
        ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(
            self._read_forever([self._name(None), self._name(node)], listener, ready),
            name="rtlink-redis-control")
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(ready)
        except TimeoutError:
            pass
        if not ready.done() or ready.result() is False:
            logger.warning("Redis at %s: control channels not subscribed yet; still "
                           "trying (until then this node is not reached by the server "
                           "API of other nodes)", self._address())

    async def send(self, message: bytes, node: str | None) -> int:
        """Publish ``message`` to every node or to ``node``; how many nodes got it.

        Raises:
            BackendUnavailable: Redis cannot be reached.
        """
        name = self._name(node)
        with translated(self._address, "control message"):
            if isinstance(self._client, RedisCluster):
                reached = await self._client.spublish(name, message)
            else:
                reached = await self._client.publish(name, message)
        return int(reached)

    async def close(self) -> None:
        """Stop listening."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _read_forever(self, names: list[str], listener: ControlListener,
                            ready: asyncio.Future[bool]) -> None:
        """Keep the control channels subscribed; ``ready`` says how the first attempt
        went (True: subscribed)."""
        attempt = 0
        while True:
            pubsub: Any = self._client.pubsub()
            try:
                if self._cluster:
                    await pubsub.ssubscribe(*names)
                else:
                    await pubsub.subscribe(*names)
                await self._read(pubsub, len(names), listener, ready)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not ready.done():
                    ready.set_result(False)
                delay = full_jitter(attempt, base=0.1, cap=5.0)
                attempt += 1
                logger.warning("Redis at %s: control connection failed (%s); again in "
                               "%.2f s", self._address(), exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
            else:
                attempt = 0
            finally:
                with contextlib.suppress(Exception):  # a broken connection: nothing to save
                    await pubsub.aclose()

    async def _read(self, pubsub: Any, confirmations: int, listener: ControlListener,
                    ready: asyncio.Future[bool]) -> None:
        """Hand every message to ``listener`` until the connection fails or falls
        silent (a ``PING`` unanswered for ``ping_interval``)."""
        get = pubsub.get_sharded_message if self._cluster else pubsub.get_message
        silent = 0
        while True:
            message = await get(timeout=self._ping_interval)
            if message is None:
                silent += 1
                if silent > 1:
                    raise ConnectionError(f"no answer to a ping in {self._ping_interval} s")
                await pubsub.ping()
                continue
            silent = 0
            kind = message["type"]
            if kind in ("subscribe", "ssubscribe"):
                confirmations -= 1
                if confirmations <= 0 and not ready.done():
                    ready.set_result(True)
            elif kind in ("message", "smessage"):
                try:
                    listener(message["data"])
                except Exception:
                    logger.exception("control listener failed")

"""The history reads of one node, in batches: what makes a storm of resuming clients
converge instead of queueing on the connection pool.

Every client that reconnects with ``since`` costs a history read, and a storm brings
thousands at once. :class:`HistoryReads` gathers the reads asked for during a turn of
the event loop and sends them as one ``HISTORY`` script per batch of up to 100 channels
(on a cluster, per slot), at most ``concurrency`` scripts at a time. Callers that ask
for the same read (same channel, position and policy) share it: while it is queued,
always; once it was sent to Redis, only if its answer reaches the position the node had
delivered when the newcomer asked (``delivered``). A read sent earlier may predate the
newcomer joining the channel's live subscribers: a publication delivered to them before
it joined, and not in that answer, would be a silent gap for it; then it reads again.

Overload is answered, not queued without end: a read that waited ``timeout`` seconds
before its batch could be sent, or that finds ``max_waiting`` reads waiting already,
fails with :class:`~rtlink.errors.BackendUnavailable` (503: clients back off and retry).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

import attrs

from ...errors import BackendUnavailable
from ...protocol import Position
from ..base import HistoryResult

__all__ = ["Read", "HistoryReads", "FORWARD", "REVERSE", "GAP_OR_LATEST"]


#: What a :class:`Read` with a limit reads: a page forward or backwards
#: (:meth:`~rtlink.backends.base.Backend.page`), or the gap after ``since`` and else
#: the latest kept (:meth:`~rtlink.backends.base.Backend.replay`).
FORWARD, REVERSE, GAP_OR_LATEST = 0, 1, 2


@attrs.frozen
class Read:
    """One history read: the history script's arguments for one channel. Without a
    ``limit`` (0) the gap after ``since``; with one, what ``mode`` says."""

    channel: str
    since: Position | None
    size: int
    ttl_ms: int
    meta_ttl_ms: int
    limit: int = 0
    mode: int = FORWARD


#: Runs one batch of reads (one script, or one per slot) and answers in their order.
BatchRunner = Callable[[list[Read]], Awaitable[list[HistoryResult]]]


class HistoryReads:
    """Batched, bounded, shared history reads (see the module docstring).

    Args:
        run: runs one batch.
        group: the group of a channel whose reads may share a batch (its cluster slot),
            or None when any reads may.
        batch: reads per batch at most.
        concurrency: batches running at once.
        max_waiting: reads waiting for their batch at most; beyond, refused at once.
        timeout: seconds a read may wait for its batch before it is refused.
        address: names Redis in refusals.
    """

    def __init__(self, run: BatchRunner, *, group: Callable[[str], int] | None,
                 batch: int, concurrency: int, max_waiting: int, timeout: float,
                 address: Callable[[], str]) -> None:
        self.batch = batch
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self._run = run
        self._group = group
        self._timeout = timeout
        self._address = address
        # Reads not sent yet, each with its future and when it was asked for: first
        # those of this turn (where a caller may join one), then those in batches.
        self._queued: dict[Read, _Waiting] = {}
        # Reads sent to Redis and not answered yet.
        self._sent: dict[Read, asyncio.Future[HistoryResult]] = {}
        self._batches: collections.deque[list[tuple[Read, _Waiting]]] = collections.deque()
        self._in_batches = 0
        self._running = 0
        self._drain_handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Reads asked for and not sent to Redis yet."""
        return len(self._queued) + self._in_batches

    async def read(self, request: Read, delivered: Position | None = None) -> HistoryResult:
        """The answer to ``request``, shared with the same read of other callers.

        Args:
            request: the read.
            delivered: the position of the channel's last publication the node handed
                to its subscribers before this call (None: unknown); a read sent
                already is shared only if its answer reaches it.

        Raises:
            BackendUnavailable: too many reads wait, this one waited too long, or Redis
                cannot be reached.
            BackendError: Redis refused the script.
        """
        sent = self._sent.get(request)
        if sent is not None and delivered is not None:
            result = await asyncio.shield(sent)
            top = result.position
            if top.epoch == delivered.epoch and top.offset >= delivered.offset:
                return result
        queued = self._queued.get(request)
        if queued is not None:
            future = queued[0]
        else:
            if self.waiting >= self.max_waiting:
                raise BackendUnavailable(
                    f"Redis at {self._address()}: {self.waiting} history reads are "
                    f"waiting already; retry later")
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            # Retrieved whatever happens: every caller may have given up.
            future.add_done_callback(_retrieve)
            self._queued[request] = (future, loop.time())
            if self._drain_handle is None:
                self._drain_handle = loop.call_soon(self._drain)
        # Shielded: a caller that gives up must not cancel the read of the others.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Cancel the batches running; reads waiting fail."""
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        error = BackendUnavailable("backend closed")
        waiting = [*self._queued.values(), *(item for batch in self._batches
                                             for _, item in batch)]
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
        self._queued.clear()
        self._batches.clear()
        self._in_batches = 0

    def _drain(self) -> None:
        """Turn the reads asked for since the last turn into batches, and start what
        the concurrency allows."""
        self._drain_handle = None
        loop = asyncio.get_running_loop()
        if self._queued:
            groups: dict[int, list[tuple[Read, _Waiting]]] = {}
            for request, waiting in self._queued.items():
                key = 0 if self._group is None else self._group(request.channel)
                groups.setdefault(key, []).append((request, waiting))
            self._queued = {}
            for items in groups.values():
                for i in range(0, len(items), self.batch):
                    self._batches.append(items[i:i + self.batch])
                    self._in_batches += len(items[i:i + self.batch])
        now = loop.time()
        while self._batches and self._running < self.concurrency:
            batch = []
            items = self._batches.popleft()
            self._in_batches -= len(items)
            for request, (future, asked) in items:
                if now - asked > self._timeout:
                    if not future.done():
                        future.set_exception(self._too_long())
                else:
                    batch.append((request, future))
            if not batch:
                continue
            self._running += 1
            for request, future in batch:
                self._sent[request] = future
            task = loop.create_task(self._run_batch(batch), name="rtlink-redis-history")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, batch: list[tuple[Read, asyncio.Future[HistoryResult]]]
                         ) -> None:
        try:
            results = await self._run([request for request, _ in batch])
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else BackendUnavailable("backend closed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            for request, future in batch:
                if self._sent.get(request) is future:
                    del self._sent[request]
            self._running -= 1
            if (self._batches or self._queued) and self._drain_handle is None:
                self._drain_handle = asyncio.get_running_loop().call_soon(self._drain)

    def _too_long(self) -> BackendUnavailable:
        return BackendUnavailable(
            f"Redis at {self._address()}: a history read waited more than "
            f"{self._timeout} s for its turn; retry later")


#: A read's future, and the event loop's time when it was asked for.
_Waiting = tuple[asyncio.Future[HistoryResult], float]


def _retrieve(future: asyncio.Future[HistoryResult]) -> None:
    if not future.cancelled():
        future.exception()

"""redis-py's errors as rtlink's: temporary (``BackendUnavailable``: retry) or not
(``BackendError``), with messages that name the server but never a password."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import redis.exceptions as redis_errors

from ...errors import BackendError, BackendUnavailable

__all__ = ["UNAVAILABLE", "translated", "reply_code"]

#: Errors that mean "Redis cannot be reached or cannot serve right now".
UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    OSError,
    TimeoutError,
    # A cluster with no reachable node, a slot without a master, redirections that
    # went on too long: the engine's commands are well-formed (one slot each), so
    # these are states of the cluster, not mistakes of the caller.
    redis_errors.RedisClusterException,
    redis_errors.ClusterError,
)
#: Refusals that are temporary conditions of the server (out of memory, a replica
#: that cannot take writes, a cluster electing a master, ...), by the class redis-py
#: raises for each and the reply code it strips from the message; the prefixes below
#: catch the replies it has no class for.
_REPLY_CODES: dict[type[Exception], str] = {
    redis_errors.OutOfMemoryError: "OOM",
    redis_errors.ReadOnlyError: "READONLY",
    redis_errors.MasterDownError: "MASTERDOWN",
    redis_errors.TryAgainError: "TRYAGAIN",
    redis_errors.ClusterDownError: "CLUSTERDOWN",
    redis_errors.MovedError: "MOVED",  # still moving after redis-py's redirections
    redis_errors.AskError: "ASK",
}
_TEMPORARY_ERRORS = tuple(_REPLY_CODES)
_TEMPORARY_REPLIES = ("OOM", "BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN",
                      "CLUSTERDOWN", "NOREPLICAS")


@contextlib.contextmanager
def translated(address: Callable[[], str], operation: str) -> Iterator[None]:
    """Raise redis-py's errors inside the block as rtlink's, naming ``address()``
    (called only for an error: describing a Sentinel master costs more than a publish
    should pay).

    Raises:
        BackendUnavailable: Redis cannot be reached, or refused for a temporary reason.
        BackendError: Redis refused for another reason.
    """
    try:
        yield
    except UNAVAILABLE as exc:
        detail = str(exc) or type(exc).__name__
        raise BackendUnavailable(
            f"Redis at {address()} is unavailable ({operation}): {detail}"
        ) from exc
    except redis_errors.ResponseError as exc:
        if isinstance(exc, _TEMPORARY_ERRORS) or str(exc).startswith(_TEMPORARY_REPLIES):
            raise BackendUnavailable(
                f"Redis at {address()} cannot serve {operation} now ({reply_code(exc)}): {exc}"
            ) from exc
        raise BackendError(f"Redis at {address()} refused {operation}: {exc}") from exc


def reply_code(error: Exception) -> str:
    """The code of a Redis error reply (``OOM``, ``READONLY``, ...)."""
    for kind, code in _REPLY_CODES.items():
        if isinstance(error, kind):
            return code
    return str(error).partition(" ")[0]

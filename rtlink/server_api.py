"""The hub's server API on every node: disconnect a user, unsubscribe or subscribe a
user's connections, list the active channels.

:class:`ServerApi` sends each call as a control request to every node
(:mod:`rtlink.control`) and runs the requests that reach this node on its own
clients, which it finds by the subject of their identity
(:func:`~rtlink.auth.subject_of`). :class:`rtlink.Hub` exposes its methods.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol

from .auth import subject_of
from .codes import CloseCode, ErrorCode
from .control import ControlHandler, ControlPlane
from .peer import Peer
from .session import REQUEST

__all__ = ["ServerApi", "ApiHost"]


class ApiHost(Protocol):
    """What the server API needs of the hub."""

    @property
    def connections(self) -> Collection[Peer]:
        """The clients connected to this node."""

    def check_channel(self, channel: str) -> None:
        """Raise :class:`~rtlink.errors.ChannelError` for a channel no rule allows."""

    def local_channels(self) -> dict[str, int]:
        """The channels with subscribers on this node, and how many."""


class ServerApi:
    """The server API of one hub (see the module docstring and :class:`rtlink.Hub`).

    Args:
        host: the hub.

    Attributes:
        control: the hub's control plane (made with :meth:`handlers` when the hub
            starts; None before).
    """

    def __init__(self, host: ApiHost) -> None:
        self._host = host
        self.control: ControlPlane | None = None

    def handlers(self) -> dict[str, ControlHandler]:
        """The control operations this node runs, by name."""
        return {"disconnect": self._disconnect, "unsubscribe": self._unsubscribe,
                "subscribe": self._subscribe, "channels": self._channels}

    async def _ask(self, op: str, args: Mapping[str, Any]) -> list[Any]:
        if self.control is None:
            raise RuntimeError("the hub is not started")
        return (await self.control.ask(op, args)).results

    async def disconnect(self, user: str, *, reconnect: bool, reason: str) -> int:
        """See :meth:`rtlink.Hub.disconnect`."""
        return sum(await self._ask("disconnect", {"user": user, "reconnect": reconnect,
                                                  "reason": reason}))

    async def unsubscribe(self, user: str, channel: str, *, code: int, reason: str) -> int:
        """See :meth:`rtlink.Hub.unsubscribe`."""
        self._host.check_channel(channel)
        return sum(await self._ask("unsubscribe", {"user": user, "channel": channel,
                                                   "code": int(code), "reason": reason}))

    async def subscribe(self, user: str, channel: str) -> int:
        """See :meth:`rtlink.Hub.subscribe`."""
        self._host.check_channel(channel)
        return sum(await self._ask("subscribe", {"user": user, "channel": channel}))

    async def channels(self) -> dict[str, int]:
        """See :meth:`rtlink.Hub.channels`."""
        total: dict[str, int] = {}
        for counts in await self._ask("channels", {}):
            for channel, count in counts.items():
                total[channel] = total.get(channel, 0) + count
        return total

    # --- on this node ----------------------------------------------------------------

    def _peers_of(self, user: Any) -> list[Peer]:
        """The open connections of ``user``, but those of one ``POST {path}/send``
        (they hold no subscription and end with their request)."""
        # A scan: these calls are rare next to deliveries, which an index would slow.
        return [peer for peer in self._host.connections
                if subject_of(peer.identity) == user and not peer.connection.closing
                and peer.session.mode is not REQUEST]

    async def _disconnect(self, args: Mapping[str, Any]) -> int:
        code = CloseCode.RECONNECT if args["reconnect"] else CloseCode.DISCONNECTED
        peers = self._peers_of(args["user"])
        for peer in peers:
            peer.connection.close(code, str(args["reason"]))
        return len(peers)

    async def _unsubscribe(self, args: Mapping[str, Any]) -> int:
        code = args.get("code", ErrorCode.FORBIDDEN)
        return sum(peer.server_unsubscribe(args["channel"], code, str(args["reason"]))
                   for peer in self._peers_of(args["user"]))

    async def _subscribe(self, args: Mapping[str, Any]) -> int:
        subscribed = 0
        for peer in self._peers_of(args["user"]):
            subscribed += await peer.server_subscribe(args["channel"])
        return subscribed

    async def _channels(self, args: Mapping[str, Any]) -> dict[str, int]:
        return self._host.local_channels()

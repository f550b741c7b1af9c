"""The asyncio client (see :class:`rtlink.client.Client`)."""

from .client import Client, ConnectionState, StateChange
from .outbox import Outbox
from .subscription import Message, SubscribedEvent, Subscription
from .transports import TRANSPORTS, ClientTransport, WebSocketTransport

__all__ = [
    "Client",
    "ConnectionState",
    "StateChange",
    "Subscription",
    "Message",
    "SubscribedEvent",
    "Outbox",
    "ClientTransport",
    "WebSocketTransport",
    "TRANSPORTS",
]

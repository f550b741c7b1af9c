"""rtlink: transport-agnostic realtime pub/sub for aiohttp.

The small public API::

    hub = rtlink.Hub(channels={"chat:*": rtlink.ChannelOptions(client_publish=True)})
    rtlink.attach(app, hub, path="/rt")          # server, on an aiohttp app
    await hub.publish("chat:lobby", {"text": "hi"})

    auth = rtlink.TokenAuth(secret)                         # HS256 JWTs, tickets
    hub = rtlink.Hub(authenticate=auth, channels={
        "user:{user}:*": rtlink.ChannelOptions(subscribe="authenticated")})

    hub = rtlink.Hub(backend="redis://127.0.0.1:6379/0")   # several nodes as one
    async with rtlink.Publisher("redis://127.0.0.1:6379/0") as publisher:
        await publisher.publish("chat:lobby", {"text": "from a worker"})

    async with rtlink.Client("http://127.0.0.1:8080/rt", token=auth.mint("alice")) as client:
        async with client.subscribe("chat:lobby") as sub:
            async for message in sub:
                print(message.data)
"""

from .auth import Identity, TokenAuth
from .channels import ChannelOptions
from .client import (
    Client,
    ConnectionState,
    Message,
    StateChange,
    SubscribedEvent,
    Subscription,
    UnsubscribedEvent,
    forget_transports,
)
from .codes import CloseCode, ErrorCode
from .errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailable,
    ChannelError,
    ClientClosed,
    InvalidInput,
    OutboxFull,
    ProtocolError,
    PublishError,
    ReadError,
    RtlinkError,
    SubscribeError,
)
from .hub import Hub
from .presence import Diff, Member, PresenceInfo
from .protocol import HistoryPage, Position, Publication
from .publisher import Publisher
from .server import attach

__all__ = [
    "Hub",
    "Publisher",
    "ChannelOptions",
    "TokenAuth",
    "Identity",
    "attach",
    "Client",
    "ConnectionState",
    "StateChange",
    "Subscription",
    "SubscribedEvent",
    "UnsubscribedEvent",
    "Message",
    "forget_transports",
    "Position",
    "Publication",
    "HistoryPage",
    "Member",
    "PresenceInfo",
    "Diff",
    "CloseCode",
    "ErrorCode",
    "RtlinkError",
    "InvalidInput",
    "ProtocolError",
    "AuthenticationError",
    "ChannelError",
    "BackendError",
    "BackendUnavailable",
    "PublishError",
    "SubscribeError",
    "ReadError",
    "OutboxFull",
    "ClientClosed",
]
__version__ = "0.1.0"

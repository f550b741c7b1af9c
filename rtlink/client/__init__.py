"""The asyncio client (see :class:`rtlink.client.Client`).

The modules, from the application down:

* :mod:`.client` — :class:`Client`, the asyncio runner: it opens transports, reads,
  writes, keeps the timers and reports the state; every decision it leaves to
* :mod:`.negotiation` — which transport to try next and when, what is remembered per
  origin (:func:`forget_transports`), and
* :mod:`.core` — the subscriptions, the outbox and the requests in flight, and what
  each frame from the server means for them;
* :mod:`.subscription`, :mod:`.outbox`, :mod:`.events` — the objects the application
  holds; :mod:`.transports` — WebSocket, SSE and long polling.

Negotiation and core are pure (no asyncio): they are tested with plain calls. The
JavaScript client has the same modules and names (``js-client/src/``).
"""

from .client import Client, ConnectionState, StateChange
from .core import ClientCore
from .negotiation import Negotiation, forget_transports
from .outbox import Outbox
from .subscription import Message, SubscribedEvent, Subscription, UnsubscribedEvent
from .transports import TRANSPORTS, ClientTransport, WebSocketTransport

__all__ = [
    "Client",
    "ConnectionState",
    "StateChange",
    "Subscription",
    "Message",
    "SubscribedEvent",
    "UnsubscribedEvent",
    "forget_transports",
    "Outbox",
    "ClientCore",
    "Negotiation",
    "ClientTransport",
    "WebSocketTransport",
    "TRANSPORTS",
]

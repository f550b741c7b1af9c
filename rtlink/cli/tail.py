"""``rtlink tail``: print a channel's messages on stdout as they arrive, and on stderr
what the connection does (attempts, transports, disconnects, resumes)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

from ..client import Client, ConnectionState, Message, StateChange, SubscribedEvent
from ..codecs import CODECS
from ..errors import ClientClosed, SubscribeError
from ..protocol import Position
from ..server import TRANSPORT_NAMES
from .arguments import (
    Commands,
    HelpFormatter,
    channel_name,
    last_count,
    positive_int,
    server_url,
    stream_position,
    transport_list,
)
from .clients import add_token_option, client_token, describe_close
from .console import err, setup_logging
from .signals import until_signal
from .status import EXIT_FAILURE, EXIT_OK

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    """Add ``tail`` to the ``rtlink`` command."""
    tail = commands.add_parser(
        "tail", allow_abbrev=False,
        help="print a channel's messages as they arrive",
        formatter_class=HelpFormatter,
        description="""\
Subscribe to a channel and print each message on stdout as one line as it arrives.

With --format json (default) each line is a JSON object:
  {"channel": "chat:lobby", "position": "EPOCH:OFFSET", "data": ...}
With --format text: EPOCH:OFFSET CHANNEL DATA (strings as they are, else JSON).

stdout has the messages only. stderr tells what the connection does: each attempt
and the transport it tries, the transport in use once connected, each disconnect
with its close code and reason, each reconnection, and each resume: after a
reconnect tail resumes after the last message printed, so nothing is missed or
repeated; if the server's history no longer covers the gap, a WARNING says so.
Pass --since with a position printed earlier to resume after it, --last N to print
the last N messages the server's history keeps first (--last all: every one it
keeps). Stop with Ctrl-C.

exit status: 0 --count messages printed or interrupted, 1 refused or closed by the
server for good, 2 usage error""",
        epilog="""\
examples:
  rtlink tail http://127.0.0.1:8080/rt chat:lobby
  rtlink tail --format text --since 8f3a:41 http://127.0.0.1:8080/rt chat:lobby
  rtlink tail --last 20 http://127.0.0.1:8080/rt chat:lobby
  rtlink tail --transports sse,longpoll http://127.0.0.1:8080/rt chat:lobby
  rtlink tail --token-file alice.jwt http://127.0.0.1:8080/rt user:alice:inbox""",
    )
    tail.add_argument("url", metavar="URL", type=server_url,
                      help="the server's rtlink URL, e.g. http://127.0.0.1:8080/rt")
    tail.add_argument("channel", metavar="CHANNEL", type=channel_name,
                      help="channel name, e.g. chat:lobby")
    tail.add_argument("--codec", choices=tuple(CODECS), default="json",
                      help="wire encoding")
    tail.add_argument("--since", type=stream_position, metavar="EPOCH:OFFSET",
                      help="first print the messages published after this position "
                           "(from the server's history)")
    tail.add_argument("--last", type=last_count, metavar="N|all",
                      help="first print the last N messages the channel keeps (all: "
                           "every one); with --since, only when its gap cannot be filled")
    tail.add_argument("--count", type=positive_int, metavar="N",
                      help="exit after printing N messages (default: run until interrupted)")
    tail.add_argument("--format", choices=("json", "text"), default="json",
                      help="output format of message lines")
    tail.add_argument("--transports", type=transport_list, default=TRANSPORT_NAMES,
                      metavar="LIST",
                      help="transports to use, comma-separated, in order of preference; "
                           "tail falls back along the list (default: "
                           f"{','.join(TRANSPORT_NAMES)})")
    add_token_option(tail)
    tail.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``rtlink tail`` with its parsed ``args``; return the exit status."""
    token = client_token(args)
    setup_logging("warning")
    return asyncio.run(until_signal(_tail(args, token), EXIT_OK))


def _format_message(message: Message, fmt: str) -> str:
    """A message as one line of output, in ``--format`` ``fmt``."""
    if fmt == "text":
        data = message.data if isinstance(message.data, str) else _json(message.data)
        return f"{message.position} {message.channel} {data}"
    return _json({"channel": message.channel, "position": str(message.position),
                  "data": message.data})


def _json(value: Any) -> str:
    """Compact JSON on one line; what JSON cannot hold is shown as its repr."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


class _ConnectionReport:
    """Tells on stderr what ``rtlink tail``'s connection does: each attempt and its
    transport, the transport in use, disconnects with their close code, reconnections
    (numbered) and how each (re)subscription resumed. stdout stays for messages."""

    def __init__(self, url: str, channel: str, since: Position | None) -> None:
        self.url = url
        self.channel = channel
        self.last = since  # position of the last message printed
        self.trying: str | None = None  # the transport of the current attempt
        self.connections = 0
        self.closed_by = ""

    def on_state(self, change: StateChange, session: str | None) -> None:
        state = change.new_state
        if state is ConnectionState.CONNECTING:
            self.trying = change.transport
            err(f"rtlink: connecting to {self.url} via {change.transport} ...")
        elif state is ConnectionState.CONNECTED:
            self.connections += 1
            if self.connections == 1:
                err(f"rtlink: connected via {change.transport} (session {session})")
            else:
                err(f"rtlink: reconnected via {change.transport} (session {session}, "
                    f"reconnection {self.connections - 1})")
        elif state is ConnectionState.DISCONNECTED:
            why = describe_close(change.code, change.reason)
            if change.old_state is ConnectionState.CONNECTED:
                err(f"rtlink: disconnected ({why}); reconnecting")
            else:
                err(f"rtlink: could not connect via {self.trying} ({why})")
        elif state is ConnectionState.CLOSED and change.code is not None:
            self.closed_by = describe_close(change.code, change.reason)

    def on_subscribed(self, event: SubscribedEvent) -> None:
        channel = self.channel
        if event.resumed and not event.recovered:
            err(f"rtlink: WARNING: could not resume {channel} after {self.last}: the "
                "server's history no longer covers it; messages may have been missed. "
                "Printing what it still keeps, then live from "
                f"{event.position}.")
        elif event.resumed:
            err(f"rtlink: subscribed to {channel}, resumed after {self.last} "
                "(recovered: nothing missed)")
        else:
            err(f"rtlink: subscribed to {channel} at {event.position}")
        if not event.resumed or not event.recovered:
            self.last = event.position  # where the client resumes from next time


async def _tail(args: argparse.Namespace, token: str | Callable[[], str] | None) -> int:
    """Print ``args.channel``'s messages until ``--count``, a refusal or a final close."""
    client = Client(args.url, codec=args.codec, token=token, transports=args.transports)
    channel: str = args.channel
    report = _ConnectionReport(args.url, channel, args.since)
    client.on("state", lambda change: report.on_state(change, client.session_id))
    subscription = client.subscribe(channel, since=args.since, last=args.last)
    subscription.on("subscribed", report.on_subscribed)
    printed = 0
    try:
        await client.connect()
        async for message in subscription:
            print(_format_message(message, args.format), flush=True)
            report.last = message.position
            printed += 1
            if args.count is not None and printed >= args.count:
                return EXIT_OK
    except SubscribeError as exc:
        err(f"error: cannot subscribe to {channel}: {exc}")
        return EXIT_FAILURE
    except ClientClosed as exc:
        err(f"error: {exc}")
        return EXIT_FAILURE
    finally:
        await client.close()
    # The subscription ended without an error: the server closed for good.
    err(f"error: connection closed by the server ({report.closed_by or 'no reason'}); "
        "not reconnecting")
    return EXIT_FAILURE

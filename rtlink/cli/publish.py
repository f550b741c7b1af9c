"""``rtlink publish``: publish one message, through a server or straight into a shared
backend, and print its position."""

from __future__ import annotations

import argparse
import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from ..channels import ChannelOptions
from ..client import Client, ConnectionState, StateChange
from ..codecs import CODECS
from ..config import backend_url, redact_url
from ..config.options import OPTIONS_BY_NAME
from ..errors import BackendError, ChannelError, ClientClosed, FrameError, OutboxFull, PublishError
from ..protocol import validate_data
from ..publisher import Publisher
from .arguments import (
    Commands,
    HelpFormatter,
    argument_type,
    channel_name,
    positive_float,
    server_url,
    strict_json,
)
from .clients import add_token_option, client_token, describe_close
from .console import err, setup_logging
from .signals import until_signal
from .status import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UsageError

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    """Add ``publish`` to the ``rtlink`` command."""
    publish = commands.add_parser(
        "publish", allow_abbrev=False,
        help="publish one message to a channel and print its position",
        formatter_class=HelpFormatter,
        description="""\
Publish one message to a channel and print its position as EPOCH:OFFSET.

DATA is JSON text: '{"text": "hi"}', '"a string"', '42', 'null'. Quote it for
your shell. Either through a server (URL): it must allow client publishing on the
channel (rtlink serve does unless started with --no-client-publish); or straight
into a shared engine with --backend redis://HOST:PORT/DB (no URL then): every
server using that engine delivers it. With --backend, give the servers' history
settings (--history-size, --history-ttl) so that history is bounded alike.

exit status: 0 published, 1 refused, unavailable or timed out, 2 usage error""",
        usage="%(prog)s [-h] [options] (URL | --backend URL) CHANNEL DATA",
        epilog="""\
examples:
  rtlink publish http://127.0.0.1:8080/rt chat:lobby '{"text": "hello"}'
  rtlink publish --key order-42 http://127.0.0.1:8080/rt orders '{"id": 42}'
  rtlink publish --backend redis://127.0.0.1:6379/0 chat:lobby '"hello"'""",
    )
    publish.add_argument("url", metavar="URL", type=server_url, nargs="?",
                         help="the server's rtlink URL, e.g. http://127.0.0.1:8080/rt")
    publish.add_argument("channel", metavar="CHANNEL", type=channel_name,
                         help="channel name, e.g. chat:lobby")
    publish.add_argument("data", metavar="DATA", help="the message, as JSON text")
    publish.add_argument("--codec", choices=tuple(CODECS), default="json",
                         help="wire encoding")
    publish.add_argument("--key", metavar="KEY",
                         help="idempotency key: publishing again with the same key (within "
                              "the server's key TTL) returns the first position and publishes "
                              "nothing (default: a random key)")
    publish.add_argument("--timeout", type=positive_float, default=10.0, metavar="SECONDS",
                         help="give up if connecting and publishing take longer")
    add_token_option(publish)
    publish.add_argument("--backend", type=argument_type(backend_url), metavar="URL",
                         help="publish straight into this engine (redis://HOST:PORT/DB) "
                              "instead of through a server")
    _add_history_options(publish, "with --backend: ")
    publish.set_defaults(run=run)


def _add_history_options(parser: argparse.ArgumentParser, when: str) -> None:
    """--history-size and --history-ttl of ``rtlink publish --backend``, which must bound
    history as the servers do: their kinds, defaults and help are the servers'."""
    for name in ("history_size", "history_ttl"):
        option = OPTIONS_BY_NAME[name]
        parser.add_argument(option.flag, type=argument_type(option.kind.from_text),
                            default=option.default, metavar=option.metavar,
                            help=f"{when}{option.help}")


def run(args: argparse.Namespace) -> int:
    """Run ``rtlink publish`` with its parsed ``args``; return the exit status."""
    try:
        data = strict_json(args.data)
    except ValueError as exc:
        raise UsageError(f"DATA is not valid JSON ({exc}): {args.data[:200]!r}\n"
                         "hint: quote it for your shell, e.g. '{\"text\": \"hi\"}' "
                         "or '\"a string\"'") from None
    try:
        validate_data(data)
    except FrameError as exc:
        raise UsageError(f"DATA cannot be published: {exc}") from None
    if (args.url is None) == (args.backend is None):
        raise UsageError("give either the server's URL or --backend URL (not both)")
    if args.backend is not None and args.token_file is not None:
        raise UsageError("--token-file is for publishing through a server, not --backend")
    token = client_token(args)
    setup_logging("warning")
    work = (_through_server(args, data, token) if args.backend is None
            else _to_backend(args, data))
    return asyncio.run(until_signal(work, EXIT_INTERRUPTED))


async def _through_server(args: argparse.Namespace, data: Any,
                          token: str | Callable[[], str] | None) -> int:
    """Publish through the server at ``args.url``; print the position."""
    client = Client(args.url, codec=args.codec, connect_timeout=args.timeout, token=token)
    last_problem = ""

    def on_state(change: StateChange) -> None:
        nonlocal last_problem
        if change.new_state in (ConnectionState.DISCONNECTED, ConnectionState.CLOSED):
            last_problem = describe_close(change.code, change.reason)

    client.on("state", on_state)
    connected = False
    try:
        async with asyncio.timeout(args.timeout):
            await client.connect()
            connected = True
            position = await client.publish(args.channel, data, key=args.key)
    except TimeoutError:
        if connected:
            err(f"error: no acknowledgement from {args.url} within {args.timeout:g}s; "
                "the message may or may not have been published (retry with the same --key "
                "to be sure it is published once)")
        else:
            detail = f" (last attempt: {last_problem})" if last_problem else ""
            err(f"error: could not connect to {args.url} within {args.timeout:g}s{detail}")
        return EXIT_FAILURE
    except PublishError as exc:
        err(f"error: {exc}")
        return EXIT_FAILURE
    except (ClientClosed, OutboxFull) as exc:
        err(f"error: {exc}")
        return EXIT_FAILURE
    finally:
        await client.close()
    print(position, flush=True)
    return EXIT_OK


async def _to_backend(args: argparse.Namespace, data: Any) -> int:
    """Publish straight into the backend ``args.backend``; print the position."""
    where = redact_url(args.backend)
    try:
        publisher = Publisher(args.backend, channels={"*": ChannelOptions(
            history_size=args.history_size, history_ttl=args.history_ttl)})
    except (ValueError, ImportError) as exc:
        err(f"error: cannot use the backend {where}: {exc}")
        return EXIT_FAILURE
    try:
        async with asyncio.timeout(args.timeout):
            async with publisher:
                position = await publisher.publish(args.channel, data,
                                                   key=args.key or secrets.token_hex(16))
    except TimeoutError:
        err(f"error: {where} did not answer within {args.timeout:g}s; the message may or "
            "may not have been published (retry with the same --key to be sure it is "
            "published once)")
        return EXIT_FAILURE
    except (BackendError, ChannelError) as exc:
        err(f"error: {exc}")
        return EXIT_FAILURE
    print(position, flush=True)
    return EXIT_OK

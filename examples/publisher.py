"""A Python service that publishes events into rtlink's Redis engine: no web server.

A worker, a cron job or any backend service publishes straight into Redis, and every
rtlink server on that Redis delivers to its subscribers::

    .venv/bin/python -m examples.publisher --redis redis://127.0.0.1:6379/0

``bash examples/run.sh publisher`` runs it as a self-contained demo instead: it also
starts a private redis-server, one rtlink server node on it (with the HTTP publish API
that services in other languages use, see examples/publish.sh) and a subscriber that
prints what the node delivers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import sys
import time
import uuid

from aiohttp import web

import rtlink

from ._launch import announce, forever, main, serve, url_of
from ._services import redis_server

# Give publishers the channel rules the servers have: history bounds are applied
# when publishing.
CHANNELS = {"orders": rtlink.ChannelOptions(history_size=1000, history_ttl=3600)}


async def publish_order_events(redis_url: str, count: int | None = None,
                               interval: float = 1.0) -> None:
    """Publish an order event to ``orders`` every ``interval`` seconds (``count`` of
    them, or until cancelled)."""
    async with rtlink.Publisher(redis_url, channels=CHANNELS) as publisher:
        for number in itertools.islice(itertools.count(1), count):
            event = {"id": uuid.uuid4().hex, "order": number, "status": "shipped",
                     "time": time.time()}
            position = await publish(publisher, "orders", event)
            print(f"published {position} order {number}", flush=True)
            await asyncio.sleep(interval)


async def publish(publisher: rtlink.Publisher, channel: str,
                  event: dict[str, object]) -> rtlink.Position:
    """Publish ``event``, retrying while Redis cannot be reached.

    The event's own id is the idempotency key: if Redis applied a publish but the
    reply was lost, the retry is recognised and publishes nothing twice.
    """
    while True:
        try:
            return await publisher.publish(channel, event, key=str(event["id"]))
        except rtlink.BackendUnavailable as exc:
            print(f"Redis unavailable ({exc}); retrying in 1 s", file=sys.stderr, flush=True)
            await asyncio.sleep(1)


# --- the demo around the service ------------------------------------------------------


async def demo(args: argparse.Namespace) -> None:
    """A private Redis, one server node on it, a subscriber, and the service."""
    api_key = os.environ.get("RTLINK_API_KEY") or secrets.token_urlsafe(24)
    async with redis_server() as redis_url:
        # A server node, as your web app would run it (any number of them, one Redis).
        hub = rtlink.Hub(backend=redis_url, channels=CHANNELS)
        app = web.Application()
        rtlink.attach(app, hub, path="/rt", api_keys=[api_key])  # POST /rt/publish
        async with serve(app, args.host, args.port) as port:
            url = url_of(args.host, port, "/rt")
            announce(
                f"publisher: a private Redis at {redis_url}, an rtlink node on it at {url}",
                f"  the service below publishes an order event every {args.interval:g} s "
                "(Ctrl-C stops)",
                f"  watch in a shell:   .venv/bin/rtlink tail {url} orders",
                f"  publish over HTTP:  RTLINK_API_KEY={api_key} bash examples/publish.sh "
                f"{url} orders '{{\"status\": \"paid\"}}'",
            )
            async with rtlink.Client(url) as client, client.subscribe("orders") as orders:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(print_deliveries(orders))
                    await publish_order_events(redis_url, args.count, args.interval)
                    await forever()


async def print_deliveries(subscription: rtlink.Subscription) -> None:
    async for message in subscription:
        print(f"node delivered {message.position} {json.dumps(message.data)}", flush=True)


async def run(args: argparse.Namespace) -> None:
    if args.redis:
        await publish_order_events(args.redis, args.count, args.interval)
    else:
        await demo(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL",
                        help="publish into this Redis (e.g. redis://127.0.0.1:6379/0) and "
                             "nothing else; without it, run the demo (--host/--port: its node)")
    parser.add_argument("--count", type=int, metavar="N",
                        help="publish N events (default: until stopped)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between events (default: %(default)s)")


if __name__ == "__main__":
    main(run, name="publisher", default_port=8084, add_arguments=add_arguments,
         description="A Python service publishing events through rtlink's Redis engine.")

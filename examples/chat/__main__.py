"""Run the chat example: ``bash examples/run.sh chat [--port 8081]``."""

import argparse

from .._launch import announce, forever, main, serve, url_of
from .server import make_app


async def run(args: argparse.Namespace) -> None:
    async with serve(make_app(), args.host, args.port) as port:
        announce(f"chat: open {url_of(args.host, port)} in two browser windows (Ctrl-C stops)")
        await forever()


main(run, name="chat", description="A browser chat room on rtlink.", default_port=8081)

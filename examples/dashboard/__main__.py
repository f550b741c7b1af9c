"""Run the dashboard example: ``bash examples/run.sh dashboard [--port 8083]``."""

import argparse

from .._launch import announce, forever, main, serve, url_of
from .server import make_app


async def run(args: argparse.Namespace) -> None:
    async with serve(make_app(), args.host, args.port) as port:
        announce(f"dashboard: open {url_of(args.host, port)} (Ctrl-C stops)")
        await forever()


main(run, name="dashboard", description="Live server metrics on rtlink, plotted in a page.",
     default_port=8083)

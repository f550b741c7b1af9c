"""Run the notifications example behind its nginx:
``bash examples/run.sh notifications [--port 8082]``."""

import argparse
from pathlib import Path

from .._launch import announce, forever, main, serve, url_of
from .._services import nginx
from .server import make_app

NGINX_CONFIG = Path(__file__).with_name("nginx.conf")


async def run(args: argparse.Namespace) -> None:
    # The app listens on a free loopback port that only nginx talks to; users open
    # nginx's port.
    async with serve(make_app(), "127.0.0.1", 0) as app_port:
        async with nginx(NGINX_CONFIG, host=args.host, port=args.port,
                         upstream_port=app_port) as port:
            announce(f"notifications: open {url_of(args.host, port)} (Ctrl-C stops)",
                     f"  nginx (examples/notifications/nginx.conf) listens there, in front "
                     f"of the app on 127.0.0.1:{app_port}")
            await forever()


main(run, name="notifications", default_port=8082,
     description="Per-user notification feeds on rtlink, behind an nginx that forces the "
                 "SSE fallback.")

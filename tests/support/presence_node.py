"""A node of the presence tests in a process of its own, to be killed (SIGKILL).

``python -m tests.support.presence_node REDIS_URL PRESENCE_TTL`` serves rtlink under
``/rt`` on a free loopback port with the channels of tests/test_roster.py
(``room:*`` keeps presence; ``Authorization: Bearer <user>`` is who a client is) and
prints ``port <N>`` once it listens.
"""

from __future__ import annotations

import asyncio
import sys

from tests.support import run_server
from tests.test_roster import presence_hub


async def main(redis_url: str, ttl: float) -> None:
    hub = presence_hub(backend=redis_url, presence_ttl=ttl)
    async with run_server(hub, handler_cancellation=True) as server:
        print(f"port {server.port}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))

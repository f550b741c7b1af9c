"""The benchmark scenarios, run in this order by ``python -m bench``.

Each module exposes ``TITLE`` (a heading) and ``run(quick: bool) -> list[Row]`` (sync or
``async``). ``--only NAME`` selects modules by these names.
"""

__all__ = ["ORDER"]

#: Module names in running order, one a line.
ORDER = (
    "peruser",
    "onechannel",
    "latency",
    "fanout",
    "idle",
    "connect",
    "redis",
    "jssize",
    "storm",  # Redis storms and per-user channels on Redis
    "presence",  # joins and leaves of 1,000 and 10,000 members, and their reconnect storm
)

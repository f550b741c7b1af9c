"""The benchmark scenarios, run in this order by ``python -m bench``.

Each module exposes ``TITLE`` (a heading) and ``run(quick: bool) -> list[Row]`` (sync or
``async``). ``--only NAME`` selects modules by these names.
"""

#: Module names in running order.
ORDER = ("fanout", "idle", "latency", "connect", "redis", "jssize")

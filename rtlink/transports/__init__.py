"""The server transports: each moves frames over one aiohttp endpoint.

The registry (:mod:`rtlink.transports.registry`) lists them by name with their routes,
and :func:`rtlink.attach` mounts what it lists: WebSocket
(:mod:`~rtlink.transports.websocket`), server-sent events (:mod:`~rtlink.transports.sse`)
and long polling (:mod:`~rtlink.transports.longpoll`), with what the HTTP ones share
(:mod:`~rtlink.transports.http`, ``POST {path}/send``), the checks before every route
(:mod:`~rtlink.transports.guard`), tickets (:mod:`~rtlink.transports.tickets`) and the
HTTP publish API (:mod:`~rtlink.transports.publish_api`).

Nothing is imported here: a module of the package is imported on its own.
"""

__all__: list[str] = []

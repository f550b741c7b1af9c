""":class:`ServeConfig`, the effective configuration of ``rtlink serve``: its
constructor's defaults are the options' defaults."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ..channels import USER_PLACEHOLDER, ChannelOptions
from ..server import TRANSPORT_NAMES

__all__ = ["ServeConfig"]


@attrs.frozen
class ServeConfig:
    """The effective configuration of ``rtlink serve`` (the defaults, as constructed).

    Attributes:
        host: interface to listen on.
        port: TCP port (0: any free one).
        path: mount path of rtlink (``""`` for the root).
        backend: backend URL.
        history_size: server-wide publications kept per channel.
        history_ttl: server-wide seconds a publication stays in history.
        client_publish: server-wide: whether clients may publish.
        allowed_origins: web origins whose pages may connect; None: same origin only,
            for IP address and ``localhost`` hosts.
        publish_rate: client publishes per second per connection; None: no limit.
        publish_burst: client publishes allowed at once.
        max_connections_per_ip: connections per client address; None: no limit.
        websocket_compression: accept permessage-deflate on WebSocket.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        transports: the transports served.
        token_secret: the HS256 secret of :class:`~rtlink.auth.TokenAuth`; None: no
            authentication (every connection is anonymous).
        allow_anonymous: with a token secret, accept connections without a token.
        api_keys: keys of the publish API (``POST {path}/publish``); empty: not mounted.
        metrics_path: where Prometheus metrics are served; None: not served.
        channels: channel rules from the config file; None: the ``"*"`` rule of
            :meth:`channel_rules`.
        config_file: the config file read, if any.
        sources: where each value came from, by option name (and
            ``"channels.'PATTERN'.FIELD"``): ``"default"``, ``"flag --port"``,
            ``"environment RTLINK_PORT"``, ``"config file x.toml"``, ...
    """

    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/rt"
    backend: str = "memory://"
    history_size: int = 100
    history_ttl: float = 300.0
    client_publish: bool = True
    allowed_origins: tuple[str, ...] | None = None
    publish_rate: float | None = 50.0
    publish_burst: int = 100
    max_connections_per_ip: int | None = None
    websocket_compression: bool = False
    log_level: str = "info"
    transports: tuple[str, ...] = TRANSPORT_NAMES
    token_secret: str | None = attrs.field(default=None, repr=False)
    allow_anonymous: bool = True
    api_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    metrics_path: str | None = "/metrics"
    channels: Mapping[str, ChannelOptions] | None = None
    config_file: str | None = None
    sources: Mapping[str, str] = attrs.field(factory=dict, eq=False)

    def channel_rules(self) -> dict[str, ChannelOptions]:
        """The hub's channel rules: those of the config file, else every channel with
        the server-wide history and client publishing settings."""
        if self.channels is not None:
            return dict(self.channels)
        return {"*": ChannelOptions(history_size=self.history_size,
                                    history_ttl=self.history_ttl,
                                    client_publish=self.client_publish)}

    @property
    def needs_authentication(self) -> bool:
        """Whether some channel rule refuses anonymous connections."""
        return any(options.subscribe == "authenticated" or USER_PLACEHOLDER in pattern
                   for pattern, options in self.channel_rules().items())

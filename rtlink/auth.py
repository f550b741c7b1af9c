"""Authentication: the interface the hub asks of a hook, and the built-in one, HS256 JSON
Web Tokens with single-use tickets for browsers.

``Hub(authenticate=...)`` takes an :class:`Authenticator` or a plain callable
``(request) -> identity`` (possibly async; the hub wraps it in a
:class:`CallableAuthenticator`). :class:`Authenticator` declares everything the hub and
:func:`rtlink.attach` ask of a hook: the identity of a request, how long an expired
identity is tolerated (``leeway``), the backend (``bind``) and, optionally, tickets.

``Hub(authenticate=TokenAuth(secret))`` authenticates every connection by a JWT signed
with ``secret`` (HS256, made by :meth:`TokenAuth.mint` or by any JWT library)::

    auth = rtlink.TokenAuth(os.environ["RTLINK_SECRET"])
    hub = rtlink.Hub(authenticate=auth, channels={
        "user:{user}:*": rtlink.ChannelOptions(subscribe="authenticated"),
    })
    token = auth.mint("alice", ttl=3600)           # hand it to alice's client

Where the hook looks, in this order (a request with ``token=`` in its URL is refused
first, unless ``allow_query_token``):

1. the ``Authorization: Bearer <token>`` header (every transport of the Python client;
   the browser client's ``fetch`` requests);
2. the ``ticket`` query parameter: browsers cannot set headers on a WebSocket or an
   EventSource, so they first trade their token for a **ticket** at
   ``POST {path}/ticket`` (:mod:`rtlink.transports.tickets`). A ticket is a JWT that lives
   ``ticket_ttl`` seconds and is accepted once (its ``jti`` is claimed in the hub's
   backend, so on every node), which keeps long-lived tokens out of URLs and logs.
   A ticket used already or expired is refused with
   :attr:`~rtlink.codes.CloseCode.TOKEN_EXPIRED` (4003: get a new one and
   reconnect), not 4500: a browser's EventSource repeats its first URL when it
   reconnects by itself;
3. the ``token`` query parameter, only with ``allow_query_token=True``.

A connection whose identity expires (the token's ``exp``) is closed by the hub with
:attr:`~rtlink.codes.CloseCode.TOKEN_EXPIRED` (4003); clients reconnect with a fresh
token. Channel patterns with ``{user}`` (:mod:`rtlink.channels`) belong to the
identity whose subject (:func:`subject_of`) they capture.

Pure: no asyncio, no aiohttp (the HTTP side of tickets is
:mod:`rtlink.transports.tickets`). :class:`TokenAuth` reads only a request's
``headers`` and ``query`` (:class:`Request`), which an ``aiohttp.web.Request`` has.
"""

from __future__ import annotations

import abc
import inspect
import math
import secrets
import time
from collections.abc import Callable, Mapping
from numbers import Real
from types import MappingProxyType
from typing import Any, Protocol

import attrs
import jwt

from .backends.base import Backend, LocalClaims
from .codes import CloseCode
from .errors import AuthenticationError

__all__ = [
    "Authenticator",
    "CallableAuthenticator",
    "as_authenticator",
    "TicketIssuer",
    "Request",
    "Identity",
    "TokenAuth",
    "subject_of",
    "expires_at_of",
    "bearer_token",
    "TICKET_TYPE",
    "MIN_SECRET_BYTES",
]

#: The ``typ`` claim of a ticket; a token carrying it is refused as a token.
TICKET_TYPE = "rtlink-ticket"
#: Shortest secret accepted: HS256 keys should be at least as long as its output.
MIN_SECRET_BYTES = 32

_ALGORITHMS = ["HS256"]
#: Claims a ticket sets itself rather than copying them from the token.
_TICKET_OWN_CLAIMS = frozenset({"iat", "nbf", "exp", "jti", "typ", "rtlink_exp"})


class Request(Protocol):
    """What :class:`TokenAuth` reads of a request (an ``aiohttp.web.Request`` has both)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The request's headers (names case-insensitive, as aiohttp's are)."""

    @property
    def query(self) -> Mapping[str, str]:
        """The query parameters of the request's URL."""


class TicketIssuer(Protocol):
    """What ``POST {path}/ticket`` (:mod:`rtlink.transports.tickets`) needs: a ticket
    for the bearer of a token. :class:`TokenAuth` is one."""

    def issue_ticket(self, token: str) -> tuple[str, float]:
        """A single-use ticket for the bearer of ``token``, and the seconds it may be
        used in.

        Raises:
            AuthenticationError: the token is refused, or expired (with no leeway).
        """


class Authenticator(abc.ABC):
    """Everything the hub and :func:`rtlink.attach` ask of an ``authenticate`` hook.

    :class:`TokenAuth` is one; a plain callable ``(request) -> identity`` is wrapped in
    a :class:`CallableAuthenticator`. Subclass it for a hook that needs more than a
    callable gives: a ``leeway``, the hub's backend, or tickets. An authenticator is
    also callable like a plain hook (``await authenticator(request)``).

    Attributes:
        leeway: seconds after its ``expires_at`` (:func:`expires_at_of`) during which
            an identity is refused with 4003 (reconnect with fresh credentials) rather
            than 4500 (stop), in place of ``welcome``
            (:func:`rtlink.transports.http.identify`). 0 here; :class:`TokenAuth` takes
            its own ``leeway``.
    """

    leeway: float = 0.0

    @abc.abstractmethod
    async def authenticate(self, request: Any) -> Any:
        """The identity of a new connection's request (None for anonymous).

        ``request`` is the transport's request, an ``aiohttp.web.Request``: once per
        WebSocket or SSE stream, on every long poll and every ``POST {path}/send``.
        Any identity works; :func:`subject_of` and :func:`expires_at_of` say what the
        hub reads of it.

        Raises:
            AuthenticationError: the request is refused (close 4500: the client stops).
        """

    def bind(self, backend: Backend) -> None:  # noqa: B027 - optional, a no-op by default
        """Take the hub's backend: :meth:`rtlink.Hub.start` calls it before any request
        (e.g. to claim single-use tickets on every node). Does nothing here."""

    @property
    def tickets(self) -> TicketIssuer | None:
        """What trades a token for a ticket at ``POST {path}/ticket``, or None (here):
        that route then answers 404 and the browser client puts its token in the URL."""
        return None

    async def __call__(self, request: Any) -> Any:
        """:meth:`authenticate`: an authenticator is also a plain hook."""
        return await self.authenticate(request)


class CallableAuthenticator(Authenticator):
    """A plain ``authenticate`` hook as an :class:`Authenticator`: no leeway, no
    tickets, no backend.

    Args:
        hook: ``hook(request) -> identity``; may be a coroutine function, or return an
            awaitable of the identity.
    """

    def __init__(self, hook: Callable[[Any], Any]) -> None:
        self.hook = hook

    def __repr__(self) -> str:
        return f"<CallableAuthenticator {self.hook!r}>"

    async def authenticate(self, request: Any) -> Any:
        """The hook's identity for ``request`` (awaited if it returns an awaitable)."""
        identity = self.hook(request)
        return await identity if inspect.isawaitable(identity) else identity


def as_authenticator(hook: Authenticator | Callable[[Any], Any]) -> Authenticator:
    """``hook`` itself if it is an :class:`Authenticator`, else a plain callable wrapped
    in a :class:`CallableAuthenticator`."""
    return hook if isinstance(hook, Authenticator) else CallableAuthenticator(hook)


def _read_only(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(claims))


@attrs.frozen
class Identity:
    """Who a connection is, as :class:`TokenAuth` verified it.

    Attributes:
        subject: the token's ``sub`` claim (a user id).
        claims: every verified claim of the token (of the ticket, for a connection
            opened with one), read-only.
        expires_at: when the credentials expire (unix time: the token's ``exp``, or a
            ticket's ``rtlink_exp``); None if never. The hub closes the connection
            with 4003 then.
    """

    subject: str
    claims: Mapping[str, Any] = attrs.field(factory=dict, converter=_read_only, hash=False)
    expires_at: float | None = None


def subject_of(identity: Any) -> str | None:
    """The subject (user id) of any identity an ``authenticate`` hook may return.

    :class:`Identity` → its ``subject``; a ``str`` → itself; a mapping → its ``"sub"``
    if that is a string; None → None; any other object → its ``subject`` attribute if
    that is a string, else None. ``{user}`` channels compare it with their owner.
    """
    if identity is None:
        return None
    if isinstance(identity, str):
        return identity
    if isinstance(identity, Identity):
        return identity.subject
    if isinstance(identity, Mapping):
        sub = identity.get("sub")
        return sub if isinstance(sub, str) else None
    subject = getattr(identity, "subject", None)
    return subject if isinstance(subject, str) else None


def expires_at_of(identity: Any) -> float | None:
    """When an identity's credentials expire (unix time), or None.

    An :class:`Identity`, or any object with a numeric ``expires_at`` attribute (so a
    custom hook can have its connections expire too); None for anything else.
    """
    expires_at = getattr(identity, "expires_at", None)
    if isinstance(expires_at, Real) and not isinstance(expires_at, bool):
        return float(expires_at)
    return None


class TokenAuth(Authenticator):
    """An :class:`Authenticator` for HS256 JWTs, with single-use tickets for browsers.

    Args:
        secret: the HS256 key shared with whoever mints tokens; at least 32 bytes
            (``secrets.token_urlsafe(32)`` makes a good one). Never sent anywhere.
        issuer: if set, tokens must carry this ``iss`` (and :meth:`mint` sets it).
        audience: if set, tokens must carry this ``aud`` (and :meth:`mint` sets it);
            if not, tokens carrying an ``aud`` are refused.
        leeway: seconds of clock skew tolerated when checking ``exp``, ``nbf`` and
            ``iat``. A connection still ends (4003) at the token's ``exp`` itself; one
            opened with a token expired less than ``leeway`` ago is refused with 4003
            instead of ``welcome``, so its client fetches a fresh token rather than
            stopping.
        ticket_ttl: seconds a ticket from ``POST {path}/ticket`` may be used in
            (:meth:`issue_ticket`).
        anonymous: accept requests without credentials (the identity is None);
            wrong credentials are refused all the same.
        allow_query_token: accept a token in the ``token`` query parameter. Off by
            default: URLs end up in logs, so a request carrying ``token=`` is refused.

    Raises:
        ValueError: a secret shorter than 32 bytes, a negative ``leeway``, or a
            ``ticket_ttl`` that is not positive.
    """

    def __init__(
        self,
        secret: str | bytes,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 30.0,
        ticket_ttl: float = 30.0,
        anonymous: bool = False,
        allow_query_token: bool = False,
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the secret must be at least {MIN_SECRET_BYTES} bytes for HS256 (got "
                f"{len(key)}); make one with secrets.token_urlsafe(32)"
            )
        if not leeway >= 0:
            raise ValueError("leeway must be >= 0")
        if not ticket_ttl > 0:
            raise ValueError("ticket_ttl must be > 0")
        self._key = key
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.ticket_ttl = ticket_ttl
        self.anonymous = anonymous
        self.allow_query_token = allow_query_token
        self._backend: Backend | None = None
        self._local_claims = LocalClaims()

    def __repr__(self) -> str:  # never the secret
        return (f"<TokenAuth issuer={self.issuer!r} audience={self.audience!r} "
                f"anonymous={self.anonymous} allow_query_token={self.allow_query_token}>")

    def bind(self, backend: Backend) -> None:
        """Claim tickets in ``backend`` (so a ticket is used once across every node
        sharing it). :meth:`rtlink.Hub.start` calls it; without it, tickets are claimed
        in this process only."""
        self._backend = backend

    @property
    def tickets(self) -> TicketIssuer:
        """This TokenAuth itself: it issues tickets (:meth:`issue_ticket`)."""
        return self

    # --- tokens ----------------------------------------------------------------------

    def mint(self, subject: str, *, ttl: float = 3600.0,
             claims: Mapping[str, Any] | None = None) -> str:
        """Make a token for ``subject``, valid ``ttl`` seconds (HS256 JWT).

        It carries ``sub``, ``iat``, ``exp`` (rounded up to a whole second), the
        configured ``iss`` and ``aud``, and ``claims``.

        Raises:
            ValueError: an empty subject, a ``ttl`` that is not positive, or ``claims``
                setting ``sub``, ``iat``, ``exp`` or a ticket's ``typ``.
        """
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if not ttl > 0:
            raise ValueError("ttl must be > 0")
        extra = dict(claims or {})
        reserved = sorted({"sub", "iat", "exp"} & extra.keys())
        if reserved:
            raise ValueError(f"claims may not set {', '.join(reserved)}: use subject= and ttl=")
        if extra.get("typ") == TICKET_TYPE:
            raise ValueError("a token may not claim to be a ticket")
        now = time.time()
        payload: dict[str, Any] = {**self._standard_claims(), **extra, "sub": subject,
                                   "iat": int(now), "exp": math.ceil(now + ttl)}
        return jwt.encode(payload, self._key, algorithm="HS256")

    def verify(self, token: str) -> Identity:
        """Check a token's signature and claims and return who it names.

        Raises:
            AuthenticationError: the token is malformed, not signed with this secret
                (or not with HS256), expired (beyond ``leeway``), not yet valid, of
                another issuer or audience, has no subject, or is a ticket; the message
                says which.
        """
        claims = self._decode(token, "token")
        if claims.get("typ") == TICKET_TYPE:
            raise AuthenticationError(
                "a ticket is not a token: send it as the 'ticket' query parameter")
        return Identity(claims["sub"], claims, _number(claims.get("exp"), "token", "exp"))

    # --- tickets ---------------------------------------------------------------------

    def mint_ticket(self, identity: Identity) -> str:
        """Make a single-use ticket for ``identity`` (normally from :meth:`verify`).

        The ticket carries the identity's claims, ``exp`` = now + ``ticket_ttl`` (never
        later than the identity's expiry), ``rtlink_exp`` = the identity's expiry (so a
        connection opened with the ticket ends when the token would), a random
        128-bit ``jti`` and ``typ`` = ``"rtlink-ticket"``.
        """
        return self._ticket(identity)[0]

    def issue_ticket(self, token: str) -> tuple[str, float]:
        """What ``POST {path}/ticket`` answers: a ticket (:meth:`mint_ticket`) for the
        bearer of ``token``, and the seconds it may be used in (``ticket_ttl``, or less
        when the token expires sooner).

        Raises:
            AuthenticationError: as :meth:`verify`; also a token past its ``exp`` within
                ``leeway`` ("token expired"): a ticket would be refused at once.
        """
        identity = self.verify(token)
        if identity.expires_at is not None and identity.expires_at <= time.time():
            raise AuthenticationError("token expired")
        return self._ticket(identity)

    def _ticket(self, identity: Identity) -> tuple[str, float]:
        now = time.time()
        expires: float = math.ceil(now + self.ticket_ttl)
        if identity.expires_at is not None:
            expires = min(expires, identity.expires_at)
        payload: dict[str, Any] = {
            **self._standard_claims(),
            **{k: v for k, v in identity.claims.items() if k not in _TICKET_OWN_CLAIMS},
            "sub": identity.subject,
            "iat": int(now),
            "exp": _numeric_date(expires),
            "jti": secrets.token_hex(16),
            "typ": TICKET_TYPE,
        }
        lifetime = self.ticket_ttl
        if identity.expires_at is not None:
            payload["rtlink_exp"] = _numeric_date(identity.expires_at)
            lifetime = max(min(lifetime, identity.expires_at - now), 0.0)
        return jwt.encode(payload, self._key, algorithm="HS256"), lifetime

    async def _redeem(self, ticket: str) -> Identity:
        """Verify a ticket and claim it, once for every node sharing the backend."""
        claims = self._decode(ticket, "ticket")
        if claims.get("typ") != TICKET_TYPE:
            raise AuthenticationError("not a ticket: send tokens in the Authorization header")
        expires = _number(claims.get("exp"), "ticket", "exp")
        if expires is None:
            raise AuthenticationError("ticket has no 'exp' claim")
        if not claims.get("jti"):
            raise AuthenticationError("ticket has no 'jti' claim")
        # Remembered as long as the ticket could still pass verification.
        ttl = max(expires + self.leeway - time.time(), 1.0)
        key = f"ticket:{claims['jti']}"
        backend = self._backend
        claimed = (self._local_claims.claim(key, ttl) if backend is None
                   else await backend.claim(key, ttl))
        if not claimed:
            # Most often a browser's EventSource repeating its first URL after a cut
            # (protocol.md 2.2): the client must get a new ticket, and may (4003).
            raise AuthenticationError("ticket already used", CloseCode.TOKEN_EXPIRED)
        return Identity(claims["sub"], claims,
                        _number(claims.get("rtlink_exp"), "ticket", "rtlink_exp"))

    # --- the hook --------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Identity | None:
        """The request's credentials in, an identity out (or None, if ``anonymous``).

        Raises:
            AuthenticationError: no credentials (unless ``anonymous``), wrong ones, or
                a token in the URL (unless ``allow_query_token``): code 4500. A ticket
                used already or expired: code 4003 (the client gets a new one).
            BackendUnavailable: the backend could not claim a ticket (the connection
                is refused with 1011 and the client tries again).
        """
        query = request.query
        if "token" in query and not self.allow_query_token:
            raise AuthenticationError("tokens are not accepted in URLs; use a ticket")
        header = request.headers.get("Authorization")
        if header is not None:
            return self.verify(bearer_token(header))
        ticket = query.get("ticket")
        if ticket is not None:
            return await self._redeem(ticket)
        token = query.get("token")
        if token is not None:
            return self.verify(token)
        if self.anonymous:
            return None
        raise AuthenticationError("authentication required")

    # --- helpers ---------------------------------------------------------------------

    def _standard_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {}
        if self.issuer is not None:
            claims["iss"] = self.issuer
        if self.audience is not None:
            claims["aud"] = self.audience
        return claims

    def _decode(self, text: str, what: str) -> dict[str, Any]:
        if not isinstance(text, str) or not text:
            raise AuthenticationError(f"empty {what}")
        if not text.isascii():
            # A JWT is base64url and dots. Bytes that are not UTF-8 in a header reach
            # us as lone surrogates, on which PyJWT raises UnicodeEncodeError.
            raise AuthenticationError(f"malformed {what}: not ASCII")
        try:
            claims: dict[str, Any] = jwt.decode(
                text, self._key, algorithms=_ALGORITHMS, issuer=self.issuer,
                audience=self.audience, leeway=self.leeway,
                # The type of "sub" is checked below, the same way on every PyJWT
                # (2.10 added its own check; older releases accept any type).
                options={"require": ["sub"], "verify_sub": False},
            )
        except jwt.ExpiredSignatureError:
            # An expired ticket was good: its bearer gets a new one and reconnects
            # (4003), as after a reconnect that repeats a used ticket (_redeem).
            raise AuthenticationError(
                f"{what} expired",
                CloseCode.TOKEN_EXPIRED if what == "ticket" else CloseCode.UNAUTHORIZED,
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError(f"{what} signature is invalid") from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationError(f"{what} is not signed with HS256") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"{what} has no {exc.claim!r} claim") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError(f"{what} issuer is not accepted") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError(f"{what} audience is not accepted") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError(f"{what} is not valid yet") from None
        except jwt.DecodeError:
            # PyJWT's own text differs between its releases ("Invalid header padding",
            # "Invalid header string: ..."); a refusal reason is part of the wire.
            raise AuthenticationError(
                f"malformed {what}: not a JWT (base64url header.payload.signature)"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid {what}: {exc}") from None
        if not isinstance(claims["sub"], str):
            raise AuthenticationError(f"{what} 'sub' claim must be a string")
        if not claims["sub"]:
            raise AuthenticationError(f"{what} has an empty 'sub' claim")
        return claims


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    Raises:
        AuthenticationError: another scheme, or no token.
    """
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
    return token


def _numeric_date(seconds: float) -> float | int:
    """A JWT NumericDate: a whole number of seconds as an int (as most issuers write it)."""
    return int(seconds) if float(seconds).is_integer() else seconds


def _number(value: Any, what: str, claim: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, Real) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float, e.g. 10**400
            raise AuthenticationError(f"malformed {what}: {claim!r} is out of range") from None
    raise AuthenticationError(f"malformed {what}: {claim!r} must be a number")


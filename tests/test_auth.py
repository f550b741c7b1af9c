"""Built-in authentication (rtlink.auth): tokens, tickets, credentials on every
transport, and connections that end when their token does.

Token checks run on TokenAuth directly; everything about requests runs against real
servers on loopback with raw aiohttp requests (to see exactly what the server
answers) or the Python client (to see that it copes: Bearer header, reconnect after
4003 with a fresh token, nothing lost).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import jwt
import pytest

import rtlink
from rtlink.auth import (
    MIN_SECRET_BYTES,
    TICKET_TYPE,
    Authenticator,
    CallableAuthenticator,
    Identity,
    TokenAuth,
    as_authenticator,
    bearer_token,
    expires_at_of,
    subject_of,
)
from rtlink.backends.redis import RedisBackend
from tests.support import collect, eventually, free_port, run_server, seconds
from tests.support.redis_server import RedisServer
from tests.transports.test_guard import REFUSAL_STATUS

SECRET = "test-secret-" + "x" * 32
OTHER_SECRET = "another-secret-" + "y" * 32
#: The refusal of anything that does not decode as a JWT (the same on every PyJWT).
MALFORMED = "malformed token: not a JWT (base64url header.payload.signature)"
S = rtlink.ConnectionState

#: Raw endpoints: the three transports, and POST /send of the HTTP ones.
ENDPOINTS = ["websocket", "sse", "longpoll", "send"]


def close(code: int, reason: str) -> dict[str, Any]:
    return {"type": "close", "code": code, "reason": reason}


def refused(reason: str) -> dict[str, Any]:
    return close(rtlink.CloseCode.UNAUTHORIZED, reason)


def renew(reason: str) -> dict[str, Any]:
    """A refusal that sends the client for fresh credentials (a used or expired ticket,
    an identity that has just expired): it reconnects, instead of stopping."""
    return close(rtlink.CloseCode.TOKEN_EXPIRED, reason)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def plain_jwt(claims: dict[str, Any], secret: str = SECRET) -> str:
    """A token made by plain PyJWT, as an application's login service would."""
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def first_frame(http: aiohttp.ClientSession, server: Any, endpoint: str, *,
                      headers: dict[str, str] | None = None,
                      query: dict[str, str] | None = None) -> dict[str, Any]:
    """Open one raw connection on ``endpoint`` (JSON codec) and return the first frame
    the server sends: ``welcome`` (``pong`` for a ping POSTed to /send) or ``close``.
    On WebSocket a ``close`` frame must be followed by the same WebSocket close code."""
    headers = headers or {}
    query = query or {}
    async with asyncio.timeout(seconds(5)):
        if endpoint == "websocket":
            url = server.url.replace("http", "ws", 1) + "/ws"
            async with http.ws_connect(url, params=query, headers=headers) as ws:
                message = await ws.receive()
                assert message.type is aiohttp.WSMsgType.TEXT, message
                frame: dict[str, Any] = json.loads(message.data.split("\n")[0])
                if frame["type"] == "close":
                    ending = await ws.receive()
                    assert ending.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                    assert ws.close_code == frame["code"]
                return frame
        if endpoint == "sse":
            async with http.get(f"{server.url}/sse", params={"subs": "{}", **query},
                                headers=headers) as response:
                async for line in response.content:
                    if line.startswith(b"data: "):
                        return _checked(response, dict(json.loads(line[6:])))
                raise AssertionError("the event stream ended without an event")
        if endpoint == "longpoll":
            async with http.get(f"{server.url}/poll", params={"connect": "1", **query},
                                headers=headers) as response:
                return _checked(response,
                                dict(json.loads((await response.read()).split(b"\n")[0])))
        assert endpoint == "send"
        async with http.post(f"{server.url}/send", params=query, headers=headers,
                             data=b'{"type":"ping"}') as response:
            return _checked(response,
                            dict(json.loads((await response.read()).split(b"\n")[0])))


def _checked(response: aiohttp.ClientResponse, first: dict[str, Any]) -> dict[str, Any]:
    """``first``, the first frame of an HTTP transport's ``response``, once its status is
    checked: 200 for an accepted request, the status of its code for a refusal."""
    expected = REFUSAL_STATUS[first["code"]] if first["type"] == "close" else 200
    assert response.status == expected, (response.status, first)
    return first


def accepted(endpoint: str) -> str:
    """The type of the first frame of an accepted request on ``endpoint``."""
    return "pong" if endpoint == "send" else "welcome"


async def get_ticket(http: aiohttp.ClientSession, server: Any, token: str) -> str:
    async with http.post(f"{server.url}/ticket", headers=bearer(token)) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["ticket"])


# --- tokens ---------------------------------------------------------------------------


def test_mint_and_verify_round_trip() -> None:
    auth = TokenAuth(SECRET)
    before = time.time()
    token = auth.mint("alice", ttl=600, claims={"role": "admin", "rooms": ["a", "b"]})
    identity = auth.verify(token)
    assert identity.subject == "alice"
    assert identity.claims["role"] == "admin" and identity.claims["rooms"] == ["a", "b"]
    assert identity.claims["sub"] == "alice"
    assert before + 600 <= identity.expires_at <= time.time() + 601  # type: ignore[operator]
    assert identity.expires_at == identity.claims["exp"]
    assert unverified(token)["iat"] <= time.time()
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    with pytest.raises(TypeError):
        identity.claims["role"] = "user"  # type: ignore[index]


def test_a_token_without_exp_never_expires() -> None:
    auth = TokenAuth(SECRET)
    identity = auth.verify(plain_jwt({"sub": "alice"}))
    assert identity.expires_at is None
    assert expires_at_of(identity) is None


def test_a_token_minted_by_plain_pyjwt_is_accepted_and_vice_versa() -> None:
    auth = TokenAuth(SECRET.encode())  # bytes work as well as str
    exp = int(time.time()) + 60
    identity = auth.verify(plain_jwt({"sub": "bob", "exp": exp, "team": 7}))
    assert (identity.subject, identity.expires_at, identity.claims["team"]) == ("bob", exp, 7)
    claims = jwt.decode(auth.mint("carol"), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "carol"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (plain_jwt({"sub": "alice", "exp": int(time.time()) - 120}), "token expired"),
        (plain_jwt({"sub": "alice"}, OTHER_SECRET), "token signature is invalid"),
        (plain_jwt({"exp": int(time.time()) + 60}), "token has no 'sub' claim"),
        (plain_jwt({"sub": ""}), "token has an empty 'sub' claim"),
        (plain_jwt({"sub": 42}), "token 'sub' claim must be a string"),
        (plain_jwt({"sub": "alice", "nbf": int(time.time()) + 600}), "token is not valid yet"),
        (plain_jwt({"sub": "alice", "aud": "other-app"}), "token audience is not accepted"),
        (jwt.encode({"sub": "alice"}, SECRET * 2, algorithm="HS512"),
         "token is not signed with HS256"),
        (jwt.encode({"sub": "alice"}, None, algorithm="none"), "token is not signed with HS256"),
        ("not.a.jwt", MALFORMED),
        ("garbage", MALFORMED),
        ("", "empty token"),
    ],
    ids=["expired", "bad-signature", "missing-sub", "empty-sub", "numeric-sub", "not-yet",
         "unexpected-audience", "hs512", "alg-none", "malformed", "garbage", "empty"],
)
def test_bad_tokens_are_refused_with_a_clear_reason(token: str, reason: str) -> None:
    with pytest.raises(rtlink.AuthenticationError) as info:
        TokenAuth(SECRET, leeway=0).verify(token)
    assert str(info.value) == reason


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        # Bytes that are not UTF-8 in an Authorization header reach the hook as lone
        # surrogates: PyJWT raised UnicodeEncodeError.
        ("\udcff\udcfe", "malformed token: not ASCII"),
        ("é.é.é", "malformed token: not ASCII"),
        # A signed exp beyond any float: OverflowError.
        (plain_jwt({"sub": "alice", "exp": 10**400}), "malformed token: 'exp' is out of range"),
    ],
    ids=["surrogates", "non-ascii", "huge-exp"],
)
def test_tokens_that_crashed_the_hook_are_refused(token: str, reason: str) -> None:
    # Found by fuzzing (tests/test_fuzz.py): the hook raised something other than
    # AuthenticationError, so the connection was refused with 1011 (the client retries
    # for ever) and an error was logged, instead of 4500.
    with pytest.raises(rtlink.AuthenticationError) as info:
        TokenAuth(SECRET).verify(token)
    assert str(info.value) == reason


async def test_an_authorization_header_that_is_not_utf8_is_refused_with_4500() -> None:
    async with run_server(authenticate=TokenAuth(SECRET)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /rt/poll?connect=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Authorization: Bearer \xff\xfe\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), seconds(5))
        writer.close()
    expected = refused("malformed token: not ASCII")
    assert answer.endswith(json.dumps(expected, separators=(",", ":")).encode()), answer


def test_leeway_tolerates_a_little_clock_skew() -> None:
    token = plain_jwt({"sub": "alice", "exp": int(time.time()) - 5})
    assert TokenAuth(SECRET, leeway=30).verify(token).subject == "alice"
    with pytest.raises(rtlink.AuthenticationError, match="token expired"):
        TokenAuth(SECRET, leeway=0).verify(token)


def test_issuer_and_audience_are_required_when_configured() -> None:
    auth = TokenAuth(SECRET, issuer="https://login.example", audience="chat")
    token = auth.mint("alice")
    assert unverified(token)["iss"] == "https://login.example"
    assert unverified(token)["aud"] == "chat"
    assert auth.verify(token).subject == "alice"
    cases = {
        TokenAuth(SECRET, issuer="https://evil.example", audience="chat").mint("alice"):
            "token issuer is not accepted",
        TokenAuth(SECRET, issuer="https://login.example", audience="mail").mint("alice"):
            "token audience is not accepted",
        plain_jwt({"sub": "alice", "aud": "chat"}): "token has no 'iss' claim",
        plain_jwt({"sub": "alice", "iss": "https://login.example"}): "token has no 'aud' claim",
    }
    for token, reason in cases.items():
        with pytest.raises(rtlink.AuthenticationError) as info:
            auth.verify(token)
        assert str(info.value) == reason


def test_a_ticket_is_not_a_token() -> None:
    auth = TokenAuth(SECRET)
    ticket = auth.mint_ticket(auth.verify(auth.mint("alice")))
    with pytest.raises(rtlink.AuthenticationError) as info:
        auth.verify(ticket)
    assert str(info.value) == "a ticket is not a token: send it as the 'ticket' query parameter"


@pytest.mark.parametrize("length", [0, 16, MIN_SECRET_BYTES - 1])
def test_a_short_secret_is_refused(length: int) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenAuth("k" * length)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenAuth(b"k" * length)
    # Counted in bytes: 11 three-byte characters are 33 bytes.
    TokenAuth("€" * 11)


def test_other_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="leeway"):
        TokenAuth(SECRET, leeway=-1)
    with pytest.raises(ValueError, match="ticket_ttl"):
        TokenAuth(SECRET, ticket_ttl=0)
    auth = TokenAuth(SECRET)
    with pytest.raises(ValueError, match="subject"):
        auth.mint("")
    with pytest.raises(ValueError, match="ttl"):
        auth.mint("alice", ttl=0)
    with pytest.raises(ValueError, match="claims may not set exp, sub"):
        auth.mint("alice", claims={"sub": "bob", "exp": 1})
    with pytest.raises(ValueError, match="ticket"):
        auth.mint("alice", claims={"typ": TICKET_TYPE})


def test_the_secret_is_never_in_the_repr() -> None:
    assert SECRET not in repr(TokenAuth(SECRET))
    assert "TokenAuth" in repr(TokenAuth(SECRET))


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer   abc.def ") == "abc.def"
    for header in ("Basic abc", "Bearer", "Bearer  ", "abc.def", ""):
        with pytest.raises(rtlink.AuthenticationError, match="must be 'Bearer <token>'"):
            bearer_token(header)


@attrs.frozen
class _User:
    subject: Any
    expires_at: Any = None


def test_subject_of_every_kind_of_identity() -> None:
    assert subject_of(Identity("alice", {"sub": "alice"})) == "alice"
    assert subject_of("bob") == "bob"
    assert subject_of({"sub": "carol"}) == "carol"
    assert subject_of({"sub": 5}) is None
    assert subject_of({}) is None
    assert subject_of(None) is None
    assert subject_of(_User("dave")) == "dave"
    assert subject_of(_User(7)) is None
    assert subject_of(42) is None


def test_expires_at_of_every_kind_of_identity() -> None:
    assert expires_at_of(Identity("alice", {}, 1234.5)) == 1234.5
    assert expires_at_of(_User("dave", 99)) == 99.0
    assert expires_at_of(_User("dave", True)) is None
    assert expires_at_of(_User("dave", "soon")) is None
    assert expires_at_of("alice") is None
    assert expires_at_of(None) is None


def test_a_ticket_carries_the_token_claims_and_never_outlives_it() -> None:
    auth = TokenAuth(SECRET, ticket_ttl=30)
    token = auth.mint("alice", ttl=5, claims={"role": "admin", "jti": "token-id"})
    identity = auth.verify(token)
    ticket = auth.mint_ticket(identity)
    claims = jwt.decode(ticket, SECRET, algorithms=["HS256"])
    assert claims["typ"] == TICKET_TYPE
    assert (claims["sub"], claims["role"]) == ("alice", "admin")
    assert claims["exp"] == claims["rtlink_exp"] == identity.expires_at  # capped by the token
    assert claims["jti"] != "token-id" and len(bytes.fromhex(claims["jti"])) == 16
    longer = jwt.decode(auth.mint_ticket(auth.verify(auth.mint("alice", ttl=600))),
                        SECRET, algorithms=["HS256"])
    assert 30 <= longer["exp"] - time.time() <= 31
    assert longer["jti"] != claims["jti"]


# --- credentials on every transport ------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_transport_refuses_missing_or_bad_credentials_and_accepts_bearer(
    http: aiohttp.ClientSession, endpoint: str
) -> None:
    auth = TokenAuth(SECRET)
    async with run_server(authenticate=auth) as server:
        assert await first_frame(http, server, endpoint) == refused("authentication required")
        forged = TokenAuth(OTHER_SECRET).mint("alice")
        assert await first_frame(http, server, endpoint, headers=bearer(forged)) == refused(
            "token signature is invalid")
        assert await first_frame(http, server, endpoint,
                                 headers={"Authorization": "Basic YTpi"}) == refused(
            "the Authorization header must be 'Bearer <token>'")
        token = auth.mint("alice")
        frame = await first_frame(http, server, endpoint, headers=bearer(token))
        assert frame["type"] == accepted(endpoint)
        # A token in the URL is refused (even next to a good header): URLs end up in logs.
        assert await first_frame(http, server, endpoint, query={"token": token}) == refused(
            "tokens are not accepted in URLs; use a ticket")
        assert await first_frame(http, server, endpoint, headers=bearer(token),
                                 query={"token": token}) == refused(
            "tokens are not accepted in URLs; use a ticket")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_token_in_the_url_only_with_allow_query_token(
    http: aiohttp.ClientSession, endpoint: str
) -> None:
    auth = TokenAuth(SECRET, allow_query_token=True)
    async with run_server(authenticate=auth) as server:
        frame = await first_frame(http, server, endpoint, query={"token": auth.mint("alice")})
        assert frame["type"] == accepted(endpoint)
        assert await first_frame(http, server, endpoint, query={"token": "bad"}) == refused(
            MALFORMED)
        assert await first_frame(http, server, endpoint) == refused("authentication required")


async def test_anonymous_admits_no_credentials_but_not_bad_ones(
    http: aiohttp.ClientSession,
) -> None:
    async with run_server(authenticate=TokenAuth(SECRET, anonymous=True)) as server:
        for endpoint in ENDPOINTS:
            assert (await first_frame(http, server, endpoint))["type"] == accepted(endpoint)
            assert await first_frame(http, server, endpoint,
                                     headers=bearer("bad.token.here")) == refused(
                MALFORMED)


async def test_the_python_client_sends_a_bearer_header_on_every_transport(
    make_client: Any,
) -> None:
    auth = TokenAuth(SECRET)  # refuses tokens in URLs: the client must use the header
    seen: list[tuple[str, str]] = []

    async def authenticate(request: Any) -> Identity | None:
        identity = await auth(request)
        assert identity is not None
        seen.append((request.path, identity.subject))
        return identity

    channels = {"*": rtlink.ChannelOptions(client_publish=True)}
    async with run_server(authenticate=authenticate, channels=channels) as server:
        for transport in ("websocket", "sse", "longpoll"):
            client = make_client(server.url, token=auth.mint("alice"), transports=[transport])
            async with client, client.subscribe("room") as sub:
                await client.publish("room", transport)  # POST /send on HTTP transports
                assert [m.data for m in await collect(sub, 1)] == [transport]
        assert {path for path, _ in seen} == {"/rt/ws", "/rt/sse", "/rt/poll", "/rt/send"}
        assert {subject for _, subject in seen} == {"alice"}


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_the_python_client_reads_refusals_on_every_transport(
    make_client: Any, transport: str,
) -> None:
    # Refusals of the HTTP transports come with 401 (protocol.md 2.6); the client reads
    # the close frame in the body all the same: 4500 stops it with the server's reason,
    # 4003 (a token that has just expired) sends it back with a fresh token.
    auth = TokenAuth(SECRET, leeway=60)
    async with run_server(authenticate=auth) as server:
        client = make_client(server.url, token="not-a-jwt")
        with pytest.raises(rtlink.ClientClosed) as stopped:
            await asyncio.wait_for(client.connect(), seconds(5))
        assert (stopped.value.code, stopped.value.reason) == (4500, MALFORMED)
        tokens = [plain_jwt({"sub": "alice", "exp": int(time.time()) - 5}), auth.mint("alice")]
        client = make_client(server.url, token=lambda: tokens.pop(0) if len(tokens) > 1
                             else tokens[0])
        async with client:
            await asyncio.wait_for(client.connect(), seconds(5))
            assert client.state is rtlink.ConnectionState.CONNECTED


# --- tickets -----------------------------------------------------------------------------


async def test_the_ticket_endpoint(http: aiohttp.ClientSession) -> None:
    auth = TokenAuth(SECRET)
    async with run_server(authenticate=auth) as server:
        url = f"{server.url}/ticket"
        token = auth.mint("alice", ttl=600, claims={"role": "admin"})
        async with http.post(url, headers=bearer(token)) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            assert response.content_type == "application/json"
            body = await response.json()
        assert set(body) == {"ticket", "expires_in"}
        assert body["expires_in"] == 30.0
        claims = jwt.decode(body["ticket"], SECRET, algorithms=["HS256"])
        assert (claims["typ"], claims["sub"], claims["role"]) == (TICKET_TYPE, "alice", "admin")
        assert claims["rtlink_exp"] == unverified(token)["exp"]

        ticket = body["ticket"]
        refusals = [
            ({}, "authentication required: send 'Authorization: Bearer <token>'"),
            (bearer(TokenAuth(OTHER_SECRET).mint("alice")), "token signature is invalid"),
            (bearer(ticket), "a ticket is not a token: send it as the 'ticket' query parameter"),
            (bearer(plain_jwt({"sub": "alice", "exp": int(time.time()) - 5})), "token expired"),
            ({"Authorization": "Basic YTpi"}, "the Authorization header must be 'Bearer <token>'"),
        ]
        for headers, reason in refusals:
            async with http.post(url, headers=headers) as response:
                assert response.status == 401
                assert response.headers["Cache-Control"] == "no-store"
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert await response.json() == {"error": reason}
        async with http.get(url, headers=bearer(token)) as response:
            assert response.status == 405


async def test_the_ticket_endpoint_is_mounted_only_for_token_auth(
    http: aiohttp.ClientSession,
) -> None:
    # Browser clients fall back to ?token= when /ticket answers 404 (a custom hook).
    hooks: list[dict[str, Any]] = [{}, {"authenticate": lambda request: "someone"}]
    for options in hooks:
        async with run_server(**options) as server:
            async with http.post(f"{server.url}/ticket",
                                 headers=bearer(TokenAuth(SECRET).mint("alice"))) as response:
                assert response.status == 404


@pytest.mark.parametrize("endpoint", ["websocket", "sse"])
async def test_a_ticket_opens_one_stream_once(http: aiohttp.ClientSession, endpoint: str) -> None:
    auth = TokenAuth(SECRET)
    async with run_server(authenticate=auth) as server:
        token = auth.mint("alice")
        ticket = await get_ticket(http, server, token)
        assert (await first_frame(http, server, endpoint,
                                  query={"ticket": ticket}))["type"] == "welcome"
        # Used: 4003, get a new ticket (what a browser's EventSource gets when it
        # repeats its first URL after a cut; the status of SSE stops it: 401).
        for again in ("websocket", "sse"):
            assert await first_frame(http, server, again, query={"ticket": ticket}) == renew(
                "ticket already used")
        # A token is not a ticket.
        assert await first_frame(http, server, endpoint, query={"ticket": token}) == refused(
            "not a ticket: send tokens in the Authorization header")
        forged = TokenAuth(OTHER_SECRET).mint_ticket(Identity("alice", {}, None))
        assert await first_frame(http, server, endpoint, query={"ticket": forged}) == refused(
            "ticket signature is invalid")


async def test_a_ticket_is_used_once_across_nodes_sharing_redis(
    http: aiohttp.ClientSession, redis_server: RedisServer
) -> None:
    prefix = f"auth-{secrets.token_hex(4)}"

    def node() -> rtlink.Hub:  # each node has its own TokenAuth with the shared secret
        return rtlink.Hub(RedisBackend(redis_server.url, prefix=prefix),
                          authenticate=TokenAuth(SECRET))

    async with run_server(node()) as a, run_server(node()) as b:
        ticket = await get_ticket(http, a, TokenAuth(SECRET).mint("alice"))
        assert (await first_frame(http, b, "websocket",
                                  query={"ticket": ticket}))["type"] == "welcome"
        for server, endpoint in ((a, "websocket"), (a, "sse"), (b, "sse")):
            assert await first_frame(http, server, endpoint,
                                     query={"ticket": ticket}) == renew("ticket already used")


async def test_a_ticket_is_refused_with_1011_while_the_backend_cannot_claim_it(
    http: aiohttp.ClientSession,
) -> None:
    auth = TokenAuth(SECRET)
    unreachable = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    async with run_server(rtlink.Hub(unreachable, authenticate=auth)) as server:
        ticket = await get_ticket(http, server, auth.mint("alice"))
        # 1011: the client tries again later (with a fresh ticket).
        assert await first_frame(http, server, "websocket", query={"ticket": ticket}) == close(
            rtlink.CloseCode.INTERNAL_ERROR, "authentication failed")


@pytest.mark.slow
async def test_a_ticket_expires_after_ticket_ttl(http: aiohttp.ClientSession) -> None:
    auth = TokenAuth(SECRET, ticket_ttl=1, leeway=0)
    async with run_server(authenticate=auth) as server:
        ticket = await get_ticket(http, server, auth.mint("alice"))
        await asyncio.sleep(unverified(ticket)["exp"] - time.time() + 0.1)
        for endpoint in ("websocket", "sse"):
            assert await first_frame(http, server, endpoint,
                                     query={"ticket": ticket}) == renew("ticket expired")


async def test_a_ticket_without_a_typ_or_jti_is_refused(http: aiohttp.ClientSession) -> None:
    auth = TokenAuth(SECRET)
    exp = int(time.time()) + 30
    cases = {
        plain_jwt({"sub": "alice", "exp": exp, "typ": TICKET_TYPE}): "ticket has no 'jti' claim",
        plain_jwt({"sub": "alice", "jti": "x", "typ": TICKET_TYPE}): "ticket has no 'exp' claim",
        plain_jwt({"sub": "alice", "exp": exp, "jti": "x", "typ": TICKET_TYPE,
                   "rtlink_exp": "never"}): "malformed ticket: 'rtlink_exp' must be a number",
    }
    async with run_server(authenticate=auth) as server:
        for ticket, reason in cases.items():
            assert await first_frame(http, server, "websocket",
                                     query={"ticket": ticket}) == refused(reason)


# --- the Authenticator interface ---------------------------------------------------------


async def test_plain_hooks_are_wrapped_and_authenticators_are_taken_as_they_are() -> None:
    async def coroutine(request: Any) -> str:
        return f"async {request}"

    async def later() -> str:
        return "awaitable"

    hooks: dict[str, Any] = {
        "sync request": lambda request: f"sync {request}",
        "async request": coroutine,
        "awaitable": lambda request: later(),
    }
    for expected, hook in hooks.items():
        authenticator = as_authenticator(hook)
        assert isinstance(authenticator, CallableAuthenticator)
        assert (authenticator.leeway, authenticator.tickets) == (0.0, None)
        authenticator.bind(rtlink.Hub().backend)  # accepted, ignored
        assert await authenticator.authenticate("request") == expected
        assert await authenticator("request") == expected  # still a plain hook
    auth = TokenAuth(SECRET)
    assert as_authenticator(auth) is auth
    assert auth.tickets is auth
    assert rtlink.Hub(authenticate=auth).authenticator is auth
    assert rtlink.Hub().authenticator is None


class _Issuer:
    def issue_ticket(self, token: str) -> tuple[str, float]:
        if token != "let-me-in":
            raise rtlink.AuthenticationError("no ticket for you")
        return "ticket-for-" + token, 5.0


class _Custom(Authenticator):
    """An authenticator of one's own: identities that expire, a leeway, tickets."""

    leeway = 60.0

    def __init__(self) -> None:
        self.backends: list[Any] = []

    def bind(self, backend: Any) -> None:
        self.backends.append(backend)

    @property
    def tickets(self) -> _Issuer:
        return _Issuer()

    async def authenticate(self, request: Any) -> _User:
        age = float(request.query.get("age", "0"))
        return _User("carol", time.time() - age)


async def test_the_hub_and_attach_use_what_a_custom_authenticator_declares(
    http: aiohttp.ClientSession,
) -> None:
    custom = _Custom()
    async with run_server(authenticate=custom) as server:
        assert custom.backends == [server.hub.backend]  # bound when the hub started
        # POST /ticket is answered by its issuer.
        async with http.post(f"{server.url}/ticket", headers=bearer("let-me-in")) as response:
            assert response.status == 200
            assert await response.json() == {"ticket": "ticket-for-let-me-in",
                                             "expires_in": 5.0}
        async with http.post(f"{server.url}/ticket", headers=bearer("no")) as response:
            assert response.status == 401
            assert await response.json() == {"error": "no ticket for you"}
        # Expired within its leeway: refused with 4003 (get fresh credentials).
        assert await first_frame(http, server, "websocket", query={"age": "5"}) == renew(
            "credentials expired; reconnect with fresh ones")
        # Beyond it: refused.
        assert await first_frame(http, server, "websocket", query={"age": "61"}) == refused(
            "credentials expired")


# --- expiry --------------------------------------------------------------------------------


async def test_an_already_expired_identity_is_refused_at_connect(
    http: aiohttp.ClientSession,
) -> None:
    def custom(request: Any) -> _User:  # any hook's identity with an expires_at
        return _User("bob", time.time() - 1)

    async with run_server(authenticate=custom) as server:
        for endpoint in ENDPOINTS:
            assert await first_frame(http, server, endpoint) == refused("credentials expired")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_token_expired_within_the_leeway_is_refused_with_4003(
    http: aiohttp.ClientSession, endpoint: str,
) -> None:
    # E.g. a long poll sent just after the token ran out: the client must reconnect with
    # a fresh token (4003), not stop (4500). Instead of welcome: no connection is opened
    # only to be closed, nothing of a send is handled, and on the HTTP transports the
    # status (401) stops a native EventSource from repeating the stale URL.
    auth = TokenAuth(SECRET, leeway=60)
    stale = plain_jwt({"sub": "alice", "exp": int(time.time()) - 5})
    async with run_server(authenticate=auth) as server:
        assert await first_frame(http, server, endpoint, headers=bearer(stale)) == renew(
            "credentials expired; reconnect with fresh ones")
        # Beyond the leeway it is refused for good.
        very_stale = plain_jwt({"sub": "alice", "exp": int(time.time()) - 61})
        assert await first_frame(http, server, endpoint,
                                 headers=bearer(very_stale)) == refused("token expired")
        assert not server.hub.connections


@pytest.mark.slow
async def test_a_ticket_connection_ends_with_4003_when_the_token_expires(
    http: aiohttp.ClientSession,
) -> None:
    auth = TokenAuth(SECRET, leeway=0)
    async with run_server(authenticate=auth) as server:
        token = auth.mint("alice", ttl=2)
        ticket = await get_ticket(http, server, token)
        url = server.url.replace("http", "ws", 1) + "/ws"
        async with http.ws_connect(url, params={"ticket": ticket}) as ws:
            frames: list[dict[str, Any]] = []
            async with asyncio.timeout(seconds(10)):
                async for message in ws:
                    frames.extend(json.loads(line) for line in message.data.split("\n"))
            assert ws.close_code == 4003
        assert time.time() >= unverified(token)["exp"]
        assert frames[0]["type"] == "welcome"
        assert frames[-1] == close(4003, "credentials expired; reconnect with fresh ones")
        await eventually(lambda: not server.hub.connections, message="connection dropped")


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["json"])  # expiry is the same in both; each takes ~5 s
@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_expiry_closes_with_4003_and_the_client_resumes_with_a_fresh_token(
    make_client: Any, transport: str
) -> None:
    auth = TokenAuth(SECRET)
    minted: list[str] = []

    async def token() -> str:
        minted.append(auth.mint("alice", ttl=2))
        return minted[-1]

    channels = {"*": rtlink.ChannelOptions(history_size=1000)}
    async with run_server(authenticate=auth, channels=channels) as server:
        client = make_client(server.url, token=token)
        changes: list[rtlink.StateChange] = []
        client.on("state", changes.append)
        async with client, client.subscribe("feed") as sub:
            await sub.wait_subscribed()

            def expired_and_back() -> bool:
                return (any(c.code == rtlink.CloseCode.TOKEN_EXPIRED for c in changes)
                        and client.state is S.CONNECTED)

            sent = 0
            async with asyncio.timeout(seconds(20)):
                while not expired_and_back():
                    await server.hub.publish("feed", sent)
                    sent += 1
                    await asyncio.sleep(0.02)
            for _ in range(5):
                await server.hub.publish("feed", sent)
                sent += 1
            assert [m.data for m in await collect(sub, sent)] == list(range(sent))
            expiry = next(c for c in changes if c.code == rtlink.CloseCode.TOKEN_EXPIRED)
            assert expiry.reason == "credentials expired; reconnect with fresh ones"
            assert expiry.new_state is S.DISCONNECTED  # not CLOSED: it reconnected
            assert len(minted) >= 2
            # The connection now runs on the latest token, until that one expires.
            latest = unverified(minted[-1])["exp"]
            await eventually(lambda: any(
                c.transport == transport and c.identity.expires_at == latest
                for c in server.hub.connections), message="a connection on the fresh token")
        # Closed connections leave no expiry timer behind.
        await eventually(lambda: not server.hub._expiry_timers, message="timers cancelled")

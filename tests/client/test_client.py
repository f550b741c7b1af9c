"""The asyncio client against real servers on loopback: states, outbox, errors, events.

Real rtlink servers (or, where a misbehaving server is needed, a tiny aiohttp
WebSocket endpoint written here), real clients, and a TCP relay for network faults.
Tests that exercise the wire run once per codec through the ``make_client`` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

import rtlink
import rtlink.client.core as core_module
from rtlink.backends.base import HistoryPolicy, HistoryResult, PublishResult
from rtlink.backends.memory import MemoryBackend
from tests.support import collect, eventually, relay_to, run_server, seconds, take_offline

S = rtlink.ConnectionState
PUBLISH = {"*": rtlink.ChannelOptions(client_publish=True)}
POLICY = rtlink.ChannelOptions().policy


async def history_data(server: Any, channel: str, epoch: str) -> list[Any]:
    """The data of every publication in ``channel``'s history."""
    result = await server.hub.backend.history(channel, rtlink.Position(epoch, 0), policy=POLICY)
    assert result.recovered
    return [p.data for p in result.publications]


async def drain(subscription: rtlink.Subscription, timeout: float = 2.0) -> list[Any]:
    """Iterate a subscription to its end; fail if it does not end within ``timeout``."""
    async with asyncio.timeout(seconds(timeout)):
        return [message.data async for message in subscription]


# --- connection state -------------------------------------------------------------------


async def test_state_events_through_connect_cut_and_close(make_client) -> None:
    async with run_server() as server, relay_to(server) as relay:
        client = make_client(server.url_via(relay))
        changes: list[rtlink.StateChange] = []
        client.on("state", changes.append)
        assert client.state is S.DISCONNECTED
        assert client.transport is None and client.session_id is None
        try:
            await asyncio.wait_for(client.connect(), seconds(5))
            assert [(c.old_state, c.new_state) for c in changes] == [
                (S.DISCONNECTED, S.CONNECTING),
                (S.CONNECTING, S.CONNECTED),
            ]
            assert client.state is S.CONNECTED
            assert client.transport == "websocket"
            first_session = client.session_id
            assert first_session is not None
            assert first_session in {c.session.id for c in server.hub.connections}

            changes.clear()
            relay.cut()
            await eventually(lambda: bool(changes) and changes[-1].new_state is S.CONNECTED,
                             message="reconnect")
            assert [c.new_state for c in changes] == [S.DISCONNECTED, S.CONNECTING, S.CONNECTED]
            assert changes[0].old_state is S.CONNECTED
            assert changes[0].code == rtlink.CloseCode.ABNORMAL == 1006
            assert client.transport == "websocket"
            assert client.session_id not in (None, first_session)
            assert client.session_id in {c.session.id for c in server.hub.connections}
        finally:
            changes.clear()
            await client.close()
        assert [(c.old_state, c.new_state) for c in changes] == [(S.CONNECTED, S.CLOSED)]
        assert changes[0].code == rtlink.CloseCode.NORMAL
        assert client.state is S.CLOSED
        assert client.transport is None and client.session_id is None
        await client.close()  # idempotent
        assert len(changes) == 1


async def test_state_callback_can_be_removed_and_bad_event_is_refused(make_client) -> None:
    async with run_server() as server:
        client = make_client(server.url)
        seen: list[rtlink.StateChange] = []
        remove = client.on("state", seen.append)

        def broken(change: rtlink.StateChange) -> None:
            raise RuntimeError("a broken callback must not break the client")

        client.on("state", broken)
        async with client:
            assert seen[-1].new_state is S.CONNECTED
            remove()
            remove()  # harmless twice
            count = len(seen)
            still: list[rtlink.StateChange] = []
            client.on("state", still.append)
            client.reconnect()
            await eventually(lambda: bool(still) and still[-1].new_state is S.CONNECTED,
                             message="reconnect")
            assert len(seen) == count
            with pytest.raises(rtlink.InvalidInput, match="bogus"):
                client.on("bogus", seen.append)


# --- outbox -------------------------------------------------------------------------


async def test_offline_outbox_is_bounded_and_flushes_on_reconnect(make_client) -> None:
    async with run_server(channels=PUBLISH) as server, relay_to(server) as relay:
        async with make_client(server.url_via(relay), outbox_limit=3) as client:
            await take_offline(relay, client)
            tasks = [asyncio.create_task(client.publish("chat", n)) for n in range(3)]
            await eventually(lambda: client.outbox_size == 3, message="3 queued publishes")
            with pytest.raises(rtlink.OutboxFull):
                # Immediately: a full outbox never waits for room.
                await asyncio.wait_for(client.publish("chat", 3), seconds(0.5))
            assert client.outbox_size == 3
            await asyncio.sleep(0.1)
            assert not any(task.done() for task in tasks)

            relay.refuse = False
            positions = await asyncio.wait_for(asyncio.gather(*tasks), seconds(10))
            assert [p.offset for p in positions] == [1, 2, 3]
            assert client.outbox_size == 0
            assert await history_data(server, "chat", positions[0].epoch) == [0, 1, 2]
            # Room again.
            assert (await client.publish("chat", 4)).offset == 4


async def test_cancelled_offline_publish_is_withdrawn(make_client) -> None:
    async with run_server(channels=PUBLISH) as server, relay_to(server) as relay:
        async with make_client(server.url) as watcher, \
                make_client(server.url_via(relay)) as publisher:
            watch = watcher.subscribe("chat")
            await watch.wait_subscribed()
            await take_offline(relay, publisher)
            withdrawn = asyncio.create_task(publisher.publish("chat", "withdrawn"))
            kept = asyncio.create_task(publisher.publish("chat", "kept"))
            await eventually(lambda: publisher.outbox_size == 2, message="2 queued publishes")
            withdrawn.cancel()
            with pytest.raises(asyncio.CancelledError):
                await withdrawn
            assert publisher.outbox_size == 1

            relay.refuse = False
            position = await asyncio.wait_for(kept, seconds(10))
            await server.hub.publish("chat", "marker")
            messages = await collect(watch, 2)
            assert [m.data for m in messages] == ["kept", "marker"]
            assert messages[0].position == position
            assert await history_data(server, "chat", position.epoch) == ["kept", "marker"]
            assert publisher.outbox_size == 0


# --- close ----------------------------------------------------------------------------


async def test_close_fails_pending_publishes_and_ends_subscriptions(make_client) -> None:
    async with run_server(channels=PUBLISH) as server, relay_to(server) as relay:
        client = make_client(server.url_via(relay))
        await asyncio.wait_for(client.connect(), seconds(5))
        sub = client.subscribe("chat")
        await sub.wait_subscribed()
        consumer = asyncio.create_task(drain(sub, timeout=10))
        await take_offline(relay, client)
        unconfirmed = client.subscribe("other")  # waits for a connection that never comes
        publishes = [asyncio.create_task(client.publish("chat", n)) for n in range(3)]
        await eventually(lambda: client.outbox_size == 3, message="3 queued publishes")

        await asyncio.wait_for(client.close(), seconds(5))

        assert client.state is S.CLOSED
        for task in publishes:
            with pytest.raises(rtlink.ClientClosed) as info:
                await asyncio.wait_for(task, seconds(2))
            assert info.value.code == rtlink.CloseCode.NORMAL
        assert client.outbox_size == 0
        assert await asyncio.wait_for(consumer, seconds(2)) == []  # the async for ended
        with pytest.raises(StopAsyncIteration):
            await sub.__anext__()
        with pytest.raises(rtlink.ClientClosed):
            await asyncio.wait_for(unconfirmed.wait_subscribed(), seconds(2))
        assert await drain(unconfirmed) == []

        with pytest.raises(rtlink.ClientClosed):
            await client.publish("chat", "late")
        with pytest.raises(rtlink.ClientClosed):
            await client.connect()
        late = client.subscribe("late")
        with pytest.raises(rtlink.ClientClosed):
            await late.wait_subscribed()
        assert await drain(late) == []
        await client.close()  # idempotent


async def test_close_while_connecting_ends_connect(make_client) -> None:
    async with run_server() as server, relay_to(server) as relay:
        relay.refuse = True
        client = make_client(server.url_via(relay))
        connecting = asyncio.create_task(client.connect())
        await eventually(lambda: relay.refuse and client.state is S.DISCONNECTED,
                         message="a failed attempt")
        await asyncio.wait_for(client.close(), seconds(5))
        with pytest.raises(rtlink.ClientClosed):
            await asyncio.wait_for(connecting, seconds(2))
        assert client.state is S.CLOSED


# --- authentication ---------------------------------------------------------------------


def token_checker(calls: list[str | None]) -> Any:
    def authenticate(request: web.Request) -> str:
        # The client sends its token as a Bearer header, never in the URL.
        assert "token" not in request.query
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header else None
        calls.append(token)
        if token != "good":
            raise rtlink.AuthenticationError("bad token")
        return "user"

    return authenticate


@pytest.mark.slow
async def test_unauthorized_client_stops_without_reconnecting(make_client) -> None:
    calls: list[str | None] = []
    async with run_server(authenticate=token_checker(calls)) as server:
        client = make_client(server.url, token="bad")
        changes: list[rtlink.StateChange] = []
        client.on("state", changes.append)
        try:
            with pytest.raises(rtlink.ClientClosed) as info:
                await asyncio.wait_for(client.connect(), seconds(5))
            assert info.value.code == rtlink.CloseCode.UNAUTHORIZED == 4500
            assert "bad token" in info.value.reason
            assert client.state is S.CLOSED
            await asyncio.sleep(0.5)  # several backoff windows (the cap is 0.2 s)
            assert calls == ["bad"]
            assert [c.new_state for c in changes] == [S.CONNECTING, S.CLOSED]
            assert changes[-1].code == 4500
            with pytest.raises(rtlink.ClientClosed):
                await client.publish("chat", 1)
        finally:
            await client.close()


async def test_close_after_the_server_stopped_the_client_releases_its_http_session(
    make_client,
) -> None:
    calls: list[str | None] = []
    async with run_server(authenticate=token_checker(calls)) as server:
        client = make_client(server.url, token="bad")
        with pytest.raises(rtlink.ClientClosed):
            await asyncio.wait_for(client.connect(), seconds(5))
        http = client._http
        assert http is not None
        await client.close()
        assert http.closed, "the client's own aiohttp session was left open"


async def test_token_function_is_called_before_every_connection(make_client) -> None:
    calls: list[str | None] = []
    token_calls = 0

    async def token() -> str:
        nonlocal token_calls
        token_calls += 1
        await asyncio.sleep(0)
        return "good"

    async with run_server(authenticate=token_checker(calls)) as server, \
            relay_to(server) as relay:
        async with make_client(server.url_via(relay), token=token) as client:
            assert token_calls == 1
            for _ in range(2):
                session = client.session_id
                relay.cut()
                await eventually(
                    lambda s=session: client.state is S.CONNECTED and client.session_id != s,
                    message="reconnect",
                )
            assert token_calls >= 3
            assert calls == ["good"] * token_calls


async def test_plain_token_function_and_failing_token_function(make_client) -> None:
    calls: list[str | None] = []
    attempts = 0

    def token() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("token service unavailable")
        return "good"

    async with run_server(authenticate=token_checker(calls)) as server:
        client = make_client(server.url, token=token)
        try:
            # A failing token source is a failed attempt, retried with backoff.
            await asyncio.wait_for(client.connect(), seconds(5))
            assert attempts == 3
            assert calls == ["good"]
        finally:
            await client.close()


# --- publish errors -----------------------------------------------------------------------


async def test_forbidden_publish_fails_for_good_and_connection_stays_usable(make_client) -> None:
    channels = {"news:*": rtlink.ChannelOptions(), "*": rtlink.ChannelOptions(client_publish=True)}
    async with run_server(channels=channels) as server:
        async with make_client(server.url) as client:
            session = client.session_id
            with pytest.raises(rtlink.PublishError) as info:
                await asyncio.wait_for(client.publish("news:today", "hi"), seconds(5))
            assert info.value.code == rtlink.ErrorCode.FORBIDDEN == 403
            assert info.value.temporary is False
            assert client.outbox_size == 0

            async with client.subscribe("news:today") as sub:
                await server.hub.publish("news:today", "from the server")
                assert [m.data for m in await collect(sub, 1)] == ["from the server"]
            assert (await client.publish("chat", "fine")).offset == 1
            assert client.session_id == session
            assert client.state is S.CONNECTED
            nothing = await server.hub.backend.history("news:today", None, policy=POLICY)
            assert nothing.position.offset == 1  # only the server's publication


async def test_too_large_publish_fails_locally_without_reconnecting(make_client) -> None:
    async with run_server(channels=PUBLISH, max_message_size=2048) as server, \
            relay_to(server) as relay:
        async with make_client(server.url_via(relay)) as client:
            session = client.session_id
            connections = relay.connections_made
            with pytest.raises(rtlink.PublishError) as info:
                await asyncio.wait_for(client.publish("chat", "x" * 5000), seconds(5))
            assert info.value.code == rtlink.ErrorCode.TOO_LARGE == 413
            assert info.value.temporary is False
            assert client.outbox_size == 0
            assert (await client.publish("chat", "small")).offset == 1
            assert client.state is S.CONNECTED
            assert client.session_id == session
            assert relay.connections_made == connections


async def test_batches_of_publishes_respect_the_servers_message_size(make_client) -> None:
    # Each publish fits the limit alone; batching must never put two in one message.
    async with run_server(channels=PUBLISH, max_message_size=2048) as server, \
            relay_to(server) as relay:
        async with make_client(server.url_via(relay)) as client:
            session = client.session_id
            positions = await asyncio.wait_for(
                asyncio.gather(*(client.publish("chat", f"{n:04}" + "x" * 1200)
                                 for n in range(20))),
                seconds(5),
            )
            assert sorted(p.offset for p in positions) == list(range(1, 21))
            assert client.session_id == session
            assert relay.connections_made == 1


@pytest.mark.parametrize("options", [{"codec": "xml"}, {"transports": ["carrier-pigeon"]},
                                     {"transports": []}, {"outbox_limit": 0}])
def test_invalid_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(rtlink.InvalidInput):
        rtlink.Client("http://127.0.0.1:1/rt", **options)


async def test_invalid_input_is_refused_locally(make_client) -> None:
    async with run_server(channels=PUBLISH) as server:
        async with make_client(server.url) as client:
            for channel in ("bad channel", "", "a*", "x" * 256):
                with pytest.raises(rtlink.InvalidInput):
                    await client.publish(channel, 1)
                with pytest.raises(rtlink.InvalidInput):
                    client.subscribe(channel)
            for data in (float("nan"), float("inf"), b"bytes", {1: "int key"}, {"a": object()}):
                with pytest.raises(rtlink.InvalidInput):
                    await client.publish("chat", data)
            for key in ("", "k" * 129, "\udfff"):
                with pytest.raises(rtlink.InvalidInput, match="key"):
                    await client.publish("chat", 1, key=key)
            assert client.outbox_size == 0
            sub = client.subscribe("chat")
            with pytest.raises(rtlink.InvalidInput, match="already subscribed"):
                client.subscribe("chat")
            await sub.wait_subscribed()
            with pytest.raises(rtlink.InvalidInput, match="already subscribed"):
                client.subscribe("chat")
            # The first subscription is unaffected.
            await server.hub.publish("chat", "ok")
            assert [m.data for m in await collect(sub, 1)] == ["ok"]
            assert client.session_id is not None and client.state is S.CONNECTED


# --- subscribe errors ---------------------------------------------------------------------


def _allow_sync(identity: Any, channel: str) -> bool:
    return channel != "secret"


async def _allow_async(identity: Any, channel: str) -> bool:
    await asyncio.sleep(0.001)
    return channel != "secret"


@pytest.mark.parametrize("hook", [_allow_sync, _allow_async], ids=["sync", "async"])
async def test_refused_subscription_fails_and_others_are_unaffected(make_client, hook) -> None:
    async with run_server(authorize_subscribe=hook) as server:
        async with make_client(server.url) as client:
            async with client.subscribe("public") as public:
                with pytest.raises(rtlink.SubscribeError) as info:
                    async with client.subscribe("secret"):
                        pytest.fail("entered a refused subscription")
                assert info.value.code == rtlink.ErrorCode.FORBIDDEN == 403
                assert info.value.temporary is False

                # A refused subscription is forgotten: subscribing again is allowed.
                secret = client.subscribe("secret")
                errors: list[Exception] = []
                secret.on("error", errors.append)
                with pytest.raises(rtlink.SubscribeError):
                    await asyncio.wait_for(secret.wait_subscribed(), seconds(5))
                for _ in range(2):  # iterating keeps failing, it never hangs
                    with pytest.raises(rtlink.SubscribeError) as info:
                        await asyncio.wait_for(secret.__anext__(), seconds(1))
                    assert info.value.code == 403
                assert len(errors) == 1 and isinstance(errors[0], rtlink.SubscribeError)

                await server.hub.publish("secret", "hidden")
                await server.hub.publish("public", "visible")
                assert [m.data for m in await collect(public, 1)] == ["visible"]
                assert client.state is S.CONNECTED
                await secret.unsubscribe()  # harmless on a failed subscription


async def test_unknown_channel_is_refused_with_404(make_client) -> None:
    async with run_server(channels={"chat:*": rtlink.ChannelOptions()}) as server:
        async with make_client(server.url) as client:
            with pytest.raises(rtlink.SubscribeError) as info:
                async with client.subscribe("other"):
                    pytest.fail("entered a refused subscription")
            assert info.value.code == rtlink.ErrorCode.UNKNOWN_CHANNEL == 404
            async with client.subscribe("chat:lobby") as sub:
                await server.hub.publish("chat:lobby", "hello")
                assert [m.data for m in await collect(sub, 1)] == ["hello"]


# --- temporary errors -------------------------------------------------------------------


class FlakyBackend(MemoryBackend):
    """A memory backend whose publish fails with BackendUnavailable while ``down``."""

    def __init__(self) -> None:
        super().__init__(sweep_interval=None)
        self.down = False
        self.refused = 0
        self.accepted: list[tuple[str, object, str | None]] = []

    async def publish(self, channel: str, data: object, *, key: str | None,
                      policy: HistoryPolicy) -> PublishResult:
        if self.down:
            self.refused += 1
            raise rtlink.BackendUnavailable("down")
        self.accepted.append((channel, data, key))
        return await super().publish(channel, data, key=key, policy=policy)


@pytest.mark.slow
async def test_temporary_publish_error_is_retried_until_it_succeeds_once(make_client) -> None:
    backend = FlakyBackend()
    backend.down = True
    async with run_server(backend=backend, channels=PUBLISH) as server:
        async with make_client(server.url) as client:
            session = client.session_id
            publish = asyncio.create_task(client.publish("chat", "once"))
            await eventually(lambda: backend.refused >= 3, message="retries")
            assert not publish.done()  # pending, not failed
            assert client.outbox_size == 1

            backend.down = False
            position = await asyncio.wait_for(publish, seconds(5))
            assert position.offset == 1
            await asyncio.sleep(0.5)  # any stray retry would show up now
            assert len(backend.accepted) == 1
            assert await history_data(server, "chat", position.epoch) == ["once"]
            assert client.outbox_size == 0
            assert client.session_id == session  # retried on the same connection


class RefusingBackend(MemoryBackend):
    """A memory backend that refuses the next ``refuse_publishes`` publishes and the
    next ``refuse_reads`` history reads (as subscribe does) with BackendUnavailable."""

    def __init__(self) -> None:
        super().__init__(sweep_interval=None)
        self.refuse_publishes = self.refuse_reads = 0
        self.refused: list[str | None] = []  # keys of the refused publishes, in order
        self.accepted: list[str | None] = []
        self.refused_reads: list[str] = []

    async def publish(self, channel: str, data: object, *, key: str | None,
                      policy: HistoryPolicy) -> PublishResult:
        if self.refuse_publishes:
            self.refuse_publishes -= 1
            self.refused.append(key)
            raise rtlink.BackendUnavailable("down")
        self.accepted.append(key)
        return await super().publish(channel, data, key=key, policy=policy)

    async def history(self, channel: str, since: rtlink.Position | None, *,
                      policy: HistoryPolicy) -> HistoryResult:
        if self.refuse_reads:
            self.refuse_reads -= 1
            self.refused_reads.append(channel)
            raise rtlink.BackendUnavailable("down")
        return await super().history(channel, since, policy=policy)


class RetryRounds:
    """Stands in for the client's backoff function (pure): records the attempt of every
    delay asked for and answers a fixed delay, so the test sees each retry round."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.attempts: list[int] = []

    def __call__(self, attempt: int, base: float, cap: float) -> float:
        self.attempts.append(attempt)
        return self.delay


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
@pytest.mark.slow
async def test_a_burst_of_refused_publishes_is_retried_in_rounds(
    make_client, transport: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rounds = RetryRounds(seconds(0.1))
    monkeypatch.setattr(core_module, "full_jitter", rounds)
    backend = RefusingBackend()
    backend.refuse_publishes = 15  # the batch of five, three times
    keys = [f"k{n}" for n in range(5)]
    async with run_server(backend=backend, channels=PUBLISH) as server:
        async with make_client(server.url) as client:
            session = client.session_id
            publishes = [asyncio.create_task(client.publish("chat", n, key=key))
                         for n, key in enumerate(keys)]
            async with asyncio.timeout(seconds(10)):
                positions = await asyncio.gather(*publishes)
            # One retry per round of five refusals, the attempt growing per round (a
            # retry per refused frame would have resent the batch five times a round).
            assert rounds.attempts == [0, 1, 2]
            assert backend.refused == keys * 3
            assert backend.accepted == keys
            assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
            # The acks started the backoff over.
            backend.refuse_publishes = 1
            async with asyncio.timeout(seconds(10)):
                assert (await client.publish("chat", 5, key="k5")).offset == 6
            assert rounds.attempts == [0, 1, 2, 0]
            assert client.session_id == session  # all on the same connection


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
@pytest.mark.slow
async def test_refused_subscriptions_are_retried_together_in_rounds(
    make_client, transport: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rounds = RetryRounds(seconds(0.1))
    monkeypatch.setattr(core_module, "full_jitter", rounds)
    backend = RefusingBackend()
    backend.refuse_reads = 6  # the three channels, twice
    channels = ["a", "b", "c"]
    async with run_server(backend=backend) as server:
        client = make_client(server.url)
        subscriptions = [client.subscribe(channel) for channel in channels]
        async with client:
            async with asyncio.timeout(seconds(10)):
                for subscription in subscriptions:
                    await subscription.wait_subscribed()
            assert rounds.attempts == [0, 1]
            assert sorted(backend.refused_reads) == sorted(channels * 2)
            await server.hub.publish("b", "after the retries")
            assert [m.data for m in await collect(subscriptions[1], 1)] == ["after the retries"]
            # A confirmation started the backoff over.
            backend.refuse_reads = 1
            late = client.subscribe("d")
            async with asyncio.timeout(seconds(10)):
                await late.wait_subscribed()
            assert rounds.attempts == [0, 1, 0]


# --- misbehaving servers ------------------------------------------------------------------


class FakeServer:
    """A bare aiohttp WebSocket endpoint at ``/rt/ws`` that is not rtlink."""

    def __init__(self, first: str) -> None:
        self.first = first
        self.connections = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("rtlink.v1.json",))
        await ws.prepare(request)
        self.connections += 1
        await ws.send_str(self.first)
        async for _ in ws:  # then silence: read and ignore everything
            pass
        return ws


@contextlib.asynccontextmanager
async def fake_server(first: str) -> AsyncIterator[FakeServer]:
    fake = FakeServer(first)
    app = web.Application()
    app.router.add_get("/rt/ws", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}/rt"
    try:
        yield fake
    finally:
        await runner.cleanup()


WELCOME = json.dumps({"type": "welcome", "version": 1, "session": "s", "ping_interval": 0.2,
                      "pong_timeout": 0.2, "max_message_size": 65536})


async def test_silent_server_is_detected_by_heartbeat_timeout() -> None:
    async with fake_server(WELCOME) as fake:
        client = rtlink.Client(fake.url, codec="json", backoff_base=0.02, backoff_cap=0.2)
        changes: list[rtlink.StateChange] = []
        client.on("state", changes.append)
        try:
            await asyncio.wait_for(client.connect(), seconds(5))
            assert client.session_id == "s"
            await eventually(
                lambda: any(c.new_state is S.DISCONNECTED for c in changes),
                timeout=2.0, message="heartbeat timeout",
            )
            dropped = next(c for c in changes if c.new_state is S.DISCONNECTED)
            assert dropped.code == rtlink.CloseCode.HEARTBEAT_TIMEOUT == 4000
            assert dropped.old_state is S.CONNECTED
            await eventually(lambda: fake.connections >= 2, timeout=2.0, message="reconnect")
        finally:
            await client.close()


@pytest.mark.parametrize("first", ['{"type":"ack","id":1}', "not json at all"],
                         ids=["ack-first", "garbage"])
async def test_server_without_welcome_is_retried_never_connected(first: str) -> None:
    async with fake_server(first) as fake:
        client = rtlink.Client(fake.url, codec="json", backoff_base=0.02, backoff_cap=0.1)
        changes: list[rtlink.StateChange] = []
        client.on("state", changes.append)
        connecting = asyncio.create_task(client.connect())
        try:
            await eventually(lambda: fake.connections >= 3, message="retries")
            assert not connecting.done()
            assert all(c.new_state is not S.CONNECTED for c in changes)
            assert client.state in (S.CONNECTING, S.DISCONNECTED)
            drops = [c for c in changes if c.new_state is S.DISCONNECTED]
            assert drops and all(c.code == rtlink.CloseCode.ABNORMAL for c in drops)
        finally:
            await client.close()
        with pytest.raises(rtlink.ClientClosed):
            await asyncio.wait_for(connecting, seconds(2))


# --- reconnect, unsubscribe, callbacks -----------------------------------------------------


async def test_reconnect_resumes_subscriptions_without_loss_or_duplicates(make_client) -> None:
    async with run_server() as server:
        async with make_client(server.url) as client:
            async with client.subscribe("news") as sub, client.subscribe("sports") as other:
                await server.hub.publish("news", "before")
                assert [m.data for m in await collect(sub, 1)] == ["before"]
                session = client.session_id
                changes: list[rtlink.StateChange] = []
                client.on("state", changes.append)

                client.reconnect()
                await server.hub.publish("news", "during")
                await eventually(
                    lambda: client.state is S.CONNECTED and client.session_id != session,
                    message="reconnect",
                )
                await server.hub.publish("news", "after")
                await server.hub.publish("sports", "goal")
                assert [m.data for m in await collect(sub, 2)] == ["during", "after"]
                assert [m.data for m in await collect(other, 1)] == ["goal"]
                await server.hub.publish("news", "end")
                assert [m.data for m in await collect(sub, 1)] == ["end"]  # nothing doubled
                assert [c.new_state for c in changes] == [S.DISCONNECTED, S.CONNECTING,
                                                          S.CONNECTED]
                assert len(server.hub.connections) == 1


async def test_unsubscribe_stops_delivery_and_leaves_the_channel(make_client) -> None:
    async with run_server() as server:
        async with make_client(server.url) as client:
            other = client.subscribe("other")
            sub = client.subscribe("news")
            await asyncio.wait_for(asyncio.gather(sub.wait_subscribed(),
                                                  other.wait_subscribed()), seconds(5))
            assert "news" in server.hub._live
            await server.hub.publish("news", 1)
            assert [m.data for m in await collect(sub, 1)] == [1]

            await sub.unsubscribe()
            await eventually(lambda: "news" not in server.hub._live, message="server unsubscribe")
            await server.hub.publish("news", 2)
            await server.hub.publish("other", "marker")  # arrives after news 2 would have
            assert [m.data for m in await collect(other, 1)] == ["marker"]
            assert await drain(sub) == []  # iteration ended, 2 never delivered
            assert "other" in server.hub._live
            await sub.unsubscribe()  # twice is harmless

            # The channel can be subscribed again, with a fresh subscription.
            async with client.subscribe("news") as again:
                await server.hub.publish("news", 3)
                assert [m.data for m in await collect(again, 1)] == [3]
            await eventually(lambda: "news" not in server.hub._live, message="async with exit")
            assert client.state is S.CONNECTED


async def test_unsubscribe_before_confirmation(make_client) -> None:
    async with run_server() as server:
        async with make_client(server.url) as client:
            sub = client.subscribe("news")
            await sub.unsubscribe()  # the subscribe request is still in flight
            assert await drain(sub) == []
            async with client.subscribe("marker") as marker:
                await server.hub.publish("news", "late")
                await server.hub.publish("marker", "m")
                assert [m.data for m in await collect(marker, 1)] == ["m"]
            await eventually(lambda: not server.hub._live, message="no live channel left")


async def test_message_callbacks_see_what_iteration_sees(make_client) -> None:
    async with run_server() as server:
        async with make_client(server.url) as client:
            sub = client.subscribe("news")
            got: list[rtlink.Message] = []
            events: list[rtlink.SubscribedEvent] = []
            remove = sub.on("message", got.append)
            sub.on("subscribed", events.append)

            def broken(message: rtlink.Message) -> None:
                raise RuntimeError("a broken callback must not break delivery")

            sub.on("message", broken)
            await asyncio.wait_for(sub.wait_subscribed(), seconds(5))
            assert len(events) == 1 and events[0].recovered and not events[0].resumed

            for n in range(5):
                await server.hub.publish("news", n)
            iterated = await collect(sub, 5)
            assert [m.data for m in iterated] == list(range(5))
            assert got == iterated

            remove()
            remove()
            for n in range(5, 8):
                await server.hub.publish("news", n)
            assert [m.data for m in await collect(sub, 3)] == [5, 6, 7]
            assert got == iterated  # no calls after removal

            with pytest.raises(rtlink.InvalidInput, match="bogus"):
                sub.on("bogus", got.append)
            with pytest.raises(rtlink.InvalidInput, match="bogus"):
                client.on("bogus", got.append)


async def test_subscribe_from_a_connected_callback_subscribes_once(make_client) -> None:
    async with run_server() as server:
        client = make_client(server.url)
        subs: list[rtlink.Subscription] = []

        def on_state(change: rtlink.StateChange) -> None:
            if change.new_state is S.CONNECTED and not subs:
                subs.append(client.subscribe("news"))

        client.on("state", on_state)
        async with client:
            sub = subs[0]
            await asyncio.wait_for(sub.wait_subscribed(), seconds(5))
            await server.hub.publish("news", "hello")
            assert [m.data for m in await collect(sub, 1)] == ["hello"]
            await asyncio.sleep(0.1)
            await server.hub.publish("news", "again")
            assert [m.data for m in await collect(sub, 1)] == ["again"]


# --- HTTP transports ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
@pytest.mark.slow
async def test_http_transport_client_stays_connected_through_server_pings(
        make_client, transport: str) -> None:
    """Pings need no answer on SSE (6.6): the client must not treat the empty answer
    to a pong it might send as a failed connection."""
    async with run_server(ping_interval=0.2, pong_timeout=1.0, poll_timeout=0.2) as server:
        async with make_client(server.url) as client:
            changes: list[Any] = []
            client.on("state", changes.append)
            await asyncio.sleep(seconds(1.2))
            assert changes == []
            assert client.transport == transport


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
@pytest.mark.slow
async def test_subscribe_while_the_http_request_is_on_its_way(make_client, transport: str) -> None:
    """A subscription made after the stream/poll request left, before its welcome,
    is carried by a new request once connected."""
    requests = 0

    async def slow_authenticate(request: web.Request) -> None:
        nonlocal requests
        requests += 1
        await asyncio.sleep(seconds(0.3))

    async with run_server(authenticate=slow_authenticate, channels=PUBLISH) as server:
        client = make_client(server.url)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(client.close)
            connecting = asyncio.ensure_future(client.connect())
            await eventually(lambda: requests == 1)  # the first request is being handled
            subscription = client.subscribe("late")
            await connecting
            await subscription.wait_subscribed()
            await server.hub.publish("late", "hello")
            assert [m.data for m in await collect(subscription, 1, timeout=5)] == ["hello"]


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
@pytest.mark.slow
async def test_http_transport_refusal_of_a_confirmed_channel_ends_it(
        make_client, transport: str) -> None:
    """Every stream/poll subscribes again: a channel confirmed before and refused now
    (permission revoked) fails for good and leaves the cursor, instead of being
    re-requested (on long polling: a poll answered at once, over and over)."""
    allowed = {"news", "other"}
    checks: list[str] = []

    def authorize(identity: object, channel: str) -> bool:
        checks.append(channel)
        return channel in allowed

    async with run_server(authorize_subscribe=authorize, poll_timeout=0.3,
                          ping_interval=0.3) as server:
        async with make_client(server.url) as client:
            news = client.subscribe("news")
            await news.wait_subscribed()
            errors: list[Exception] = []
            news.on("error", errors.append)
            allowed.discard("news")
            other = client.subscribe("other")  # a new stream/poll asks for both again
            await other.wait_subscribed()
            await eventually(lambda: errors != [])
            assert isinstance(errors[0], rtlink.SubscribeError) and errors[0].code == 403
            refused = checks.count("news")
            await asyncio.sleep(seconds(1))
            assert checks.count("news") == refused  # not asked again
            await server.hub.publish("other", 1)
            assert [m.data for m in await collect(other, 1)] == [1]


async def test_close_says_goodbye_with_1000_on_websocket() -> None:
    # Regression: close() began aiohttp's close handshake, which ends the read of the
    # connection loop, and that loop then aborted the socket before the close frame
    # went out: the server saw 1006 (abnormal) instead of 1000.
    async with run_server() as server:
        client = rtlink.Client(server.url, transports=["websocket"])
        await client.connect()
        await client.close()
        await eventually(lambda: bool(server.hub.stats.closed),
                         message="the server to see the close")
        assert server.hub.stats.closed == {("websocket", "1000"): 1}

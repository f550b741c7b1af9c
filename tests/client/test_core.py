"""The client's core (protocol.md 8.3-8.5): subscriptions, outbox, requests, and what
each frame means. Plain calls, no event loop: the test plays the runner and the server.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any

import pytest

import rtlink.client.core as core_module
from rtlink.client.core import ClientCore, HistoryRead
from rtlink.client.subscription import (
    Message,
    SubscribedEvent,
    Subscription,
    UnsubscribedEvent,
)
from rtlink.codecs import CODECS
from rtlink.codes import CloseCode, ErrorCode
from rtlink.errors import (
    ClientClosed,
    FrameError,
    InvalidInput,
    OutboxFull,
    PublishError,
    ReadError,
    RtlinkError,
    SubscribeError,
)
from rtlink.positions import Position
from rtlink.protocol import (
    Ack,
    Close,
    Error,
    HistoryPage,
    Ping,
    Publication,
    Subscribed,
    Unsubscribed,
    Welcome,
)

E5 = Position("e", 5)


class Runner:
    """Plays the asyncio client: records what the core asks for."""

    def __init__(self, **options: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self.changed = 0
        self.retries: list[tuple[str, float]] = []
        self.core = ClientCore(
            CODECS["json"], send=lambda message: self.sent.append(json.loads(message)),
            subscriptions_changed=self.subscriptions_changed,
            retry_later=lambda kind, delay: self.retries.append((kind, delay)), **options,
        )

    def subscriptions_changed(self) -> None:
        self.changed += 1

    def take(self, *types: str) -> list[dict[str, Any]]:
        """The frames sent since the last take (of ``types``, if given)."""
        sent, self.sent = self.sent, []
        return [frame for frame in sent if not types or frame["type"] in types]

    def connect(self, carries: bool = False, channels: tuple[str, ...] = (),
                **welcome: Any) -> None:
        fields: dict[str, Any] = {"session": "s", "ping_interval": 25, "pong_timeout": 10,
                                  "max_message_size": 65536, **welcome}
        assert self.core.start(Welcome(**fields), carries, channels) is None

    def subscribe(self, channel: str = "chat", since: Position | None = None) -> Recorder:
        subscription = Subscription(channel, since, self.core.unsubscribe)
        self.core.subscribe(subscription)
        return Recorder(subscription)

    def publish(self, channel: str = "chat", data: Any = 1,
                key: str | None = None) -> Future[Position]:
        result: Future[Position] = Future()
        self.core.publish(channel, data, key, result)
        return result


class Recorder:
    """A subscription and what it told the application."""

    def __init__(self, subscription: Subscription) -> None:
        self.sub = subscription
        self.messages: list[Message] = []
        self.events: list[SubscribedEvent] = []
        self.errors: list[RtlinkError] = []
        subscription.on("message", self.messages.append)
        subscription.on("subscribed", self.events.append)
        subscription.on("error", self.errors.append)

    @property
    def offsets(self) -> list[str]:
        return [str(message.position) for message in self.messages]


@pytest.fixture
def runner() -> Runner:
    return Runner()


def confirmed(runner: Runner, since: Position | None = None, position: Position = E5,
              recovered: bool = True) -> Recorder:
    """A subscription to "chat" on a WebSocket-like connection, confirmed at ``position``."""
    recorder = runner.subscribe("chat", since)
    runner.connect()
    [subscribe] = runner.take("subscribe")
    runner.core.receive(Subscribed(subscribe["id"], "chat", recovered, position))
    return recorder


def publication(offset: int, epoch: str = "e", channel: str = "chat") -> Publication:
    return Publication(channel, offset, Position(epoch, offset))


# --- connecting -------------------------------------------------------------------------


def test_first_frame_must_be_a_welcome_of_this_version(runner: Runner) -> None:
    core = runner.core
    assert core.start(Close(4500, "who are you"), False) == (4500, "who are you")
    assert core.start(Ping(), False) == (
        CloseCode.ABNORMAL, "server sent an invalid message: the first frame must be welcome")
    assert core.start(FrameError("bad welcome"), False)[0] == CloseCode.ABNORMAL  # type: ignore[index]
    assert core.start(Welcome("s", 1, 1, 100, version=2), False) == (
        CloseCode.UNSUPPORTED_PROTOCOL, "server speaks protocol version 2")
    assert not core.connected
    runner.connect()
    assert core.connected and core.welcome is not None and core.welcome.session == "s"


def test_welcome_subscribes_everything_and_sends_the_outbox(runner: Runner) -> None:
    runner.subscribe("a", since=E5)
    runner.subscribe("b")
    runner.publish("a", "offline", key="k1")
    assert runner.take() == []  # nothing before welcome
    runner.connect()
    assert runner.take() == [
        {"type": "subscribe", "id": 1, "channel": "a", "since": E5.to_wire()},
        {"type": "subscribe", "id": 2, "channel": "b"},
        {"type": "publish", "id": 3, "channel": "a", "data": "offline", "key": "k1"},
    ]


def test_http_transports_get_a_new_request_only_if_the_channels_changed(runner: Runner) -> None:
    runner.subscribe("a")
    runner.connect(carries=True, channels=("a",))
    assert (runner.changed, runner.take()) == (0, [])
    runner.core.end()
    runner.subscribe("b")  # while the request (with "a" only) was on its way
    runner.connect(carries=True, channels=("a",))
    assert runner.changed == 1
    assert runner.core.cursor() == {"a": None, "b": None}


# --- subscriptions ----------------------------------------------------------------------


def test_a_fresh_subscription_adopts_the_position_of_subscribed(runner: Runner) -> None:
    chat = confirmed(runner)
    assert chat.sub.position == E5 and chat.sub.active and chat.sub.recovered
    assert chat.events == [SubscribedEvent(recovered=True, resumed=False, position=E5)]


def test_a_resumed_and_recovered_subscription_keeps_its_position(runner: Runner) -> None:
    chat = confirmed(runner, since=Position("e", 2))
    assert chat.sub.position == Position("e", 2)  # the replay (3, 4, 5) moves it on
    assert chat.events == [SubscribedEvent(True, True, E5)]
    for offset in (3, 4, 5):
        runner.core.receive(publication(offset))
    assert chat.offsets == ["e:3", "e:4", "e:5"]


def test_an_unrecovered_resume_adopts_the_channels_position(runner: Runner) -> None:
    chat = confirmed(runner, since=Position("old", 2), position=Position("new", 7),
                     recovered=False)
    assert (chat.sub.position, chat.sub.recovered) == (Position("new", 7), False)
    assert chat.events == [SubscribedEvent(False, True, Position("new", 7))]


def test_repeats_are_dropped_by_offset_and_new_epochs_adopted(
    runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    chat = confirmed(runner)
    for frame in (publication(3), publication(5), publication(6), publication(6),
                  publication(4), publication(7), publication(1, "f"), publication(1, "f"),
                  publication(2, "f"), publication(9, "g"), publication(8, "g")):
        runner.core.receive(frame)
    assert chat.offsets == ["e:6", "e:7", "f:1", "f:2", "g:9"]
    assert chat.sub.position == Position("g", 9)
    # Only the epoch that did not start at 1 is worth a warning.
    assert [r.message for r in caplog.records if "epoch changed" in r.message] == [
        "channel chat: history epoch changed from f to g mid-stream"]


def test_publications_not_subscribed_or_not_confirmed_are_dropped(runner: Runner) -> None:
    chat = runner.subscribe("chat")
    runner.connect()
    runner.core.receive(publication(1))  # before subscribed
    runner.core.receive(publication(1, channel="other"))
    assert chat.messages == []


def test_reconfirmations_on_http_transports_are_not_reported(runner: Runner) -> None:
    chat = runner.subscribe("chat")
    runner.connect(carries=True, channels=("chat",))
    runner.core.receive(Subscribed(None, "chat", True, E5))
    runner.core.receive(Subscribed(None, "chat", True, Position("e", 6)))  # next poll
    assert chat.events == [SubscribedEvent(True, False, E5)]
    runner.core.receive(Subscribed(None, "chat", False, Position("f", 0)))  # history lost
    assert chat.events[-1] == SubscribedEvent(False, True, Position("f", 0))
    assert chat.sub.position == Position("f", 0)


def test_subscribe_unsubscribe_while_connected(runner: Runner) -> None:
    runner.connect()
    chat = runner.subscribe("chat")
    [subscribe] = runner.take()
    assert (subscribe["type"], chat.sub.request_id) == ("subscribe", subscribe["id"])
    chat.sub._unsubscribe(chat.sub)
    assert runner.take() == [{"type": "unsubscribe", "id": subscribe["id"] + 1,
                              "channel": "chat"}]
    assert "chat" not in runner.core.subscriptions
    assert subscribe["id"] not in runner.core.requests  # a late answer is ignored
    # On an HTTP transport the subscription set travels in a new request instead.
    runner.core.end()
    runner.connect(carries=True)
    news = runner.subscribe("news")
    news.sub._unsubscribe(news.sub)
    assert (runner.changed, runner.take()) == (2, [])


def test_invalid_or_second_subscriptions_are_refused_locally(runner: Runner) -> None:
    runner.subscribe("chat")
    for channel in ("chat", "a b", "", "x" * 256, "news*", 5):
        with pytest.raises(InvalidInput):
            runner.subscribe(channel)  # type: ignore[arg-type]
    assert list(runner.core.subscriptions) == ["chat"]


def test_a_permanent_refusal_ends_the_subscription(runner: Runner) -> None:
    chat = runner.subscribe("chat")
    runner.connect()
    [subscribe] = runner.take()
    runner.core.receive(Error(ErrorCode.FORBIDDEN, "no", subscribe["id"]))
    assert "chat" not in runner.core.subscriptions
    [error] = chat.errors
    assert isinstance(error, SubscribeError) and (error.code, error.temporary) == (403, False)


def test_temporary_refusals_are_retried_in_rounds(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_module, "full_jitter", lambda attempt, base, cap: attempt + 0.5)
    a, b = runner.subscribe("a"), runner.subscribe("b")
    runner.connect()
    first = runner.take()
    for frame in first:
        runner.core.receive(Error(ErrorCode.BACKEND_UNAVAILABLE, "later", frame["id"]))
    assert runner.retries == [("resubscribe", 0.5)]  # one round for the burst
    assert a.sub.held and b.sub.held
    runner.core.retry("resubscribe")
    again = runner.take()
    assert [f["channel"] for f in again] == ["a", "b"]
    runner.core.receive(Error(ErrorCode.BACKEND_UNAVAILABLE, "later", again[0]["id"]))
    assert runner.retries[-1] == ("resubscribe", 1.5)  # the next round waits longer
    runner.core.receive(Subscribed(again[1]["id"], "b", True, E5))
    runner.core.retry("resubscribe")
    [last] = runner.take()
    runner.core.receive(Subscribed(last["id"], "a", True, E5))
    assert a.sub.active and b.sub.active and not a.errors


def test_http_transport_refusals_hold_the_channel_out_of_the_cursor(runner: Runner) -> None:
    runner.subscribe("a")
    runner.subscribe("b")
    runner.connect(carries=True, channels=("a", "b"))
    runner.core.receive(Error(ErrorCode.BACKEND_UNAVAILABLE, "later", None, "a"))
    assert runner.core.cursor() == {"b": None}
    runner.core.retry("resubscribe")
    assert runner.core.cursor() == {"a": None, "b": None}
    assert runner.changed == 1
    # A permanent refusal of a confirmed channel ends it (every request confirms again).
    runner.core.receive(Subscribed(None, "b", True, E5))
    runner.core.receive(Error(ErrorCode.FORBIDDEN, "no", None, "b"))
    assert runner.core.cursor() == {"a": None}


# --- publishing -------------------------------------------------------------------------


def test_an_ack_settles_the_publish_and_takes_it_out(runner: Runner) -> None:
    runner.connect()
    result = runner.publish("chat", {"text": "hi"}, key="k")
    [frame] = runner.take()
    assert frame == {"type": "publish", "id": 1, "channel": "chat",
                     "data": {"text": "hi"}, "key": "k"}
    assert len(runner.core.outbox) == 1
    runner.core.receive(Ack(1, E5))
    assert result.result(0) == E5
    assert len(runner.core.outbox) == 0


def test_every_publish_gets_a_key_that_stays(runner: Runner) -> None:
    runner.publish("chat", 1)
    runner.connect()
    [first] = runner.take()
    assert len(first["key"]) == 32
    runner.core.end()  # dropped with the publish in flight
    runner.connect()
    [again] = runner.take()
    assert (again["key"], again["id"]) == (first["key"], first["id"] + 1)


def test_a_permanent_refusal_fails_the_publish(runner: Runner) -> None:
    runner.connect()
    result = runner.publish()
    runner.core.receive(Error(ErrorCode.FORBIDDEN, "no", 1))
    error = result.exception(0)
    assert isinstance(error, PublishError) and error.code == 403
    assert len(runner.core.outbox) == 0


def test_temporary_refusals_resend_the_outbox_in_order(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_module, "full_jitter", lambda attempt, base, cap: float(attempt))
    runner.connect()
    results = [runner.publish(key=f"k{n}") for n in range(3)]
    for frame in runner.take():
        runner.core.receive(Error(ErrorCode.RATE_LIMITED, "slow down", frame["id"]))
    assert runner.retries == [("resend", 0.0)]
    runner.core.retry("resend")
    again = runner.take()
    assert [frame["key"] for frame in again] == ["k0", "k1", "k2"]
    runner.core.receive(Ack(again[0]["id"], E5))  # an ack starts the backoff over
    runner.core.receive(Error(ErrorCode.RATE_LIMITED, "slow down", again[1]["id"]))
    assert runner.retries[-1] == ("resend", 0.0)
    assert results[0].result(0) == E5


def test_a_publish_too_large_for_the_server_fails_locally(runner: Runner) -> None:
    runner.connect(max_message_size=100)
    result = runner.publish("chat", "x" * 100)
    assert runner.take() == []
    error = result.exception(0)
    assert isinstance(error, PublishError) and error.code == ErrorCode.TOO_LARGE
    assert runner.core.requests == {}


@pytest.mark.parametrize(
    ("channel", "data", "key"),
    [("a b", 1, None), ("chat", float("nan"), None), ("chat", {1: 2}, None),
     ("chat", b"bytes", None), ("chat", 1, ""), ("chat", 1, "k" * 129),
     ("chat", 1, "a\udfff"), ("chat", 1, 5)],
)
def test_invalid_publishes_are_refused_locally(
    runner: Runner, channel: str, data: Any, key: Any
) -> None:
    with pytest.raises(InvalidInput):
        runner.publish(channel, data, key)
    with pytest.raises(ValueError):  # InvalidInput is one
        runner.publish(channel, data, key)
    assert len(runner.core.outbox) == 0


def test_a_key_of_128_characters_is_fine_and_a_waiting_key_is_refused(runner: Runner) -> None:
    runner.publish(key="k" * 128)
    runner.publish(key="\U0001f600" * 128)  # characters, not UTF-16 units
    with pytest.raises(InvalidInput, match="already waiting"):
        runner.publish(key="k" * 128)


def test_the_outbox_is_bounded() -> None:
    runner = Runner(outbox_limit=2)
    runner.publish()
    runner.publish()
    with pytest.raises(OutboxFull):
        runner.publish()


def test_withdraw_takes_an_entry_out_of_the_outbox_and_the_requests(runner: Runner) -> None:
    runner.connect()
    result: Future[Position] = Future()
    entry = runner.core.publish("chat", 1, None, result)
    runner.core.withdraw(entry)
    assert (len(runner.core.outbox), runner.core.requests) == (0, {})
    runner.core.receive(Ack(1, E5))  # a late ack of a withdrawn publish: nothing
    assert not result.done()


# --- other frames, ending, stopping -----------------------------------------------------


def test_ping_is_answered_except_on_http_transports(runner: Runner) -> None:
    runner.connect()
    runner.core.receive(Ping())
    assert runner.take() == [{"type": "pong"}]
    runner.core.end()
    runner.connect(carries=True)
    runner.core.receive(Ping())
    assert runner.take() == []


def test_a_close_frame_ends_the_connection(runner: Runner) -> None:
    runner.connect()
    assert runner.core.receive(Close(4003, "token expired")) == (4003, "token expired")


def test_end_forgets_the_connection(runner: Runner) -> None:
    chat = confirmed(runner)
    runner.publish()
    runner.core.end()
    assert not runner.core.connected and runner.core.requests == {}
    assert not chat.sub.active and chat.sub.request_id is None
    assert [entry.request_id for entry in runner.core.outbox] == [None]
    runner.core.receive(publication(6))  # not confirmed on the next connection yet
    assert chat.messages == []


def test_stop_fails_everything_waiting(runner: Runner) -> None:
    chat = confirmed(runner)
    result = runner.publish()
    closed = ClientClosed(1000, "client closed")
    runner.core.stop(closed)
    assert result.exception(0) is closed
    assert runner.core.subscriptions == {} and len(runner.core.outbox) == 0
    assert chat.sub._queue.qsize() == 1  # the end of the iteration
    late = runner.subscribe("late")  # after stopping: ended at once
    assert late.sub._error is closed
    with pytest.raises(ClientClosed):
        runner.publish()


# --- history (protocol.md 5.2, 5.3, 5.11, 8.3) ----------------------------------------


def test_last_is_sent_on_every_subscribe_and_in_the_cursor(runner: Runner) -> None:
    runner.core.subscribe(Subscription("a", None, runner.core.unsubscribe, 3))
    runner.core.subscribe(Subscription("b", E5, runner.core.unsubscribe))
    runner.connect()
    assert runner.take("subscribe") == [
        {"type": "subscribe", "id": 1, "channel": "a", "last": 3},
        {"type": "subscribe", "id": 2, "channel": "b", "since": E5.to_wire()},
    ]
    assert runner.core.request_cursor() == ({"a": None, "b": E5}, {"a": 3})


@pytest.mark.parametrize("since", [None, Position("old", 9)])
def test_subscribed_since_sets_the_position_and_the_replay_moves_it_on(
        runner: Runner, since: Position | None) -> None:
    # A fresh subscription with last (recovered), or one that could not be recovered.
    recorder = runner.subscribe("chat", since)
    runner.connect()
    [subscribe] = runner.take("subscribe")
    recovered = since is None
    runner.core.receive(Subscribed(subscribe["id"], "chat", recovered, Position("new", 3),
                                   Position("new", 1)))
    assert recorder.sub.position == Position("new", 1)
    for offset in (2, 3, 3):  # the replay, then a repeat at the seam
        runner.core.receive(publication(offset, "new"))
    assert recorder.offsets == ["new:2", "new:3"]
    assert recorder.events[0] == SubscribedEvent(recovered, since is not None,
                                                 Position("new", 3), Position("new", 1))


def test_a_recovered_resume_keeps_its_position_whatever_since_says(runner: Runner) -> None:
    # (A tab-shared or earlier subscription may replay from before this client's
    # position: the seam drops the repeats.)
    recorder = runner.subscribe("chat", E5)
    runner.connect()
    [subscribe] = runner.take("subscribe")
    runner.core.receive(Subscribed(subscribe["id"], "chat", True, Position("e", 7),
                                   Position("e", 3)))
    assert recorder.sub.position == E5
    for offset in (4, 5, 6, 7):
        runner.core.receive(publication(offset))
    assert recorder.offsets == ["e:6", "e:7"]


def test_a_history_read_waits_for_the_connection_and_gets_its_page(runner: Runner) -> None:
    page: Future[HistoryPage] = Future()
    read = HistoryRead("chat", E5, 10, True, page)
    runner.core.history(read)
    assert runner.take() == []
    runner.connect()
    [frame] = runner.take()
    assert frame == {"type": "history", "id": 1, "channel": "chat",
                     "since": E5.to_wire(), "limit": 10, "reverse": True}
    runner.core.end()  # lost with the connection: asked again on the next one
    runner.connect()
    [again] = runner.take()
    answer = HistoryPage("chat", (publication(4),), E5, True, again["id"])
    runner.core.receive(answer)
    assert page.result() == answer and runner.core.reads == []


def test_a_refused_history_read_fails_and_limits_are_checked(runner: Runner) -> None:
    runner.connect()
    refused: Future[Any] = Future()
    runner.core.history(HistoryRead("chat", None, 5, False, refused))
    [frame] = runner.take()
    runner.core.receive(Error(ErrorCode.FORBIDDEN, "no", frame["id"], "chat"))
    with pytest.raises(ReadError) as info:
        refused.result()
    assert info.value.code == ErrorCode.FORBIDDEN and not info.value.temporary
    with pytest.raises(InvalidInput):
        runner.core.history(HistoryRead("chat", None, 1001, False, Future()))
    closed: Future[Any] = Future()
    runner.core.history(HistoryRead("chat", None, 5, False, closed))
    runner.core.stop(ClientClosed(1000, "bye"))
    with pytest.raises(ClientClosed):
        closed.result()


# --- server-side subscriptions (8.6) ------------------------------------------------------


@pytest.mark.parametrize("carries", [False, True])
def test_a_server_side_subscribed_adds_a_subscription_resumed_as_the_clients_own(
        carries: bool) -> None:
    adopted: list[Recorder] = []

    def adopt(channel: str) -> Subscription:
        subscription = Subscription(channel, None, runner.core.unsubscribe)
        adopted.append(Recorder(subscription))
        return subscription

    runner = Runner(adopt=adopt)
    runner.connect(carries)
    runner.take()
    runner.core.receive(Subscribed(None, "news", True, E5, server=True))
    [news] = adopted
    assert runner.core.subscriptions["news"] is news.sub
    assert news.events == [SubscribedEvent(True, False, E5)]
    runner.core.receive(Publication("news", "x", Position("e", 6)))
    assert [m.data for m in news.messages] == ["x"]
    assert runner.take() == [] and runner.changed == 0  # the server has it already
    runner.core.end()
    runner.connect(carries)
    if carries:
        assert runner.core.cursor() == {"news": Position("e", 6)}
    else:
        assert runner.take("subscribe") == [
            {"type": "subscribe", "id": 1, "channel": "news",
             "since": {"epoch": "e", "offset": 6}}]
    # Without `server`, an unknown channel's subscribed is ignored, as before.
    runner.core.receive(Subscribed(None, "other", True, E5))
    assert len(adopted) == 1 and "other" not in runner.core.subscriptions


def test_a_server_side_subscribed_crossing_the_clients_subscribe_keeps_it() -> None:
    """The client subscribes to a channel while the application subscribes it
    server-side: the server confirms with ``server: true`` and refuses the client's
    own ``subscribe`` with 409 (protocol.md 6.9). The confirmation settles the request,
    so the 409 that follows finds nothing to fail, and the subscription stays."""
    runner = Runner()
    runner.connect()
    chat = runner.subscribe("chat")
    [subscribe] = runner.take("subscribe")
    runner.core.receive(Subscribed(None, "chat", True, E5, server=True))
    assert chat.events == [SubscribedEvent(True, False, E5)]
    runner.core.receive(Error(409, "already subscribed", subscribe["id"], "chat"))
    assert chat.errors == [] and runner.core.subscriptions["chat"] is chat.sub
    runner.core.receive(publication(6))
    assert chat.offsets == ["e:6"]


def test_without_adopt_a_server_side_subscribed_is_ignored() -> None:
    runner = Runner()
    runner.connect()
    runner.core.receive(Subscribed(None, "news", True, E5, server=True))
    assert runner.core.subscriptions == {}


def test_unsubscribed_drops_the_subscription_for_good() -> None:
    runner = Runner()
    runner.connect()
    chat = runner.subscribe("chat")
    runner.core.receive(Subscribed(1, "chat", True, E5))
    ended: list[UnsubscribedEvent] = []
    chat.sub.on("unsubscribed", ended.append)
    runner.core.receive(Unsubscribed("chat", 403, "kicked"))
    assert ended == [UnsubscribedEvent("chat", 403, "kicked")]
    assert runner.core.subscriptions == {} and runner.core.cursor() == {}
    runner.core.receive(Unsubscribed("chat", 403, "again"))  # unknown now: ignored
    assert len(ended) == 1
    runner.core.end()
    runner.take()
    runner.connect()
    assert runner.take("subscribe") == []

"""The server's protocol session, with plain calls: no event loop, no transport, no hub."""

from __future__ import annotations

from typing import Any

import pytest

from rtlink.codecs import get_codec
from rtlink.codes import ErrorCode
from rtlink.errors import BackendError, BackendUnavailable, ChannelError, ProtocolError
from rtlink.limits import PublishLimits
from rtlink.presence import Member
from rtlink.protocol import (
    Ack,
    Error,
    History,
    HistoryPage,
    Pong,
    Position,
    PresenceResult,
    Publication,
    Publish,
    Subscribed,
    Unsubscribed,
    Welcome,
)
from rtlink.session import (
    POLL,
    REQUEST,
    STREAM,
    WEBSOCKET,
    ConnectionMode,
    HistoryRequest,
    PresenceRequest,
    PublishRequest,
    Session,
    SubscribeRequest,
    UnsubscribeRequest,
)

JSON = get_codec("json")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def session(mode: ConnectionMode = WEBSOCKET, *, rate: float | None = None, burst: int = 2,
            max_subscriptions: int = 3, clock: Clock | None = None) -> Session:
    clock = clock or Clock()
    return Session(JSON, mode, "websocket", max_subscriptions=max_subscriptions,
                   publish_limits=PublishLimits(rate, burst, clock=clock), clock=clock)


def handle(s: Session, frame: dict[str, Any]) -> list[Any]:
    outputs = []
    for item in s.receive(JSON.encode(frame)):
        outputs.extend(s.handle(item))
    return outputs


def pub(offset: int, epoch: str = "e1", channel: str = "c") -> Publication:
    return Publication(channel, offset, Position(epoch, offset))


def test_welcome_is_sent_only_where_the_mode_says() -> None:
    s = session()
    [welcome] = s.welcome(25.0, 10.0, 1024)
    assert isinstance(welcome, Welcome)
    assert welcome.session == s.id
    assert welcome.ping_interval == 25.0 and welcome.max_message_size == 1024
    assert session(STREAM).welcome(25, 10, 1024) != []
    assert session(REQUEST).welcome(25, 10, 1024) == []


def test_an_undecodable_message_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        session().receive(b"{not json")


def test_an_invalid_frame_is_answered_and_the_batch_goes_on() -> None:
    s = session()
    items = s.receive(JSON.join([JSON.encode({"type": "subscribe", "id": 1}),
                                 JSON.encode({"type": "ping"})]))
    outputs = [output for item in items for output in s.handle(item)]
    assert isinstance(outputs[0], Error) and outputs[0].code == ErrorCode.BAD_REQUEST
    assert outputs[0].id == 1
    assert outputs[1] == Pong()


def test_receiving_anything_refreshes_last_seen() -> None:
    clock = Clock()
    s = session(clock=clock)
    clock.now = 130.0
    assert handle(s, {"type": "pong"}) == []
    assert s.last_seen == 130.0


def test_subscribe_asks_for_a_request_and_refuses_repeats_and_the_limit() -> None:
    s = session(max_subscriptions=1)
    [request] = handle(s, {"type": "subscribe", "id": 1, "channel": "a"})
    assert request == SubscribeRequest("a", None, 1)
    assert s.subscriptions == {}  # not before the owner checked access
    s.subscribe_started(request)
    [again] = handle(s, {"type": "subscribe", "id": 2, "channel": "a"})
    assert (again.code, again.id, again.channel) == (ErrorCode.ALREADY_SUBSCRIBED, 2, "a")
    [over] = handle(s, {"type": "subscribe", "id": 3, "channel": "b"})
    assert over.code == ErrorCode.LIMIT_EXCEEDED


def test_subscribe_frames_are_refused_where_subscriptions_travel_in_the_request() -> None:
    for mode in (STREAM, POLL, REQUEST):
        [refusal] = handle(session(mode), {"type": "unsubscribe", "id": 4, "channel": "a"})
        assert refusal.code == ErrorCode.BAD_REQUEST
        assert "not available on websocket" in refusal.message


def test_a_fresh_subscription_goes_live_at_the_top() -> None:
    s = session()
    request = SubscribeRequest("c", None, 1)
    subscription = s.subscribe_started(request)
    ready = s.subscribe_ready(request, subscription, recovered=True,
                              position=Position("e1", 7), publications=[])
    assert ready is not None
    assert ready.subscribed == Subscribed(1, "c", True, Position("e1", 7))
    assert (list(ready.replay), list(ready.live), ready.news) == ([], [], True)
    assert subscription.pending is None and subscription.position == Position("e1", 7)


def test_the_seam_drops_what_the_replay_holds_and_keeps_what_came_after() -> None:
    s = session()
    request = SubscribeRequest("c", Position("e1", 2), None)
    subscription = s.subscribe_started(request)
    assert subscription.pending is not None
    subscription.pending.extend([pub(4), pub(5), pub(6)])  # live during the read
    ready = s.subscribe_ready(request, subscription, recovered=True,
                              position=Position("e1", 5), publications=[pub(3), pub(4), pub(5)])
    assert ready is not None
    assert [p.position.offset for p in ready.replay] == [3, 4, 5]
    assert [p.position.offset for p in ready.live] == [6]
    assert ready.news and subscription.position == Position("e1", 6)


def test_a_resume_with_nothing_missed_is_no_news() -> None:
    s = session()
    request = SubscribeRequest("c", Position("e1", 5), None)
    subscription = s.subscribe_started(request)
    ready = s.subscribe_ready(request, subscription, recovered=True,
                              position=Position("e1", 5), publications=[])
    assert ready is not None and ready.news is False


def test_an_unrecovered_subscription_replays_nothing_and_takes_a_new_epoch_live() -> None:
    s = session()
    request = SubscribeRequest("c", Position("old", 9), None)
    subscription = s.subscribe_started(request)
    assert subscription.pending is not None
    subscription.pending.extend([pub(1, "new"), pub(2, "new")])
    ready = s.subscribe_ready(request, subscription, recovered=False,
                              position=Position("new", 1), publications=[])
    assert ready is not None
    assert ready.subscribed.recovered is False and ready.news
    assert list(ready.replay) == []
    assert [p.position.offset for p in ready.live] == [2]


def test_subscribe_carries_last_to_the_request() -> None:
    [request] = handle(session(), {"type": "subscribe", "id": 1, "channel": "c", "last": 3})
    assert request == SubscribeRequest("c", None, 1, 3)
    [refusal] = handle(session(), {"type": "subscribe", "id": 2, "channel": "c", "last": 0})
    assert (refusal.code, refusal.id) == (ErrorCode.BAD_REQUEST, 2)


def test_a_replay_of_what_is_kept_says_after_which_position_it_comes() -> None:
    # A since of a lost epoch: the owner read what the new epoch keeps (protocol.md 6.2).
    s = session()
    request = SubscribeRequest("c", Position("old", 9), 1)
    subscription = s.subscribe_started(request)
    assert subscription.pending is not None
    subscription.pending.extend([pub(4, "new"), pub(5, "new")])  # live during the read
    ready = s.subscribe_ready(request, subscription, recovered=False,
                              position=Position("new", 4),
                              publications=[pub(3, "new"), pub(4, "new")])
    assert ready is not None
    assert ready.subscribed == Subscribed(1, "c", False, Position("new", 4),
                                          Position("new", 2))
    assert [p.position.offset for p in ready.replay] == [3, 4]
    assert [p.position.offset for p in ready.live] == [5]
    assert ready.news and subscription.position == Position("new", 5)


def test_a_recovered_gap_says_since_too_and_nothing_replayed_says_nothing() -> None:
    s = session()
    request = SubscribeRequest("c", Position("e1", 2), 1)
    ready = s.subscribe_ready(request, s.subscribe_started(request), recovered=True,
                              position=Position("e1", 3), publications=[pub(3)])
    assert ready is not None and ready.subscribed.since == Position("e1", 2)
    fresh = SubscribeRequest("d", None, 2, 10)
    ready = s.subscribe_ready(fresh, s.subscribe_started(fresh), recovered=True,
                              position=Position("e1", 0), publications=[])
    assert ready is not None and ready.subscribed.since is None


def test_history_is_a_request_on_every_mode_answered_with_its_id() -> None:
    frame = {"type": "history", "id": 7, "channel": "c", "limit": 2, "reverse": True}
    for mode in (WEBSOCKET, STREAM, POLL, REQUEST):
        [request] = handle(session(mode), frame)
        assert request == HistoryRequest(History(7, "c", None, 2, True))
    page = HistoryPage("c", (pub(2), pub(1)), Position("e1", 2), True)
    assert session().history_ready(request, page) == HistoryPage(
        "c", (pub(2), pub(1)), Position("e1", 2), True, 7)
    refusal = session().history_failed(request, ChannelError(ErrorCode.FORBIDDEN, "no"))
    assert (refusal.code, refusal.id, refusal.channel) == (ErrorCode.FORBIDDEN, 7, "c")
    down = session().history_failed(request, BackendUnavailable("down"))
    assert down.code == ErrorCode.BACKEND_UNAVAILABLE
    [too_many] = handle(session(), {**frame, "limit": 1001})
    assert (too_many.code, too_many.id) == (ErrorCode.BAD_REQUEST, 7)


def test_a_channel_left_while_its_history_was_read_is_not_sent() -> None:
    s = session()
    [request] = handle(s, {"type": "subscribe", "id": 1, "channel": "c"})
    subscription = s.subscribe_started(request)
    outputs = handle(s, {"type": "unsubscribe", "id": 2, "channel": "c"})
    # The request carries the subscription: the owner takes it out of the presence too.
    assert outputs == [UnsubscribeRequest("c", subscription), Ack(2)]
    assert s.subscribe_ready(request, subscription, recovered=True,
                             position=Position("e1", 0), publications=[]) is None


def test_leaving_a_channel_one_is_not_in_is_acknowledged_only() -> None:
    assert handle(session(), {"type": "unsubscribe", "id": 9, "channel": "x"}) == [Ack(9)]


@pytest.mark.parametrize(("error", "code", "message"), [
    (ChannelError(ErrorCode.FORBIDDEN, "no"), ErrorCode.FORBIDDEN, "no"),
    (BackendUnavailable("down"), ErrorCode.BACKEND_UNAVAILABLE, "backend: down"),
    (BackendError("broken"), ErrorCode.INTERNAL_ERROR, "internal error"),
    (RuntimeError("bug"), ErrorCode.INTERNAL_ERROR, "internal error"),
])
def test_a_failed_subscription_is_forgotten_and_refused(
        error: Exception, code: int, message: str) -> None:
    s = session()
    request = SubscribeRequest("c", None, 5)
    subscription = s.subscribe_started(request)
    refusal = s.subscribe_failed(request, subscription, error)
    assert (refusal.code, refusal.message, refusal.id, refusal.channel) == (
        code, message, 5, "c")
    assert s.subscriptions == {}


def test_publishes_pass_until_the_rate_limit_then_are_refused_in_order() -> None:
    clock = Clock()
    s = session(rate=1.0, burst=2, clock=clock)
    frames = [{"type": "publish", "id": n, "channel": "c", "data": n, "key": f"k{n}"}
              for n in range(1, 4)]
    assert [type(handle(s, f)[0]) for f in frames] == [PublishRequest, PublishRequest, Error]
    clock.now += 1.0  # a token came back: the refused one passes when sent again
    [request] = handle(s, frames[2])
    assert isinstance(request, PublishRequest) and request.frame.key == "k3"


def test_a_publish_is_acknowledged_or_refused_with_its_id_and_channel() -> None:
    s = session()
    request = PublishRequest(Publish(7, "c", {"x": 1}, "k"))
    assert s.published(request, Position("e1", 3)) == Ack(7, Position("e1", 3))
    refused = s.publish_failed(request, ChannelError(ErrorCode.FORBIDDEN, "not you"))
    assert (refused.code, refused.id, refused.channel) == (ErrorCode.FORBIDDEN, 7, "c")
    failed = s.publish_failed(request, BackendUnavailable("down"))
    assert (failed.code, failed.message) == (ErrorCode.BACKEND_UNAVAILABLE, "backend: down")
    assert s.publish_failed(request, BackendError("x")).code == ErrorCode.INTERNAL_ERROR


def test_the_cursor_holds_each_channel_at_its_last_queued_position() -> None:
    s = session()
    request = SubscribeRequest("c", Position("e1", 4), None)
    subscription = s.subscribe_started(request)
    assert s.cursor() == {"c": Position("e1", 4)}
    s.subscribe_ready(request, subscription, recovered=True, position=Position("e1", 6),
                      publications=[pub(5), pub(6)])
    assert s.cursor() == {"c": Position("e1", 6)}


def test_presence_requests_and_flags() -> None:
    s = session()
    [request] = handle(s, {"type": "subscribe", "id": 1, "channel": "room", "presence": True})
    assert isinstance(request, SubscribeRequest) and request.presence
    assert s.subscribe_started(request).presence
    [read] = handle(s, {"type": "presence", "id": 2, "channel": "room"})
    assert isinstance(read, PresenceRequest)
    member = Member("s1", "alice")
    assert s.presence_result(read, 1, [member]) == PresenceResult(2, "room", 1, (member,))
    refused = s.presence_failed(read, ChannelError(400, "no presence"))
    assert (refused.code, refused.id, refused.channel) == (400, 2, "room")
    assert s.presence_failed(read, BackendUnavailable("down")).code == 503


def test_a_server_side_subscription_is_marked_and_skips_what_is_held_already() -> None:
    s = session(max_subscriptions=2)
    [request] = s.server_subscribe("news")
    assert request == SubscribeRequest("news", None, None, server=True)
    subscription = s.subscribe_started(request)
    ready = s.subscribe_ready(request, subscription, recovered=True,
                              position=Position("e1", 3), publications=[])
    assert ready is not None
    assert ready.subscribed == Subscribed(None, "news", True, Position("e1", 3), server=True)
    assert ready.subscribed.to_wire()["server"] is True
    assert "server" not in Subscribed(1, "c", True, Position("e1", 3)).to_wire()
    assert s.server_subscribe("news") == []  # subscribed already: nothing to say
    s.subscribe_started(SubscribeRequest("other", None, 1))
    assert s.server_subscribe("third") == []  # at the limit: left out, not refused


def test_a_server_side_unsubscribe_leaves_the_channel_and_tells_the_client() -> None:
    s = session()
    s.subscribe_started(SubscribeRequest("c", None, 1))
    assert s.server_unsubscribe("c", 403, "gone") == [UnsubscribeRequest("c"),
                                                      Unsubscribed("c", 403, "gone")]
    assert s.subscriptions == {}
    assert s.server_unsubscribe("c", 403, "gone") == []

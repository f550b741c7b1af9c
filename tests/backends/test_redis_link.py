"""The pub/sub link's own reading (rtlink/backends/redis/link.py): RESP2 and RESP3
replies parsed from any split of the bytes, messages handed over synchronously, and a
silent connection pinged, then dropped. No Redis needed: a fake transport."""

from __future__ import annotations

import asyncio

import pytest

from rtlink.backends.redis.link import PubSubLink, ReplyError, parse_replies


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


MESSAGE2 = b"*3\r\n" + bulk(b"message") + bulk(b"rtlink:{c}:pub") + bulk(b"e 1 \x81\xa1a\x01")
MESSAGE3 = b">3\r\n" + bulk(b"smessage") + bulk(b"rtlink:{c}:pub") + bulk(b"e 2 \xc0")
CONFIRM2 = b"*3\r\n" + bulk(b"subscribe") + bulk(b"rtlink:{c}:pub") + b":1\r\n"


def test_resp2_and_resp3_replies() -> None:
    data = (MESSAGE2 + MESSAGE3 + CONFIRM2 + b"+PONG\r\n" + b"-MOVED 3999 127.0.0.1:7001\r\n"
            + b"_\r\n" + b"$-1\r\n" + b"%1\r\n+proto\r\n:3\r\n" + b"|1\r\n+a\r\n+b\r\n:7\r\n")
    replies, used = parse_replies(data)
    assert used == len(data)
    assert replies == [
        [b"message", b"rtlink:{c}:pub", b"e 1 \x81\xa1a\x01"],
        [b"smessage", b"rtlink:{c}:pub", b"e 2 \xc0"],
        [b"subscribe", b"rtlink:{c}:pub", 1],
        b"PONG",
        "MOVED 3999 127.0.0.1:7001",
        None,
        None,
        [b"proto", 3],
        7,  # an attribute is skipped, the reply it describes is kept
    ]
    assert type(replies[4]) is ReplyError


@pytest.mark.parametrize("cut", range(1, len(MESSAGE2)))
def test_an_incomplete_reply_waits_for_the_rest(cut: int) -> None:
    replies, used = parse_replies(MESSAGE2[:cut])
    assert (replies, used) == ([], 0)
    replies, used = parse_replies(MESSAGE2 + MESSAGE2[:cut])
    assert (len(replies), used) == (1, len(MESSAGE2))


def test_bytes_that_are_not_resp_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown RESP type"):
        parse_replies(b"?what\r\n")


class Handler:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def link_message(self, name: bytes, data: bytes) -> None:
        self.events.append(("message", (name, data)))

    def link_subscribed(self, name: bytes) -> None:
        self.events.append(("subscribed", name))

    def link_unsubscribed(self, name: bytes) -> None:
        self.events.append(("unsubscribed", name))

    def link_error(self, error: ReplyError) -> None:
        self.events.append(("error", str(error)))

    def link_lost(self, error: Exception) -> None:
        self.events.append(("lost", type(error).__name__))


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True


async def test_messages_split_anywhere_are_handed_over_in_order() -> None:
    handler = Handler()
    link = PubSubLink(handler, ping_interval=10)
    link.connection_made(Transport())
    stream = CONFIRM2 + MESSAGE2 + MESSAGE3 + b"-ERR nope\r\n"
    for i in range(0, len(stream), 7):
        link.data_received(stream[i:i + 7])
    assert handler.events == [
        ("subscribed", b"rtlink:{c}:pub"),
        ("message", (b"rtlink:{c}:pub", b"e 1 \x81\xa1a\x01")),
        ("message", (b"rtlink:{c}:pub", b"e 2 \xc0")),
        ("error", "ERR nope"),
    ]
    link.close()


async def test_subscribes_are_batched_and_sharded_ones_grouped_by_slot() -> None:
    transport = Transport()
    link = PubSubLink(Handler(), ping_interval=10)
    link.connection_made(transport)
    link.subscribe([b"a%d" % i for i in range(2_500)])
    (written,) = transport.written
    assert written.count(b"SUBSCRIBE") == 3  # 1,000 channels per command
    sharded = Transport()
    link = PubSubLink(Handler(), ping_interval=10, sharded=True)
    link.connection_made(sharded)
    link.subscribe([b"{x}1", b"{x}2", b"{y}1"])
    assert sharded.written[0].count(b"SSUBSCRIBE") == 2  # one per slot
    link.close()


async def test_a_silent_link_is_pinged_then_dropped() -> None:
    handler = Handler()
    transport = Transport()
    link = PubSubLink(handler, ping_interval=0.05)
    link.connection_made(transport)
    await asyncio.sleep(0.08)
    assert transport.written == [b"*1\r\n$4\r\nPING\r\n"]
    link.data_received(b"+PONG\r\n")  # alive: no second ping before another interval
    await asyncio.sleep(0.03)
    assert len(transport.written) == 1
    await asyncio.sleep(0.15)
    assert ("lost", "TimeoutError") in handler.events
    assert transport.closed

"""Channel rules (rtlink.channels): patterns, ``{user}`` owners, and who may subscribe
or publish — as plain rules, then through a real server and the Python client."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

import rtlink
from rtlink.auth import Identity, TokenAuth
from rtlink.channels import ChannelMatch, ChannelOptions, ChannelRules
from rtlink.codes import ErrorCode
from rtlink.errors import ChannelError
from tests.support import collect, run_server, seconds

SECRET = "channel-tests-secret-" + "z" * 32

# --- patterns -----------------------------------------------------------------------------


def test_first_matching_pattern_wins_with_fnmatch_syntax() -> None:
    chat, news, rest = (ChannelOptions(history_size=n) for n in (1, 2, 3))
    rules = ChannelRules({"chat:*": chat, "news:[ab]?": news, "*": rest})
    assert rules.match("chat:lobby") is chat
    assert rules.match("news:a1") is news
    assert rules.match("news:c1") is rest
    assert rules.lookup("chat:lobby") == ChannelMatch(chat, None)
    assert ChannelRules({"chat:*": chat}).match("other") is None


@pytest.mark.parametrize(
    ("channel", "owner"),
    [
        ("user:alice:notes", "alice"),
        ("user:alice:notes:2024", "alice"),
        ("user:bob.smith@example.com:inbox", "bob.smith@example.com"),
        ("user:alice:", "alice"),
        ("user:alice", None),  # no ":" after the user: no match
        ("user::notes", None),  # an empty user never matches
        ("users:alice:notes", None),
    ],
)
def test_user_placeholder_captures_one_segment(channel: str, owner: str | None) -> None:
    options = ChannelOptions(subscribe="authenticated")
    found = ChannelRules({"user:{user}:*": options}).lookup(channel)
    assert (found.owner if found is not None else None) == owner
    if owner is not None:
        assert found == ChannelMatch(options, owner)


def test_user_placeholder_anywhere_in_a_pattern() -> None:
    rules = ChannelRules({"dm:{user}": ChannelOptions(), "room:*:member:{user}:feed":
                          ChannelOptions()})
    assert rules.lookup("dm:alice") == ChannelMatch(ChannelOptions(), "alice")
    assert rules.lookup("dm:alice:x") is None
    found = rules.lookup("room:7:b:member:carol:feed")
    assert found is not None and found.owner == "carol"


@pytest.mark.parametrize(
    "pattern",
    ["user:{user}:{user}", "user:{id}:*", "user:{user:*", "user:*{user}:x", "user:{user}*"],
)
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="channel pattern"):
        ChannelRules({pattern: ChannelOptions()})


def test_subscribe_option_is_checked() -> None:
    assert ChannelOptions().subscribe == "anyone"
    with pytest.raises(ValueError):
        ChannelOptions(subscribe="everyone")  # type: ignore[arg-type]


# --- access rules -------------------------------------------------------------------------


@attrs.frozen
class _Session:
    subject: str


RULES = ChannelRules({
    "user:{user}:*": ChannelOptions(),
    "members:*": ChannelOptions(subscribe="authenticated"),
    "public:*": ChannelOptions(),
})


@pytest.mark.parametrize(
    ("identity", "channel", "code"),
    [
        (None, "public:news", None),
        (None, "members:news", ErrorCode.UNAUTHORIZED),
        (None, "user:alice:notes", ErrorCode.UNAUTHORIZED),
        (None, "elsewhere", ErrorCode.UNKNOWN_CHANNEL),
        ("alice", "members:news", None),
        ("alice", "user:alice:notes", None),
        ("bob", "user:alice:notes", ErrorCode.FORBIDDEN),
        (Identity("alice", {}), "user:alice:notes", None),
        (Identity("bob", {}), "user:alice:notes", ErrorCode.FORBIDDEN),
        ({"sub": "alice"}, "user:alice:notes", None),
        (_Session("alice"), "user:alice:notes", None),
        (object(), "user:alice:notes", ErrorCode.FORBIDDEN),  # no subject at all
        (object(), "members:news", None),  # authenticated, whatever it is
    ],
)
def test_check_access(identity: Any, channel: str, code: int | None) -> None:
    if code is None:
        assert RULES.check_access(identity, channel) is RULES.match(channel)
        return
    with pytest.raises(ChannelError) as info:
        RULES.check_access(identity, channel)
    assert info.value.code == code


# --- through a server -----------------------------------------------------------------------

CHANNELS = {
    "user:{user}:*": ChannelOptions(subscribe="authenticated", client_publish=True,
                                    history_size=1000, history_ttl=86400),
    "members:*": ChannelOptions(subscribe="authenticated", client_publish=True),
    "public:*": ChannelOptions(client_publish=True),
}


async def refused_subscription(client: rtlink.Client, channel: str) -> int:
    with pytest.raises(rtlink.SubscribeError) as info:
        async with asyncio.timeout(seconds(5)):
            async with client.subscribe(channel):
                pytest.fail(f"subscribed to {channel}")
    return info.value.code


async def refused_publish(client: rtlink.Client, channel: str) -> int:
    with pytest.raises(rtlink.PublishError) as info:
        await asyncio.wait_for(client.publish(channel, "nope"), seconds(5))
    return info.value.code


async def test_owned_channels_belong_to_their_user(make_client: Any) -> None:
    auth = TokenAuth(SECRET, anonymous=True)
    async with run_server(authenticate=auth, channels=CHANNELS) as server:
        async with make_client(server.url, token=auth.mint("alice")) as alice, \
                make_client(server.url, token=auth.mint("bob")) as bob:
            async with alice.subscribe("user:alice:notes") as notes:
                await alice.publish("user:alice:notes", "by alice")
                assert await refused_subscription(bob, "user:alice:notes") == 403
                assert await refused_publish(bob, "user:alice:notes") == 403
                # The server may publish anywhere.
                await server.hub.publish("user:alice:notes", "by the server")
                assert [m.data for m in await collect(notes, 2)] == ["by alice",
                                                                      "by the server"]
            async with bob.subscribe("user:bob:notes"), bob.subscribe("members:news"):
                pass


async def test_anonymous_connections_get_401_where_authentication_is_needed(
    make_client: Any,
) -> None:
    auth = TokenAuth(SECRET, anonymous=True)
    async with run_server(authenticate=auth, channels=CHANNELS) as server:
        async with make_client(server.url) as anonymous:
            for channel in ("members:news", "user:alice:notes"):
                assert await refused_subscription(anonymous, channel) == 401
                assert await refused_publish(anonymous, channel) == 401
            assert await refused_subscription(anonymous, "elsewhere") == 404
            async with anonymous.subscribe("public:news") as news:
                await anonymous.publish("public:news", "hello")
                assert [m.data for m in await collect(news, 1)] == ["hello"]
            assert anonymous.state is rtlink.ConnectionState.CONNECTED


async def test_channel_rules_come_before_the_authorize_hooks(make_client: Any) -> None:
    calls: list[tuple[str, str]] = []

    def authorize(kind: str) -> Any:
        def hook(identity: Any, channel: str) -> bool:
            calls.append((kind, channel))
            return not channel.endswith(":secret")
        return hook

    # A custom authenticate hook whose identity is a plain user id.
    async with run_server(authenticate=lambda request: "alice", channels=CHANNELS,
                          authorize_subscribe=authorize("subscribe"),
                          authorize_publish=authorize("publish")) as server:
        async with make_client(server.url) as alice:
            assert await refused_subscription(alice, "user:bob:notes") == 403
            assert await refused_publish(alice, "user:bob:notes") == 403
            assert calls == []  # refused by the rules: the hooks were not asked
            assert await refused_subscription(alice, "user:alice:secret") == 403
            async with alice.subscribe("user:alice:notes"):
                await alice.publish("user:alice:notes", 1)
            assert calls == [("subscribe", "user:alice:secret"),
                             ("subscribe", "user:alice:notes"),
                             ("publish", "user:alice:notes")]


def test_the_rule_cache_is_bounded_and_keeps_the_names_in_use() -> None:
    rules = ChannelRules({"user:*": ChannelOptions()})
    rules._CACHE_SIZE = 8  # type: ignore[misc]
    for n in range(20):
        assert rules.match(f"user:{n}") is not None
    assert len(rules._cache) <= 8
    assert "user:19" in rules._cache and "user:0" not in rules._cache

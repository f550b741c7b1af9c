"""Channel names, idempotency keys and epochs (rtlink.names), and the JavaScript
client's copy of the rules (js-client/src/names.js). Plain calls."""

from __future__ import annotations

from typing import Any

import pytest

from rtlink.errors import FrameError
from rtlink.names import MAX_KEY_LENGTH, is_text, validate_channel, validate_key
from tests.support import run_js

KEYS: list[Any] = [None, "k", "k" * MAX_KEY_LENGTH, "\U0001f600" * MAX_KEY_LENGTH,
                   "a b\n", "", "k" * (MAX_KEY_LENGTH + 1), "\U0001f600" * (MAX_KEY_LENGTH + 1),
                   "\ud800", "a\udfffb", 5, True, ["k"], {}]
CHANNELS: list[Any] = ["chat", "ok:chan_1-2.3@x/y=z+w,v#u", "x" * 255, "", "x" * 256, "a b",
                       "news*", "q?", "é", "a\n", 42, None, ["chat"]]


def test_is_text() -> None:
    assert is_text("a", 1) and is_text("\U0001f600", 1)  # characters, not UTF-16 units
    for value in ("", "ab", "\udfff", None, 5, b"a"):
        assert not is_text(value, 1)


@pytest.mark.parametrize("key", KEYS)
def test_validate_key(key: Any) -> None:
    valid = key is None or is_text(key, MAX_KEY_LENGTH)
    if valid:
        assert validate_key(key) == key
    else:
        with pytest.raises(FrameError) as info:
            validate_key(key, request_id=3)
        assert (info.value.error_code, info.value.request_id) == (400, 3)


def test_the_javascript_client_applies_the_same_rules() -> None:
    script = """
const check = (rule, value) => {
  try {
    rule(value);
    return true;
  } catch (error) {
    return error.name;
  }
};
console.log(JSON.stringify([input[0].map((key) => check(m.checkKey, key)),
                            input[1].map((channel) => check(m.checkChannel, channel))]));
"""
    keys, channels = run_js("names.js", script, KEYS, CHANNELS)

    def python(rule: Any, value: Any) -> bool | str:
        try:
            rule(value)
        except FrameError:
            return "InvalidInput"  # what the clients raise for it
        return True

    assert keys == [python(validate_key, key) for key in KEYS]
    assert channels == [python(validate_channel, channel) for channel in CHANNELS]

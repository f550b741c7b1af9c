"""The exception tree, and the JavaScript client's names for the same errors."""

from __future__ import annotations

import re

import rtlink
import rtlink.errors as errors
from rtlink.errors import InvalidInput, RtlinkError
from tests.support import JS_SOURCES

#: The errors an application of a client can meet: the JS client names each alike.
CLIENT_ERRORS = {"RtlinkError", "InvalidInput", "SubscribeError", "PublishError",
                 "ReadError", "OutboxFull", "ClientClosed"}


def test_every_error_is_exported_and_an_rtlink_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, RtlinkError), name
        assert cls.__doc__, name
    assert set(errors.__all__) - {"FrameError", "RequestError"} <= set(rtlink.__all__)


def test_invalid_input_is_a_value_error() -> None:
    assert issubclass(InvalidInput, ValueError)
    try:
        raise InvalidInput("bad")
    except ValueError as exc:
        assert str(exc) == "bad"


def test_the_javascript_client_names_its_errors_like_the_python_classes() -> None:
    source = "\n".join(path.read_text() for path in sorted(JS_SOURCES.glob("*.js")))
    names = set(re.findall(r"new RtlinkError\('(\w+)'", source))
    assert "invalidInput = (message) => new RtlinkError('InvalidInput'" in source
    assert names == CLIENT_ERRORS
    for name in names:
        assert issubclass(getattr(errors, name), RtlinkError), name

"""Codecs: how frames become bytes, and how several frames share one transport message.

A codec turns one frame (a ``dict``) into bytes and splits a transport message back
into frames. Several frames are batched in one transport message by concatenating
their encodings with the codec's :attr:`Codec.separator` — a newline for JSON (a JSON
encoder never emits a raw newline), nothing for msgpack (msgpack is self-delimiting).
So a pre-encoded frame can be written to many connections and batched with others
by a plain ``bytes.join``, without encoding it again.

Codecs are looked up by name in a registry (:func:`get_codec`), and by WebSocket
subprotocol (:func:`codec_for_subprotocol`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

import msgpack

from .errors import ProtocolError

__all__ = [
    "Codec",
    "JsonCodec",
    "MsgpackCodec",
    "CODECS",
    "get_codec",
    "codec_for_subprotocol",
    "SUBPROTOCOLS",
]


class Codec:
    """Base class of codecs. Subclasses are stateless and shared.

    Attributes:
        name: the codec's name on the wire and in the registry (``"json"``).
        binary: whether encodings are binary (WebSocket binary messages) or UTF-8 text.
        separator: bytes put between frames batched in one transport message.
        content_type: the MIME type of a batch, for HTTP transports.
    """

    name: ClassVar[str]
    binary: ClassVar[bool]
    separator: ClassVar[bytes]
    content_type: ClassVar[str]

    @property
    def subprotocol(self) -> str:
        """The WebSocket subprotocol that selects this codec (``rtlink.v1.json``)."""
        return f"rtlink.v1.{self.name}"

    def encode(self, frame: dict[str, Any]) -> bytes:
        """Encode one frame. Raises ``ValueError``/``TypeError`` for unencodable data."""
        raise NotImplementedError

    def encode_publication(self, channel: str, data: Any, epoch: str, offset: int) -> bytes:
        """Encode a ``publication`` frame: the same bytes as :meth:`encode` of its
        wire form, which a codec may produce faster (it runs once per publication and
        codec in use). ``channel`` and ``epoch`` are valid names (no escaping needed)."""
        return self.encode({"type": "publication", "channel": channel, "data": data,
                            "position": {"epoch": epoch, "offset": offset}})

    def decode(self, message: bytes | str) -> list[Any]:
        """Split one transport message into decoded values (normally frame dicts).

        Raises:
            ProtocolError: the message is not a valid encoding (close code 1007).
        """
        raise NotImplementedError

    def join(self, encoded_frames: Iterable[bytes]) -> bytes:
        """Batch already-encoded frames into one transport message."""
        return self.separator.join(encoded_frames)

    def take_batch(self, queue: list[bytes], limit: int) -> tuple[bytes, int]:
        """Remove encoded frames from the front of ``queue`` into one transport message.

        Frames are taken while the message stays within ``limit`` bytes, but always at
        least one. Returns the message and the total length of the frames taken.
        """
        first = queue[0]
        taken = size = len(first)
        count = 1
        extra = len(self.separator)
        while count < len(queue) and size + extra + len(queue[count]) <= limit:
            taken += len(queue[count])
            size += extra + len(queue[count])
            count += 1
        if count == 1:
            del queue[0]
            return first, taken
        message = self.join(queue[:count])
        del queue[:count]
        return message, taken

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class JsonCodec(Codec):
    """UTF-8 JSON; frames in one message are separated by ``\\n``."""

    name = "json"
    binary = False
    separator = b"\n"
    content_type = "application/json"

    # Compact output; NaN/Infinity are not JSON, so refuse them instead of emitting them.
    _encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # What _encoder.encode() runs for a non-string, made once instead of on every call
    # (json.JSONEncoder.iterencode builds it each time): ~0.7 µs less per publication.
    # The same arguments as iterencode passes (CPython's json.encoder); None on
    # Pythons without the C accelerator, where encode() is used.
    _encode_data: Any = (
        None if json.encoder.c_make_encoder is None  # type: ignore[attr-defined]
        else json.encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, _encoder.default, json.encoder.encode_basestring, None, ":", ",",
            False, False, False))

    def encode(self, frame: dict[str, Any]) -> bytes:
        return self._encoder.encode(frame).encode()

    def encode_publication(self, channel: str, data: Any, epoch: str, offset: int) -> bytes:
        # Only the data needs the encoder: a channel name is made of characters JSON
        # writes as they are (protocol.validate_channel), and so is an epoch of letters
        # and digits (the built-in backends' are hex; another backend's may be any
        # string: then the general way). About 1 µs less than encoding the frame's dicts.
        if not (epoch.isascii() and epoch.isalnum()):
            return super().encode_publication(channel, data, epoch, offset)
        encode = self._encode_data
        text = ("".join(encode(data, 0)) if encode is not None and not isinstance(data, str)
                else self._encoder.encode(data))
        return (f'{{"type":"publication","channel":"{channel}","data":{text},'
                f'"position":{{"epoch":"{epoch}","offset":{offset}}}}}').encode()

    def decode(self, message: bytes | str) -> list[Any]:
        try:
            text = message.decode() if isinstance(message, bytes | bytearray) else message
            values = [
                json.loads(line, parse_constant=_reject_constant)
                for line in text.split("\n")
                if line.strip()
            ]
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError and UnicodeDecodeError are ValueErrors; absurd nesting
            # depth raises RecursionError.
            raise ProtocolError(f"invalid JSON message: {exc}") from None
        if not values:
            raise ProtocolError("empty JSON message")
        return values


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class MsgpackCodec(Codec):
    """msgpack; frames in one message are concatenated (msgpack is self-delimiting)."""

    name = "msgpack"
    binary = True
    separator = b""
    content_type = "application/msgpack"

    def encode(self, frame: dict[str, Any]) -> bytes:
        return msgpack.packb(frame, use_bin_type=True)  # type: ignore[no-any-return]

    def decode(self, message: bytes | str) -> list[Any]:
        if isinstance(message, str):
            raise ProtocolError("msgpack messages must be binary")
        unpacker = msgpack.Unpacker(
            raw=False,
            strict_map_key=True,
            max_buffer_size=max(len(message), 1),
        )
        unpacker.feed(message)
        values: list[Any] = []
        # Where the last complete value ended. ``unpacker.tell()`` after the loop is not
        # enough: it also counts the bytes of a partially read trailing value (e.g. an
        # array header whose items are missing), which would hide the truncation.
        end = 0
        try:
            for value in unpacker:
                values.append(value)
                end = unpacker.tell()
        except Exception as exc:  # msgpack raises a zoo of types for bad input
            raise ProtocolError(f"invalid msgpack message: {exc}") from None
        if end != len(message):
            raise ProtocolError("invalid msgpack message: truncated value")
        if not values:
            raise ProtocolError("empty msgpack message")
        return values


#: The codec registry, by name.
CODECS: dict[str, Codec] = {codec.name: codec for codec in (JsonCodec(), MsgpackCodec())}

#: WebSocket subprotocols the server accepts, preferred first.
SUBPROTOCOLS: tuple[str, ...] = tuple(codec.subprotocol for codec in CODECS.values())


def get_codec(name: str | Codec) -> Codec:
    """Return the codec registered under ``name`` (a :class:`Codec` passes through).

    Raises:
        ValueError: no codec has that name.
    """
    if isinstance(name, Codec):
        return name
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None


def codec_for_subprotocol(subprotocol: str | None) -> Codec:
    """Return the codec a WebSocket subprotocol selects; no subprotocol means JSON.

    Raises:
        ValueError: the subprotocol is not an rtlink one.
    """
    if not subprotocol:
        return CODECS["json"]
    for codec in CODECS.values():
        if codec.subprotocol == subprotocol:
            return codec
    raise ValueError(f"unsupported subprotocol {subprotocol!r}")

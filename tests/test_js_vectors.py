"""The JavaScript client's msgpack vectors agree with Python's msgpack and rtlink's codec.

js-client/test/vectors/msgpack.json is committed and run by the JS tests
(js-client/test/msgpack.test.js) against the client's own msgpack codec. Here we check
the Python side of the promise: the file is what the generator script builds from the
installed msgpack now, Python decodes every valid vector to its value, and the server's
codec refuses every invalid one (except where the protocol lets it differ).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest

from rtlink.codecs import MsgpackCodec
from rtlink.errors import ProtocolError

ROOT = Path(__file__).resolve().parents[1]
VECTORS_DIR = ROOT / "js-client" / "test" / "vectors"
VECTORS_FILE = VECTORS_DIR / "msgpack.json"


def _load_script() -> ModuleType:
    path = VECTORS_DIR / "make_msgpack_vectors.py"
    spec = importlib.util.spec_from_file_location("make_msgpack_vectors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _load_script()
COMMITTED: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))

#: Invalid for the JS client, but accepted by the server's codec — legitimately:
#: bin and ext values (and bin map keys) are decodable msgpack that the protocol refuses
#: at the frame level (data rules, 3.4: error 400) rather than as undecodable messages,
#: while the JS client, which never receives them from a correct server, refuses them
#: while decoding. Nesting: the client stops at 1000 levels, Python's unpacker at 1024
#: (protocol 3.4 only says "on the order of 1000").
PYTHON_ACCEPTS = {
    "bin8",
    "bin16",
    "bin32",
    "ext8",
    "ext16",
    "ext32",
    "fixext1",
    "fixext2",
    "fixext4 (timestamp 32)",
    "fixext8",
    "fixext16",
    "map with a bin key",
    "nesting 1001 deep",
}


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types, map key order and sign of zero (``==`` ignores them)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def _unpack_all(data: bytes) -> list[Any]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
    unpacker.feed(data)
    return list(unpacker)


def _ids(kind: str) -> list[str]:
    return [v["name"] for v in COMMITTED[kind]]


def test_committed_vectors_are_current() -> None:
    built = SCRIPT.build_vectors()
    assert _same(COMMITTED, built), "run js-client/test/vectors/make_msgpack_vectors.py"
    assert VECTORS_FILE.read_text(encoding="utf-8") == SCRIPT.render(built)


def test_vector_names_are_unique() -> None:
    for kind in ("encode", "decode", "invalid"):
        names = _ids(kind)
        assert len(names) == len(set(names)), kind
    assert {v["name"] for v in COMMITTED["invalid"]} >= PYTHON_ACCEPTS


@pytest.mark.parametrize("vector", COMMITTED["encode"], ids=_ids("encode"))
def test_encode_vector(vector: dict[str, Any]) -> None:
    if "gen" in vector:
        value = SCRIPT.generate(vector["gen"])
        packed = msgpack.packb(value)
        assert len(packed) == vector["size"]
        assert packed[:8].hex() == vector["head"]
        assert hashlib.sha256(packed).hexdigest() == vector["sha256"]
    else:
        value = vector["value"]
        packed = bytes.fromhex(vector["hex"])
        assert msgpack.packb(value) == packed
    assert _same(msgpack.unpackb(packed), value)
    assert _same(MsgpackCodec().decode(packed), [value])


@pytest.mark.parametrize("vector", COMMITTED["decode"], ids=_ids("decode"))
def test_decode_vector(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    expected = vector["value"] if vector.get("all") else [vector["value"]]
    assert _same(_unpack_all(data), expected)
    assert _same(MsgpackCodec().decode(data), expected)


@pytest.mark.parametrize("vector", COMMITTED["invalid"], ids=_ids("invalid"))
def test_invalid_vector(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    if vector["name"] in PYTHON_ACCEPTS:
        # Keep the exception list honest: drop a name once the server refuses it too.
        assert MsgpackCodec().decode(data)
        return
    with pytest.raises(ProtocolError):
        MsgpackCodec().decode(data)


def test_protocol_examples_match_the_vectors() -> None:
    """The msgpack examples of docs/protocol.md 3.2 are the bytes in the vectors."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text[text.index("### 3.2 msgpack") : text.index("### 3.3")]
    blocks = [re.sub(r"\s+", "", b) for b in re.findall(r"```\n([0-9a-f \n]+)```", section)]
    by_name = {v["name"]: v for v in COMMITTED["encode"] + COMMITTED["decode"]}
    assert by_name["frame subscribe (protocol.md 3.2)"]["hex"] in blocks
    assert by_name["frame welcome (protocol.md 3.2)"]["hex"] in blocks
    assert by_name["batch ping + pong (protocol.md 3.2)"]["hex"] in blocks

"""rtlink.attach serving the browser client (http-api.md §6), and the demo page using it."""

from __future__ import annotations

import contextlib
import gzip
import importlib.resources
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import rtlink
from rtlink.cli import build_app
from rtlink.config import ServeConfig
from tests.support import run_server

CLIENT_FILES = ["client.js", "client.mjs", "presence.mjs"]


def package_file(name: str) -> bytes:
    return importlib.resources.files("rtlink").joinpath("static", name).read_bytes()


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port; yield its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that shows bodies as sent and adds no Accept-Encoding of its own."""
    async with aiohttp.ClientSession(auto_decompress=False,
                                     skip_auto_headers=["Accept-Encoding"]) as session:
        yield session


@pytest.mark.parametrize("name", CLIENT_FILES)
async def test_client_file_is_served_as_is(name: str) -> None:
    data = package_file(name)
    async with run_server() as server, raw_session() as session:
        async with session.get(f"{server.url}/{name}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.headers["Vary"] == "Accept-Encoding"
            assert "Content-Encoding" not in response.headers
            assert re.fullmatch(r'"[0-9a-f]{16}"', response.headers["ETag"])
            assert await response.read() == data


async def test_the_etag_is_a_hash_of_the_content() -> None:
    async with run_server() as server, raw_session() as session:
        etags = []
        for name in CLIENT_FILES:
            async with session.get(f"{server.url}/{name}") as response:
                etags.append(response.headers["ETag"])
                assert await response.read() == package_file(name)
        async with session.get(f"{server.url}/client.js") as response:
            assert response.headers["ETag"] == etags[0]  # stable
    assert etags[0] != etags[1]


@pytest.mark.parametrize("name", CLIENT_FILES)
async def test_gzip_when_accepted(name: str) -> None:
    data = package_file(name)
    async with run_server() as server, raw_session() as session:
        async with session.get(f"{server.url}/{name}") as response:
            plain_etag = response.headers["ETag"]
        for accept in ("gzip", "gzip, deflate, br", "br;q=1.0, GZip;q=0.5"):
            async with session.get(f"{server.url}/{name}",
                                   headers={"Accept-Encoding": accept}) as response:
                assert response.status == 200
                assert response.headers["Content-Encoding"] == "gzip"
                assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
                assert response.headers["Vary"] == "Accept-Encoding"
                assert response.headers["Cache-Control"] == "no-cache"
                assert response.headers["ETag"] not in ("", plain_etag)
                body = await response.read()
            assert int(response.headers["Content-Length"]) == len(body)
            assert gzip.decompress(body) == data
        for accept in ("identity", "deflate, br", "gzip;q=0", "gzip; q=0.000, br"):
            async with session.get(f"{server.url}/{name}",
                                   headers={"Accept-Encoding": accept}) as response:
                assert "Content-Encoding" not in response.headers, accept
                assert response.headers["ETag"] == plain_etag
                assert await response.read() == data


async def test_a_normal_client_gets_the_bytes() -> None:
    # aiohttp's default session asks for gzip and decompresses, as browsers do.
    async with run_server() as server, aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/client.js") as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert await response.read() == package_file("client.js")


@pytest.mark.parametrize("accept", ["", "gzip"])
async def test_if_none_match_gets_304(accept: str) -> None:
    async with run_server() as server, raw_session() as session:
        url = f"{server.url}/client.js"
        async with session.get(url, headers={"Accept-Encoding": accept}) as response:
            etag = response.headers["ETag"]
        for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            headers = {"Accept-Encoding": accept, "If-None-Match": if_none_match}
            async with session.get(url, headers=headers) as response:
                assert response.status == 304, if_none_match
                assert response.headers["ETag"] == etag
                assert response.headers["Cache-Control"] == "no-cache"
                assert response.headers["Vary"] == "Accept-Encoding"
                assert await response.read() == b""
        other_coding = "" if accept else "gzip"  # the other representation's tag
        for if_none_match in ('"other"', '"0123456789abcdef"', "garbage", etag):
            headers = {"Accept-Encoding": other_coding, "If-None-Match": if_none_match}
            async with session.get(url, headers=headers) as response:
                assert response.status == 200, if_none_match
                assert response.headers["ETag"] != etag


async def test_head() -> None:
    async with run_server() as server, raw_session() as session:
        for accept, body in (("", package_file("client.js")),
                             ("gzip", gzip.compress(package_file("client.js"), 9))):
            async with session.head(f"{server.url}/client.js",
                                    headers={"Accept-Encoding": accept}) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
                assert response.headers["Content-Length"] == str(len(body))
                assert response.headers.get("Content-Encoding", "") == accept
                assert response.headers["ETag"]
                assert await response.read() == b""


async def test_other_methods_get_405() -> None:
    async with run_server() as server, raw_session() as session:
        async with session.post(f"{server.url}/client.js") as response:
            assert response.status == 405


@pytest.mark.parametrize(("path", "prefix"), [("/", ""), ("/a/b/", "/a/b"), ("rt", "/rt")])
async def test_mount_path(path: str, prefix: str) -> None:
    async with run_server(path=path) as server, raw_session() as session:
        base = f"http://127.0.0.1:{server.port}"
        for name in CLIENT_FILES:
            async with session.get(f"{base}{prefix}/{name}") as response:
                assert response.status == 200
                assert await response.read() == package_file(name)
        async with session.get(f"{base}{prefix}/info") as response:
            assert response.status == 200


async def test_serve_client_false_mounts_nothing() -> None:
    app = web.Application()
    rtlink.attach(app, rtlink.Hub(), path="/rt", serve_client=False)
    async with serve(app) as base, raw_session() as session:
        for name in CLIENT_FILES:
            async with session.get(f"{base}/rt/{name}") as response:
                assert response.status == 404
        async with session.get(f"{base}/rt/info") as response:
            assert response.status == 200
            assert (await response.json())["transports"] == ["websocket", "sse", "longpoll"]


async def test_other_endpoints_are_unaffected() -> None:
    async with run_server() as server, raw_session() as session:
        async with session.get(f"{server.url}/info") as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-cache, no-store, no-transform"
            assert (await response.json())["version"] == 1
        async with session.post(f"{server.url}/send", data=b'{"type":"ping"}') as response:
            assert response.status == 200
            assert await response.json() == {"type": "pong"}
        async with session.get(f"{server.url}/client.css") as response:
            assert response.status == 404
        async with session.ws_connect(f"{server.url}/ws", protocols=["rtlink.v1.json"]) as ws:
            frame = await ws.receive_json(timeout=5)
            assert frame["type"] == "welcome"


async def test_a_missing_file_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "client.js").write_bytes(b"var rtlink = {};\n")
    (tmp_path / "static" / "presence.mjs").write_bytes(b"export {};\n")
    app = web.Application()
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, "rtlink.server"):
        patch.setattr(importlib.resources, "files", lambda package: tmp_path)
        rtlink.attach(app, rtlink.Hub(), path="/rt")
    assert [record.getMessage() for record in caplog.records] == [
        "static/client.mjs is missing from the rtlink package (broken install?): "
        "/rt/client.mjs is not served"
    ]
    async with serve(app) as base, raw_session() as session:
        async with session.get(f"{base}/rt/client.js") as response:
            assert response.status == 200
            assert await response.read() == b"var rtlink = {};\n"
        async with session.get(f"{base}/rt/client.mjs") as response:
            assert response.status == 404
        async with session.get(f"{base}/rt/info") as response:
            assert response.status == 200


@pytest.mark.parametrize(("path", "src"), [("/rt", "/rt/client.js"), ("", "/client.js")])
async def test_demo_page_loads_the_served_client(path: str, src: str) -> None:
    app, _ = build_app(ServeConfig(path=path))
    async with serve(app) as base, raw_session() as session:
        async with session.get(f"{base}/") as response:
            assert response.status == 200
            page = await response.text()
        assert f'<script src="{src}"></script>' in page
        assert f'<meta name="rtlink-path" content="{path}">' in page
        assert "{{" not in page
        async with session.get(base + src) as response:
            assert response.status == 200
            assert await response.read() == package_file("client.js")

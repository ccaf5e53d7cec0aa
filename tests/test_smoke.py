"""End-to-end smoke test of the daemon over real sockets."""

from __future__ import annotations

import os
from types import ModuleType

from durable_streamsd.engine import engine, segments
from durable_streamsd.http import connection, response
from durable_streamsd.protocol import app, append, read
from tests.support.client import Client


def test_what_is_tested_is_the_compiled_build() -> None:
    """What ships is the mypyc build (setup.py), so that is what the tests
    run; a failed compile must not leave them quietly testing the
    interpreted code. DS_PURE_PYTHON=1 asks for the interpreted build."""
    modules: list[ModuleType] = [engine, segments, connection, response, app, append, read]
    compiled = {m.__name__: str(m.__file__).endswith(".so") for m in modules}
    expected = not os.environ.get("DS_PURE_PYTHON")
    assert compiled == dict.fromkeys(compiled, expected)


def test_create_append_read(client: Client) -> None:
    r = client.request("PUT", "/s/a", b"hello", {"Content-Type": "text/plain"})
    assert r.status == 201
    r = client.request("POST", "/s/a", b" world", {"Content-Type": "text/plain"})
    assert r.status == 204
    r = client.request("GET", "/s/a")
    assert r.status == 200 and r.body == b"hello world"
    assert r.header("stream-up-to-date") == "true"

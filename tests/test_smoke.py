"""End-to-end smoke test of the daemon over real sockets."""

from __future__ import annotations

from tests.support.client import Client


def test_create_append_read(client: Client) -> None:
    r = client.request("PUT", "/s/a", b"hello", {"Content-Type": "text/plain"})
    assert r.status == 201
    r = client.request("POST", "/s/a", b" world", {"Content-Type": "text/plain"})
    assert r.status == 204
    r = client.request("GET", "/s/a")
    assert r.status == 200 and r.body == b"hello world"
    assert r.header("stream-up-to-date") == "true"

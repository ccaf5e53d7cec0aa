"""Repeated catch-up reads are answered from encoded answers; these tests
read each URL twice or more (the later reads come from the cache) and check
that every change to the stream shows at once, and that nothing about a
request other than its stream and query is taken from an earlier one."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from tests.support.client import Client, Reply

OCTET = {"Content-Type": "application/octet-stream"}


def read_twice(client: Client, target: str, headers: dict[str, str] | None = None) -> Reply:
    first = client.request("GET", target, headers=headers)
    second = client.request("GET", target, headers=headers)
    assert (second.status, second.body) == (first.status, first.body)
    assert second.header("etag") == first.header("etag")
    assert second.header("stream-next-offset") == first.header("stream-next-offset")
    return second


def test_append_after_cached_reads_is_seen(client: Client) -> None:
    assert client.request("PUT", "/c/a", b"one", OCTET).status == 201
    r = read_twice(client, "/c/a?offset=-1")
    assert r.body == b"one" and r.header("stream-up-to-date") == "true"
    offset = r.header("stream-next-offset")
    assert offset is not None
    assert read_twice(client, f"/c/a?offset={offset}").body == b""
    assert client.request("POST", "/c/a", b"two", OCTET).status == 204
    assert client.request("GET", "/c/a?offset=-1").body == b"onetwo"
    assert client.request("GET", f"/c/a?offset={offset}").body == b"two"


def test_close_after_cached_reads_is_seen(client: Client) -> None:
    assert client.request("PUT", "/c/b", b"data", OCTET).status == 201
    assert read_twice(client, "/c/b?offset=-1").header("stream-closed") is None
    assert client.request("POST", "/c/b", None, {"Stream-Closed": "true"}).status == 204
    r = client.request("GET", "/c/b?offset=-1")
    assert r.body == b"data" and r.header("stream-closed") == "true"


def test_recreated_stream_never_gets_the_old_answer(client: Client) -> None:
    assert client.request("PUT", "/c/r", b"old", OCTET).status == 201
    old = read_twice(client, "/c/r?offset=-1")
    assert client.request("DELETE", "/c/r").status == 204
    assert client.request("GET", "/c/r?offset=-1").status == 404
    assert client.request("PUT", "/c/r", b"new!", OCTET).status == 201
    r = read_twice(client, "/c/r?offset=-1")
    assert r.body == b"new!" and r.header("etag") != old.header("etag")
    # An offset of the old incarnation is still refused.
    assert client.request("GET", f"/c/r?offset={old.header('stream-next-offset')}").status == 400


def test_conditional_and_head_requests_are_answered_per_request(client: Client) -> None:
    assert client.request("PUT", "/c/e", b"etag me", OCTET).status == 201
    r = read_twice(client, "/c/e?offset=-1")
    tag = r.header("etag")
    assert tag is not None
    assert client.request("GET", "/c/e?offset=-1", headers={"If-None-Match": tag}).status == 304
    assert client.request("GET", "/c/e?offset=-1", headers={"If-None-Match": '"other"'}).status == 200
    h = client.request("HEAD", "/c/e")
    assert h.status == 200 and h.body == b""


def test_bad_queries_are_refused_every_time(client: Client) -> None:
    assert client.request("PUT", "/c/q", b"x", OCTET).status == 201
    read_twice(client, "/c/q?offset=-1")
    for _ in range(2):
        assert client.request("GET", "/c/q?offset=zzz").status == 400
        assert client.request("GET", "/c/q?offset=-1&offset=-1").status == 400
        assert client.request("GET", "/c/q?offset=-1&live=nope").status == 400


def test_expiring_streams_count_their_cache_lifetime_down(client: Client) -> None:
    expires = datetime.fromtimestamp(time.time() + 6, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert client.request("PUT", "/c/t", b"brief", {**OCTET, "Stream-Expires-At": expires}).status == 201
    first = _max_age(client.request("GET", "/c/t?offset=-1").header("cache-control"))
    time.sleep(1.5)
    later = _max_age(client.request("GET", "/c/t?offset=-1").header("cache-control"))
    assert later < first <= 6


def _max_age(cache_control: str | None) -> int:
    assert cache_control is not None
    m = re.search(r"max-age=(\d+)", cache_control)
    assert m is not None, cache_control
    return int(m.group(1))


def test_json_streams_keep_whole_messages_after_cached_reads(client: Client) -> None:
    assert client.request("PUT", "/c/j", b'{"a":1}', {"Content-Type": "application/json"}).status == 201
    assert read_twice(client, "/c/j?offset=-1").body == b'[{"a":1}]'
    assert client.request("POST", "/c/j", b'[{"b":2},{"c":3}]', {"Content-Type": "application/json"}).status == 204
    assert client.request("GET", "/c/j?offset=-1").body == b'[{"a":1},{"b":2},{"c":3}]'

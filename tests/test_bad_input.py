"""Malformed requests against the real daemon.

Every bad request must get a specific 4xx and change nothing: after each one
the stream's tail, closure, configuration and content are compared with what
they were before, and a rejected PUT must not leave a stream behind. Stream
names that look like path traversal must stay names and never touch files
outside the data directory.

Most cases share one daemon per module (each test uses its own stream names)
so the ~150 cases run in seconds; tests that inspect the data directory or
need other limits start their own.
"""

from __future__ import annotations

import itertools
import re
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.client import Client, Reply, raw_exchange
from tests.support.server import ServerProcess

JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
MAX_SAFE = 2**53 - 1
_names = itertools.count()


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One daemon for the many small cases of this module."""
    srv = ServerProcess(tmp_path_factory.mktemp("bad-input") / "data", "--long-poll-timeout", "1").start()
    yield srv
    srv.kill()


@pytest.fixture
def c(shared: ServerProcess) -> Iterator[Client]:
    cl = Client(shared.port)
    yield cl
    cl.close()


def fresh(prefix: str = "s") -> str:
    """A stream path no other test uses."""
    return f"/{prefix}/{next(_names)}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Snapshot:
    """Everything a client can observe about a stream."""

    status: int
    tail: str | None
    closed: str | None
    content_type: str | None
    ttl: str | None
    expires_at: str | None
    body: bytes


def snapshot(client: Client, path: str) -> Snapshot:
    h = client.request("HEAD", path)
    body = client.request("GET", path + "?offset=-1").body if h.status == 200 else b""
    return Snapshot(
        h.status,
        h.header("stream-next-offset"),
        h.header("stream-closed"),
        h.header("content-type"),
        h.header("stream-ttl"),
        h.header("stream-expires-at"),
        body,
    )


def assert_rejected(
    client: Client,
    method: str,
    target: str,
    status: int,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    watch: Sequence[str] = (),
) -> Reply:
    """Send one bad request; check its status and that no watched stream
    (by default the target's path) changed in any observable way."""
    paths = list(watch) or [target.split("?", 1)[0]]
    before = {p: snapshot(client, p) for p in paths}
    r = client.request(method, target, body, headers)
    assert r.status == status, f"{method} {target[:80]} -> {r.status} {r.body[:200]!r}, expected {status}"
    after = {p: snapshot(client, p) for p in paths}
    assert after == before, f"rejected {method} {target[:80]} changed state"
    return r


def assert_absent(client: Client, path: str) -> None:
    r = client.request("HEAD", path)
    assert r.status == 404, f"{path[:80]} exists after a rejected create"


def make_stream(client: Client, path: str, body: bytes | str, headers: dict[str, str]) -> str:
    """Create a stream and return its tail offset."""
    r = client.request("PUT", path, body, headers)
    assert r.status == 201, r
    tail = r.header("stream-next-offset")
    assert tail is not None
    return tail


@dataclass(frozen=True)
class JsonStream:
    path: str
    boundary: str  # offset between the first and the second message
    tail: str


@pytest.fixture
def js(c: Client) -> JsonStream:
    """A JSON stream holding two messages, appended separately."""
    path = fresh("json")
    boundary = make_stream(c, path, '{"a":1}', JSON)
    r = c.request("POST", path, '{"b":2}', JSON)
    assert r.status == 204
    tail = r.header("stream-next-offset")
    assert tail is not None and tail > boundary
    assert c.request("GET", f"{path}?offset={boundary}").body == b'[{"b":2}]'
    return JsonStream(path, boundary, tail)


@pytest.fixture
def ts(c: Client) -> str:
    """A text stream holding 'hello'."""
    path = fresh("text")
    make_stream(c, path, "hello", TEXT)
    return path


def forge(offset: str, delta: int) -> str:
    """An offset token of this server's format (`<16 hex>_<16 hex position>`),
    moved by delta bytes: well formed, but never minted by the server."""
    prefix, pos = offset.split("_")
    return f"{prefix}_{int(pos, 16) + delta:016x}"


# --------------------------------------------------------------- offsets


MALFORMED_OFFSETS = [
    "garbage",
    "../x",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "0000000000000000_0000000000000000%00",
    "a,b",
    "a%2Cb",
    "x" * 300,
    "1" * 5000,
    "-2",
    "NOW",
    "Now",
    "",
    "0000000000000000_000000000000000g",
    "0000000000000000_000000000000000",
    "0000000000000000_00000000000000000",
    "0000000000000000-0000000000000000",
    "0000000000000000_0000000000000000_0",
    "1000000000000000_0000000000000000",
    "0000000000000000_000000000000000A",
    "%20-1",
]
LIVE_MODES = ["", "&live=long-poll", "&live=sse"]


@pytest.mark.parametrize("live", LIVE_MODES, ids=["catch-up", "long-poll", "sse"])
@pytest.mark.parametrize("offset", MALFORMED_OFFSETS, ids=[o[:40] or "empty" for o in MALFORMED_OFFSETS])
def test_malformed_offset(c: Client, js: JsonStream, offset: str, live: str) -> None:
    """Anything that is not -1, now or a token this server minted is 400 (section 8)."""
    assert_rejected(c, "GET", f"{js.path}?offset={offset}{live}", 400)


@pytest.mark.parametrize("live", LIVE_MODES, ids=["catch-up", "long-poll", "sse"])
@pytest.mark.parametrize("delta", [1, 8, 0x1000, 2**40], ids=["tail+1", "tail+8", "tail+4k", "tail+2^40"])
def test_offset_beyond_tail(c: Client, js: JsonStream, delta: int, live: str) -> None:
    """A well-formed token past the tail names no position: 400, at once
    (a long-poll must not park there waiting for data that would skip bytes)."""
    t0 = time.monotonic()
    assert_rejected(c, "GET", f"{js.path}?offset={forge(js.tail, delta)}{live}", 400)
    assert time.monotonic() - t0 < 0.9


@pytest.mark.parametrize("live", LIVE_MODES, ids=["catch-up", "long-poll", "sse"])
@pytest.mark.parametrize("delta", [-3, -1, 1], ids=["boundary-3", "boundary-1", "boundary+1"])
def test_offset_inside_a_json_message(c: Client, js: JsonStream, delta: int, live: str) -> None:
    """An offset in the middle of a JSON message would return half a message:
    reject it (section 9.1.1 keeps message boundaries)."""
    assert_rejected(c, "GET", f"{js.path}?offset={forge(js.boundary, delta)}{live}", 400)


def test_offset_inside_text_is_a_valid_position(c: Client, ts: str) -> None:
    """Sanity for the JSON cases: in a byte stream every position up to the tail is one."""
    tail = c.request("HEAD", ts).header("stream-next-offset")
    assert tail is not None
    r = c.request("GET", f"{ts}?offset={forge(tail, -3)}")
    assert r.status == 200 and r.body == b"llo"


@pytest.mark.parametrize(
    "query",
    [
        "offset=-1&offset=-1",
        "offset=-1&offset=now",
        "offset=-1&live=long-poll&live=long-poll",
        "offset=-1&live=long-poll&cursor=1&cursor=2",
        "offset=-1&live=bogus",
        "offset=-1&live=",
        "offset=-1&live=LONG-POLL",
        "offset=-1&live=longpoll",
        "offset=-1&live=SSE",
        "live=long-poll",
        "live=sse",
        "offset=-1&live=%ff",
        "offset=%ff",
    ],
)
def test_bad_read_parameters(c: Client, js: JsonStream, query: str) -> None:
    """Repeated, unknown or incomplete read parameters are 400 (sections 5.6-5.8)."""
    assert_rejected(c, "GET", f"{js.path}?{query}", 400)


# ----------------------------------------------------------- TTL and expiry


BAD_TTLS = ["-1", "1.5", "1e3", "+5", "007", "abc", "", "0x10", "1 2", "3600.0", str(MAX_SAFE + 1), "1\u00b2"]


@pytest.mark.parametrize("ttl", BAD_TTLS)
def test_bad_ttl_creates_nothing(c: Client, ttl: str) -> None:
    """Stream-TTL is a plain decimal without sign, zeros or exponent (section 5.1)."""
    path = fresh()
    assert_rejected(c, "PUT", path, 400, headers=TEXT | {"Stream-TTL": ttl})
    assert_absent(c, path)


@pytest.mark.parametrize("ttl", ["-1", "1.5", "007"])
def test_bad_ttl_on_existing_stream_changes_nothing(c: Client, ts: str, ttl: str) -> None:
    """A malformed PUT to an existing stream is a 400, not a reconfiguration."""
    assert_rejected(c, "PUT", ts, 400, headers=TEXT | {"Stream-TTL": ttl})


BAD_EXPIRES = [
    "tomorrow",
    "2030-01-01",
    "2030-01-01T00:00:00",
    "2030-01-01 00:00:00Z",
    "2030-13-01T00:00:00Z",
    "2030-02-30T00:00:00Z",
    "2030-01-01T25:00:00Z",
    "2030-01-01T00:00:00+24:00",
    "1700000000",
    "",
    "Wed, 01 Jan 2030 00:00:00 GMT",
]


@pytest.mark.parametrize("value", BAD_EXPIRES)
def test_bad_expires_at_creates_nothing(c: Client, value: str) -> None:
    """Stream-Expires-At must be an RFC 3339 timestamp (section 5.1)."""
    path = fresh()
    assert_rejected(c, "PUT", path, 400, headers=TEXT | {"Stream-Expires-At": value})
    assert_absent(c, path)


def test_ttl_and_expires_at_together_create_nothing(c: Client) -> None:
    """Both expiry styles at once is ambiguous: 400 (section 5.1)."""
    path = fresh()
    both = {"Stream-TTL": "60", "Stream-Expires-At": "2099-01-01T00:00:00Z"}
    assert_rejected(c, "PUT", path, 400, headers=TEXT | both)
    assert_absent(c, path)


# ------------------------------------------------------------ JSON bodies


BAD_JSON = [
    b"{",
    b"nope",
    b"[1,]",
    b'{"a":1}{"b":2}',
    b"1 2",
    b"NaN",
    b"Infinity",
    b"'single'",
    b"\x00",
    b"\xff\xfe",
    b'"\xff"',
    b'{"k":"\xc3\x28"}',
    b'["\xed\xa0\x80"]',
]


@pytest.mark.parametrize("closing", [False, True], ids=["append", "append-and-close"])
@pytest.mark.parametrize("body", BAD_JSON, ids=[repr(b)[2:20] for b in BAD_JSON])
def test_invalid_json_append(c: Client, js: JsonStream, body: bytes, closing: bool) -> None:
    """Invalid JSON or invalid UTF-8 is 400 (section 9.1.4), and a
    Stream-Closed on the same request must not close the stream either."""
    headers = JSON | ({"Stream-Closed": "true"} if closing else {})
    assert_rejected(c, "POST", js.path, 400, body, headers)


BAD_JSON_CREATE = BAD_JSON[:4] + BAD_JSON[-3:]


@pytest.mark.parametrize("body", BAD_JSON_CREATE, ids=[repr(b)[2:20] for b in BAD_JSON_CREATE])
def test_invalid_json_create(c: Client, body: bytes) -> None:
    """Initial content is validated like an append; nothing is created."""
    path = fresh()
    assert_rejected(c, "PUT", path, 400, body, JSON)
    assert_absent(c, path)


@pytest.mark.parametrize("body", [b"[]", b" [ ] ", b"[\n]"])
def test_empty_array_append(c: Client, js: JsonStream, body: bytes) -> None:
    """POST [] appends nothing and is rejected (section 9.1.3)."""
    assert_rejected(c, "POST", js.path, 400, body, JSON)


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_deeply_nested_json_is_400_and_server_still_serves(c: Client, js: JsonStream, method: str) -> None:
    """100000 unclosed `[` (and the balanced version) must be a clean 400, not
    a crash or a stack overflow."""
    for body in (b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000):
        path = js.path if method == "POST" else fresh()
        assert_rejected(c, method, path, 400, body, JSON, watch=[path, js.path])
    r = c.request("GET", js.path)
    assert r.status == 200 and r.body == b'[{"a":1},{"b":2}]'


@pytest.mark.parametrize("method", ["PUT", "POST"])
@pytest.mark.parametrize("depth", [1000, 1024])
def test_moderately_nested_json_is_never_a_server_error(c: Client, js: JsonStream, method: str, depth: int) -> None:
    """Valid JSON nested about a thousand deep: the server may store it or
    refuse it with 400, but a 5xx means it crashed on client input."""
    body = b"[" * depth + b"]" * depth
    path = js.path if method == "POST" else fresh()
    before = snapshot(c, path)
    r = c.request(method, path, body, JSON)
    assert r.status < 500, f"{method} depth {depth} -> {r.status} {r.body!r}"
    if r.status >= 400:
        assert r.status == 400 and snapshot(c, path) == before


# ----------------------------------------------------------- Content-Type


@pytest.mark.parametrize(
    "headers", [{}, {"Content-Type": ""}, {"Content-Type": "   "}], ids=["absent", "empty", "blank"]
)
def test_append_without_content_type(c: Client, ts: str, headers: dict[str, str]) -> None:
    """A body without a Content-Type is 400 (section 5.2)."""
    assert_rejected(c, "POST", ts, 400, "more", headers)


@pytest.mark.parametrize("closing", [False, True], ids=["append", "append-and-close"])
def test_append_with_mismatched_content_type(c: Client, js: JsonStream, ts: str, closing: bool) -> None:
    """A valid but different type is 409 (sections 5.2, 12.4), and the
    stream stays open even when the request also asked to close it."""
    extra = {"Stream-Closed": "true"} if closing else {}
    assert_rejected(c, "POST", js.path, 409, '{"c":3}', TEXT | extra)
    assert_rejected(c, "POST", js.path, 409, '{"c":3}', {"Content-Type": "application/ndjson"} | extra)
    assert_rejected(c, "POST", ts, 409, '"x"', JSON | extra)
    assert_rejected(c, "POST", ts, 409, "x", {"Content-Type": "text/html"} | extra)


MALFORMED_TYPES = [
    "json",
    "application/",
    "/json",
    "application/json/x",
    "app lication/json",
    "a b/c",
    "text/plain,text/html",
]


@pytest.mark.parametrize("ctype", MALFORMED_TYPES)
def test_malformed_content_type_append(c: Client, js: JsonStream, ctype: str) -> None:
    """A Content-Type that is not type/subtype is 400, not 409."""
    assert_rejected(c, "POST", js.path, 400, '{"c":3}', {"Content-Type": ctype})


@pytest.mark.parametrize("ctype", MALFORMED_TYPES)
def test_malformed_content_type_append_to_missing_stream(c: Client, ctype: str) -> None:
    """A malformed request is 400 before a missing stream is 404 (the
    stream's own type skips parsing only when there is a stream)."""
    path = fresh()
    assert_rejected(c, "POST", path, 400, "x", {"Content-Type": ctype})
    assert_absent(c, path)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE"])
def test_missing_stream_is_404_naming_the_decoded_path(c: Client, method: str) -> None:
    path = fresh() + "/caf%C3%A9"
    body = "x" if method == "POST" else None
    r = assert_rejected(c, method, path, 404, body, TEXT)
    if method != "HEAD":
        assert r.body.decode() == f"stream not found: {path.replace('%C3%A9', 'é')}\n"
    assert_absent(c, path)


def test_append_with_same_type_spelled_differently(c: Client, js: JsonStream) -> None:
    """A type equal to the stream's apart from case and parameters is
    parsed and accepted; the next append in the stream's own spelling too."""
    r = c.request("POST", js.path, '{"c":3}', {"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status == 204, r.body
    r = c.request("POST", js.path, '{"c":4}', JSON)
    assert r.status == 204, r.body
    read = c.request("GET", js.path + "?offset=-1")
    assert read.status == 200 and read.body.endswith(b'{"c":3},{"c":4}]')


@pytest.mark.parametrize("ctype", MALFORMED_TYPES)
def test_malformed_content_type_create(c: Client, ctype: str) -> None:
    """A stream is never created with an unparseable type."""
    path = fresh()
    assert_rejected(c, "PUT", path, 400, "x", {"Content-Type": ctype})
    assert_absent(c, path)


@pytest.mark.parametrize(
    "headers",
    [TEXT, {}, {"Stream-Closed": "false"}, {"Stream-Closed": "yes"}, {"Stream-Closed": "1"}, {"Stream-Closed": ""}],
    ids=["typed", "bare", "closed-false", "closed-yes", "closed-1", "closed-empty"],
)
def test_empty_append_without_stream_closed(c: Client, ts: str, headers: dict[str, str]) -> None:
    """An empty POST is only valid as a close; Stream-Closed counts only when
    it is exactly `true` (sections 4.1, 5.2)."""
    assert_rejected(c, "POST", ts, 400, b"", headers)


@pytest.mark.parametrize("seq", ["", "x" * 2000])
def test_bad_stream_seq(c: Client, ts: str, seq: str) -> None:
    """An empty or absurdly long Stream-Seq is a malformed header."""
    assert_rejected(c, "POST", ts, 400, "more", TEXT | {"Stream-Seq": seq})


# ------------------------------------------------------------- producers


BAD_PRODUCERS = [
    {"Producer-Id": "p"},
    {"Producer-Id": "p", "Producer-Epoch": "0"},
    {"Producer-Id": "p", "Producer-Seq": "0"},
    {"Producer-Epoch": "0", "Producer-Seq": "0"},
    {"Producer-Epoch": "0"},
    {"Producer-Id": "", "Producer-Epoch": "0", "Producer-Seq": "0"},
    {"Producer-Id": "   ", "Producer-Epoch": "0", "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "x", "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "1.0", "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "-1", "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "+1", "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "01", "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "", "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "1e2", "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "x"},
    {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "-1"},
    {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "0.5"},
    {"Producer-Id": "p", "Producer-Epoch": str(MAX_SAFE + 1), "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": str(2**64), "Producer-Seq": "0"},
    {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": str(MAX_SAFE + 1)},
    {"Producer-Id": "p" * 5000, "Producer-Epoch": "0", "Producer-Seq": "0"},
]
PRODUCER_IDS = [
    "id-only",
    "id-epoch",
    "id-seq",
    "epoch-seq",
    "epoch-only",
    "empty-id",
    "blank-id",
    "epoch-x",
    "epoch-1.0",
    "epoch-neg",
    "epoch-plus",
    "epoch-leading-zero",
    "epoch-empty",
    "epoch-exp",
    "seq-x",
    "seq-neg",
    "seq-frac",
    "epoch-2^53",
    "epoch-2^64",
    "seq-2^53",
    "id-5000",
]


@pytest.mark.parametrize("closing", [False, True], ids=["append", "close-only"])
@pytest.mark.parametrize("producer", BAD_PRODUCERS, ids=PRODUCER_IDS)
def test_bad_producer_headers(c: Client, ts: str, producer: dict[str, str], closing: bool) -> None:
    """Producer headers come as a valid trio or not at all (section 5.2.1);
    a bad trio must not append, and must not close the stream either."""
    if closing:
        assert_rejected(c, "POST", ts, 400, b"", producer | {"Stream-Closed": "true"})
    else:
        assert_rejected(c, "POST", ts, 400, "more", TEXT | producer)


def test_producer_epoch_at_max_safe_integer_is_accepted(c: Client, ts: str) -> None:
    """Sanity for the bound: 2^53-1 itself is a valid epoch."""
    r = c.request("POST", ts, "!", TEXT | {"Producer-Id": "p", "Producer-Epoch": str(MAX_SAFE), "Producer-Seq": "0"})
    assert r.status == 200 and r.header("producer-epoch") == str(MAX_SAFE)


# --------------------------------------------------------------- methods


@pytest.mark.parametrize("method", ["PATCH", "TRACE", "PROPFIND", "FOO", "CONNECT"])
def test_unknown_method_is_405_with_allow(c: Client, ts: str, method: str) -> None:
    """Methods the protocol does not define are 405 with an Allow header."""
    if method == "CONNECT":
        # CONNECT takes an authority, not a path; any 4xx and no change will do.
        before = snapshot(c, ts)
        raw = raw_exchange(c.port, f"CONNECT 127.0.0.1:{c.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert re.match(rb"HTTP/1.1 4\d\d ", raw), raw[:100]
        assert snapshot(c, ts) == before
        return
    r = assert_rejected(c, method, ts, 405, "x", TEXT)
    allow = {m.strip() for m in (r.header("allow") or "").split(",")}
    assert {"GET", "HEAD", "POST", "PUT", "DELETE"} <= allow


# ----------------------------------------------------- reserved __ds paths


RESERVED = ["/__ds", "/__ds/subscriptions/x", "/s/__ds", "/s/x/__ds/subscriptions/1", "/%5F%5Fds/x", "/__ds/"]


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
@pytest.mark.parametrize("path", RESERVED)
def test_reserved_paths_are_404(c: Client, method: str, path: str) -> None:
    """`__ds` is routed before streams (section 6) and not served here: 404,
    and no stream ever appears there."""
    body = "x" if method in ("PUT", "POST") else None
    assert_rejected(c, method, path, 404, body, TEXT)
    assert c.request("GET", path).status == 404


@pytest.mark.parametrize("path", RESERVED)
def test_reserved_paths_preflight_creates_nothing(c: Client, path: str) -> None:
    """OPTIONS is answered as a CORS preflight everywhere, __ds included; it
    must still never create or expose a stream there."""
    r = c.request("OPTIONS", path, None, {"Origin": "http://example", "Access-Control-Request-Method": "PUT"})
    assert r.status in (200, 204, 404)
    assert c.request("HEAD", path).status == 404


# --------------------------------------------------------------- forks


@pytest.mark.parametrize(
    "headers",
    [
        {"Stream-Forked-From": "/s/src"},
        {"Stream-Fork-Offset": "-1"},
        {"Stream-Fork-Sub-Offset": "0"},
        {"Stream-Forked-From": "/s/src", "Stream-Fork-Offset": "0000000000000000_0000000000000000"},
    ],
    ids=["forked-from", "fork-offset", "fork-sub-offset", "both"],
)
def test_fork_headers_are_501(c: Client, ts: str, headers: dict[str, str]) -> None:
    """Forks (section 4.2) are not implemented: 501, never a plain create that
    silently ignores the fork headers."""
    path = fresh()
    assert_rejected(c, "PUT", path, 501, None, TEXT | headers, watch=[path, ts])
    assert_absent(c, path)
    assert_rejected(c, "PUT", ts, 501, None, TEXT | headers | {"Stream-Forked-From": path})


# ------------------------------------------------------ HTTP-level attacks


def test_huge_header_is_431_and_appends_nothing(c: Client, ts: str) -> None:
    """A head over --max-header-bytes is refused before anything runs."""
    before = snapshot(c, ts)
    raw = raw_exchange(
        c.port,
        f"POST {ts} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nX-Big: {'a' * 20000}\r\n"
        "Content-Length: 4\r\n\r\nmore".encode(),
    )
    assert raw.startswith(b"HTTP/1.1 431 "), raw[:100]
    assert snapshot(c, ts) == before


def test_smuggled_request_is_not_executed(c: Client, ts: str) -> None:
    """Content-Length with Transfer-Encoding is refused, and the request hidden
    in the body (an append) never runs."""
    before = snapshot(c, ts)
    hidden = f"POST {ts} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nEVIL".encode()
    body = b"0\r\n\r\n" + hidden
    front = (
        f"POST {ts} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    raw = raw_exchange(c.port, front + body)
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:100]
    assert raw.count(b"HTTP/1.1 ") == 1
    assert snapshot(c, ts) == before


def test_h2c_upgrade_offer_does_not_lose_the_body(c: Client) -> None:
    """`curl --http2` on http:// sends `Upgrade: h2c` with the request. The
    server may ignore the offer or refuse the request, but it must not create
    the stream without the body it was sent."""
    path = fresh()
    req = (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    ).encode()
    raw = raw_exchange(c.port, req, timeout=2.0)
    after = snapshot(c, path)
    if raw.startswith(b"HTTP/1.1 201 "):
        assert after.body == b"hello", f"stream created with {after.body!r} instead of the body sent"
    else:
        assert re.match(rb"HTTP/1.1 4\d\d ", raw), raw[:100]
        assert after.status == 404
    assert raw.count(b"HTTP/1.1 ") == 1, f"one request, {raw.count(b'HTTP/1.1 ')} responses"


def test_h2c_upgrade_offer_does_not_close_without_appending(c: Client, ts: str) -> None:
    """Append-and-close with an `Upgrade: h2c` offer: either the body is
    appended and the stream closed, or nothing happens."""
    req = (
        f"POST {ts} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Type: text/plain\r\nStream-Closed: true\r\n"
        "Content-Length: 6\r\n\r\n world"
    ).encode()
    before = snapshot(c, ts)
    raw_exchange(c.port, req, timeout=2.0)
    after = snapshot(c, ts)
    assert after == before or (after.body == b"hello world" and after.closed == "true"), after


# ------------------------------------------------------- body size limits


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Client]:
    """A daemon with --max-append-bytes 1024."""
    srv = ServerProcess(tmp_path / "d", "--max-append-bytes", "1024").start()
    cl = Client(srv.port)
    yield cl
    cl.close()
    srv.kill()


def test_append_over_max_append_bytes(small: Client) -> None:
    """Bodies over --max-append-bytes are 413 and append nothing; exactly the
    limit is accepted (section 5.2)."""
    c = small
    ts = fresh()
    make_stream(c, ts, "hello", TEXT)
    assert_rejected(c, "POST", ts, 413, b"x" * 1025, TEXT)
    assert_rejected(c, "POST", ts, 413, b"x" * 4000, TEXT | {"Stream-Closed": "true"})
    jp = fresh()
    make_stream(c, jp, "[]", JSON)
    assert_rejected(c, "POST", jp, 413, b"[" + b"1," * 600 + b"1]", JSON)
    r = c.request("POST", ts, b"y" * 1024, TEXT)
    assert r.status == 204
    assert snapshot(c, ts).body == b"hello" + b"y" * 1024


def test_create_over_max_append_bytes(small: Client) -> None:
    """Initial content counts too: 413 and no stream."""
    path = fresh()
    assert_rejected(small, "PUT", path, 413, b"x" * 2000, TEXT)
    assert_absent(small, path)


def test_413_from_content_length_before_body_is_sent(small: Client) -> None:
    """The daemon answers 413 from the declared length alone, so a client
    about to upload a megabyte learns before sending it."""
    c = small
    ts = fresh()
    make_stream(c, ts, "hello", TEXT)
    before = snapshot(c, ts)
    with socket.create_connection(("127.0.0.1", c.port), timeout=5) as s:
        head = f"POST {ts} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n"
        s.sendall(head.encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 413 ")
    assert snapshot(c, ts) == before


def test_chunked_append_over_max_append_bytes(small: Client) -> None:
    """Chunked uploads are counted as they arrive: 413, nothing appended."""
    c = small
    ts = fresh()
    make_stream(c, ts, "hello", TEXT)
    before = snapshot(c, ts)
    chunk = b"200\r\n" + b"z" * 512 + b"\r\n"
    raw = raw_exchange(
        c.port,
        f"POST {ts} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + chunk * 3
        + b"0\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 413 "), raw[:100]
    assert snapshot(c, ts) == before


# ----------------------------------------------- names are not file paths


def traversal_names(marker: str) -> list[str]:
    return [
        f"/../../{marker}",
        f"/s/../../../../../../../../tmp/{marker}",
        f"/s/%2e%2e/%2e%2e/%2e%2e/{marker}",
        f"/x/%2e%2e%2f%2e%2e%2f{marker}",
        f"/s/..%5c..%5c{marker}",
        f"/s/....//....//{marker}",
        f"/s/%2Fetc%2F{marker}",
        f"/s/~/{marker}",
        "/..",
        "/.",
        f"/s/./{marker}/./.",
        f"/streams/../wal/{marker}",
        f"/s/{marker}/" + "a" * 8000,
        f"/s/{marker}-%C3%A9-%E2%80%AE",
    ]


def test_traversal_looking_names_stay_inside_the_data_dir(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    """Stream names are names (section 12.2): traversal-looking ones are stored
    and read back like any other and never create, read or touch files
    outside the data directory, even after a restart replays them."""
    marker = f"escape-{uuid.uuid4().hex[:12]}"
    names = traversal_names(marker)
    for i, name in enumerate(names):
        assert client.request("PUT", name, f"content {i}", TEXT).status == 201, name
        assert client.request("POST", name, "!", TEXT).status == 204, name
    for name in names:
        r = client.request("GET", name)
        assert r.status == 200 and r.body.startswith(b"content ") and r.body.endswith(b"!"), name
    assert client.request("GET", names[0]).body == b"content 0!"
    # A NUL is not allowed in a name: rejected before anything is stored.
    assert client.request("PUT", f"/s/a%00{marker}", "x", TEXT).status == 400
    assert client.request("DELETE", names[1]).status == 204

    server.stop()
    server.start()
    fresh_client = Client(server.port)
    try:
        assert fresh_client.request("GET", names[1]).status == 404
        for name in names[2:]:
            assert fresh_client.request("GET", name).status == 200, name
    finally:
        fresh_client.close()

    data = (tmp_path / "data").resolve()
    for p in tmp_path.rglob("*"):
        rel = p.relative_to(tmp_path)
        assert marker not in str(rel), f"a stream name became a file name: {rel}"
        assert rel.parts[0] == "data" or re.fullmatch(r"server-\d+\.log", rel.name), f"file outside data dir: {rel}"
        assert p.resolve().is_relative_to(data) or rel.parts[0] != "data"
    for p in data.iterdir():
        assert p.name in (
            "streams",
            "wal",
            "catalog.json",
            "catalog.json.tmp",
            "catalog.prev.json",
            "catalog.prev.json.tmp",
        ), f"unexpected entry {p.name}"
    for p in (data / "streams").iterdir():
        assert re.fullmatch(r"[0-9a-f]{16}", p.name), f"stream directory not named by id: {p.name}"
    for escaped in (Path("/tmp") / marker, tmp_path.parent / marker, tmp_path.parent.parent / marker):
        assert not escaped.exists()

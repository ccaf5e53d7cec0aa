"""The HTTP layer on its own: `serve()` with a trivial echo handler, no streams.

Each test runs the real server on a uvloop loop in a background thread and
talks to it over real sockets with hand-written bytes, so framing, pipelining,
limits and timeouts are exercised the way misbehaving clients exercise them.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvloop

from durable_streamsd.http.connection import ServerState, serve
from durable_streamsd.http.limits import HttpLimits
from durable_streamsd.http.request import Request
from durable_streamsd.http.response import Responder

DEFER_SECONDS = 0.1
TEXT = b"content-type: text/plain\r\n"


# --------------------------------------------------------------- the server


class EchoApp:
    """Echoes what it was handed; `/later*` answers from a timer, `/boom` raises.

    It records every request it sees, so tests can prove that rejected
    requests never reached the application.
    """

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, req: Request, res: Responder) -> None:
        self.seen.append(f"{req.method} {req.path}")
        if req.path == "/boom":
            raise RuntimeError("handler failure (provoked by the test)")
        if req.path == "/stream-boom":
            res.start(200, TEXT)
            res.write(b"partial")
            raise RuntimeError("handler failure mid-stream (provoked by the test)")
        body = f"{req.method} {req.path} q={req.query} n={len(req.body)}\n".encode() + req.body
        if req.path.startswith("/later"):
            asyncio.get_running_loop().call_later(DEFER_SECONDS, res.send, 200, TEXT, body)
            return
        res.send(200, TEXT, body)


class EchoServer:
    """`serve()` on its own uvloop loop in a daemon thread, on an ephemeral port."""

    def __init__(self, limits: HttpLimits) -> None:
        self.app = EchoApp()
        self.state = ServerState(handler=self.app, limits=limits)
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="echo-server", daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(serve(self.state, "127.0.0.1", 0), self.loop).result(10)
        self.port: int = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            for conn in list(self.state.connections):
                conn.close()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def start_echo() -> Iterator[Callable[..., EchoServer]]:
    """Factory: start an echo server with the given HttpLimits fields."""
    servers: list[EchoServer] = []

    def start(**limits: Any) -> EchoServer:
        srv = EchoServer(HttpLimits(**limits))
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


# --------------------------------------------------------------- the client


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class RawConn:
    """One socket; reads responses exactly as framed, so a test can tell which
    bytes answer which request and whether the server closed the connection."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"server closed the connection; unparsed bytes: {self.buf[:200]!r}")
        self.buf += data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_response(self) -> Response:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._take(2)
            self._take(2)
            return Response(status, headers, b"".join(parts))
        return Response(status, headers, self._take(int(headers.get("content-length", "0"))))

    def closed_by_server(self, wait: float = 2.0) -> bool:
        """True if the server closes the connection (EOF or reset) within wait
        seconds without sending anything more."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self.buf += data
        return not data


def request(method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            version: str = "HTTP/1.1") -> bytes:
    """Bytes of one request; Content-Length is added for a body unless a
    framing header is given explicitly."""
    h = {"Host": "test"} | (headers or {})
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k in h):
        h["Content-Length"] = str(len(body))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def echo(method: str, path: str, body: bytes = b"", query: str = "") -> bytes:
    """What EchoApp answers for a request."""
    return f"{method} {path} q={query} n={len(body)}\n".encode() + body


def exchange_one(port: int, data: bytes) -> tuple[Response, bool]:
    """Send data, read one response, report whether the server then closed."""
    with RawConn(port) as c:
        c.send(data)
        r = c.read_response()
        return r, c.closed_by_server()


# ------------------------------------------------------ keep-alive, pipelining


def test_keep_alive_serves_two_requests_on_one_connection(start_echo: Callable[..., EchoServer]) -> None:
    """Keep-alive is the default in HTTP/1.1: one connection, many requests."""
    srv = start_echo()
    with RawConn(srv.port) as c:
        c.send(request("GET", "/one"))
        assert c.read_response().body == echo("GET", "/one")
        assert not c.closed_by_server(0.2)
        c.send(request("POST", "/two", b"payload"))
        r = c.read_response()
        assert r.status == 200 and r.body == echo("POST", "/two", b"payload")
        assert "connection" not in r.headers


def test_targets_stay_right_past_the_remembered_limit(start_echo: Callable[..., EchoServer]) -> None:
    """Decoded targets are remembered up to a bound, then forgotten all at
    once: every request still gets its own path and query, before the bound,
    after it and when a remembered target comes back, percent-encoding included."""
    srv = start_echo()
    targets = [(f"/t%20{i}?q={i}", f"/t {i}", f"q={i}") for i in range(5000)]
    targets += targets[:50] + targets[4990:]
    with RawConn(srv.port) as c:
        for first in range(0, len(targets), 100):
            batch = targets[first : first + 100]
            c.send(b"".join(request("GET", raw) for raw, _, _ in batch))
            for _, path, query in batch:
                assert c.read_response().body == echo("GET", path, query=query)


def test_pipelined_requests_answered_in_order(start_echo: Callable[..., EchoServer]) -> None:
    """Several requests in one write get their answers in request order."""
    srv = start_echo()
    with RawConn(srv.port) as c:
        c.send(request("GET", "/a?x=1") + request("POST", "/b", b"bee") + request("PUT", "/c", b"")
               + request("GET", "/d"))
        got = [c.read_response().body for _ in range(4)]
    assert got == [echo("GET", "/a", query="x=1"), echo("POST", "/b", b"bee"), echo("PUT", "/c"), echo("GET", "/d")]


def test_pipelined_requests_wait_behind_a_deferred_answer(start_echo: Callable[..., EchoServer]) -> None:
    """A handler that answers later (loop.call_later) must not let the requests
    queued behind it overtake it on the wire."""
    srv = start_echo()
    with RawConn(srv.port) as c:
        c.send(request("GET", "/later-1") + request("GET", "/now") + request("GET", "/later-2")
               + request("GET", "/end"))
        got = [c.read_response().body for _ in range(4)]
    assert got == [echo("GET", "/later-1"), echo("GET", "/now"), echo("GET", "/later-2"), echo("GET", "/end")]


def test_long_pipeline_behind_a_deferred_answer(start_echo: Callable[..., EchoServer]) -> None:
    """500 small requests queued behind one slow answer (as behind a parked
    long-poll) must all be answered, in order, without the connection hanging."""
    srv = start_echo()
    n = 500
    with RawConn(srv.port) as c:
        c.send(request("GET", "/later") + b"".join(request("GET", f"/r{i}") for i in range(n)))
        assert c.read_response().body == echo("GET", "/later")
        for i in range(n):
            assert c.read_response().body == echo("GET", f"/r{i}"), f"response {i}"


@pytest.mark.parametrize("max_pipelined", [1, 4])
def test_reading_resumes_after_pipeline_backpressure(start_echo: Callable[..., EchoServer], max_pipelined: int) -> None:
    """When the queue reaches max_pipelined reading pauses; once it drains the
    connection must read again, or the next request is never answered."""
    srv = start_echo(max_pipelined=max_pipelined)
    n = 2 * max_pipelined + 2
    with RawConn(srv.port) as c:
        c.send(b"".join(request("GET", f"/later-{i}") for i in range(n)))
        assert [c.read_response().body for _ in range(n)] == [echo("GET", f"/later-{i}") for i in range(n)]
        c.send(request("GET", "/after"))
        assert c.read_response().body == echo("GET", "/after")


def test_chunked_request_body_is_decoded(start_echo: Callable[..., EchoServer]) -> None:
    """Chunked bodies reach the handler decoded, even split across writes and
    with chunk extensions and trailers."""
    srv = start_echo()
    with RawConn(srv.port) as c:
        c.send(request("POST", "/up", headers={"Transfer-Encoding": "chunked"}) + b"5\r\nhello\r\n")
        time.sleep(0.05)
        c.send(b"1;ext=yes\r\n \r\n")
        time.sleep(0.05)
        c.send(b"5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == echo("POST", "/up", b"hello world")
        c.send(request("GET", "/next"))
        assert c.read_response().body == echo("GET", "/next")


def test_http10_request_closes_connection_after_answer(start_echo: Callable[..., EchoServer]) -> None:
    """HTTP/1.0 without keep-alive: answer, then close."""
    srv = start_echo()
    r, closed = exchange_one(srv.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert r.status == 200 and r.body == echo("GET", "/old")
    assert r.headers.get("connection") == "close"
    assert closed


def test_connection_close_closes_after_answer(start_echo: Callable[..., EchoServer]) -> None:
    """`Connection: close` ends the connection after that answer; a request
    pipelined behind it is not processed."""
    srv = start_echo()
    with RawConn(srv.port) as c:
        c.send(request("GET", "/bye", headers={"Connection": "close"}) + request("GET", "/ignored"))
        r = c.read_response()
        assert r.status == 200 and r.headers.get("connection") == "close"
        assert c.closed_by_server()
    assert "GET /ignored" not in srv.app.seen


# ------------------------------------------------------------------ limits


def test_body_over_limit_rejected_from_content_length(start_echo: Callable[..., EchoServer]) -> None:
    """413 comes from the declared Content-Length alone: the client learns
    before uploading, and the server never buffers the body."""
    srv = start_echo(max_body_bytes=100)
    with RawConn(srv.port) as c:
        c.send(request("POST", "/big", headers={"Content-Length": "101"}))
        r = c.read_response()
        assert r.status == 413
        assert c.closed_by_server()
    assert srv.app.seen == []


def test_body_at_limit_accepted(start_echo: Callable[..., EchoServer]) -> None:
    """The limit is inclusive: exactly max_body_bytes is fine."""
    srv = start_echo(max_body_bytes=100)
    r, _ = exchange_one(srv.port, request("POST", "/fits", b"x" * 100))
    assert r.status == 200 and r.body == echo("POST", "/fits", b"x" * 100)


def test_chunked_body_over_limit_rejected(start_echo: Callable[..., EchoServer]) -> None:
    """Chunked bodies have no declared size; the limit is enforced as they arrive."""
    srv = start_echo(max_body_bytes=100)
    body = b"40\r\n" + b"a" * 64 + b"\r\n" + b"40\r\n" + b"a" * 64 + b"\r\n0\r\n\r\n"
    r, closed = exchange_one(srv.port, request("POST", "/big", headers={"Transfer-Encoding": "chunked"}) + body)
    assert r.status == 413 and closed
    assert srv.app.seen == []


def test_huge_declared_chunk_rejected_without_waiting_for_it(start_echo: Callable[..., EchoServer]) -> None:
    """A chunk header announcing gigabytes must not make the server wait for
    them: what it has already received past the limit is enough to say 413."""
    srv = start_echo(max_body_bytes=100)
    data = request("POST", "/big", headers={"Transfer-Encoding": "chunked"}) + b"40000000\r\n" + b"a" * 200
    r, closed = exchange_one(srv.port, data)
    assert r.status == 413 and closed


def test_single_header_over_limit_is_431(start_echo: Callable[..., EchoServer]) -> None:
    """One oversized header field: 431 and close."""
    srv = start_echo(max_header_bytes=1024)
    r, closed = exchange_one(srv.port, request("GET", "/", headers={"X-Big": "a" * 2000}))
    assert r.status == 431 and closed
    assert srv.app.seen == []


def test_many_small_headers_over_limit_is_431(start_echo: Callable[..., EchoServer]) -> None:
    """The limit is on the whole head, not per field."""
    srv = start_echo(max_header_bytes=1024)
    headers = {f"X-H{i}": "v" * 20 for i in range(100)}
    r, closed = exchange_one(srv.port, request("GET", "/", headers=headers))
    assert r.status == 431 and closed


def test_request_line_over_limit_is_rejected(start_echo: Callable[..., EchoServer]) -> None:
    """An oversized target counts against the same budget (414 or 431)."""
    srv = start_echo(max_header_bytes=1024)
    r, closed = exchange_one(srv.port, request("GET", "/" + "a" * 2000))
    assert r.status in (414, 431) and closed


# ------------------------------------------------------- malformed framing


def test_content_length_with_transfer_encoding_is_400(start_echo: Callable[..., EchoServer]) -> None:
    """CL+TE is the classic smuggling vector: reject it, and never run the
    request hidden in the body."""
    srv = start_echo()
    smuggled = request("GET", "/smuggled")
    body = b"0\r\n\r\n" + smuggled
    data = request("POST", "/front", headers={"Content-Length": str(len(body)), "Transfer-Encoding": "chunked"}) + body
    r, closed = exchange_one(srv.port, data)
    assert r.status == 400 and closed
    assert srv.app.seen == []


@pytest.mark.parametrize(
    "framing",
    [
        [("Content-Length", "3"), ("Content-Length", "4")],
        [("Content-Length", "3,4")],
        [("Content-Length", "4"), ("Content-Length", "3")],
    ],
    ids=["two-headers", "one-list", "two-headers-reversed"],
)
def test_conflicting_content_length_is_400(
    start_echo: Callable[..., EchoServer], framing: list[tuple[str, str]]
) -> None:
    """Two different lengths mean two readings of the stream: refuse it."""
    srv = start_echo()
    head = b"POST /x HTTP/1.1\r\nHost: t\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in framing) + b"\r\n"
    r, closed = exchange_one(srv.port, head + b"abcd")
    assert r.status == 400 and closed
    assert srv.app.seen == []


@pytest.mark.parametrize(
    "value",
    ["-1", "+3", "3x", "0x3", ""],
)
def test_invalid_content_length_is_400(start_echo: Callable[..., EchoServer], value: str) -> None:
    """Only plain decimal digits frame a body."""
    srv = start_echo()
    r, closed = exchange_one(srv.port, request("POST", "/x", b"abc", headers={"Content-Length": value}))
    assert r.status == 400 and closed


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello sent to the plain port
        b"\x01\x02garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b" / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
        b"GET / FOO/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\nHost: t\n\n",
    ],
    ids=["tls-hello", "control-bytes", "no-target", "no-method", "extra-token", "bad-protocol", "bad-version",
         "bare-lf"],
)
def test_garbage_request_line_is_400(start_echo: Callable[..., EchoServer], data: bytes) -> None:
    """Bytes that are not an HTTP request line at all are a bad request (400),
    not a request for an unsupported method, and the connection closes."""
    srv = start_echo()
    r, closed = exchange_one(srv.port, data)
    assert r.status == 400, r
    assert closed
    assert srv.app.seen == []


def test_unknown_method_is_4xx_and_closes(start_echo: Callable[..., EchoServer]) -> None:
    """A well-formed request with a method nobody knows: a 4xx, then close."""
    srv = start_echo()
    r, closed = exchange_one(srv.port, b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert r.status in (400, 405)
    if r.status == 405:
        assert "allow" in r.headers
    assert closed
    assert srv.app.seen == []


@pytest.mark.parametrize(
    "chunks",
    [
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"-3\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcX\r\n0\r\n\r\n",
        b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        b"3 x\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["non-hex-size", "negative-size", "data-longer-than-size", "size-overflow", "junk-after-size"],
)
def test_invalid_chunked_encoding_is_400(start_echo: Callable[..., EchoServer], chunks: bytes) -> None:
    """A broken chunked body cannot be framed: 400 and close."""
    srv = start_echo()
    r, closed = exchange_one(srv.port, request("POST", "/x", headers={"Transfer-Encoding": "chunked"}) + chunks)
    assert r.status == 400 and closed
    assert srv.app.seen == []


@pytest.mark.parametrize("te", ["gzip", "chunked, gzip", "identity"])
def test_unsupported_transfer_encoding_is_rejected(start_echo: Callable[..., EchoServer], te: str) -> None:
    """A body framed by a transfer coding the server cannot decode must not be
    guessed at."""
    srv = start_echo()
    r, closed = exchange_one(srv.port, request("POST", "/x", b"abc", headers={"Transfer-Encoding": te}))
    assert 400 <= r.status < 500 and r.status != 404 and closed
    assert srv.app.seen == []


@pytest.mark.parametrize("target", ["/a%00b", "/a%ffb"], ids=["nul", "invalid-utf8"])
def test_undecodable_path_is_400(start_echo: Callable[..., EchoServer], target: str) -> None:
    """Paths are handed over decoded; ones that decode to NUL or to invalid
    UTF-8 never reach the handler."""
    srv = start_echo()
    r, closed = exchange_one(srv.port, request("GET", target))
    assert r.status == 400 and closed
    assert srv.app.seen == []


def test_error_after_pipelined_requests_comes_in_order(start_echo: Callable[..., EchoServer]) -> None:
    """A broken request behind a pending one is answered after it, then the
    connection closes: the client can still match answers to requests."""
    srv = start_echo()
    with RawConn(srv.port) as c:
        c.send(request("GET", "/later") + request("POST", "/x", headers={"Transfer-Encoding": "chunked"}) + b"zz\r\n")
        assert c.read_response().body == echo("GET", "/later")
        assert c.read_response().status == 400
        assert c.closed_by_server()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_upgrade_request_gets_exactly_one_response_with_its_body(
    start_echo: Callable[..., EchoServer], method: str
) -> None:
    """`curl --http2` on http:// sends `Connection: Upgrade` + `Upgrade: h2c`.
    The server may ignore the offer (RFC 9110 section 7.8) or refuse the
    request, but it must answer it once, and if it runs it, with its body."""
    srv = start_echo()
    body = b"" if method == "GET" else b"hello"
    headers = {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}
    with RawConn(srv.port) as c:
        c.send(request(method, "/up", body if body else None, headers))
        r = c.read_response()
        if r.status == 200:
            assert r.body == echo(method, "/up", body), "the request ran without its body"
        else:
            assert 400 <= r.status < 500
            assert srv.app.seen == []
        c.closed_by_server(0.5)
        assert c.buf == b"", f"a second, unrequested response followed: {c.buf[:80]!r}"


# ------------------------------------------------------------------ timeouts


def test_slow_headers_get_408_and_close(start_echo: Callable[..., EchoServer]) -> None:
    """Half a request line, then silence: 408 after header_timeout, then close."""
    srv = start_echo(header_timeout=0.3, idle_timeout=30)
    with RawConn(srv.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /slow HT")
        r = c.read_response()
        assert r.status == 408
        assert 0.25 <= time.monotonic() - t0 < 5
        assert c.closed_by_server()
    assert srv.app.seen == []


def test_trickled_headers_do_not_extend_header_timeout(start_echo: Callable[..., EchoServer]) -> None:
    """Slowloris: one byte at a time must not keep re-arming the header timer."""
    srv = start_echo(header_timeout=0.5, idle_timeout=30)
    data = request("GET", "/trickle", headers={"X-Pad": "p" * 100})
    with RawConn(srv.port) as c:
        t0 = time.monotonic()
        with contextlib.suppress(OSError):
            for byte in data[:-1]:
                if select.select([c.sock], [], [], 0)[0] or time.monotonic() - t0 > 3:
                    break  # the server answered (or gave up on us): stop writing into a closing socket
                c.send(bytes([byte]))
                time.sleep(0.05)
        r = c.read_response()
        assert r.status == 408
        assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("first", ["/first", "/later"], ids=["answered-at-once", "answered-later"])
def test_partial_request_behind_another_gets_header_timeout(start_echo: Callable[..., EchoServer], first: str) -> None:
    """A whole request and the start of the next in one packet: the second
    is on the header clock from when the first is answered (at once, or
    later), not on the idle one."""
    srv = start_echo(header_timeout=0.3, idle_timeout=30)
    with RawConn(srv.port) as c:
        t0 = time.monotonic()
        c.send(request("GET", first) + b"GET /second HT")
        assert c.read_response().status == 200
        answered = time.monotonic()
        r = c.read_response()
        assert r.status == 408
        assert 0.25 <= time.monotonic() - answered < 5
        assert first == "/first" or answered - t0 >= DEFER_SECONDS * 0.9
        assert c.closed_by_server()
    assert srv.app.seen == [f"GET {first}"]


def test_stalled_body_gets_408(start_echo: Callable[..., EchoServer]) -> None:
    """Headers promise 10 bytes, 3 arrive, then nothing: 408 after body_timeout."""
    srv = start_echo(body_timeout=0.3, idle_timeout=30)
    with RawConn(srv.port) as c:
        c.send(request("POST", "/stall", headers={"Content-Length": "10"}) + b"abc")
        r = c.read_response()
        assert r.status == 408
        assert c.closed_by_server()
    assert srv.app.seen == []


def test_idle_keep_alive_connection_is_closed(start_echo: Callable[..., EchoServer]) -> None:
    """After an answer, a connection that stays quiet for idle_timeout is closed
    silently (no 408: there is no request to time out)."""
    srv = start_echo(idle_timeout=0.4)
    with RawConn(srv.port) as c:
        c.send(request("GET", "/one"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.closed_by_server(wait=5)
        assert 0.3 <= time.monotonic() - t0 < 5
        assert c.buf == b""


def test_activity_keeps_keep_alive_connection_open(start_echo: Callable[..., EchoServer]) -> None:
    """Each answer re-arms the idle timer: requests spaced under idle_timeout
    keep one connection alive well past a single timeout."""
    srv = start_echo(idle_timeout=1.0)
    with RawConn(srv.port) as c:
        for i in range(6):
            c.send(request("GET", f"/tick{i}"))
            assert c.read_response().body == echo("GET", f"/tick{i}")
            time.sleep(0.3)


# ---------------------------------------------------------- handler failures


def test_handler_exception_is_500_and_server_keeps_serving(start_echo: Callable[..., EchoServer]) -> None:
    """A bug in one request's handling costs that connection, nothing more."""
    srv = start_echo()
    with RawConn(srv.port) as other:
        other.send(request("GET", "/before"))
        assert other.read_response().status == 200
        r, closed = exchange_one(srv.port, request("GET", "/boom"))
        assert r.status == 500 and closed
        other.send(request("GET", "/after"))
        assert other.read_response().body == echo("GET", "/after")
    r, _ = exchange_one(srv.port, request("GET", "/fresh"))
    assert r.status == 200 and r.body == echo("GET", "/fresh")


def test_handler_exception_mid_stream_closes_connection(start_echo: Callable[..., EchoServer]) -> None:
    """Once a chunked answer has started, a 500 can no longer be sent: the
    connection must be closed so the client sees a truncated response, not a hang."""
    srv = start_echo()
    with RawConn(srv.port) as c:
        c.send(request("GET", "/stream-boom"))
        with pytest.raises(ConnectionError):
            c.read_response()
    r, _ = exchange_one(srv.port, request("GET", "/fresh"))
    assert r.status == 200

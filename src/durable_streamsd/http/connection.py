"""One asyncio.Protocol per connection, parsing with httptools.

Parser callbacks only collect; the request is handed to the handler once it
is complete. Pipelined requests wait in order behind the one in progress
(reading pauses when too many queue up), so responses always leave in
request order. One timer per connection is re-armed at each transition:
idle keep-alive, slow headers, stalled body.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote_to_bytes

import httptools

from .dates import DateHeader
from .flow import FlowControl
from .limits import HttpLimits
from .request import Handler, Request
from .response import STATUS_LINES, Responder

log = logging.getLogger("durable_streamsd.http")


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ServerState:
    """What every connection of one listening server shares."""

    handler: Handler
    limits: HttpLimits
    common_headers: bytes = b""
    dates: DateHeader = field(default_factory=DateHeader)
    connections: set[HttpConnection] = field(default_factory=set)
    accepting: bool = True
    requests: int = 0
    # The loop's clock as of the last sweep: arming a timeout reads this
    # instead of calling loop.time() several times per request.
    now: float = 0.0
    # Called with (responder, seconds) when a response ends; None: no access log.
    access_log: Callable[[Responder, float], None] | None = None
    _sweeper: asyncio.TimerHandle | None = None

    def start_sweeper(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer for all connections' timeouts: re-arming a per-request
        call_later cost more than the whole sweep of idle connections."""
        if self._sweeper is not None:
            return

        def sweep() -> None:
            now = self.now = loop.time()
            # Deadlines were set from a clock up to one period stale: allow
            # for that, so no timeout ever fires early.
            due = now - SWEEP_PERIOD
            for conn in list(self.connections):
                if conn.deadline <= due:
                    conn.timed_out()
            self._sweeper = loop.call_later(SWEEP_PERIOD, sweep)

        self.now = loop.time()
        self._sweeper = loop.call_later(SWEEP_PERIOD, sweep)

    def stop_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


_IDLE: Final = 0
_HEADERS: Final = 1
_BODY: Final = 2
_BUSY: Final = 3
SWEEP_PERIOD: Final = 0.1
_NEVER: Final = float("inf")


class HttpConnection(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.limits = state.limits
        self.dates = state.dates
        self.common_headers = state.common_headers
        self.transport: asyncio.Transport | None = None
        self.flow = FlowControl()
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._max_header_bytes = state.limits.max_header_bytes
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._expect_body = False
        self._queue: deque[Request | _Reject] = deque()
        self._active: Responder | None = None
        self._broken = False
        self._reading_paused = False
        self.deadline = _NEVER
        self._phase = _IDLE
        self._loop = asyncio.get_running_loop()
        self._started = 0.0
        # An upgrade-offering request waiting for its body: (request, bytes still due).
        self._upgrade: tuple[Request, int] | None = None
        self._upgrade_length: int | None = None

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.state.connections.add(self)
        self._arm(self.limits.idle_timeout, _IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.deadline = _NEVER
        active, self._active = self._active, None
        self._queue.clear()
        self.flow.clear()
        self.transport = None
        if active is not None:
            active._connection_lost()

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        if self._upgrade is not None:
            data = self._take_upgrade_body(data)
            if not data:
                return
        if self._phase == _IDLE:
            # A request's first bytes: the slow-header clock starts (a
            # request already under way keeps its own clock).
            self._phase = _HEADERS
            self.deadline = self.state.now + self.limits.header_timeout
        # Each handler names its exception differently: compiled, one name
        # has one type for the whole function.
        try:
            self.parser.feed_data(data)
        except _Reject as rejected:
            self._fail(rejected)
        except httptools.HttpParserUpgrade as upgrade:
            # An upgrade offer (curl --http2 sends `Upgrade: h2c`) is declined
            # by serving the request as plain HTTP/1.1 (RFC 9110 7.8); llhttp
            # stops at its headers, so its body is collected here.
            if self._upgrade is None:
                self._fail(_Reject(400, "malformed upgrade request"))
                return
            rest = self._take_upgrade_body(data[upgrade.args[0] :])
            if rest:
                self.data_received(rest)
        except httptools.HttpParserCallbackError as callback_error:
            cause = callback_error.__context__
            self._fail(cause if isinstance(cause, _Reject) else _Reject(400, "malformed request"))
        except httptools.HttpParserInvalidMethodError:
            self._fail(_invalid_method(data))
        except httptools.HttpParserError as parse_error:
            self._fail(_Reject(400, _parser_message(parse_error)))

    def _take_upgrade_body(self, data: bytes) -> bytes:
        """Collect an upgrade-offering request's body; returns what follows it."""
        assert self._upgrade is not None
        req, need = self._upgrade
        take = data[:need]
        self._body.append(take)
        need -= len(take)
        if need > 0:
            self._upgrade = (req, need)
            return b""
        self._upgrade = None
        req.body = b"".join(self._body)
        self._body = []
        self.parser = httptools.HttpRequestParser(self)
        self._enqueue(req)
        return data[len(take) :]

    # ------------------------------------------------------ parser callbacks

    def on_url(self, url: bytes) -> None:
        if self._phase == _IDLE:
            # A request that began in the bytes after one answered at once.
            self._arm(self.limits.header_timeout, _HEADERS)
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self._max_header_bytes:
            raise _Reject(431 if len(self._url) < self._header_bytes else 414, "request line or headers too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        n = self._header_bytes + len(name) + len(value) + 4
        self._header_bytes = n
        if n > self._max_header_bytes:
            raise _Reject(431, "request headers too large")
        # Straight into the dict the handler reads: one pass per header.
        key = _NAMES.get(name) or name.decode("latin-1").lower()
        headers = self._headers
        if key in headers:
            headers[key] += ", " + value.decode("latin-1")
        else:
            headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        headers = self._headers
        te = "transfer-encoding" in headers
        cl_text = headers.get("content-length")
        cl: int | None = None
        if cl_text is not None:
            if te:
                raise _Reject(400, "Content-Length together with Transfer-Encoding")
            cl = int(cl_text) if cl_text.isdigit() and cl_text.isascii() else _content_length(cl_text)
            if cl > self.limits.max_body_bytes:
                raise _Reject(413, f"request body larger than {self.limits.max_body_bytes} bytes")
        self._expect_body = te or (cl is not None and cl > 0)
        if self._expect_body and self._active is None and not self._queue and self.transport is not None:
            expect = headers.get("expect")
            if expect is not None and expect.strip().lower() == "100-continue":
                # The limits above have passed: invite the body now.
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.parser.should_upgrade():
            if te:
                raise _Reject(400, "chunked bodies cannot accompany an upgrade offer")
            self._upgrade_length = cl or 0
        if self._expect_body and self._active is None:
            self._arm(self.limits.body_timeout, _BODY)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            raise _Reject(413, f"request body larger than {self.limits.max_body_bytes} bytes")
        self._body.append(body)
        if self._active is None:  # progress: the stalled-body clock restarts
            self.deadline = self.state.now + self.limits.body_timeout

    def on_message_complete(self) -> None:
        # No on_message_begin (one callback less per request): the state a
        # message collects is reset here, for the next one.
        parser = self.parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii", "replace")
        url = self._url
        path, query = _target(url) if len(url) <= _CACHED_TARGET_BYTES else _parse_target(url)
        headers = self._headers
        parts = self._body
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_bytes = 0
        req = Request(method, url, path, query, headers, body, headers.get("host", ""))
        if self._upgrade_length is not None:
            headers.pop("upgrade", None)
            headers["connection"] = "keep-alive"
            self._upgrade = (req, self._upgrade_length)
            self._upgrade_length = None
            return
        if not parser.should_keep_alive():
            headers["connection"] = "close"
        if self._active is None and not self._queue:
            self._dispatch(req)
        else:
            self._enqueue(req)

    # ------------------------------------------------------------ pipeline

    def _enqueue(self, item: Request | _Reject) -> None:
        if self._active is None and not self._queue:
            self._dispatch(item)
            return
        self._queue.append(item)
        if len(self._queue) >= self.limits.max_pipelined and self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _dispatch(self, item: Request | _Reject) -> None:
        if isinstance(item, _Reject):
            self._send_error(item)
            return
        state = self.state
        self.deadline = _NEVER
        self._phase = _BUSY
        conn_header = item.headers.get("connection")
        keep_alive = state.accepting and (conn_header is None or conn_header.lower() != "close")
        responder = Responder(self, item, keep_alive)
        self._active = responder
        if state.access_log is not None:
            self._started = self._loop.time()
        state.requests += 1
        try:
            state.handler(item, responder)
        except Exception:
            request_id = f"{id(self):x}-{self.state.requests}"
            log.exception("unhandled error for %s %s (request id %s)", item.method, item.path, request_id)
            if not responder.done:
                if responder.streaming:
                    self.close()
                else:
                    responder.keep_alive = False
                    body = f"internal server error (request id {request_id})\n".encode()
                    responder.send(500, b"content-type: text/plain\r\n", body)

    def log_response(self, responder: Responder) -> None:
        if self.state.access_log is not None:
            self.state.access_log(responder, self._loop.time() - self._started)

    def response_done(self, responder: Responder) -> None:
        if responder is not self._active:
            return
        self._active = None
        if not responder.keep_alive:
            self.close()
            return
        if self._queue:
            # Dispatch from the loop, not from inside the previous response:
            # a long pipeline would otherwise recurse once per request.
            self._phase = _BUSY
            self._loop.call_soon(self._next_in_pipeline)
            return
        if self._url:
            # The next request has begun arriving behind this one: its
            # header clock starts now (data_received only starts it when
            # bytes find the connection idle).
            self._arm(self.limits.header_timeout, _HEADERS)
            return
        self._phase = _IDLE
        self.deadline = self.state.now + self.limits.idle_timeout

    def _next_in_pipeline(self) -> None:
        if self._active is not None or not self._queue or self.transport is None:
            return
        self._dispatch(self._queue.popleft())
        if self._reading_paused and len(self._queue) <= self.limits.max_pipelined // 2:
            self._reading_paused = False
            self.transport.resume_reading()

    # -------------------------------------------------------------- errors

    def _fail(self, reject: _Reject) -> None:
        """Answer a broken request in pipeline order, then close."""
        self._broken = True
        if self.transport is not None:
            self.transport.pause_reading()
        if self._active is None and not self._queue:
            self._send_error(reject)
        else:
            self._queue.append(reject)

    def _send_error(self, reject: _Reject) -> None:
        t = self.transport
        if t is None:
            return
        body = reject.message.encode() + b"\n"
        t.write(
            b"".join(
                (
                    STATUS_LINES[reject.status],
                    self.dates.line,
                    self.common_headers,
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"allow: GET, HEAD, POST, PUT, DELETE, OPTIONS\r\n" if reject.status == 405 else b"",
                    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
                    body,
                )
            )
        )
        self.close()

    # -------------------------------------------------------------- timers

    def _arm(self, seconds: float, phase: int) -> None:
        self._phase = phase
        self.deadline = self.state.now + seconds

    def timed_out(self) -> None:
        self.deadline = _NEVER
        if self._active is not None or self.transport is None:
            return
        if self._phase == _IDLE:
            self.close()
        else:
            self._broken = True
            self._send_error(_Reject(408, "request not received in time"))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def idle(self) -> bool:
        return self._active is None and self._phase == _IDLE


# Decoded once: the names and methods nearly every request carries.
_METHODS: Final = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")}
_NAMES: Final = {
    raw: raw.decode().lower()
    for name in (
        "Host",
        "Content-Type",
        "Content-Length",
        "Connection",
        "Accept",
        "Accept-Encoding",
        "User-Agent",
        "Authorization",
        "If-None-Match",
        "Origin",
        "Producer-Id",
        "Producer-Epoch",
        "Producer-Seq",
        "Stream-Seq",
        "Stream-Closed",
        "Transfer-Encoding",
    )
    for raw in (name.encode(), name.lower().encode())
}

_REQUEST_LINE: Final = re.compile(rb"[A-Za-z]+ \S+ HTTP/\d\.\d\r?\n")

# Request targets up to this long are decoded once and remembered: clients
# send the same few URLs over and over (one stream's appends, a tail read).
_CACHED_TARGET_BYTES: Final = 512


def _parse_target(url: bytes) -> tuple[str, str]:
    """(decoded path, raw query) of a request target; a 400 for a target
    that is not a usable path."""
    raw_path, _, raw_query = url.partition(b"?")
    if b"#" in raw_path:
        raw_path = raw_path.partition(b"#")[0]
    if not raw_path.startswith(b"/"):
        try:  # absolute-form target (http://host/path)
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            raise _Reject(400, "invalid request target") from None
        raw_path, raw_query = parsed.path or b"/", parsed.query or b""
    try:
        path = (unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject(400, "request path is not valid UTF-8") from None
    if "\x00" in path:
        raise _Reject(400, "request path contains a NUL byte")
    if b"#" in raw_query:
        raw_query = raw_query.partition(b"#")[0]
    return path, raw_query.decode("latin-1")


_TARGETS: Final[dict[bytes, tuple[str, str]]] = {}
_MAX_TARGETS: Final = 4096


def _target(url: bytes) -> tuple[str, str]:
    """_parse_target, remembered. A plain dict emptied when full, not an
    lru_cache: a hit is one lookup, with no call through the cache wrapper
    and no recency list to reorder. Rejected targets raise, so only good
    ones are kept."""
    hit = _TARGETS.get(url)
    if hit is None:
        hit = _parse_target(url)
        if len(_TARGETS) >= _MAX_TARGETS:
            _TARGETS.clear()
        _TARGETS[url] = hit
    return hit


def _content_length(text: str) -> int:
    """Content-Length that is not a plain number: padded, or repeated
    (joined with ", "), where every copy must agree."""
    values = {v.strip() for v in text.split(",")}
    if len(values) != 1:
        raise _Reject(400, "conflicting Content-Length headers")
    (only,) = values
    if not only.isdigit() or not only.isascii():
        raise _Reject(400, "invalid Content-Length")
    return int(only)


def _invalid_method(data: bytes) -> _Reject:
    """405 for a well-formed request with a method we do not know; 400 for
    bytes that are not an HTTP request line at all."""
    if _REQUEST_LINE.match(data):
        return _Reject(405, "unknown method")
    return _Reject(400, "malformed request line")


def _parser_message(exc: Exception) -> str:
    text = str(exc).strip()
    return f"malformed request: {text}" if text else "malformed request"


async def serve(
    state: ServerState, host: str, port: int, backlog: int = 2048, sock: socket.socket | None = None
) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    if sock is not None:
        state.start_sweeper(loop)
        return await loop.create_server(lambda: HttpConnection(state), sock=sock, backlog=backlog)
    state.start_sweeper(loop)
    return await loop.create_server(lambda: HttpConnection(state), host, port, backlog=backlog, reuse_address=True)


def close_idle(connections: Iterable[HttpConnection]) -> int:
    """Close keep-alive connections with no request in progress."""
    n = 0
    for c in list(connections):
        if c.idle:
            c.close()
            n += 1
    return n

"""Response writing: precomputed status lines and the per-request Responder.

Handlers pass their headers as one preformatted block of ``name: value\\r\\n``
lines; the connection adds Date, the server-wide headers, framing and
keep-alive. Bodies may be lists of buffers (memoryviews of segment maps) and
are written with ``writelines`` without being joined.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .connection import HttpConnection
    from .request import Request

Buffer = bytes | bytearray | memoryview


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Status"
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


STATUS_LINES: Final[dict[int, bytes]] = {code: _status_line(code) for code in range(100, 600)}

_CLOSE: Final = b"connection: close\r\n"
_CHUNKED: Final = b"transfer-encoding: chunked\r\n"
_LAST_CHUNK: Final = b"0\r\n\r\n"


def chunk(data: Buffer) -> list[Buffer]:
    """Frame data as one HTTP chunk (as buffers, so it can be shared)."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


class Responder:
    """Writes exactly one response for one request, in pipeline order."""

    __slots__ = ("_conn", "head_only", "keep_alive", "done", "streaming", "_on_close", "request", "status")

    def __init__(self, conn: HttpConnection, request: Request, keep_alive: bool) -> None:
        self._conn = conn
        self.request = request
        self.status = 0
        head_only = request.method == "HEAD"
        self.head_only = head_only
        self.keep_alive = keep_alive
        self.done = False
        self.streaming = False
        self._on_close: Callable[[], None] | None = None

    # -- whole responses

    def send(self, status: int, headers: bytes = b"", body: Buffer | Sequence[Buffer] = b"") -> None:
        if self.done or self.streaming:
            return
        conn = self._conn
        self.status = status
        if not conn.state.accepting:
            self.keep_alive = False  # shutting down: no further requests here
        # bytes first: compiled, naming memoryview is a builtins lookup per call.
        if isinstance(body, bytes) or isinstance(body, (bytearray, memoryview)):
            parts: Sequence[Buffer] = (body,) if body else ()
            length = len(body)
        elif len(body) == 1:
            parts = body
            length = len(body[0])
        else:
            parts = body
            length = sum(map(len, parts))
        head = b"".join(
            (
                STATUS_LINES[status],
                conn.dates.line,
                conn.common_headers,
                headers,
                # HEAD and 304 answers describe a body they do not carry.
                b"" if self.head_only or status in (204, 304) else b"content-length: %d\r\n" % length,
                b"" if self.keep_alive else _CLOSE,
                b"\r\n",
            )
        )
        transport = conn.transport
        if transport is None or transport.is_closing():
            self._finish()
            return
        if self.head_only or not parts:
            transport.write(head)
        elif len(parts) == 1 and len(parts[0]) < 4096:
            transport.write(head + bytes(parts[0]))
        else:
            transport.writelines([head, *parts])
        self._finish()

    # -- streamed (chunked) responses

    def start(self, status: int, headers: bytes = b"") -> None:
        """Begin a chunked response that stays open until end()."""
        if self.done or self.streaming:
            return
        conn = self._conn
        self.status = status
        if not conn.state.accepting:
            self.keep_alive = False
        self.streaming = True
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(
                b"".join(
                    (
                        STATUS_LINES[status],
                        conn.dates.line,
                        conn.common_headers,
                        headers,
                        _CHUNKED,
                        b"" if self.keep_alive else _CLOSE,
                        b"\r\n",
                    )
                )
            )

    def write_framed(self, frames: Sequence[Buffer]) -> None:
        """Write already chunk-framed buffers (shared across readers)."""
        t = self._conn.transport
        if self.streaming and not self.done and t is not None and not t.is_closing():
            if len(frames) == 1:
                t.write(frames[0])
            else:
                t.writelines(frames)

    def write(self, data: Buffer) -> None:
        if data:
            self.write_framed(chunk(data))

    def end(self) -> None:
        if not self.streaming or self.done:
            return
        t = self._conn.transport
        if t is not None and not t.is_closing():
            t.write(_LAST_CHUNK)
        self._finish()

    # -- connection state for long-lived responses

    @property
    def closed(self) -> bool:
        t = self._conn.transport
        return t is None or t.is_closing()

    @property
    def paused(self) -> bool:
        return self._conn.flow.paused

    def on_drain(self, cb: Callable[[], None]) -> None:
        self._conn.flow.on_drain(cb)

    def on_close(self, cb: Callable[[], None] | None) -> None:
        """cb runs if the client goes away before the response is done."""
        self._on_close = cb

    def buffered(self) -> int:
        t = self._conn.transport
        return t.get_write_buffer_size() if t is not None else 0

    def abort(self) -> None:
        self._conn.close()

    def _connection_lost(self) -> None:
        cb, self._on_close = self._on_close, None
        if not self.done:
            self.done = True
            self._conn.log_response(self)
        if cb is not None:
            cb()

    def _finish(self) -> None:
        self.done = True
        conn = self._conn
        if conn.state.access_log is not None:
            conn.log_response(self)
        self._on_close = None
        conn.response_done(self)

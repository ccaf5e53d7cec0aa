"""Server-Sent Events (section 5.8).

A session writes ``data`` events (text as ``data:`` lines, JSON as one
array, anything else base64) each followed by a ``control`` event, parks at
the tail, and ends after the reconnect interval or at EOF of a closed stream.

Readers parked at one position are woken as a group and share one encoded
event (encode once, write many). A reader whose transport is over its
high-water mark is skipped; once it drains it catches up from its own
position by reading the log, so server memory per reader stays bounded
whatever its speed.
"""

from __future__ import annotations

import asyncio
import binascii
from typing import TYPE_CHECKING, Final

import orjson

from ..engine import Stream
from ..http import Responder
from ..http.response import Buffer, chunk
from .cursor import next_cursor
from .offsets import format_offset

if TYPE_CHECKING:
    from .app import StreamsApp

EVENT_STREAM: Final = b"content-type: text/event-stream\r\ncache-control: no-cache\r\n"
BASE64: Final = b"stream-sse-data-encoding: base64\r\n"
SSE_CHUNK: Final = 64 * 1024


def encoding_of(s: Stream) -> str:
    ctype = s.config.content_type.split(";", 1)[0].strip().lower()
    if s.is_json:
        return "json"
    if ctype.startswith("text/"):
        return "text"
    return "base64"


class SseSession:
    __slots__ = ("app", "stream", "res", "position", "cursor", "encoding", "timer", "parked", "ended")

    def __init__(self, app: StreamsApp, s: Stream, res: Responder, position: int, cursor: str | None) -> None:
        self.app = app
        self.stream = s
        self.res = res
        self.position = position
        self.cursor = cursor
        self.encoding = encoding_of(s)
        self.timer: asyncio.TimerHandle | None = None
        self.parked = False
        self.ended = False

    # -- lifecycle

    def end(self) -> None:
        """Finish the response (reconnect interval, EOF, shutdown)."""
        if self.ended:
            return
        self._gone()
        self.res.on_close(None)
        self.res.end()

    def _gone(self) -> None:
        """Stop everything the session holds (also when the client left)."""
        self.ended = True
        self.app.sse_sessions.discard(self)
        self._unpark()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _park(self) -> None:
        if not self.parked:
            self.parked = True
            self.app.engine.wait(self.stream, self.position, self)

    def _unpark(self) -> None:
        if self.parked:
            self.parked = False
            self.app.engine.unwait(self.stream, self.position, self)

    # -- writing

    def pump(self) -> None:
        """Catch up from our own position, then park at the tail."""
        if self.ended:
            return
        s = self.stream
        if s.deleted:
            self.end()
            return
        while self.position < s.tail:
            if self.res.paused:
                self.res.on_drain(self.pump)
                return
            frames, end = encode_chunk(self.app, s, self.position, self.encoding)
            self.position = end
            # One write for the data event and its control event: they are
            # one unit for a reader (and leave in one segment when small).
            self.res.write_framed((b"".join([*frames, *self._control_frame()]),))
        if s.closed or self.app.shutting_down:
            self.end()
            return
        self._park()

    def _control_frame(self) -> list[Buffer]:
        return chunk(control_event(self.stream, self.position, next_cursor(self.cursor)))


def control_event(s: Stream, position: int, cursor: str) -> bytes:
    at_tail = position >= s.tail
    doc: dict[str, object] = {"streamNextOffset": format_offset(s.id, position)}
    if at_tail and s.closed:
        doc["streamClosed"] = True
        doc["upToDate"] = True
    else:
        doc["streamCursor"] = cursor
        if at_tail:
            doc["upToDate"] = True
    return b"event: control\ndata:" + orjson.dumps(doc) + b"\n\n"


def encode_chunk(app: StreamsApp, s: Stream, start: int, encoding: str) -> tuple[list[Buffer], int]:
    """One data event for the next chunk from start, chunk-framed."""
    # Events are built per reader when it catches up on its own: keep them
    # near the transport's high-water mark so a slow reader costs little.
    limit = min(app.config.max_read_bytes, SSE_CHUNK)
    views, end = app.engine.read(s, start, limit)
    data = b"".join(views)
    if encoding == "text":
        cut = _utf8_safe_end(data)
        if cut < len(data) and end < s.tail and cut > 0:
            end -= len(data) - cut
            data = data[:cut]
        event = text_event(data)
    elif encoding == "json":
        event = b"event: data\ndata:[" + data[:-1] + b"]\n\n"
    else:
        event = b"event: data\ndata:" + binascii.b2a_base64(data, newline=False) + b"\n\n"
    return chunk(event), end


def text_event(data: bytes) -> bytes:
    """``data:`` lines for text; every CR, LF or CRLF starts a new line so a
    payload can never inject an event boundary."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    out = [b"event: data\n"]
    for ln in lines:
        # The reader strips one leading space after "data:"; keep ours intact.
        out.append(b"data: " + ln + b"\n" if ln.startswith(b" ") else b"data:" + ln + b"\n")
    out.append(b"\n")
    return b"".join(out)


def _utf8_safe_end(data: bytes) -> int:
    """Length of data without a trailing, incomplete UTF-8 sequence."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        b = data[n - back]
        if b & 0xC0 == 0x80:
            continue
        if b & 0x80 == 0:
            return n
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4
        return n if back >= need else n - back
    return n


def start(app: StreamsApp, s: Stream, res: Responder, position: int, cursor: str | None) -> None:
    session = SseSession(app, s, res, position, cursor)
    headers = EVENT_STREAM + (BASE64 if session.encoding == "base64" else b"")
    res.start(200, headers)
    res.on_close(session._gone)
    app.sse_sessions.add(session)
    session.timer = asyncio.get_running_loop().call_later(app.config.sse_reconnect_interval, session.end)
    if position >= s.tail:
        # Caught up from the start: say so (and where the tail is) at once.
        res.write_framed(session._control_frame())
        if s.closed or app.shutting_down:
            session.end()
            return
    session.pump()


def wake(app: StreamsApp, s: Stream, position: int, sessions: list[SseSession]) -> None:
    """A commit or closure reached readers parked at position."""
    for sess in sessions:
        sess.parked = False
    if s.deleted:
        for sess in sessions:
            sess.end()
        return
    if position >= s.tail:
        # Closed with no new data: final control event, then EOF.
        for sess in sessions:
            if not sess.ended:
                sess.res.write_framed(sess._control_frame())
                sess.end()
        return
    # Encode once, write many: one data event per encoding, and one ready
    # bytes object (data + control) per (encoding, echoed cursor), written to
    # every reader that shares them with a single transport write.
    encoded: dict[str, tuple[list[Buffer], int]] = {}
    blobs: dict[tuple[str, str | None], bytes] = {}
    for sess in sessions:
        if sess.ended:
            continue
        if sess.res.paused:
            # Over the transport's high-water mark: catch up from the log
            # once it drains instead of queueing more here.
            sess.res.on_drain(sess.pump)
            continue
        enc = encoded.get(sess.encoding)
        if enc is None:
            enc = encoded[sess.encoding] = encode_chunk(app, s, position, sess.encoding)
        frames, end = enc
        key = (sess.encoding, sess.cursor)
        blob = blobs.get(key)
        if blob is None:
            control = chunk(control_event(s, end, next_cursor(sess.cursor)))
            blob = blobs[key] = b"".join([*frames, *control])
        sess.position = end
        sess.res.write_framed((blob,))
        if end < s.tail or s.closed:
            sess.pump()
        else:
            sess._park()

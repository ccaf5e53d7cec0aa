"""Long-poll reads (section 5.7): answer at once when data or EOF is there,
otherwise park until a commit, closure or the timeout.

All readers parked at one position are answered from one read: the headers
and the body views are built once and written to every transport.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..engine import Stream
from ..http import Responder
from .chunks import chunk_response
from .cursor import next_cursor
from .errors import ProtocolError
from .headers import CLOSED, NO_STORE, UP_TO_DATE, line, next_offset

if TYPE_CHECKING:
    from .app import StreamsApp


class LongPoll:
    __slots__ = ("res", "cursor", "timer", "from_now")

    def __init__(self, res: Responder, cursor: str | None, from_now: bool = False) -> None:
        self.res = res
        self.cursor = cursor
        self.timer: asyncio.TimerHandle | None = None
        # An `offset=now` URL names no fixed position: its answer must not be
        # cached, or later pollers would get old data at once.
        self.from_now = from_now


def start(app: StreamsApp, s: Stream, res: Responder, position: int, cursor: str | None, from_now: bool) -> None:
    if position < s.tail:
        _send_data(app, s, position, [LongPoll(res, cursor, from_now)])
        return
    if s.closed or app.shutting_down:
        _send_empty(s, position, [LongPoll(res, cursor, from_now)])
        return
    waiter = LongPoll(res, cursor, from_now)
    engine = app.engine
    engine.wait(s, position, waiter)

    def timed_out() -> None:
        engine.unwait(s, position, waiter)
        _send_empty(s, position, [waiter])

    def gone() -> None:
        if waiter.timer is not None:
            waiter.timer.cancel()
        engine.unwait(s, position, waiter)

    waiter.timer = asyncio.get_running_loop().call_later(app.config.long_poll_timeout, timed_out)
    res.on_close(gone)


def wake(app: StreamsApp, s: Stream, position: int, waiters: list[LongPoll]) -> None:
    for w in waiters:
        if w.timer is not None:
            w.timer.cancel()
        w.res.on_close(None)
    if s.deleted:
        for w in waiters:
            app.fail(w.res, ProtocolError(404, "stream was deleted"))
    elif position < s.tail:
        _send_data(app, s, position, waiters)
    else:
        _send_empty(s, position, waiters)


def _send_data(app: StreamsApp, s: Stream, position: int, waiters: list[LongPoll]) -> None:
    shared: dict[bool, tuple[bytes, list[bytes | memoryview]]] = {}
    for w in waiters:
        answer = shared.get(w.from_now)
        if answer is None:
            headers, body, _ = chunk_response(app, s, position, cacheable=not w.from_now)
            answer = shared[w.from_now] = (headers, body)
        w.res.send(200, answer[0] + line("stream-cursor", next_cursor(w.cursor)), answer[1])


def _send_empty(s: Stream, position: int, waiters: list[LongPoll]) -> None:
    """204: timeout (caught up) or EOF of a closed stream."""
    base = next_offset(s, max(position, s.tail) if s.closed else position) + UP_TO_DATE + NO_STORE
    for w in waiters:
        if s.closed:
            w.res.send(204, base + CLOSED)
        else:
            w.res.send(204, base + line("stream-cursor", next_cursor(w.cursor)))

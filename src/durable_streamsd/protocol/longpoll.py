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
    """One long-poll request, parked or answered at once.

    Its timeout and disconnect handlers are its own methods, not closures:
    compiled, a closure and its captured state refer to each other, so each
    parked poll left a cycle for the garbage collector. The timer and the
    close callback (each of which refers back to the poll) are dropped as
    soon as the poll is answered or abandoned."""

    __slots__ = ("res", "cursor", "timer", "from_now", "app", "s", "position")

    def __init__(
        self, app: StreamsApp, s: Stream, position: int, res: Responder, cursor: str | None, from_now: bool
    ) -> None:
        self.app = app
        self.s = s
        self.position = position
        self.res = res
        self.cursor = cursor
        self.timer: asyncio.TimerHandle | None = None
        # An `offset=now` URL names no fixed position: its answer must not be
        # cached, or later pollers would get old data at once.
        self.from_now = from_now

    def park(self) -> None:
        self.app.engine.wait(self.s, self.position, self)
        self.timer = asyncio.get_running_loop().call_later(self.app.config.long_poll_timeout, self.timed_out)
        self.res.on_close(self.gone)

    def unpark(self) -> None:
        """Stop the timer and forget the close callback (a wake or the end)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.res.on_close(None)

    def timed_out(self) -> None:
        self.timer = None
        self.unpark()
        self.app.engine.unwait(self.s, self.position, self)
        _send_empty(self.s, self.position, [self])

    def gone(self) -> None:
        self.unpark()
        self.app.engine.unwait(self.s, self.position, self)


def start(app: StreamsApp, s: Stream, res: Responder, position: int, cursor: str | None, from_now: bool) -> None:
    poll = LongPoll(app, s, position, res, cursor, from_now)
    if position < s.tail:
        _send_data(app, s, position, [poll])
    elif s.closed or app.shutting_down:
        _send_empty(s, position, [poll])
    else:
        poll.park()


def wake(app: StreamsApp, s: Stream, position: int, waiters: list[LongPoll]) -> None:
    for w in waiters:
        w.unpark()
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

"""The protocol's entry point: routes each request to the module that owns
that operation and turns errors into answers.

Each operation lives in one obvious place: create.py (PUT), append.py
(POST), read.py (GET catch-up), longpoll.py, sse.py, head.py, delete.py,
options.py (CORS preflight).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..engine import Engine, StorageFailedError, StorageFullError, Stream
from ..http import Request, Responder
from . import append, create, delete, head, longpoll, options, read, sse
from .answer_cache import AnswerCache
from .auth import TokenTable
from .errors import ProtocolError, not_found, storage_failed
from .headers import ALLOWED_METHODS, CLOSED, TEXT, next_offset

log = logging.getLogger("durable_streamsd.protocol")

RESERVED_SEGMENT: Final = "__ds"


@dataclass(frozen=True)
class ProtocolConfig:
    auth: TokenTable | None = None
    long_poll_timeout: float = 30.0
    sse_reconnect_interval: float = 60.0
    max_read_bytes: int = 1024 * 1024


class StreamsApp:
    def __init__(self, engine: Engine, config: ProtocolConfig) -> None:
        self.engine = engine
        self.config = config
        engine.wake_listener = self._on_wake
        self.shutting_down = False
        self.answers = AnswerCache()
        # Every open SSE session, parked or not, so shutdown can end them all.
        self.sse_sessions: set[sse.SseSession] = set()
        self._routes: dict[str, Callable[[StreamsApp, Request, Responder], None]] = {
            "GET": read.handle,
            "HEAD": head.handle,
            "PUT": create.handle,
            "POST": append.handle,
            "DELETE": delete.handle,
            "OPTIONS": options.handle,
        }

    def handle(self, req: Request, res: Responder) -> None:
        route = self._routes.get(req.method)
        try:
            if self.config.auth is not None:
                self.config.auth.authorize(req.method, req.path, req.headers.get("authorization"))
            if route is None:
                raise ProtocolError(
                    405, f"method {req.method} not allowed", b"allow: " + ALLOWED_METHODS.encode() + b"\r\n"
                )
            path = req.path
            if RESERVED_SEGMENT in path and req.method != "OPTIONS" and RESERVED_SEGMENT in path.split("/"):
                raise ProtocolError(404, "reserved path: control APIs under __ds are not available")
            route(self, req, res)
        except ProtocolError as exc:
            self.fail(res, exc)
        except StorageFullError:
            self.fail(res, ProtocolError(507, "insufficient storage: the disk is full, nothing was written"))
        except StorageFailedError:
            self.fail(res, storage_failed("the server must be restarted to recover"))

    def fail(self, res: Responder, exc: ProtocolError) -> None:
        res.send(exc.status, exc.headers + TEXT, exc.message.encode() + b"\n")

    def lookup(self, path: str) -> Stream:
        s = self.engine.get(path)
        if s is None:
            raise not_found(path)
        return s

    def answer_when_durable(
        self, res: Responder, status: int, s: Stream, before: bytes = b"", after: bytes = b"", closed: bool = False
    ) -> None:
        """Answer once everything logged so far is durable (for answers that
        rest on state another request is still committing), with the
        stream's tail as of then (see AnswerWithTail)."""
        answer = self.answer_with_tail(res, status, before, after, closed)
        answer.s = s
        self.engine.barrier(answer)

    def answer_with_tail(
        self, res: Responder, status: int, before: bytes = b"", after: bytes = b"", closed: bool = False
    ) -> AnswerWithTail:
        """An engine callback answering with the stream's tail once the
        operation is durable; the caller sets its stream."""
        return AnswerWithTail(self, res, status, before, after, closed)

    def end_live_readers(self) -> None:
        """Shutdown: answer every parked long-poll, end every SSE session
        (also those waiting for a slow client to drain), and make any live
        read that starts from now on answer at once."""
        self.shutting_down = True
        for s in list(self.engine.by_id.values()):
            if len(s.waiters):
                for position, waiters in s.waiters.pop_ready(0, everything=True):
                    polls = [w for w in waiters if isinstance(w, longpoll.LongPoll)]
                    if polls:
                        longpoll.wake(self, s, position, polls)
        for session in list(self.sse_sessions):
            session.parked = False
            session.end()

    def _on_wake(self, s: Stream, groups: list[tuple[int, list[object]]]) -> None:
        for position, waiters in groups:
            polls = [w for w in waiters if isinstance(w, longpoll.LongPoll)]
            sessions = [w for w in waiters if isinstance(w, sse.SseSession)]
            if polls:
                longpoll.wake(self, s, position, polls)
            if sessions:
                sse.wake(self, s, position, sessions)


class AnswerWithTail:
    """An engine callback that answers once the operation is durable, with
    the stream's tail as of then: headers before + next offset + after, and
    Stream-Closed if closed is set and the stream is closed by then (503 if
    storage failed). s is set before the engine can call back (a create
    sets it from create()'s result). An object, not a closure: compiled, a
    closure and the state it captures form a reference cycle."""

    __slots__ = ("app", "res", "status", "s", "before", "after", "closed")

    def __init__(self, app: StreamsApp, res: Responder, status: int, before: bytes, after: bytes, closed: bool) -> None:
        self.app = app
        self.res = res
        self.status = status
        self.s: Stream | None = None
        self.before = before
        self.after = after
        self.closed = closed

    def __call__(self, exc: BaseException | None) -> None:
        if exc is not None:
            self.app.fail(self.res, storage_failed(exc))
            return
        s = self.s
        assert s is not None
        closed = CLOSED if self.closed and s.closed else b""
        self.res.send(self.status, self.before + next_offset(s, s.tail) + self.after + closed)

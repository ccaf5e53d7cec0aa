"""POST: append, close, or append-and-close (sections 5.2, 5.2.1, 5.3).

Checks run in the spec's order of precedence: malformed request (400),
missing stream (404), closed stream (409 with Stream-Closed, unless this is
the idempotent retry of the close), content type (409), idempotent producer
(403/400/409, 204 duplicates), then Stream-Seq (409). Validation and the
append happen in one step on the loop, so each producer is serialised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine import Producer, Stream
from ..http import Request, Responder
from . import producers
from .errors import ProtocolError, bad_request, not_found, storage_failed
from .headers import CLOSED, line, next_offset
from .jsonmode import frame_messages
from .params import is_true, media_type, parse_producer, parse_stream_seq

if TYPE_CHECKING:
    from .app import StreamsApp


def handle(app: StreamsApp, req: Request, res: Responder) -> None:
    h = req.headers
    if not (  # the usual plain append: nothing to parse (five lookups cost less than isdisjoint)
        "stream-closed" in h or "producer-id" in h or "producer-epoch" in h or "producer-seq" in h or "stream-seq" in h
    ):
        closing, producer, seq = False, None, None
    else:
        closing = is_true(h.get("stream-closed"))
        producer = parse_producer(h)
        seq = parse_stream_seq(h.get("stream-seq"))
    body = req.body
    if not body and not closing:
        raise bad_request("empty body: send data, or Stream-Closed: true to close")
    engine = app.engine
    s = engine.get(req.path)
    mtype = None
    if body:
        ctype = h.get("content-type")
        if ctype is None or not ctype.strip():
            raise bad_request("Content-Type is required when appending data")
        # The stream's own type, repeated (the usual case), was checked when
        # the stream was made; any other is parsed (a 400 before the 404).
        if s is None or ctype != s.config.content_type:
            mtype = media_type(ctype)
    if s is None:
        raise not_found(req.path)

    if s.closing:
        _answer_closed(app, res, s, producer, closing and not body)
        return
    if mtype is not None and mtype != media_type(s.config.content_type):
        raise ProtocolError(409, "Content-Type does not match the stream's content type")
    if body and s.is_json:
        payload, lengths = frame_messages(body, allow_empty=False)
    else:
        payload, lengths = body, ([len(body)] if body else [])

    if producer is not None:
        d = producers.decide(s.producers.get(producer.id), producer.epoch, producer.seq)
        if d.kind == producers.STALE_EPOCH:
            raise ProtocolError(403, "stale producer epoch", line("producer-epoch", d.value))
        if d.kind == producers.BAD_EPOCH_START:
            raise bad_request("a new producer epoch must start at Producer-Seq 0")
        if d.kind == producers.GAP:
            raise ProtocolError(
                409,
                "producer sequence gap",
                line("producer-expected-seq", d.value) + line("producer-received-seq", producer.seq),
            )
        if d.kind == producers.DUPLICATE:
            headers = line("producer-epoch", producer.epoch) + line("producer-seq", d.value)
            app.answer_when_durable(res, 204, s, before=headers)
            return
    if seq is not None and s.last_seq is not None and seq <= s.last_seq:
        raise ProtocolError(409, "Stream-Seq must increase: it is not greater than the last one")

    answer = _Answer(app, res, s, closing, producer, bool(body))
    answer.end = engine.append(s, payload, lengths, close=closing, producer=producer, seq=seq, done=answer)


class _Answer:
    """Answers one append once the engine reports it durable (the engine
    never calls back inside append(), so end is set by then).

    An object rather than a closure: compiled, a closure and the frame
    state it captures refer to each other, so every append left a cycle of
    four objects (closure, its environment, Request, Responder) for the
    cyclic garbage collector, which then ran every ~160 requests."""

    __slots__ = ("app", "res", "s", "closing", "producer", "has_body", "end")

    def __init__(
        self, app: StreamsApp, res: Responder, s: Stream, closing: bool, producer: Producer | None, has_body: bool
    ) -> None:
        self.app = app
        self.res = res
        self.s = s
        self.closing = closing
        self.producer = producer
        self.has_body = has_body
        self.end = 0

    def __call__(self, exc: BaseException | None) -> None:
        if exc is not None:
            self.app.fail(self.res, storage_failed(f"the append was not made durable: {exc}"))
            return
        headers = next_offset(self.s, self.end) + (CLOSED if self.closing else b"")
        producer = self.producer
        if producer is None:
            self.res.send(204, headers)
            return
        headers += line("producer-epoch", producer.epoch) + line("producer-seq", producer.seq)
        self.res.send(200 if self.has_body else 204, headers)


def _answer_closed(app: StreamsApp, res: Responder, s: Stream, producer: Producer | None, close_only: bool) -> None:
    by = s.closed_by
    retry_of_close = (
        producer is not None
        and by is not None
        and (by.id, by.epoch, by.seq)
        == (
            producer.id,
            producer.epoch,
            producer.seq,
        )
    )
    if producer is not None and not retry_of_close:
        state = s.producers.get(producer.id)
        if state is not None and producer.epoch < state.epoch:
            raise ProtocolError(403, "stale producer epoch", line("producer-epoch", state.epoch))
    if retry_of_close or close_only:
        app.engine.touch(s)
        extra = b""
        if retry_of_close and producer is not None:
            extra = line("producer-epoch", producer.epoch) + line("producer-seq", producer.seq)
        app.answer_when_durable(res, 204, s, after=CLOSED + extra)
        return
    raise ProtocolError(409, "stream is closed", CLOSED + next_offset(s, s.pending_tail))

"""GET: catch-up reads (section 5.6), and the entry to live modes.

A read returns zero-copy views of the segment maps, at most one chunk
(whole messages for JSON), with Stream-Up-To-Date only at the tail and
Stream-Closed only when the tail of a closed stream is reached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ..engine import Stream
from ..http import Request, Responder
from . import longpoll, sse
from .chunks import chunk_response
from .errors import bad_request
from .headers import CLOSED, NO_STORE, UP_TO_DATE, content_type, next_offset
from .offsets import BEGINNING, NOW, parse_offset
from .params import query_params, single

if TYPE_CHECKING:
    from .app import StreamsApp

LIVE_MODES: Final = ("long-poll", "sse")


def handle(app: StreamsApp, req: Request, res: Responder) -> None:
    known = app.engine.get(req.path)
    if known is not None:
        # The query was valid when this answer was made, and the answer
        # still stands while the stream's tail and closure are unchanged.
        hit = app.answers.get(known, req.query)
        if hit is not None:
            app.engine.touch(known)
            _answer(req, res, hit.headers, hit.body, hit.tag)
            return
    params = query_params(req.query)
    offset = single(params, "offset")
    live = single(params, "live")
    cursor = single(params, "cursor")
    if live is not None and live not in LIVE_MODES:
        raise bad_request("live must be long-poll or sse")
    if live is not None and offset is None:
        raise bad_request("live reads need an offset")
    requested = parse_offset(offset) if offset is not None and offset not in (BEGINNING, NOW) else None
    s = known if known is not None else app.lookup(req.path)
    if requested is not None:
        stream_id, position = requested
        if stream_id != s.id or not app.engine.valid_position(s, position):
            raise bad_request("offset is not a position of this stream")
    elif offset == NOW:
        position = s.tail
    else:
        position = s.start
    app.engine.touch(s)
    if live == "sse":
        sse.start(app, s, res, position, cursor)
    elif live == "long-poll":
        longpoll.start(app, s, res, position, cursor, from_now=offset == NOW)
    elif offset == NOW:
        tail_now(s, res)
    else:
        catch_up(app, s, req, res, position)


def tail_now(s: Stream, res: Responder) -> None:
    headers = content_type(s) + next_offset(s, s.tail) + UP_TO_DATE + NO_STORE + (CLOSED if s.closed else b"")
    res.send(200, headers, b"[]" if s.is_json else b"")


def catch_up(app: StreamsApp, s: Stream, req: Request, res: Responder, start: int) -> None:
    headers, body, tag = chunk_response(app, s, start)
    app.answers.put(s, req.query, headers, body, tag)
    _answer(req, res, headers, body, tag)


def _answer(req: Request, res: Responder, headers: bytes, body: bytes | list[bytes | memoryview], tag: str) -> None:
    inm = req.headers.get("if-none-match")
    if inm is not None and _matches(inm, tag):
        res.send(304, headers)
        return
    res.send(200, headers, body)


def _matches(header: str, tag: str) -> bool:
    for candidate in header.split(","):
        c = candidate.strip()
        if c.startswith("W/"):
            c = c[2:]
        if c == tag or c == "*":
            return True
    return False

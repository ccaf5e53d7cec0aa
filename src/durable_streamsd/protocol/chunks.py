"""One chunk of a stream as an HTTP answer: headers, body views and ETag.

Shared by catch-up reads and long-poll, which answer with the same shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine import Stream
from .headers import CACHEABLE, CLOSED, NO_STORE, UP_TO_DATE, content_type, line, next_offset
from .jsonmode import wrap_array

if TYPE_CHECKING:
    from .app import StreamsApp


def etag(s: Stream, start: int, end: int, closed: bool) -> str:
    return f'"{s.id:x}.{start:x}.{end:x}{".c" if closed else ""}"'


def chunk_response(app: StreamsApp, s: Stream, start: int) -> tuple[bytes, list[bytes | memoryview], str]:
    """Headers, body and ETag for a read of one chunk from start."""
    views, end = app.engine.read(s, start, app.config.max_read_bytes)
    at_tail = end == s.tail
    closed = at_tail and s.closed
    tag = etag(s, start, end, closed)
    headers = content_type(s) + next_offset(end) + line("etag", tag)
    if at_tail:
        headers += UP_TO_DATE
    if closed:
        headers += CLOSED
    # Data is immutable by position; an empty answer at an open tail is not.
    headers += CACHEABLE if (views or closed) else NO_STORE
    body: list[bytes | memoryview] = wrap_array(views) if s.is_json else list(views)
    return headers, body, tag

"""HEAD: stream metadata. Does not reset a sliding TTL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import Request, Responder
from .headers import CLOSED, NO_STORE, content_type, expiry, next_offset

if TYPE_CHECKING:
    from .app import StreamsApp


def handle(app: StreamsApp, req: Request, res: Responder) -> None:
    s = app.lookup(req.path)
    res.send(200, content_type(s) + next_offset(s, s.tail) + expiry(s) + (CLOSED if s.closed else b"") + NO_STORE)

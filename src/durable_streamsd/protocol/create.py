"""PUT: create a stream, or confirm an identical one exists (section 5.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine import StreamConfig, is_json_type
from ..http import Request, Responder
from .errors import ProtocolError, bad_request
from .headers import content_type, content_type_line, line
from .jsonmode import frame_messages
from .params import is_true, media_type, parse_expires_at, parse_ttl

if TYPE_CHECKING:
    from .app import StreamsApp

DEFAULT_CONTENT_TYPE = "application/octet-stream"
FORK_HEADERS = ("stream-forked-from", "stream-fork-offset", "stream-fork-sub-offset")


def handle(app: StreamsApp, req: Request, res: Responder) -> None:
    h = req.headers
    ctype = (h.get("content-type") or "").strip() or DEFAULT_CONTENT_TYPE
    mtype = media_type(ctype)
    ttl = parse_ttl(h.get("stream-ttl"))
    expires_at = parse_expires_at(h.get("stream-expires-at"))
    if ttl is not None and expires_at is not None:
        raise bad_request("send Stream-TTL or Stream-Expires-At, not both")
    if any(name in h for name in FORK_HEADERS):
        raise ProtocolError(501, "forks are not supported by this server yet")
    closed = is_true(h.get("stream-closed"))

    engine = app.engine
    existing = engine.get(req.path)
    if existing is not None:
        c = existing.config
        same = (
            media_type(c.content_type) == mtype
            and c.ttl == ttl
            and c.expires_at == expires_at
            and existing.closing == closed
        )
        if not same:
            raise ProtocolError(409, "a stream with a different configuration exists at this path")
        app.answer_when_durable(res, 200, existing, before=content_type(existing), closed=True)
        return

    body = req.body
    if is_json_type(ctype) and body:
        payload, lengths = frame_messages(body, allow_empty=True)
    else:
        payload, lengths = body, ([len(body)] if body else [])
    config = StreamConfig(ctype, ttl, expires_at)
    location = line("location", f"http://{req.host or 'localhost'}{_raw_path(req.target)}")
    # Answered like a repeat create, with the new stream's tail once durable.
    created = app.answer_with_tail(res, 201, before=location + content_type_line(ctype), closed=True)
    created.s = engine.create(req.path, config, closed, payload, lengths, created)


def _raw_path(target: bytes) -> str:
    return target.split(b"?", 1)[0].decode("latin-1")

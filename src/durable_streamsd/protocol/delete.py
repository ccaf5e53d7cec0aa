"""DELETE: remove a stream and its data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import Request, Responder
from .errors import ProtocolError

if TYPE_CHECKING:
    from .app import StreamsApp


def handle(app: StreamsApp, req: Request, res: Responder) -> None:
    s = app.lookup(req.path)

    def done(exc: BaseException | None) -> None:
        if exc is None:
            res.send(204)
        else:
            app.fail(res, ProtocolError(503, f"storage failed: {exc}"))

    app.engine.delete(s, done)

"""DELETE: remove a stream and its data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import Request, Responder
from .errors import storage_failed

if TYPE_CHECKING:
    from .app import StreamsApp


def handle(app: StreamsApp, req: Request, res: Responder) -> None:
    s = app.lookup(req.path)
    app.engine.delete(s, _Deleted(app, res))


class _Deleted:
    """Answers a delete once it is durable. An object, not a closure:
    compiled, a closure and the state it captures form a reference cycle."""

    __slots__ = ("app", "res")

    def __init__(self, app: StreamsApp, res: Responder) -> None:
        self.app = app
        self.res = res

    def __call__(self, exc: BaseException | None) -> None:
        if exc is None:
            self.res.send(204)
        else:
            self.app.fail(self.res, storage_failed(exc))

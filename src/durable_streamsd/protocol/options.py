"""OPTIONS: CORS preflight."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import Request, Responder
from .headers import ALLOWED_METHODS, ALLOWED_REQUEST_HEADERS, line

if TYPE_CHECKING:
    from .app import StreamsApp

PREFLIGHT = (
    line("access-control-allow-methods", ALLOWED_METHODS)
    + line("access-control-allow-headers", ALLOWED_REQUEST_HEADERS)
    + line("access-control-max-age", 86400)
)


def handle(app: StreamsApp, req: Request, res: Responder) -> None:
    res.send(204, PREFLIGHT)

"""A parsed request as handed to the application."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .response import Responder


class Request:
    """A plain class, not a dataclass: compiled, a dataclass's generated
    __init__ stays interpreted Python, called with an argument tuple and a
    keyword dict, which cost ~2,000 instructions per request."""

    __slots__ = ("method", "target", "path", "query", "headers", "body", "host")

    def __init__(
        self, method: str, target: bytes, path: str, query: str, headers: dict[str, str], body: bytes, host: str
    ) -> None:
        self.method = method
        # The request target as sent (path and query, still percent-encoded).
        self.target = target
        self.path = path
        self.query = query
        # Lower-case names; repeated headers joined with ", ".
        self.headers = headers
        self.body = body
        self.host = host

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target!r})"


Handler = Callable[[Request, "Responder"], None]

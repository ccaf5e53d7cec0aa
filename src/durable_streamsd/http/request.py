"""A parsed request as handed to the application."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .response import Responder


@dataclass(slots=True)
class Request:
    method: str
    # The request target as sent (path and query, still percent-encoded).
    target: bytes
    path: str
    query: str
    # Lower-case names; repeated headers joined with ", ".
    headers: dict[str, str]
    body: bytes
    host: str


Handler = Callable[[Request, "Responder"], None]

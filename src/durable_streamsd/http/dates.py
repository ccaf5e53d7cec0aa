"""The Date header, formatted once a second instead of once per request."""

from __future__ import annotations

import asyncio
from email.utils import formatdate


class DateHeader:
    def __init__(self) -> None:
        self.line = b""
        self._timer: asyncio.TimerHandle | None = None
        self._refresh_line()

    def _refresh_line(self) -> None:
        self.line = b"date: " + formatdate(usegmt=True).encode() + b"\r\n"

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        def tick() -> None:
            self._refresh_line()
            self._timer = loop.call_later(1.0, tick)

        tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

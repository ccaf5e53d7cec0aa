"""Write flow control: remembers whether the transport asked us to pause and
tells interested writers when it drains."""

from __future__ import annotations

from collections.abc import Callable


class FlowControl:
    __slots__ = ("paused", "_drain")

    def __init__(self) -> None:
        self.paused = False
        self._drain: list[Callable[[], None]] = []

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiting, self._drain = self._drain, []
        for cb in waiting:
            cb()

    def on_drain(self, cb: Callable[[], None]) -> None:
        if self.paused:
            self._drain.append(cb)
        else:
            cb()

    def clear(self) -> None:
        self._drain = []

"""Stream-Cursor values: the current 20-second interval since the protocol's
epoch, always moving forward past a cursor the client echoes, so a CDN can
never serve one cached live response in a loop."""

from __future__ import annotations

import random
import time
from typing import Final

CURSOR_EPOCH: Final = 1728432000  # 2024-10-09T00:00:00Z
CURSOR_INTERVAL: Final = 20


def next_cursor(client_cursor: str | None, now: float | None = None) -> str:
    current = int(((time.time() if now is None else now) - CURSOR_EPOCH) // CURSOR_INTERVAL)
    if client_cursor is not None and client_cursor.isdigit() and len(client_cursor) < 20:
        echoed = int(client_cursor)
        if echoed >= current:
            jitter_seconds = random.randint(1, 3600)
            return str(echoed + max(1, jitter_seconds // CURSOR_INTERVAL))
    return str(current)

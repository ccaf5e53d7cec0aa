"""Recently sent catch-up answers, kept encoded.

Many clients read the same stream from the same offset (a page load reads
from the start, a CDN miss storm asks for one URL at once); the answer only
changes when the stream's tail or closure does, because stored bytes never
change. Keeping the encoded headers and body of small answers turns a
repeated read into a dictionary lookup and one write.

Only answers whose headers cannot change with time are kept: none for
streams with a TTL or expiry (their Cache-Control counts down). Bodies are
copied out of the segment maps, so an entry pins no map and no descriptor.
"""

from __future__ import annotations

from typing import Final

from ..engine import Stream

MAX_BODY: Final = 4096
MAX_ENTRIES: Final = 2048


class Answer:
    """A plain class: compiled, a dataclass's generated __init__ stays interpreted."""

    __slots__ = ("tail", "closed", "headers", "body", "tag")

    def __init__(self, tail: int, closed: bool, headers: bytes, body: bytes, tag: str) -> None:
        self.tail = tail
        self.closed = closed
        self.headers = headers
        self.body = body
        self.tag = tag


class AnswerCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._entries: dict[tuple[int, str], Answer] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, s: Stream, query: str) -> Answer | None:
        hit = self._entries.get((s.id, query))
        if hit is None:
            return None
        if hit.tail != s.tail or hit.closed != s.closed:
            del self._entries[(s.id, query)]
            return None
        return hit

    def put(self, s: Stream, query: str, headers: bytes, body: list[bytes | memoryview], tag: str) -> None:
        if s.config.expires or sum(map(len, body)) > MAX_BODY:
            return
        if len(self._entries) >= self._max:
            # Cheaper than LRU bookkeeping on every hit; a popular answer
            # is back after its next read.
            self._entries.clear()
        self._entries[(s.id, query)] = Answer(s.tail, s.closed, headers, b"".join(body), tag)

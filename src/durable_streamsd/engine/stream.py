"""One stream's state as the engine keeps it.

Two views of the same stream live side by side:

* the *pending* view (``pending_tail``, ``closing``, ``producers``,
  ``last_seq``) includes every record already written to the log; appends
  are validated against it so pipelined writers see each other at once;
* the *visible* view (``tail``, ``closed``) advances only when a record
  commits, and is all that readers ever see, so nothing a reader saw can be
  lost in a crash.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Final

from .records import Producer, crc32
from .segments import SegmentStore
from .waiters import WaiterSet

INDEX_ENTRY: Final = struct.Struct("<QII")  # position, length, crc32
_pack_entry: Final = INDEX_ENTRY.pack  # bound once: see records.crc32

# Returns a stream's index entries already flushed to its index file.
BoundaryLoader = Callable[["Stream"], bytes]


# Plain classes: compiled, a dataclass's generated __init__ stays interpreted.
class ProducerState:
    __slots__ = ("epoch", "last_seq")

    def __init__(self, epoch: int, last_seq: int) -> None:
        self.epoch = epoch
        self.last_seq = last_seq


class StreamConfig:
    __slots__ = ("content_type", "ttl", "expires_at")

    def __init__(self, content_type: str, ttl: int | None = None, expires_at: float | None = None) -> None:
        self.content_type = content_type
        self.ttl = ttl
        self.expires_at = expires_at  # unix seconds

    @property
    def expires(self) -> bool:
        """The stream can expire (a TTL or an Expires-At): deadline() is None
        exactly when this is false."""
        return self.ttl is not None or self.expires_at is not None

    def to_meta(self) -> dict[str, object]:
        return {"content_type": self.content_type, "ttl": self.ttl, "expires_at": self.expires_at}


class Stream:
    __slots__ = (
        "id",
        "path",
        "config",
        "is_json",
        "created_at",
        "tail",
        "closed",
        "pending_tail",
        "closing",
        "closed_by",
        "producers",
        "last_seq",
        "last_access",
        "store",
        "waiters",
        "index_units",
        "unflushed_index",
        "in_flight_index",
        "_boundaries",
        "deleted",
        "dirty",
    )

    def __init__(self, stream_id: int, path: str, config: StreamConfig, store: SegmentStore, created_at: float) -> None:
        self.id = stream_id
        self.path = path
        self.config = config
        self.is_json = is_json_type(config.content_type)
        self.created_at = created_at
        self.tail = store.origin
        self.closed = False
        self.pending_tail = store.origin
        self.closing = False
        self.closed_by: Producer | None = None
        self.producers: dict[str, ProducerState] = {}
        self.last_seq: bytes | None = None
        self.last_access = created_at
        self.store = store
        self.waiters = WaiterSet()
        # Index entries already flushed to the stream's index file.
        self.index_units = 0
        # Entries appended since the last checkpoint, flushed by it.
        self.unflushed_index = bytearray()
        # Entries a running checkpoint is writing (counted in index_units).
        self.in_flight_index = b""
        # Unit end positions, loaded lazily for JSON chunking.
        self._boundaries: array[int] | None = None
        self.deleted = False
        # Listed for the next checkpoint (the engine's dirty list).
        self.dirty = False

    @property
    def start(self) -> int:
        return self.store.origin

    def deadline(self) -> float | None:
        """Wall-clock time at which the stream expires, if it can."""
        c = self.config
        due = c.expires_at
        if c.ttl is not None:
            t = self.last_access + c.ttl
            due = t if due is None else min(due, t)
        return due

    def add_units(self, position: int, payload: bytes, lengths: list[int]) -> None:
        """Record index entries for units just written at position."""
        buf = self.unflushed_index
        if len(lengths) == 1:
            end = position + lengths[0]
            buf += _pack_entry(position, lengths[0], crc32(payload))
            if self._boundaries is not None:
                self._boundaries.append(end)
            return
        off = 0
        pos = position
        view = memoryview(payload)
        for n in lengths:
            buf += _pack_entry(pos, n, crc32(view[off : off + n]))
            off += n
            pos += n
        if self._boundaries is not None:
            end = position
            for n in lengths:
                end += n
                self._boundaries.append(end)

    def boundaries(self, load_flushed: BoundaryLoader) -> array[int]:
        if self._boundaries is None:
            b = array("Q")
            for raw in (load_flushed(self), bytes(self.unflushed_index)):
                for pos, n, _crc in INDEX_ENTRY.iter_unpack(raw):
                    b.append(pos + n)
            self._boundaries = b
        return self._boundaries

    def forget_boundaries(self) -> None:
        self._boundaries = None

    def is_boundary(self, position: int, load_flushed: BoundaryLoader) -> bool:
        if position == self.start:
            return True
        b = self.boundaries(load_flushed)
        i = bisect_left(b, position)
        return i < len(b) and b[i] == position

    def chunk_end(self, start: int, limit: int, load_flushed: BoundaryLoader) -> int:
        """End of a read from start of at most limit bytes, on a unit boundary
        for JSON streams (always at least one whole message)."""
        end = self.tail
        if end - start <= limit:
            return end
        if not self.is_json:
            return start + limit
        b = self.boundaries(load_flushed)
        i = bisect_right(b, start + limit)
        if i > 0 and b[i - 1] > start:
            return int(b[i - 1])
        j = bisect_right(b, start)
        return int(b[j]) if j < len(b) else end


def is_json_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"

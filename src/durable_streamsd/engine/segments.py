"""Segment files: a stream's bytes, memory-mapped for zero-copy reads.

A stream's logical byte space is cut into segments whose capacities double
from ``MIN_SEGMENT`` up to ``MAX_SEGMENT``. Segment bases are therefore a pure
function of the segment number, so locating a position needs no lookup table
and a directory listing (files named by base position) explains the layout.
Small streams cost one small file; a million tiny streams do not cost a
million large files.

Files are allocated with ``posix_fallocate`` before they are mapped: a write
through a mapping of a sparse file on a full disk would kill the process with
SIGBUS, whereas a failed allocation is an ordinary ``OSError`` raised before
any state changes.
"""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict
from collections.abc import Iterator

MIN_SEGMENT = 4 * 1024
MAX_SEGMENT = 64 * 1024 * 1024
# Number of doubling steps before capacities stop growing.
_GROWTH_STEPS = (MAX_SEGMENT // MIN_SEGMENT).bit_length() - 1
# Position where the fixed-size region begins (sum of all growing segments).
_FIXED_START = MIN_SEGMENT * ((1 << _GROWTH_STEPS) - 1)


def segment_of(relative: int) -> tuple[int, int]:
    """Return (base, capacity) of the segment holding a relative position."""
    if relative >= _FIXED_START:
        k = (relative - _FIXED_START) // MAX_SEGMENT
        return _FIXED_START + k * MAX_SEGMENT, MAX_SEGMENT
    # Segment i covers [MIN*(2^i - 1), MIN*(2^(i+1) - 1)).
    i = (relative // MIN_SEGMENT + 1).bit_length() - 1
    return MIN_SEGMENT * ((1 << i) - 1), MIN_SEGMENT << i


def segment_name(base: int) -> str:
    return f"{base:016x}.seg"


class SegmentCache:
    """LRU of open segment maps; bounds open descriptors and mappings.

    Evicting a map only drops our reference: memoryviews still queued on a
    transport keep it alive until written, so eviction never invalidates a
    response in flight.
    """

    def __init__(self, max_open: int) -> None:
        self._max_open = max(1, max_open)
        self._maps: OrderedDict[tuple[str, int], mmap.mmap] = OrderedDict()

    def __len__(self) -> int:
        return len(self._maps)

    def get(self, directory: str, base: int, capacity: int, create: bool) -> mmap.mmap | None:
        key = (directory, base)
        mm = self._maps.get(key)
        if mm is not None:
            self._maps.move_to_end(key)
            return mm
        mm = self._open(directory, base, capacity, create)
        if mm is None:
            return None
        self._maps[key] = mm
        if len(self._maps) > self._max_open:
            self._maps.popitem(last=False)
        return mm

    def forget_directory(self, directory: str) -> None:
        for key in [k for k in self._maps if k[0] == directory]:
            del self._maps[key]

    def clear(self) -> None:
        self._maps.clear()

    @staticmethod
    def _open(directory: str, base: int, capacity: int, create: bool) -> mmap.mmap | None:
        path = os.path.join(directory, segment_name(base))
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            if not create:
                return None
            # Recovery can replay into a stream whose directory a later
            # delete already removed.
            os.makedirs(directory, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            if os.fstat(fd).st_size < capacity:
                os.posix_fallocate(fd, 0, capacity)
            # mmap dups the descriptor, so ours can be closed right away.
            return mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)


def prepare_segment(directory: str, base: int, capacity: int, make_directory: bool) -> None:
    """Create and allocate a segment file before it is needed (on the disk
    thread). Creating a file costs ~0.4 ms here, and on the loop it stalled
    every request behind it; when the append that needs the segment comes,
    opening the existing file is cheap. Failure is harmless: that append
    then creates the file itself and reports a full disk properly."""
    try:
        if make_directory:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, segment_name(base)), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return  # e.g. the stream was deleted meanwhile: nothing to prepare
    try:
        if os.fstat(fd).st_size < capacity:
            os.posix_fallocate(fd, 0, capacity)
    except OSError:
        pass
    finally:
        os.close(fd)


class SegmentStore:
    """Reads and writes one stream's byte space through the shared cache.

    ``origin`` is the position of the stream's first own byte (non-zero for
    forks, which share their source's offset space).
    """

    __slots__ = ("directory", "origin", "_cache", "_prepared")

    def __init__(self, directory: str, origin: int, cache: SegmentCache) -> None:
        self.directory = directory
        self.origin = origin
        self._cache = cache
        # Relative base of the last segment handed out for preparing.
        self._prepared = -1

    def to_prepare(self, end: int) -> tuple[int, int] | None:
        """(base, capacity) of the segment after the one holding end, the
        first time that one is half full; else None."""
        rel = end - self.origin
        base, cap = segment_of(rel)
        following = base + cap
        if rel - base < cap // 2 or following <= self._prepared:
            return None
        self._prepared = following
        return following, segment_of(following)[1]

    def first_to_prepare(self) -> tuple[int, int]:
        """(base, capacity) of a new stream's first segment."""
        self._prepared = 0
        return 0, MIN_SEGMENT

    def reserve(self, position: int, length: int) -> None:
        """Allocate every segment that [position, position+length) touches.

        Called before anything is logged, so a full disk fails the request
        without side effects.
        """
        if length <= 0:
            return
        rel = position - self.origin
        base, cap = segment_of(rel)
        if rel + length <= base + cap:  # the usual case: one segment
            self._cache.get(self.directory, base, cap, create=True)
            return
        end = rel + length
        while rel < end:
            base, cap = segment_of(rel)
            self._cache.get(self.directory, base, cap, create=True)
            rel = base + cap

    def write(self, position: int, data: bytes | memoryview, touched: set[tuple[str, int]]) -> None:
        """Copy data into the maps at position, adding (directory, base) of
        each segment written to touched."""
        rel = position - self.origin
        total = len(data)
        base, cap = segment_of(rel)
        off = rel - base
        if off + total <= cap:  # the usual case: one segment, no views needed
            mm = self._cache.get(self.directory, base, cap, create=True)
            assert mm is not None
            mm[off : off + total] = data
            touched.add((self.directory, base))
            return
        view = memoryview(data)
        done = 0
        while done < total:
            base, cap = segment_of(rel)
            mm = self._cache.get(self.directory, base, cap, create=True)
            assert mm is not None
            off = rel - base
            n = min(cap - off, total - done)
            mm[off : off + n] = view[done : done + n]
            touched.add((self.directory, base))
            done += n
            rel += n

    def views(self, start: int, end: int) -> list[memoryview]:
        """Zero-copy views of [start, end), one per segment crossed."""
        rel = start - self.origin
        rel_end = end - self.origin
        base, cap = segment_of(rel)
        if rel_end <= base + cap:  # the usual case: one segment
            mm = self._cache.get(self.directory, base, cap, create=False)
            if mm is None:
                raise FileNotFoundError(os.path.join(self.directory, segment_name(base)))
            return [memoryview(mm)[rel - base : rel_end - base]]
        parts: list[memoryview] = []
        while rel < rel_end:
            base, cap = segment_of(rel)
            mm = self._cache.get(self.directory, base, cap, create=False)
            if mm is None:
                raise FileNotFoundError(os.path.join(self.directory, segment_name(base)))
            off = rel - base
            n = min(cap - off, rel_end - rel)
            parts.append(memoryview(mm)[off : off + n])
            rel += n
        return parts

    def read_bytes(self, start: int, end: int) -> bytes:
        return b"".join(self.views(start, end))

    def segment_paths(self, upto: int) -> Iterator[str]:
        rel = 0
        rel_end = upto - self.origin
        while rel < rel_end:
            base, cap = segment_of(rel)
            yield os.path.join(self.directory, segment_name(base))
            rel = base + cap

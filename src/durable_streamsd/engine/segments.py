"""Segment files: a stream's bytes, memory-mapped for zero-copy reads.

A stream's logical byte space is cut into segments of one fixed capacity
(64 MiB unless the data directory was made with another), so a position's
segment is one division and a directory listing (files named by base
position) explains the layout. A segment file grows in place: it starts at
``MIN_ALLOC`` and doubles as the stream fills it, so a small stream costs
one small file and a growing one never needs a new file until 64 MiB.
That matters because creating a file is the expensive step: on this
project's benchmark disk (ext4 without a journal, which skips recently
freed inodes) one creation cost ~0.4 ms of CPU, and with 4 KiB segments
that doubled, ~10% of the server's CPU went to creating files while 1,000
small streams were appended to. Growing a file is a cheap ``fallocate`` and
a new map.

Space is allocated with ``posix_fallocate`` before it is mapped and written:
a write through a mapping of a sparse file on a full disk would kill the
process with SIGBUS, whereas a failed allocation is an ordinary ``OSError``
raised before any state changes. A file is never mapped beyond its size,
so every mapped byte is allocated.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections import OrderedDict
from typing import Final

DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
# The first allocation of a stream's first segment, and the step allocations
# double from.
MIN_ALLOC: Final = 4 * 1024
# Smallest segment size a data directory may be made with (tests use small
# ones to cross segment boundaries often).
MIN_SEGMENT_BYTES: Final = MIN_ALLOC


# "Not yet": an int, so the position compares stay integer compares
# (compiled, a float there would change the attribute's representation).
_NEVER: Final = 1 << 62


def valid_segment_bytes(n: int) -> bool:
    return n >= MIN_SEGMENT_BYTES and n % MIN_ALLOC == 0


def segment_name(base: int) -> str:
    return f"{base:016x}.seg"


def _round_up(n: int) -> int:
    return -(-n // MIN_ALLOC) * MIN_ALLOC


class _Open:
    """One open map in the cache, and the store holding it in hand (if any)."""

    __slots__ = ("mm", "holder")

    def __init__(self, mm: mmap.mmap, holder: SegmentStore | None) -> None:
        self.mm = mm
        self.holder = holder


class SegmentCache:
    """Bounded set of open segment maps: each holds a descriptor, so this
    bounds open files and mappings whatever the number of streams.

    A store keeps the map it last wrote through in hand and writes through
    it again without asking the cache; the cache takes it back when it
    evicts that map. Eviction is therefore second chance (CLOCK), not strict
    LRU: a map in hand whose store used it since the last pass goes to the
    back of the queue once instead of out. An LRU touch on every append (a
    tuple key, a dict lookup, an OrderedDict move) cost ~1,500 instructions
    of a ~50,000-instruction append, and with 1,000 streams each touch
    missed the caches.

    Evicting or replacing a map only drops references: memoryviews still
    queued on a transport keep it alive until written, so neither ever
    invalidates a response in flight.
    """

    def __init__(self, max_open: int) -> None:
        self._max_open = max(1, max_open)
        self._maps: OrderedDict[tuple[str, int], _Open] = OrderedDict()

    def __len__(self) -> int:
        return len(self._maps)

    def get(self, directory: str, base: int, holder: SegmentStore | None = None) -> mmap.mmap | None:
        """The map of a segment's whole file; None if there is no file.
        With a holder, that store takes the map in hand."""
        key = (directory, base)
        entry = self._maps.get(key)
        if entry is not None:
            self._maps.move_to_end(key)
            if holder is not None:
                self._hold(key, entry, holder)
            return entry.mm
        try:
            fd = os.open(os.path.join(directory, segment_name(base)), os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return None  # created, never allocated: nothing was stored in it
            mm = _map_file(fd, size)
        finally:
            os.close(fd)
        return self._keep(key, mm, holder)

    def grow(self, directory: str, base: int, need: int, target: int, holder: SegmentStore) -> mmap.mmap:
        """Map a segment file at least need bytes long, creating it or
        allocating it up to target (>= need) first if it is shorter; the
        holder takes the new map in hand."""
        path = os.path.join(directory, segment_name(base))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            # Recovery can replay into a stream whose directory a later
            # delete already removed.
            os.makedirs(directory, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            mm = _map_file(fd, _ensure_allocated(fd, need, target))
        finally:
            os.close(fd)
        return self._keep((directory, base), mm, holder)

    def _hold(self, key: tuple[str, int], entry: _Open, holder: SegmentStore) -> None:
        held = holder.held_base
        if held != key[1] and held != _NEVER:
            previous = self._maps.get((key[0], held))
            if previous is not None and previous.holder is holder:
                previous.holder = None
        entry.holder = holder
        holder.take(key[1], entry.mm)

    def _keep(self, key: tuple[str, int], mm: mmap.mmap, holder: SegmentStore | None) -> mmap.mmap:
        maps = self._maps
        entry = _Open(mm, None)
        maps[key] = entry
        maps.move_to_end(key)
        if holder is not None:
            self._hold(key, entry, holder)
        while len(maps) > self._max_open:
            old_key, old = maps.popitem(last=False)
            owner = old.holder
            if old is entry:
                maps[old_key] = old  # the map just opened is not the one to go
                continue
            if owner is not None:
                if owner.used:
                    owner.used = False
                    maps[old_key] = old  # second chance
                    continue
                owner.release()
        return mm

    def forget_directory(self, directory: str) -> None:
        for key in [k for k in self._maps if k[0] == directory]:
            owner = self._maps.pop(key).holder
            if owner is not None:
                owner.release()

    def clear(self) -> None:
        for entry in self._maps.values():
            if entry.holder is not None:
                entry.holder.release()
        self._maps.clear()


def _map_file(fd: int, size: int) -> mmap.mmap:
    return mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _ensure_allocated(fd: int, need: int, target: int) -> int:
    """Make the file at least need bytes (and never empty), allocating up to
    target when it is shorter; returns its size."""
    size = os.fstat(fd).st_size
    if size < need or size == 0:
        size = _allocate(fd, need, target)
    return size


def _allocate(fd: int, need: int, target: int) -> int:
    """Allocate the file up to target, or, if the disk cannot spare that
    much, up to need: a nearly full disk still takes the appends that fit."""
    try:
        os.posix_fallocate(fd, 0, target)
        return target
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or target <= need:
            raise
    need = max(need, 1)
    os.posix_fallocate(fd, 0, need)
    return need


def prepare_segment(directory: str, base: int, size: int, make_directory: bool) -> None:
    """Create or grow a segment file to size before an append needs it (on
    the disk thread), so the append only maps it. Failure is harmless: that
    append then allocates the space itself and reports a full disk
    properly."""
    try:
        if make_directory:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, segment_name(base)), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return  # e.g. the stream was deleted meanwhile: nothing to prepare
    try:
        _ensure_allocated(fd, size, size)
    except OSError:
        pass
    finally:
        os.close(fd)


class SegmentStore:
    """Reads and writes one stream's byte space through the shared cache.

    ``origin`` is the position of the stream's first own byte (non-zero for
    forks, which share their source's offset space). Every segment before
    the last one is allocated in full; ``allocated`` is the relative end of
    what is known to be allocated (-1 until a reopened stream first grows).
    """

    __slots__ = (
        "directory",
        "origin",
        "size",
        "allocated",
        "_cache",
        "prepare_at",
        "held",
        "held_base",
        "used",
        "dirty_from",
    )

    def __init__(self, directory: str, origin: int, cache: SegmentCache, size: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self.origin = origin
        self.size = size
        self.allocated = -1
        self._cache = cache
        # Past this relative position the next allocation is prepared; set
        # each time the allocation grows, cleared once it is handed out
        # (the append path compares against it before calling to_prepare).
        self.prepare_at = _NEVER
        # The map in hand (see SegmentCache) and its segment's base; used:
        # written through since the cache's last eviction pass.
        self.held: mmap.mmap | None = None
        self.held_base = _NEVER
        self.used = False
        # Relative position of the first byte written since take_dirty().
        self.dirty_from = _NEVER

    def take(self, base: int, mm: mmap.mmap) -> None:
        """The cache hands this store a map to keep in hand; used is set
        again by the next write through it."""
        self.held = mm
        self.held_base = base
        self.used = False

    def release(self) -> None:
        """The cache evicted the map in hand (or forgot the stream)."""
        self.held = None
        self.held_base = _NEVER

    def take_dirty(self, upto: int) -> list[str]:
        """Paths of the segments written since the last call (the stream's
        bytes end at upto): what a checkpoint must flush."""
        first = self.dirty_from
        if first == _NEVER:
            return []
        self.dirty_from = _NEVER
        size = self.size
        return [
            os.path.join(self.directory, segment_name(base))
            for base in range(first - first % size, upto - self.origin, size)
        ]

    def _target(self, base: int, need: int) -> int:
        """How far to allocate a segment that must hold need bytes: whole
        segments past the first (the stream is big), else double."""
        if base > 0:
            return self.size
        current = self.allocated if self.allocated > 0 else 0
        return min(self.size, _round_up(max(need, 2 * current, MIN_ALLOC)))

    def _grow(self, base: int, need: int) -> mmap.mmap:
        mm = self._cache.grow(self.directory, base, need, self._target(base, need), self)
        self.allocated = base + len(mm)
        self.prepare_at = base + len(mm) // 2
        return mm

    def to_prepare(self, end: int) -> tuple[int, int] | None:
        """(base, size) of the allocation after the current one, the first
        time the current one is half used; else None."""
        if end - self.origin <= self.prepare_at:
            return None
        self.prepare_at = _NEVER
        alloc = self.allocated
        size = self.size
        base = (alloc - 1) - (alloc - 1) % size
        current = alloc - base
        if current < size:
            return base, min(size, 2 * current)
        return base + size, size

    def first_to_prepare(self) -> tuple[int, int]:
        """(base, size) of a new stream's first allocation."""
        return 0, MIN_ALLOC

    def reserve(self, position: int, length: int) -> None:
        """Allocate every byte of [position, position+length).

        Called before anything is logged, so a full disk fails the request
        without side effects.
        """
        end = position + length - self.origin
        if length <= 0 or end <= self.allocated:
            return
        size = self.size
        rel = position - self.origin
        while True:
            base = rel - rel % size
            if end <= base + size:
                self._grow(base, end - base)
                return
            self._grow(base, size)
            rel = base + size

    def write(self, position: int, data: bytes | memoryview) -> None:
        """Copy data into the maps at position (marking what it wrote dirty).
        Recovery replays through here without reserving first, so a short
        map is grown."""
        total = len(data)
        if not total:
            return
        rel = position - self.origin
        if rel < self.dirty_from:
            self.dirty_from = rel
        size = self.size
        base = rel - rel % size
        off = rel - base
        if off + total <= size:  # the usual case: one segment, no views needed
            mm = self.held
            if mm is None or self.held_base != base or len(mm) < off + total:
                mm = self._map_to_write(base, off + total)
            else:
                self.used = True
            mm[off : off + total] = data
            return
        view = memoryview(data)
        done = 0
        while done < total:
            base = rel - rel % size
            off = rel - base
            n = min(size - off, total - done)
            mm = self._map_to_write(base, off + n)
            mm[off : off + n] = view[done : done + n]
            done += n
            rel += n

    def _map_to_write(self, base: int, need: int) -> mmap.mmap:
        mm = self._cache.get(self.directory, base, self)
        if mm is None or len(mm) < need:
            mm = self._grow(base, need)
        return mm

    def views(self, start: int, end: int) -> list[memoryview]:
        """Zero-copy views of [start, end), one per segment crossed."""
        rel = start - self.origin
        rel_end = end - self.origin
        if rel_end <= rel:
            return []
        size = self.size
        base = rel - rel % size
        if rel_end <= base + size:  # the usual case: one segment
            return [self._map_holding(base, rel_end - base)[rel - base : rel_end - base]]
        parts: list[memoryview] = []
        while rel < rel_end:
            base = rel - rel % size
            n = min(base + size, rel_end) - rel
            parts.append(self._map_holding(base, rel - base + n)[rel - base : rel - base + n])
            rel += n
        return parts

    def _map_holding(self, base: int, need: int) -> memoryview:
        mm = self.held if self.held_base == base else self._cache.get(self.directory, base)
        if mm is None or len(mm) < need:
            path = os.path.join(self.directory, segment_name(base))
            if mm is None:
                raise FileNotFoundError(path)
            raise ValueError(f"{path}: {len(mm)} bytes, shorter than the {need} stored in it")
        return memoryview(mm)

    def read_bytes(self, start: int, end: int) -> bytes:
        return b"".join(self.views(start, end))

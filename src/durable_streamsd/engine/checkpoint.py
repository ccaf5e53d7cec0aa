"""Catalog checkpoints: the durable picture that lets the log be truncated.

A checkpoint records, for an LSN, every live stream's configuration, tail,
closure and writer state. It is written only after the log up to that LSN,
the dirty segments and the index entries it counts are on disk, and it
replaces the previous one with an atomic rename, so a crash at any moment
leaves either the old or the new catalog whole.

Per-stream entries are cached as encoded JSON and re-encoded only for streams
that changed, so a checkpoint of many idle streams costs a join, not a walk
through Python objects.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

import orjson

from .records import Producer
from .segments import DEFAULT_SEGMENT_BYTES, valid_segment_bytes
from .stream import INDEX_ENTRY, Stream
from .wal import fsync_dir

CATALOG = "catalog.json"
PREVIOUS = "catalog.prev.json"
INDEX_FILE = "index"
# 2: fixed-size segments that grow in place, their size in the catalog.
FORMAT_VERSION = 2


class CorruptCatalogError(Exception):
    pass


def encode_stream(s: Stream, index_units: int) -> bytes:
    closed_by = s.closed_by
    # Copied into an exact-size bytes: orjson's result keeps a ~4 KiB
    # allocation, which cached for every stream cost ~4 KiB a stream.
    return bytes(memoryview(_dumps_entry(s, index_units, closed_by)))


def _dumps_entry(s: Stream, index_units: int, closed_by: Producer | None) -> bytes:
    return orjson.dumps(
        {
            "id": s.id,
            "path": s.path,
            "meta": s.config.to_meta(),
            "created_at": s.created_at,
            "origin": s.start,
            "tail": s.pending_tail,
            "closed": s.closing,
            "closed_by": [closed_by.id, closed_by.epoch, closed_by.seq] if closed_by else None,
            "producers": {pid: [st.epoch, st.last_seq] for pid, st in s.producers.items()},
            "last_seq": s.last_seq.decode("latin-1") if s.last_seq is not None else None,
            "index_units": index_units,
        }
    )


@dataclass
class CatalogImage:
    lsn: int = 0
    next_id: int = 1
    streams: list[dict[str, object]] = field(default_factory=list)
    # The data directory's segment size: fixed when it is made, since
    # positions map to files through it.
    segment_bytes: int = DEFAULT_SEGMENT_BYTES


def encode_catalog(lsn: int, next_id: int, entries: list[bytes], segment_bytes: int) -> bytes:
    body = b'{"version":%d,"segment_bytes":%d,"lsn":%d,"next_id":%d,"streams":[' % (
        FORMAT_VERSION,
        segment_bytes,
        lsn,
        next_id,
    )
    body += b",".join(entries) + b"]}"
    # A trailing checksum line catches a catalog damaged after it was written.
    return body + b"\n%08x\n" % zlib.crc32(body)


def load_catalog(data_dir: str, name: str = CATALOG) -> CatalogImage | None:
    path = os.path.join(data_dir, name)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    body, sep, tail = raw.rstrip(b"\n").rpartition(b"\n")
    try:
        ok = bool(sep) and int(tail, 16) == zlib.crc32(body)
    except ValueError:
        ok = False
    if not ok:
        raise CorruptCatalogError(f"{path}: checksum mismatch or truncated catalog")
    doc = orjson.loads(body)
    if doc.get("version") != FORMAT_VERSION:
        raise CorruptCatalogError(f"{path}: unsupported catalog version {doc.get('version')}")
    segment_bytes = doc.get("segment_bytes")
    if not isinstance(segment_bytes, int) or not valid_segment_bytes(segment_bytes):
        raise CorruptCatalogError(f"{path}: invalid segment size {segment_bytes!r}")
    return CatalogImage(
        lsn=int(doc["lsn"]), next_id=int(doc["next_id"]), streams=list(doc["streams"]), segment_bytes=segment_bytes
    )


def write_catalog(data_dir: str, data: bytes) -> None:
    """Replace the catalog atomically, keeping the one it replaces as
    ``catalog.prev.json``: the log is kept back to that one, so a damaged
    catalog can be rebuilt from it (``durable-streamsd check --repair``)."""
    path = os.path.join(data_dir, CATALOG)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if os.path.exists(path):
        prev_tmp = os.path.join(data_dir, PREVIOUS + ".tmp")
        if os.path.exists(prev_tmp):
            os.unlink(prev_tmp)
        os.link(path, prev_tmp)  # a second name: catalog.json itself never goes missing
        os.replace(prev_tmp, os.path.join(data_dir, PREVIOUS))
    os.replace(tmp, path)
    fsync_dir(data_dir)


def producer_from(raw: object) -> Producer | None:
    if not raw:
        return None
    assert isinstance(raw, list) and len(raw) == 3
    return Producer(str(raw[0]), int(raw[1]), int(raw[2]))


def flush_index(directory: str, first_unit: int, entries: bytes, sync: bool = True) -> None:
    """Write index entries at their fixed place (idempotent) and sync them,
    unless the caller makes everything durable with one sync() after."""
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, INDEX_FILE), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, entries, first_unit * INDEX_ENTRY.size)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_index(directory: str, units: int) -> bytes:
    try:
        with open(os.path.join(directory, INDEX_FILE), "rb") as f:
            return f.read(units * INDEX_ENTRY.size)
    except FileNotFoundError:
        return b""


def truncate_index(directory: str, units: int) -> None:
    path = os.path.join(directory, INDEX_FILE)
    try:
        if os.path.getsize(path) > units * INDEX_ENTRY.size:
            os.truncate(path, units * INDEX_ENTRY.size)
    except FileNotFoundError:
        pass


def sync_file(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

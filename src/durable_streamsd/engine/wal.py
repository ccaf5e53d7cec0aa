"""The write-ahead log files: append on the loop, scan at recovery.

Files live in ``wal/`` and are named by the first LSN they may contain, so a
listing shows their order. Appending is a plain ``write`` into the page cache
on the event loop (fast, and a full disk fails there, before any stream state
changes); making it durable is the committer's ``fdatasync`` off the loop.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .records import parse_frame

WAL_SUFFIX = ".wal"


class CorruptLogError(Exception):
    """A record in the middle of the log fails its checksum: never skipped."""


def wal_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}{WAL_SUFFIX}"


def list_wal_files(directory: str) -> list[tuple[int, str]]:
    if not os.path.isdir(directory):
        return []
    out = []
    for name in os.listdir(directory):
        if name.endswith(WAL_SUFFIX) and name[: -len(WAL_SUFFIX)].isdigit():
            out.append((int(name[: -len(WAL_SUFFIX)]), os.path.join(directory, name)))
    out.sort()
    return out


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WalWriter:
    """The current log file; written from the loop only."""

    def __init__(self, directory: str, first_lsn: int) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, wal_name(first_lsn))
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self.fd).st_size
        fsync_dir(directory)

    def write(self, data: bytes) -> None:
        """Write a whole frame or nothing: a partial write is rolled back."""
        try:
            n = os.write(self.fd, data)
            while n < len(data):
                n += os.write(self.fd, data[n:])
        except OSError:
            # Roll back any partial frame so the log never holds a torn record
            # in front of later, valid ones.
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise
        self.size += len(data)

    def close(self) -> None:
        os.close(self.fd)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass
class ScanResult:
    records: int = 0
    torn_bytes: int = 0
    torn_file: str | None = None


def scan(path: str, is_last: bool, result: ScanResult) -> Iterator[tuple[int, int, memoryview]]:
    """Yield (lsn, type, body) of every valid record in one file.

    A bad record with nothing valid after it is a torn tail: the last file is
    truncated there (the write never completed, so it was never
    acknowledged). A bad record followed by valid ones is corruption in the
    middle of the log and raises.
    """
    with open(path, "rb") as f:
        data = f.read()
    off = 0
    while off < len(data):
        parsed = parse_frame(data, off)
        if parsed is None:
            if _valid_record_after(data, off + 1):
                raise CorruptLogError(f"{path}: corrupt record at byte {off} with valid records after it")
            if not is_last:
                raise CorruptLogError(f"{path}: torn record at byte {off} in a log file that is not the last")
            result.torn_bytes += len(data) - off
            result.torn_file = path
            with open(path, "r+b") as f:
                f.truncate(off)
                os.fsync(f.fileno())
            return
        lsn, rtype, body, off = parsed
        result.records += 1
        yield lsn, rtype, body


def _valid_record_after(data: bytes, start: int) -> bool:
    # Only reached on damage; a linear probe for any frame that verifies.
    for off in range(start, len(data)):
        if parse_frame(data, off) is not None:
            return True
    return False

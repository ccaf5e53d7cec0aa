"""Offline verification of a data directory, and the explicit repairs.

The daemon repairs only what is provably safe on its own (a torn log tail:
a write that never completed was never acknowledged). Anything else stops
it with a message naming the file and position; this module is the way out
an operator chooses knowingly, and it says exactly what each repair drops.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from dataclasses import dataclass, field

from . import checkpoint as ckpt
from .engine import CorruptDataError, Engine, EngineOptions
from .records import parse_frame
from .segments import DEFAULT_SEGMENT_BYTES, valid_segment_bytes
from .stream import INDEX_ENTRY
from .wal import CorruptLogError, _resume_probe, _valid_record_after, list_wal_files


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


def check(data_dir: str, repair: bool = False) -> CheckReport:
    report = CheckReport()
    data_dir = os.path.abspath(data_dir)
    wal_dir = os.path.join(data_dir, "wal")
    _check_catalog(data_dir, wal_dir, repair, report)
    if report.problems:
        return report
    _check_log(wal_dir, repair, report)
    if report.problems:
        return report
    _check_streams(data_dir, report)
    return report


def _check_catalog(data_dir: str, wal_dir: str, repair: bool, report: CheckReport) -> None:
    files = list_wal_files(wal_dir)
    try:
        image = ckpt.load_catalog(data_dir)
        if image is None and files and files[0][0] > 1:
            raise ckpt.CorruptCatalogError(
                f"{os.path.join(data_dir, ckpt.CATALOG)} is missing but the log has been truncated"
            )
        report.notes.append(f"catalog: {len(image.streams) if image else 0} streams at LSN {image.lsn if image else 0}")
        return
    except ckpt.CorruptCatalogError as exc:
        problem = str(exc)
    if not repair:
        report.problems.append(f"{problem} (check --repair rebuilds it from {ckpt.PREVIOUS} and the log)")
        return
    try:
        prev = ckpt.load_catalog(data_dir, ckpt.PREVIOUS)
    except ckpt.CorruptCatalogError as exc:
        report.problems.append(f"{problem}; the previous catalog is damaged too: {exc}")
        return
    first = files[0][0] if files else 1
    prev_lsn = prev.lsn if prev else 0
    if first > prev_lsn + 1:
        report.problems.append(f"{problem}; the log no longer reaches back to the previous catalog (LSN {prev_lsn})")
        return
    src = os.path.join(data_dir, ckpt.PREVIOUS)
    if prev is not None:
        with open(src, "rb") as f:
            raw = f.read()
    else:
        raw = ckpt.encode_catalog(0, 1, [], _segment_bytes_on_disk(data_dir))
    damaged = os.path.join(data_dir, ckpt.CATALOG)
    if os.path.exists(damaged):
        os.replace(damaged, damaged + ".damaged")
    ckpt.write_catalog(data_dir, raw)
    report.repaired.append(f"{problem}: restored the previous catalog (LSN {prev_lsn}); the log replays the rest")


def _segment_bytes_on_disk(data_dir: str) -> int:
    """The segment size the files were made with, for a catalog rebuilt from
    nothing: the smallest non-zero segment base, else the default (a stream
    with one segment fits any size, and the log replays all of it)."""
    smallest = 0
    streams = os.path.join(data_dir, "streams")
    for directory in os.listdir(streams) if os.path.isdir(streams) else []:
        for name in os.listdir(os.path.join(streams, directory)):
            if name.endswith(".seg"):
                try:
                    base = int(name[:-4], 16)
                except ValueError:
                    continue
                if base and (not smallest or base < smallest):
                    smallest = base
    return smallest if smallest and valid_segment_bytes(smallest) else DEFAULT_SEGMENT_BYTES


def _check_log(wal_dir: str, repair: bool, report: CheckReport) -> None:
    files = list_wal_files(wal_dir)
    last_lsn: int | None = None
    records = 0
    for i, (_, path) in enumerate(files):
        with open(path, "rb") as f:
            data = f.read()
        used = len(data.rstrip(b"\0"))
        off = 0
        while off < used:
            parsed = parse_frame(data, off)
            if parsed is None:
                break
            lsn, _, _, nxt = parsed
            if last_lsn is not None and lsn != last_lsn + 1:
                parsed = None
                break
            last_lsn, off = lsn, nxt
            records += 1
        if off >= used:
            continue
        later = files[i + 1 :]
        mid_log = bool(later) or _valid_record_after(data, _resume_probe(data, off, last_lsn), used, last_lsn)
        if not mid_log:
            report.notes.append(f"{path}: torn tail at byte {off} ({used - off} bytes); truncated on start")
            if repair:
                _truncate(path, off)
                report.repaired.append(f"{path}: truncated the torn tail at byte {off}")
            continue
        where = f"{path}: corrupt record at byte {off}"
        if not repair:
            report.problems.append(f"{where} with valid records after it (check --repair cuts the log there)")
            return
        dropped = (used - off) + sum(os.path.getsize(p) for _, p in later)
        _truncate(path, off)
        for _, p in later:
            os.unlink(p)
        report.repaired.append(
            f"{where}: cut the log there, dropping up to {dropped} bytes of records after LSN {last_lsn}"
            f" and {len(later)} later log file(s)"
        )
        return
    report.notes.append(f"log: {len(files)} file(s), {records} records")


def _truncate(path: str, off: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(off)
        os.fsync(f.fileno())


def _check_streams(data_dir: str, report: CheckReport) -> None:
    """Recover (as the daemon would) and verify every unit's checksum."""
    engine = Engine(data_dir, EngineOptions(wal_file_bytes=0))
    try:
        rec = engine.open()
    except (CorruptDataError, CorruptLogError) as exc:
        report.problems.append(str(exc))
        engine.executor.shutdown()
        engine.sync_executor.shutdown()
        return
    if rec.torn_bytes:
        report.repaired.append(f"{rec.torn_file}: truncated a torn tail of {rec.torn_bytes} bytes")
    units = 0
    for s in engine.by_id.values():
        raw = engine._flushed_index(s) + bytes(s.unflushed_index)
        for pos, n, crc in INDEX_ENTRY.iter_unpack(raw):
            units += 1
            try:
                data = s.store.read_bytes(pos, pos + n)
            except (OSError, ValueError) as unreadable:
                report.problems.append(f"{s.store.directory}: unit at position {pos} unreadable: {unreadable}")
                break
            if zlib.crc32(data) != crc:
                report.problems.append(f"{s.store.directory}: checksum mismatch for the unit at position {pos}")
                break
    report.notes.append(f"streams: {len(engine.by_id)} verified, {units} units")
    loop = asyncio.new_event_loop()
    try:
        engine.start(loop)
        loop.run_until_complete(engine.close())
    finally:
        loop.close()

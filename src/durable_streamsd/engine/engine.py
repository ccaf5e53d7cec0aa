"""The engine: catalog of streams, the append path, reads and checkpoints.

Everything here runs on the event loop except blocking disk work (syncs,
checkpoints, deleting files), which goes to one dedicated thread. The append
path is short: allocate space, write the log record, update the pending
view, copy the bytes into the segment maps, and let the committer say when
the record is durable; only then does the visible tail move and are readers
woken.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import os
import shutil
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from . import checkpoint as ckpt
from . import records as rec
from .committer import Committer, Done, StorageFailedError, SyncThread
from .direct import Aio, DirectLog
from .records import AppendBody, CreateBody, Producer
from .segments import (
    DEFAULT_SEGMENT_BYTES,
    SegmentCache,
    SegmentStore,
    prepare_segment,
    valid_segment_bytes,
)
from .stream import INDEX_ENTRY, ProducerState, Stream, StreamConfig
from .wal import CorruptLogError, ScanResult, Spares, WalWriter, list_wal_files, scan

WakeListener = Callable[[Stream, list[tuple[int, list[object]]]], None]


class StorageFullError(Exception):
    """The disk has no room for this write; nothing was changed."""


class CorruptDataError(Exception):
    """Stored data fails verification; the daemon refuses to start on it."""


@dataclass
class RecoveryReport:
    streams: int = 0
    checkpoint_lsn: int = 0
    replayed: int = 0
    torn_bytes: int = 0
    torn_file: str | None = None
    seconds: float = 0.0


@dataclass
class EngineOptions:
    fsync: str = "always"
    fsync_interval: float = 0.05
    max_open_segments: int = 4096
    checkpoint_interval: float = 30.0
    checkpoint_wal_bytes: int = 64 * 1024 * 1024
    # Size of each preallocated log file (0: grow files instead).
    wal_file_bytes: int = 16 * 1024 * 1024
    # Segment size for a new data directory; an existing one keeps its own.
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    # Write the log with O_DIRECT through Linux AIO, where available
    # (direct.py); otherwise, or when False, through the sync thread.
    direct_io: bool = True


@dataclass
class _CheckpointJob:
    lsn: int
    catalog: bytes
    # Log files to make durable (everything before the current file) and,
    # of those, the ones only the previous catalog still needed.
    old_wal: list[str]
    drop_wal: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    index: list[tuple[str, int, bytes]] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)


def _noop(_: BaseException | None) -> None:
    return None


class Engine:
    def __init__(
        self, data_dir: str, options: EngineOptions | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.options = options or EngineOptions()
        if not valid_segment_bytes(self.options.segment_bytes):
            raise ValueError("segment size must be a multiple of 4096 bytes, at least 4096")
        self.segment_bytes = self.options.segment_bytes
        self.data_dir = os.path.abspath(data_dir)
        self.streams_dir = os.path.join(self.data_dir, "streams")
        self.wal_dir = os.path.join(self.data_dir, "wal")
        self.clock = clock
        self.by_path: dict[str, Stream] = {}
        self.by_id: dict[int, Stream] = {}
        self.next_id = 1
        self.lsn = 0
        self.cache = SegmentCache(self.options.max_open_segments)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="ds-disk")
        # Log syncs get a thread of their own: a checkpoint syncing many
        # segment files must never hold up group commit (it stalled creates
        # for up to 30 s with 100,000 streams when they shared one).
        self.sync_executor = SyncThread("ds-sync")
        self.committer = Committer(self.options.fsync, self.options.fsync_interval, self.sync_executor)
        self.wal: WalWriter | None = None
        self.spares: Spares | None = None
        self.wake_listener: WakeListener | None = None
        self._wakes_due: dict[Stream, bool] = {}
        # Creates and appends waiting for their commit, in LSN order:
        # (lsn, stream, end position, closes, done). A list, not a deque:
        # compiled, list.append is inline and a deque's is a method call;
        # _durable drops each answered batch with one slice deletion.
        self._acks: list[tuple[int, Stream, int, bool, Done]] = []
        self.committer.on_durable = self._durable
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: list[tuple[float, int]] = []
        # Streams changed since the last checkpoint, each once (Stream.dirty):
        # a flag on the stream being written is cheaper than a set insert.
        self._dirty_streams: list[Stream] = []
        self._entries: dict[int, bytes] = {}
        self._retry: _CheckpointJob | None = None
        self._checkpointing = False
        self._last_checkpoint = 0.0
        # LSN of the newest catalog on disk; the log is kept back to the one before.
        self._checkpoint_lsn = 0
        # Log bytes in files rotated out since the last checkpoint: with
        # preallocated files smaller than checkpoint_wal_bytes, the current
        # file alone never reaches it.
        self._wal_bytes_rotated = 0
        self.appends = 0

    # ------------------------------------------------------------------ setup

    def open(self) -> RecoveryReport:
        """Recover from disk (synchronously, before serving anything)."""
        t0 = time.monotonic()
        os.makedirs(self.streams_dir, exist_ok=True)
        os.makedirs(self.wal_dir, exist_ok=True)
        report = RecoveryReport()
        loaded = ckpt.load_catalog(self.data_dir)
        files = list_wal_files(self.wal_dir)
        if loaded is None and files and files[0][0] > 1:
            raise ckpt.CorruptCatalogError(
                f"{os.path.join(self.data_dir, ckpt.CATALOG)} is missing but the log before LSN {files[0][0]} is gone"
            )
        image = loaded or ckpt.CatalogImage(segment_bytes=self.segment_bytes)
        self.segment_bytes = image.segment_bytes
        report.checkpoint_lsn = image.lsn
        self._checkpoint_lsn = image.lsn
        self.next_id = image.next_id
        for entry in image.streams:
            self._load_entry(entry)
        self.lsn = image.lsn
        scan_result = ScanResult()
        for i, (_, path) in enumerate(files):
            for lsn, rtype, body in scan(path, i == len(files) - 1, scan_result):
                if lsn <= image.lsn:
                    continue
                if lsn != self.lsn + 1:
                    raise CorruptLogError(f"{path}: LSN {lsn} follows {self.lsn}")
                self._replay(rtype, body)
                self.lsn = lsn
                report.replayed += 1
        report.torn_bytes = scan_result.torn_bytes
        report.torn_file = scan_result.torn_file
        for s in self.by_id.values():
            s.tail = s.pending_tail
            s.closed = s.closing
            self._verify_tail(s)
            self._schedule_deadline(s)
        self.spares = Spares(self.wal_dir, self.options.wal_file_bytes)
        if self.options.wal_file_bytes > 0:
            self.spares.make_now()
        self.wal = WalWriter(self.wal_dir, self.lsn + 1, self.spares.take())
        job = self._prepare_checkpoint(rotate=False)
        job.old_wal = [p for _, p in files if p != self.wal.path]
        job.drop_wal = _covered_files(files, self._checkpoint_lsn)
        self._checkpoint_lsn = self.lsn
        _run_checkpoint(self.data_dir, job)
        for s in job.streams:
            s.in_flight_index = b""
        self._last_checkpoint = time.monotonic()
        report.streams = len(self.by_id)
        report.seconds = time.monotonic() - t0
        return report

    def _take_wal(self) -> tuple[int, int, bytearray] | None:
        return self.wal.take_pending() if self.wal is not None else None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.wal is not None
        self._loop = loop
        self.committer.take = self._take_wal
        aio = Aio.open(loop) if self.options.direct_io and self.options.fsync == "always" else None
        self.committer.start(loop, self.wal.fd, self.lsn, self._direct_for(self.wal, aio), aio)

    def _direct_for(self, wal: WalWriter, aio: Aio | None) -> DirectLog | None:
        """A direct writer for a preallocated log file (a file that grows
        changes its size with every batch, which direct I/O would have to
        journal each time), where AIO and the file system allow it."""
        if aio is None or not wal.capacity:
            return None
        return DirectLog.open(wal.path)

    async def close(self) -> None:
        """Make everything durable and write a final checkpoint."""
        await self.committer.drain()
        if self.committer.failure is None:
            await self.checkpoint(force=True)
        if self.wal is not None:
            self.wal.close()
            self.wal = None
        self.committer.close()
        self.executor.shutdown(wait=True)
        self.sync_executor.shutdown(wait=True)
        if self.spares is not None:
            self.spares.join()
        self.cache.clear()

    # ---------------------------------------------------------------- lookups

    def get(self, path: str) -> Stream | None:
        s = self.by_path.get(path)
        if s is not None and s.config.expires:
            self._keep_alive_for_readers(s)
            due = s.deadline()
            if due is not None and due <= self.clock():
                self.delete(s, _noop)
                return None
        return s

    def touch(self, s: Stream) -> None:
        """A read or write resets a sliding TTL (HEAD does not call this)."""
        if s.config.ttl is not None:
            s.last_access = self.clock()

    @property
    def failure(self) -> BaseException | None:
        return self.committer.failure

    # -------------------------------------------------------------- mutations

    def create(
        self, path: str, config: StreamConfig, closed: bool, payload: bytes, lengths: list[int], done: Done
    ) -> Stream:
        self._check_writable()
        stream_id = self.next_id
        store = SegmentStore(self._stream_dir(stream_id), 0, self.cache, self.segment_bytes)
        self._reserve(store, 0, len(payload))
        if not payload:
            # Its first append then finds the directory and file made.
            self.executor.submit(prepare_segment, store.directory, *store.first_to_prepare(), True)
        now = self.clock()
        meta = config.to_meta() | {"path": path, "created_at": now}
        append = AppendBody(stream_id, 0, closed, lengths, None, None, payload)
        lsn = self._log(rec.CREATE, rec.encode_create(CreateBody(stream_id, meta, append)))
        self.next_id += 1
        s = Stream(stream_id, path, config, store, now)
        self.by_path[path] = s
        self.by_id[stream_id] = s
        self._apply_append(s, append)
        self._schedule_deadline(s)
        self._acks.append((lsn, s, len(payload), closed, done))
        self.committer.written(lsn, None)
        return s

    def append(
        self,
        s: Stream,
        payload: bytes,
        lengths: list[int],
        *,
        close: bool = False,
        producer: Producer | None = None,
        seq: bytes | None = None,
        done: Done,
    ) -> int:
        """Append units (and/or close); returns the new tail position.

        An append is an access: it resets a sliding TTL. The checks that
        almost never fire are inlined comparisons."""
        if self.committer.failure is not None or self.wal is None:
            self._check_writable()
        position = s.pending_tail
        end = position + len(payload)
        store = s.store
        rel_end = end - store.origin
        if rel_end > store.allocated and payload:
            self._reserve(store, position, len(payload))
        if rel_end > store.prepare_at:
            following = store.to_prepare(end)
            if following is not None:
                self.executor.submit(prepare_segment, store.directory, *following, False)
        lsn = self.lsn + 1
        self._log_framed(lsn, rec.frame_append(lsn, s.id, position, close, lengths, producer, seq, payload))
        self._apply(s, position, payload, lengths, close, producer, seq)
        self.touch(s)
        self.appends += 1
        self._acks.append((lsn, s, end, close, done))
        self.committer.written(lsn, None)
        return end

    def delete(self, s: Stream, done: Done) -> None:
        self._check_writable()
        lsn = self._log(rec.DELETE, rec.encode_delete(s.id))
        self._apply_delete(s)
        self.committer.written(lsn, _RemoveWhenDurable(self.executor, s.store.directory, done))
        self._wake(s, everything=True)

    def barrier(self, done: Done) -> None:
        """done runs once every record written so far is durable."""
        self.committer.barrier(done)

    # ------------------------------------------------------------------ reads

    def read(self, s: Stream, start: int, limit: int) -> tuple[list[memoryview], int]:
        """Zero-copy views of committed data from start, at most limit bytes
        (whole messages for JSON streams)."""
        end = s.chunk_end(start, limit, self._flushed_index)
        if end <= start:
            return [], start
        return s.store.views(start, end), end

    def valid_position(self, s: Stream, position: int) -> bool:
        """A read may start here: inside the visible range, on a boundary."""
        if position < s.start or position > s.tail:
            return False
        return not s.is_json or position == s.tail or s.is_boundary(position, self._flushed_index)

    def wait(self, s: Stream, position: int, waiter: object) -> None:
        s.waiters.add(position, waiter)

    def unwait(self, s: Stream, position: int, waiter: object) -> None:
        s.waiters.discard(position, waiter)

    # ----------------------------------------------------------------- expiry

    def expire_due(self) -> int:
        """Delete streams whose TTL or Expires-At has passed; returns count."""
        now = self.clock()
        heap = self._deadlines
        expired = 0
        while heap and heap[0][0] <= now:
            _, stream_id = heapq.heappop(heap)
            s = self.by_id.get(stream_id)
            if s is None:
                continue
            self._keep_alive_for_readers(s)
            due = s.deadline()
            if due is None:
                continue
            if due > now:
                heapq.heappush(heap, (due, stream_id))
                continue
            if self.failure is None:
                self.delete(s, _noop)
                expired += 1
        return expired

    def _keep_alive_for_readers(self, s: Stream) -> None:
        """A sliding TTL does not run out while live readers wait on the
        stream (the TTL resets when a live read starts and they keep it)."""
        if s.config.ttl is not None and len(s.waiters):
            s.last_access = self.clock()

    def _schedule_deadline(self, s: Stream) -> None:
        due = s.deadline()
        if due is not None:
            heapq.heappush(self._deadlines, (due, s.id))

    # ------------------------------------------------------------ checkpoints

    def checkpoint_due(self) -> bool:
        if self.wal is None or self._checkpointing:
            return False
        if self._wal_bytes_rotated + self.wal.size >= self.options.checkpoint_wal_bytes:
            return True
        idle_for = time.monotonic() - self._last_checkpoint
        return bool(self._dirty_streams) and idle_for >= self.options.checkpoint_interval

    async def checkpoint(self, force: bool = False) -> None:
        if self._checkpointing or self.failure is not None:
            return
        if not force and not (self._dirty_streams or self._retry):
            return
        self._checkpointing = True
        try:
            job = self._prepare_checkpoint(rotate=True)
            loop = asyncio.get_running_loop()
            try:
                # The log files the job syncs must hold all they will ever
                # hold: the rotated-out file's last records are written by
                # the next commit, so wait for it.
                await self._committed(loop)
                await loop.run_in_executor(self.executor, _run_checkpoint, self.data_dir, job)
                self._retry = None
                self._checkpoint_lsn = job.lsn
                for s in job.streams:
                    s.in_flight_index = b""
            except (OSError, StorageFailedError):
                # The old log files are kept, so recovery stays correct; the
                # failed writes are idempotent and retried next time.
                self._retry = job
                raise
            self._last_checkpoint = time.monotonic()
        finally:
            self._checkpointing = False

    async def _committed(self, loop: asyncio.AbstractEventLoop) -> None:
        committed: asyncio.Future[None] = loop.create_future()

        def done(exc: BaseException | None) -> None:
            if committed.done():
                return
            if exc is None:
                committed.set_result(None)
            else:
                committed.set_exception(exc)

        self.barrier(done)
        await committed

    def _prepare_checkpoint(self, rotate: bool) -> _CheckpointJob:
        assert self.wal is not None
        lsn = self.lsn
        old_wal: list[str] = []
        drop: list[str] = []
        if rotate:
            self._rotate_wal()
            self._wal_bytes_rotated = 0
            files = list_wal_files(self.wal_dir)
            old_wal = [p for _, p in files if p != self.wal.path]
            drop = _covered_files(files, self._checkpoint_lsn)
        job = _CheckpointJob(lsn=lsn, catalog=b"", old_wal=old_wal, drop_wal=drop)
        if self._retry is not None:
            job.segments.extend(self._retry.segments)
            job.index.extend(self._retry.index)
            job.streams.extend(self._retry.streams)
            job.old_wal.extend(p for p in self._retry.old_wal if p not in job.old_wal)
            job.drop_wal = [p for p in job.drop_wal if p in job.old_wal]
        for s in self._dirty_streams:
            s.dirty = False
            if s.deleted:
                self._entries.pop(s.id, None)
                continue
            if s.unflushed_index:
                entries = bytes(s.unflushed_index)
                job.index.append((s.store.directory, s.index_units, entries))
                job.streams.append(s)
                s.index_units += len(entries) // INDEX_ENTRY.size
                s.in_flight_index += entries
                s.unflushed_index = bytearray()
            job.segments.extend(s.store.take_dirty(s.pending_tail))
            self._entries[s.id] = ckpt.encode_stream(s, s.index_units)
        self._dirty_streams.clear()
        job.catalog = ckpt.encode_catalog(lsn, self.next_id, list(self._entries.values()), self.segment_bytes)
        return job

    # -------------------------------------------------------------- internals

    def _stream_dir(self, stream_id: int) -> str:
        return os.path.join(self.streams_dir, f"{stream_id:016x}")

    def _check_writable(self) -> None:
        if self.committer.failure is not None:
            raise self.committer.failure
        if self.wal is None:
            raise StorageFailedError("engine is not open")

    def _reserve(self, store: SegmentStore, position: int, length: int) -> None:
        try:
            store.reserve(position, length)
        except OSError as exc:
            if _disk_full(exc):
                raise StorageFullError(str(exc)) from exc
            raise

    def _rotate_wal(self) -> None:
        """Continue the log in a new file (a preallocated spare if ready)."""
        assert self.spares is not None and self.wal is not None
        new = WalWriter(self.wal_dir, self.lsn + 1, self.spares.take())
        # Only once the new file exists (if making it fails, the old one
        # stays current with its records): the old file's last buffered
        # records go with it to the committer, which writes them before
        # anything in the new file (never here: a direct write of that file
        # may still be in flight).
        old_write = self.wal.take_pending()
        self.committer.rotate(new.fd, self._direct_for(new, self.committer.aio), old_write)
        self._wal_bytes_rotated += self.wal.size
        self.wal = new

    def _log(self, rtype: int, body: bytes) -> int:
        lsn = self.lsn + 1
        return self._log_framed(lsn, rec.frame(lsn, rtype, body))

    def _log_framed(self, lsn: int, data: bytes) -> int:
        """Put one framed record (numbered lsn) in the log; returns lsn."""
        assert self.wal is not None
        if not self.wal.fits(len(data)):
            try:
                self._rotate_wal()
            except OSError as exc:
                # No room for a new log file: refuse, nothing has changed.
                if _disk_full(exc):
                    raise StorageFullError(str(exc)) from exc
                raise
        wal = self.wal
        if wal.capacity and self.committer.mode == "always":
            # Room is preallocated: nothing can fail for want of space, so the
            # write joins the batch the next sync flushes.
            wal.buffer(data)
            self.lsn = lsn
            return lsn
        try:
            wal.write(data)
        except OSError as exc:
            if _disk_full(exc):
                raise StorageFullError(str(exc)) from exc
            # Any other write error means the log cannot be trusted.
            self.committer.fail(exc)
            raise StorageFailedError(f"log write failed: {exc}") from exc
        self.lsn = lsn
        return lsn

    def _durable(self, lsn: int, exc: BaseException | None) -> None:
        """The committer's word on the log: answer queued creates and
        appends up to lsn, moving each stream's visible tail first (or fail
        every one still queued). Readers are woken after, once per batch."""
        acks = self._acks
        if exc is not None:
            self._acks = []
            for ack in acks:
                ack[4](exc)
            return
        n = 0
        try:
            # len() each time: an answer may log more (those wait for the next sync).
            while n < len(acks) and acks[n][0] <= lsn:
                _, s, end, close, done = acks[n]
                n += 1
                if end > s.tail:
                    s.tail = end
                if close:
                    s.closed = True
                if s.waiters.count:
                    self._wake_later(s, close)
                done(None)
        finally:
            del acks[:n]

    def _wake_later(self, s: Stream, everything: bool) -> None:
        """Wake a stream's readers once per commit batch, after its writers
        are answered: a sync that commits many records to one stream costs
        its live readers one write each, not one per record."""
        if self._loop is None:
            self._wake(s, everything)
            return
        due = self._wakes_due
        if not due:
            self._loop.call_soon(self._wake_due)
        due[s] = due.get(s, False) or everything

    def _wake_due(self) -> None:
        due, self._wakes_due = self._wakes_due, {}
        for s, everything in due.items():
            self._wake(s, everything)

    def _wake(self, s: Stream, everything: bool) -> None:
        if not len(s.waiters):
            return
        ready = s.waiters.pop_ready(s.tail, everything)
        if ready and self.wake_listener is not None:
            self.wake_listener(s, ready)

    def _apply_append(self, s: Stream, a: AppendBody) -> None:
        self._apply(s, a.position, a.payload, a.unit_lengths, a.close, a.producer, a.seq)

    def _apply(
        self,
        s: Stream,
        position: int,
        payload: bytes,
        lengths: list[int],
        close: bool,
        producer: Producer | None,
        seq: bytes | None,
    ) -> None:
        """Put a logged append into the stream's pending view and maps."""
        if payload:
            s.store.write(position, payload)
            s.add_units(position, payload, lengths)
            s.pending_tail = position + len(payload)
        if producer is not None:
            s.producers[producer.id] = ProducerState(producer.epoch, producer.seq)
        if seq is not None:
            s.last_seq = seq
        if close:
            s.closing = True
            s.closed_by = producer
        self._mark_dirty(s)

    def _apply_delete(self, s: Stream) -> None:
        s.deleted = True
        if self.by_path.get(s.path) is s:
            del self.by_path[s.path]
        self.by_id.pop(s.id, None)
        self.cache.forget_directory(s.store.directory)
        self._mark_dirty(s)

    def _mark_dirty(self, s: Stream) -> None:
        """List s for the next checkpoint, once."""
        if not s.dirty:
            s.dirty = True
            self._dirty_streams.append(s)

    def _flushed_index(self, s: Stream) -> bytes:
        """Index entries counted in index_units: those on disk, plus those a
        running checkpoint is still writing."""
        in_flight = s.in_flight_index
        on_disk = s.index_units - len(in_flight) // INDEX_ENTRY.size
        return ckpt.read_index(s.store.directory, on_disk) + in_flight

    def _load_entry(self, e: dict[str, object]) -> None:
        meta = e["meta"]
        assert isinstance(meta, dict)
        stream_id = int(e["id"])  # type: ignore[call-overload]
        config = StreamConfig(str(meta["content_type"]), meta.get("ttl"), meta.get("expires_at"))
        origin = int(e["origin"])  # type: ignore[call-overload]
        store = SegmentStore(self._stream_dir(stream_id), origin, self.cache, self.segment_bytes)
        s = Stream(stream_id, str(e["path"]), config, store, float(e["created_at"]))  # type: ignore[arg-type]
        s.pending_tail = s.tail = int(e["tail"])  # type: ignore[call-overload]
        s.closing = s.closed = bool(e["closed"])
        s.closed_by = ckpt.producer_from(e.get("closed_by"))
        producers = e.get("producers") or {}
        assert isinstance(producers, dict)
        s.producers = {k: ProducerState(int(v[0]), int(v[1])) for k, v in producers.items()}
        last_seq = e.get("last_seq")
        s.last_seq = str(last_seq).encode("latin-1") if last_seq is not None else None
        s.index_units = int(e["index_units"])  # type: ignore[call-overload]
        s.last_access = self.clock()
        ckpt.truncate_index(store.directory, s.index_units)
        self.by_path[s.path] = s
        self.by_id[s.id] = s
        self._entries[s.id] = ckpt.encode_stream(s, s.index_units)

    def _replay(self, rtype: int, body: memoryview) -> None:
        """Apply one logged record during recovery (idempotent by position)."""
        if rtype == rec.CREATE:
            c = rec.decode_create(body)
            if c.stream_id in self.by_id:
                return
            meta = c.meta
            config = StreamConfig(str(meta["content_type"]), meta.get("ttl"), meta.get("expires_at"))  # type: ignore[arg-type]
            store = SegmentStore(self._stream_dir(c.stream_id), 0, self.cache, self.segment_bytes)
            s = Stream(c.stream_id, str(meta["path"]), config, store, float(meta["created_at"]))  # type: ignore[arg-type]
            s.last_access = self.clock()
            old = self.by_path.get(s.path)
            if old is not None:
                raise CorruptLogError(f"stream {s.path!r} created twice without a delete")
            self.by_path[s.path] = s
            self.by_id[s.id] = s
            self.next_id = max(self.next_id, c.stream_id + 1)
            self._apply_append(s, c.append)
        elif rtype == rec.APPEND:
            a = rec.decode_append(body)
            target = self.by_id.get(a.stream_id)
            if target is None:
                raise CorruptLogError(f"append to unknown stream id {a.stream_id}")
            if a.position + len(a.payload) <= target.pending_tail and a.payload:
                return
            if a.position != target.pending_tail:
                raise CorruptLogError(f"stream {target.path!r}: append at {a.position}, tail is {target.pending_tail}")
            self._apply_append(target, a)
        elif rtype == rec.DELETE:
            doomed = self.by_id.get(rec.decode_delete(body))
            if doomed is not None:
                self._apply_delete(doomed)
                shutil.rmtree(doomed.store.directory, ignore_errors=True)
        else:
            raise CorruptLogError(f"unknown record type {rtype}")

    def _verify_tail(self, s: Stream) -> None:
        """Check the last flushed unit against its checksum."""
        if s.index_units == 0:
            return
        raw = ckpt.read_index(s.store.directory, s.index_units)
        if len(raw) < s.index_units * INDEX_ENTRY.size:
            raise CorruptDataError(
                f"{s.store.directory}/index: shorter than the {s.index_units} entries the catalog counts"
            )
        pos, n, crc = INDEX_ENTRY.unpack_from(raw, len(raw) - INDEX_ENTRY.size)
        try:
            data = s.store.read_bytes(pos, pos + n)
        except (FileNotFoundError, ValueError) as exc:
            raise CorruptDataError(f"{s.store.directory}: segment for position {pos} unreadable: {exc}") from exc
        if zlib.crc32(data) != crc:
            raise CorruptDataError(f"{s.store.directory}: checksum mismatch for unit at position {pos}")


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


class _RemoveWhenDurable:
    """A delete's commit callback: the stream's files go once the delete
    is durable. An object, not a closure: compiled, a closure and the state
    it captures form a reference cycle."""

    __slots__ = ("executor", "directory", "done")

    def __init__(self, executor: ThreadPoolExecutor, directory: str, done: Done) -> None:
        self.executor = executor
        self.directory = directory
        self.done = done

    def __call__(self, exc: BaseException | None) -> None:
        if exc is None:
            self.executor.submit(shutil.rmtree, self.directory, True)
        self.done(exc)


# Above this many files to flush (dirty segments and index files) a
# checkpoint flushes with one sync().
MANY_FILES: Final = 256


def _run_checkpoint(data_dir: str, job: _CheckpointJob) -> None:
    """Runs on the disk thread: make the pieces durable, then the catalog,
    then drop the log files it covers."""
    # One system-wide flush beats thousands of fsync calls: with 1,000
    # streams appended to, their index files' fsyncs took ~0.4 s of the disk
    # (and 2,000 GIL handoffs) per checkpoint, against ~15 ms for writing
    # them all and one sync().
    one_sync = len(job.segments) + len(job.index) > MANY_FILES
    if not one_sync:
        for path in job.old_wal + job.segments:
            ckpt.sync_file(path)
    for directory, first, entries in job.index:
        if os.path.isdir(directory):
            ckpt.flush_index(directory, first, entries, sync=not one_sync)
    if one_sync:
        os.sync()
    ckpt.write_catalog(data_dir, job.catalog)
    for path in job.drop_wal:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _covered_files(files: list[tuple[int, str]], lsn: int) -> list[str]:
    """Log files whose every record is at or before lsn (each file ends
    where the next one begins)."""
    out = []
    for (_, path), (next_first, _) in zip(files, files[1:], strict=False):
        if next_first - 1 <= lsn:
            out.append(path)
    return out

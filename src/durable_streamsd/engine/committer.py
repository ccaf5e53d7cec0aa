"""Group commit: one fdatasync acknowledges every record written before it.

Records are written to the log on the loop; this class decides when they
count as committed. In ``always`` mode a single sync runs at a time on a
dedicated thread; records written while it runs wait for the next one, which
starts at the loop turn after the previous one returns, so one sync serves
many appends across many streams (where the kernel offers it, a batch's
write and its sync are one ``pwritev(RWF_DSYNC)`` call). Where Linux AIO
and direct I/O are available, the batch for the current log file is
instead started from the loop and completes there (``direct``), and the
thread is left the rare batches that also close files rotated out. ``interval``
acknowledges on write and syncs on a timer; ``never`` leaves syncing to the
operating system.
"""

from __future__ import annotations

import asyncio
import errno
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Final

from .direct import Aio, DirectLog

Done = Callable[[BaseException | None], None]

FSYNC_MODES: Final = ("always", "interval", "never")
_RWF_DSYNC: int | None = getattr(os, "RWF_DSYNC", None)


class StorageFailedError(Exception):
    """A sync failed: what the log holds can no longer be trusted as durable,
    so the engine refuses writes until it is restarted and recovered."""


# Log bytes the loop handed over: (fd, file offset, data).
PendingWrite = tuple[int, int, bytes | bytearray]
# A log file rotated out: (fd, its bytes not yet written, its direct writer).
OldFile = tuple[int, PendingWrite | None, DirectLog | None]
# (sync, the current file's fd, its direct writer, its batch, files rotated
# out since the last sync, target LSN, reply(target, error)).
SyncJob = tuple[
    Callable[[int], None],
    int,
    DirectLog | None,
    PendingWrite | None,
    list[OldFile],
    int,
    Callable[[int, BaseException | None], None],
]


class SyncThread:
    """The thread that writes batched log records and syncs them, one batch
    at a time.

    The write happens here, not on the loop: a pwrite into the page a sync
    is still writing back waits for that I/O, and on the loop that wait left
    the core idle ~8% of the time under append load. A bare thread fed
    through a SimpleQueue, answering with one call_soon_threadsafe: an
    executor's futures chained into asyncio futures cost more Python work
    per sync than everything else in a small append.
    """

    def __init__(self, name: str = "ds-sync") -> None:
        # Batches written and synced in one pwritev(RWF_DSYNC) call.
        self.fused = 0
        self._fuse = _RWF_DSYNC is not None
        self._jobs: queue.SimpleQueue[SyncJob | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: threading.Thread | None = None
        self._name = name

    def submit(self, loop: asyncio.AbstractEventLoop, job: SyncJob) -> None:
        if self._worker is None:
            self._loop = loop
            self._worker = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._worker.start()
        self._jobs.put(job)

    def shutdown(self, wait: bool = True) -> None:
        if self._worker is not None:
            self._jobs.put(None)
            if wait:
                self._worker.join()
            self._worker = None

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            sync, fd, direct, write, old, target, reply = job
            error: BaseException | None = None
            try:
                # Files rotated out first, in log order: a crash must never
                # find later records durable and earlier ones lost.
                for old_file in old:
                    _retire(old_file, sync)
                if write is not None and direct is not None:
                    direct.write(write[1], write[2])  # durable when it returns
                elif write is None or not self._write_synced(sync, write, fd):
                    if write is not None:
                        _write_all(*write)
                    sync(fd)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop as the sync's outcome
                error = exc
            loop = self._loop
            assert loop is not None
            try:
                loop.call_soon_threadsafe(reply, target, error)
            except RuntimeError:
                return  # the loop is closed: nobody is waiting any more

    def _write_synced(self, sync: Callable[[int], None], write: PendingWrite, fd: int) -> bool:
        """Write the batch and make it durable in one system call, when the
        sync is the operating system's own: ``pwritev`` with ``RWF_DSYNC``
        is that write plus fdatasync's guarantee for it. One blocking call
        instead of two means the thread takes the GIL back once per batch,
        not twice (each time can wait out a busy loop's switch interval).
        Only the current log file's own batch qualifies: every other write
        to it went through here too, so nothing else is left to sync.
        Returns False, having written nothing, where the kernel or the file
        system does not offer it (then never tried again)."""
        write_fd, offset, data = write
        if not self._fuse or sync is not os.fdatasync or write_fd != fd:
            return False
        assert _RWF_DSYNC is not None
        view = memoryview(data)
        n = 0
        try:
            while n < len(view):
                n += os.pwritev(write_fd, [view[n:]], offset + n, _RWF_DSYNC)
        except OSError as exc:
            if n or exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            self._fuse = False
            return False
        finally:
            view.release()
        self.fused += 1
        return True


class Committer:
    def __init__(self, mode: str, interval: float, executor: SyncThread) -> None:
        if mode not in FSYNC_MODES:
            raise ValueError(f"fsync mode must be one of {FSYNC_MODES}")
        self.mode = mode
        self.interval = interval
        self.executor = executor
        self.written_lsn = 0
        self.durable_lsn = 0
        self.syncs = 0
        self.failure: BaseException | None = None
        self._fd = -1
        self._old: list[OldFile] = []
        # The current file's direct writer and the AIO context it submits
        # to; None: every batch goes through the sync thread.
        self.direct: DirectLog | None = None
        self.aio: Aio | None = None
        self.direct_batches = 0
        self._direct_target = 0
        self._pending: deque[tuple[int, Done]] = deque()
        self._in_flight = False
        self._kick_due = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        # The sync primitive; fault-injection tests swap in one that fails.
        self.sync: Callable[[int], None] = os.fdatasync
        # Hands over log records buffered on the loop, for the sync thread
        # to write before it syncs; set by the engine.
        self.take: Callable[[], PendingWrite | None] = _nothing
        # Told (LSN now durable, None) after each commit and (durable LSN,
        # the failure) when syncing fails; records logged with no done of
        # their own are answered through it (the engine's appends: one
        # queued tuple each instead of a callback).
        self.on_durable: Callable[[int, BaseException | None], None] = _ignore

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        lsn: int,
        direct: DirectLog | None = None,
        aio: Aio | None = None,
    ) -> None:
        self._loop = loop
        self._fd = fd
        self.direct = direct
        self.aio = aio
        self.written_lsn = self.durable_lsn = lsn
        if self.mode == "interval":
            self._timer = loop.call_later(self.interval, self._tick)

    def rotate(self, new_fd: int, new_direct: DirectLog | None, old_write: PendingWrite | None) -> None:
        """Switch to a new log file. The old one's last buffered bytes
        (old_write) are written, and the file synced and closed, by the next
        sync, before anything in the new one; with no syncs at all, now."""
        if self.mode == "never":
            _retire((self._fd, old_write, self.direct), None)
        else:
            self._old.append((self._fd, old_write, self.direct))
        self._fd = new_fd
        self.direct = new_direct

    def written(self, lsn: int, done: Done | None) -> None:
        """A record with this LSN is in the log file; call done on commit."""
        self.written_lsn = lsn
        if self.mode != "always":
            # Deferred (in order) so callers never see a callback run inside
            # the call that logged the record.
            if self._loop is not None:
                if done is not None:
                    self._loop.call_soon(done, None)
                else:
                    self._loop.call_soon(self.on_durable, lsn, None)
            return
        if done is not None:
            self._pending.append((lsn, done))
        if not self._in_flight:
            self._kick_soon()

    def barrier(self, done: Done) -> None:
        """Call done once everything written so far has committed."""
        if self.failure is not None:
            done(self.failure)
        elif self.mode != "always" or self.durable_lsn >= self.written_lsn:
            if self._loop is not None:
                self._loop.call_soon(done, None)
            else:
                done(None)
        else:
            self._pending.append((self.written_lsn, done))

    @property
    def idle(self) -> bool:
        return not self._in_flight and not self._pending

    def _kick_soon(self) -> None:
        """Start the next sync at the loop's next turn, not at once.

        Kicked at once, the first append read in a turn got a sync of its
        own and every other one waited for the next. At the next turn, every
        request read by then joins: under append_small load the mean batch
        grew from 16 to 23 appends and throughput rose 12-17% (medians of
        five alternated runs), since each sync costs ~60 us of kernel time
        on the benchmark's virtual disk. An idle server loses one loop turn.
        """
        assert self._loop is not None
        if not self._kick_due:
            self._kick_due = True
            self._loop.call_soon(self._kick_if_due)

    def _kick_if_due(self) -> None:
        self._kick_due = False
        if not self._in_flight and self.failure is None and self.written_lsn > self.durable_lsn:
            self._kick()

    def _kick(self) -> None:
        loop = self._loop
        assert loop is not None
        write = self.take()
        target = self.written_lsn
        old, self._old = self._old, []
        self._in_flight = True
        direct = self.direct
        if direct is not None and self.sync is not os.fdatasync:
            # A sync of someone else's (fault injection): the current file
            # goes on through it, buffered, and never direct again.
            direct.close()
            self.direct = direct = None
        if direct is not None and self.aio is not None and not old:
            if write is None:  # everything written is in batches already durable
                loop.call_soon(self._synced, target, None)
                return
            try:
                direct.submit(self.aio, write[1], write[2], self._direct_done)
            except OSError as exc:
                loop.call_soon(self._synced, target, exc)
                return
            self._direct_target = target
            self.direct_batches += 1
            return
        # A bound method and the target in the job, not a lambda: compiled,
        # a lambda and what it captures form a reference cycle per sync.
        self.executor.submit(loop, (self.sync, self._fd, direct, write, old, target, self._synced))

    def _direct_done(self, exc: BaseException | None) -> None:
        self._synced(self._direct_target, exc)

    def _synced(self, target: int, exc: BaseException | None) -> None:
        self._in_flight = False
        self.syncs += 1
        if exc is not None:
            self.fail(exc)
            return
        self.durable_lsn = max(self.durable_lsn, target)
        self.on_durable(target, None)
        pending = self._pending
        while pending and pending[0][0] <= target:
            _, done = pending.popleft()
            done(None)
        if self.written_lsn > self.durable_lsn and self.failure is None and self.mode == "always":
            self._kick_soon()

    def fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = StorageFailedError(f"log sync failed: {exc}")
        self.on_durable(self.durable_lsn, self.failure)
        pending, self._pending = self._pending, deque()
        for _, done in pending:
            done(self.failure)

    def _tick(self) -> None:
        assert self._loop is not None
        if self.written_lsn > self.durable_lsn and not self._in_flight and self.failure is None:
            self._kick()
        self._timer = self._loop.call_later(self.interval, self._tick)

    def close(self) -> None:
        """Release the log files rotated out, the direct writer and the AIO
        context (after drain: nothing is left to commit)."""
        old, self._old = self._old, []
        for old_file in old:
            _retire(old_file, None)
        if self.aio is not None:
            self.aio.close()
            self.aio = None
        if self.direct is not None:
            self.direct.close()
            self.direct = None

    async def drain(self) -> None:
        """Sync whatever is written, then stop the interval timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._in_flight:
            await asyncio.sleep(0.001)
        if self.failure is None and (self.written_lsn > self.durable_lsn or self._old):
            self._kick()
            while self._in_flight:
                await asyncio.sleep(0.001)


def _nothing() -> None:
    return None


def _ignore(lsn: int, exc: BaseException | None) -> None:
    return None


def _write_all(fd: int, offset: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    n = 0
    while n < len(view):
        n += os.pwrite(fd, view[n:], offset + n)
    view.release()


def _retire(old: OldFile, sync: Callable[[int], None] | None) -> None:
    """Write a rotated-out file's last bytes, sync it (unless sync is None:
    nothing it holds awaits a commit) and close it."""
    fd, write, direct = old
    if write is not None:
        if direct is not None:
            direct.write(write[1], write[2])
        else:
            _write_all(*write)
    if fd >= 0:  # -1: an engine opened but never started
        if sync is not None:
            sync(fd)
        os.close(fd)
    if direct is not None:
        direct.close()

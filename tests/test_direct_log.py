"""The log written with O_DIRECT through Linux AIO (engine/direct.py).

Real files in the test's directory and the kernel's own AIO; where this
machine's kernel or file system offers no direct I/O these tests are
skipped, and the sync thread (tested in test_engine.py) carries the log.
"""

from __future__ import annotations

import asyncio
import errno
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_streamsd.engine import StorageFailedError
from durable_streamsd.engine.direct import BLOCK, Aio, DirectLog
from durable_streamsd.engine.wal import list_wal_files

from .support.client import Client
from .support.server import ServerProcess, free_port
from .test_engine import Harness, recovered

PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _direct_available(directory: Path) -> bool:
    probe = directory / "probe"
    probe.write_bytes(bytes(BLOCK))
    log = DirectLog.open(str(probe))
    loop = asyncio.new_event_loop()
    try:
        aio = Aio.open(loop)
        if aio is not None:
            aio.close()
        return log is not None and aio is not None
    finally:
        if log is not None:
            log.close()
        loop.close()
        probe.unlink()


@pytest.fixture
def direct_dir(tmp_path: Path) -> Path:
    if not _direct_available(tmp_path):
        pytest.skip("no O_DIRECT or Linux AIO here")
    return tmp_path


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _zero_file(path: Path, size: int) -> None:
    path.write_bytes(bytes(size))


def _submit(loop: asyncio.AbstractEventLoop, aio: Aio, log: DirectLog, offset: int, data: bytes) -> None:
    fut: asyncio.Future[BaseException | None] = loop.create_future()
    log.submit(aio, offset, data, fut.set_result)
    exc = loop.run_until_complete(fut)
    if exc is not None:
        raise exc


chunks = st.lists(
    st.one_of(
        st.integers(1, 300),
        st.sampled_from([BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK - 7, 3 * BLOCK]),
        st.integers(1, 5 * BLOCK),
    ),
    min_size=1,
    max_size=25,
)


@PROPS
@given(sizes=chunks, by_thread=st.lists(st.booleans(), min_size=25, max_size=25))
def test_sequential_writes_of_any_size_land_exactly(
    direct_dir: Path, loop: asyncio.AbstractEventLoop, sizes: list[int], by_thread: list[bool]
) -> None:
    """Whatever the sizes, and whether each write comes from the loop (AIO)
    or the sync thread (blocking), the file holds exactly the bytes written,
    in order, and zeros after them: rewriting partial blocks never moves or
    damages earlier bytes."""
    path = direct_dir / "log"
    _zero_file(path, (5 * 25 + 4) * BLOCK)
    log = DirectLog.open(str(path))
    aio = Aio.open(loop)
    assert log is not None and aio is not None
    expected = bytearray()
    try:
        for i, n in enumerate(sizes):
            data = bytes([(i * 37 + k) % 251 + 1 for k in range(n)])
            if by_thread[i]:
                log.write(len(expected), data)
            else:
                _submit(loop, aio, log, len(expected), data)
            expected += data
            assert log.end == len(expected)
    finally:
        aio.close()
        log.close()
    raw = path.read_bytes()
    assert raw[: len(expected)] == expected
    assert not raw[len(expected) :].strip(b"\0")


def test_a_write_that_does_not_continue_the_log_is_refused(direct_dir: Path) -> None:
    path = direct_dir / "log"
    _zero_file(path, 4 * BLOCK)
    log = DirectLog.open(str(path))
    assert log is not None
    try:
        log.write(0, b"abc")
        with pytest.raises(ValueError, match="sequential"):
            log.write(10, b"gap")
        assert log.end == 3
        log.write(3, b"def")
    finally:
        log.close()
    assert path.read_bytes()[:8] == b"abcdef\0\0"


def test_a_batch_larger_than_the_buffer_grows_it(direct_dir: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = direct_dir / "log"
    big = os.urandom(3 * (1 << 20) + 123)
    _zero_file(path, len(big) + 8 * BLOCK)
    log = DirectLog.open(str(path))
    aio = Aio.open(loop)
    assert log is not None and aio is not None
    try:
        _submit(loop, aio, log, 0, b"head")
        _submit(loop, aio, log, 4, big)
        log.write(4 + len(big), b"tail")
    finally:
        aio.close()
        log.close()
    assert path.read_bytes()[: 8 + len(big)] == b"head" + big + b"tail"


def test_a_failed_completion_reaches_the_caller(direct_dir: Path, loop: asyncio.AbstractEventLoop) -> None:
    """The kernel's error for a write it accepted but could not do (here a
    misaligned one) arrives as the completion's result."""
    path = direct_dir / "log"
    _zero_file(path, 4 * BLOCK)
    log = DirectLog.open(str(path))
    aio = Aio.open(loop)
    assert log is not None and aio is not None
    results: list[int] = []
    try:
        # Offset 3 breaks direct I/O's alignment.
        aio.pwrite(log.fd, log._address, BLOCK, 3, results.append)
        aio.wait_all()
    finally:
        aio.close()
        log.close()
    assert results == [-errno.EINVAL]


def test_appends_go_direct_and_survive_an_abandoned_process(direct_dir: Path) -> None:
    """By default, on a file system with direct I/O, group commits leave
    from the loop (none through the sync thread), across log files, and what
    was acknowledged is there after a restart without a checkpoint."""
    h = Harness(direct_dir / "data", wal_file_bytes=64 * 1024)
    assert h.engine.committer.direct is not None
    s = h.create("/direct")
    expected = bytearray()
    for i in range(120):
        data = bytes([65 + i % 26]) * (1 + (i * 997) % 3000)
        h.append(s, data)
        expected += data
    assert h.engine.committer.direct_batches >= 100
    assert h.engine.sync_executor.fused == 0
    assert len(list_wal_files(h.engine.wal_dir)) >= 3, "the log should have rotated"
    h.abandon()
    assert recovered(direct_dir / "data", "/direct", wal_file_bytes=64 * 1024) == bytes(expected)


@PROPS
@given(sizes=st.lists(st.integers(1, 9000), min_size=1, max_size=40), checkpoint_at=st.integers(0, 40))
def test_recovery_after_direct_batches_rebuilds_every_append(
    direct_dir: Path, sizes: list[int], checkpoint_at: int
) -> None:
    """Appends of any size, some committed together in one batch, across
    rotations and with a checkpoint somewhere in the middle: after the
    process is abandoned, every acknowledged byte is back, in order."""
    data_dir = direct_dir / f"d{len(list(direct_dir.iterdir()))}"
    h = Harness(data_dir, wal_file_bytes=32 * 1024)
    s = h.create("/p")
    expected = bytearray()
    fut: asyncio.Future[None] = h.loop.create_future()
    errors: list[BaseException] = []
    pending = len(sizes)

    def done(exc: BaseException | None) -> None:
        nonlocal pending
        if exc is not None:
            errors.append(exc)
        pending -= 1
        if not pending:
            fut.set_result(None)

    for i, n in enumerate(sizes):
        data = bytes([97 + i % 26]) * n
        h.engine.append(s, data, [n], done=done)  # all in one turn: shared batches
        expected += data
        if i == checkpoint_at:
            h.loop.run_until_complete(h.engine.checkpoint(force=True))
    h.loop.run_until_complete(fut)
    assert not errors
    h.abandon()
    assert recovered(data_dir, "/p", wal_file_bytes=32 * 1024) == bytes(expected)


def test_a_refused_direct_write_fails_the_append_and_changes_nothing(direct_dir: Path) -> None:
    """If the kernel refuses the batch (here: the log's descriptor turned
    read-only underneath), the appends waiting on it fail, none becomes
    visible, and later writes are refused."""
    h = Harness(direct_dir / "data")
    s = h.create("/refused")
    h.append(s, b"kept")
    direct = h.engine.committer.direct
    assert direct is not None
    read_only = os.open(h.engine.wal.path if h.engine.wal else "", os.O_RDONLY)
    os.dup2(read_only, direct.fd)
    os.close(read_only)
    with pytest.raises(StorageFailedError):
        h.append(s, b"lost")
    with pytest.raises(StorageFailedError):
        h.append(s, b"refused")
    assert s.tail == 4 and h.read_all(s) == b"kept"
    h.abandon()
    assert recovered(direct_dir / "data", "/refused") == b"kept"


def test_without_direct_io_the_sync_thread_carries_the_log(direct_dir: Path) -> None:
    h = Harness(direct_dir / "data", direct_io=False)
    s = h.create("/thread")
    for i in range(10):
        h.append(s, b"%02d" % i)
    assert h.engine.committer.direct is None and h.engine.committer.direct_batches == 0
    assert h.engine.sync_executor.fused >= 10
    h.close()


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "sync-thread"])
def test_the_daemon_loses_nothing_acknowledged_to_kill_9_either_way(direct_dir: Path, direct: bool) -> None:
    """The daemon as users run it, with small log files so the log rotates:
    every acknowledged append is back after kill -9, whichever way the log
    was written, and the startup line and the metrics say which."""
    metrics_port = free_port()
    args = ["--metrics-port", str(metrics_port), "--wal-file-bytes", str(64 * 1024)]
    if not direct:
        args.append("--no-direct-io")
    srv = ServerProcess(direct_dir / "data", *args).start()
    expected = bytearray()
    try:
        c = Client(srv.port)
        assert c.request("PUT", "/s/k", headers={"Content-Type": "application/octet-stream"}).status == 201
        for i in range(300):
            body = bytes([97 + i % 26]) * (1 + (i * 613) % 2500)
            r = c.request("POST", "/s/k", body, {"Content-Type": "application/octet-stream"})
            assert r.status == 204
            expected += body
        batches = _metric(metrics_port, "ds_wal_direct_batches")
        assert batches >= 250 if direct else batches == 0
        c.close()
    finally:
        srv.kill()
    startup = srv.read_log()
    assert ('"log_writes": "direct (Linux AIO)"' if direct else '"log_writes": "sync thread"') in startup
    again = ServerProcess(direct_dir / "data", *args).start()
    try:
        c = Client(again.port)
        r = c.request("GET", "/s/k?offset=-1")
        body = bytearray(r.body)
        while r.header("stream-up-to-date") != "true":
            r = c.request("GET", f"/s/k?offset={r.header('stream-next-offset')}")
            body += r.body
        assert bytes(body) == bytes(expected)
        c.close()
    finally:
        again.stop()

"""A full disk: appends answer 507, reads keep working, nothing acknowledged
is lost, and appends succeed again once space is freed, without a restart.

The data directory lives on a small file system the test mounts (we run as
root in CI): a tmpfs with the log through the sync thread
(``--no-direct-io``), and an ext4 image on a loop device with the log
written with direct I/O, the default. Where
mounting is not allowed the test is skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import Client
from tests.support.server import ServerProcess

FS_BYTES = 12 * 1024 * 1024
CHUNK = b"z" * (64 * 1024)


@pytest.fixture(params=["tmpfs", "ext4"])
def small_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if request.param == "tmpfs":
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mnt)]
    else:
        image = tmp_path / "fs.img"
        with open(image, "wb") as f:
            f.truncate(FS_BYTES)
        mkfs = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "^has_journal", str(image)]
        made = subprocess.run(mkfs, capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make an ext4 image here: {made.stderr.decode().strip()}")
        cmd = ["mount", "-o", "loop", str(image), str(mnt)]
    done = subprocess.run(cmd, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small {request.param} here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_answers_507_and_recovers_without_restart(small_fs: Path) -> None:
    data = small_fs / "data"
    # An operator's file on the same disk, to free later.
    ballast = small_fs / "ballast"
    ballast.write_bytes(b"\0" * (4 * 1024 * 1024))
    direct = small_fs.parent.joinpath("fs.img").exists()
    log_io = [] if direct else ["--no-direct-io"]
    srv = ServerProcess(data, "--wal-file-bytes", str(256 * 1024), "--checkpoint-interval", "0.5", *log_io).start()
    c = Client(srv.port)
    ct = {"Content-Type": "application/octet-stream"}
    assert c.request("PUT", "/full/a", b"", ct).status == 201
    acked = 0
    statuses = []
    for _ in range(400):
        r = c.request("POST", "/full/a", CHUNK, ct)
        statuses.append(r.status)
        if r.status == 204:
            acked += 1
        else:
            break
    assert statuses[-1] == 507, f"never ran out of space: {statuses[-5:]}"
    assert acked > 10
    # While full, each refusal changes nothing. (A checkpoint may free log
    # space in the meantime, so a later append can legitimately succeed.)
    for _ in range(3):
        tail = c.request("HEAD", "/full/a").header("stream-next-offset")
        status = c.request("POST", "/full/a", CHUNK, ct).status
        assert status in (204, 507)
        if status == 204:
            acked += 1
        else:
            assert c.request("HEAD", "/full/a").header("stream-next-offset") == tail
    assert c.request("PUT", "/full/b", CHUNK, ct).status in (201, 507)
    # Reads keep working and hold exactly what was acknowledged.
    body = b""
    offset = "-1"
    while True:
        r = c.request("GET", f"/full/a?offset={offset}")
        assert r.status == 200
        body += r.body
        offset = r.header("stream-next-offset") or offset
        if r.header("stream-up-to-date") == "true":
            break
    assert body == CHUNK * acked

    # Free space: appends work again, no restart.
    os.unlink(ballast)
    for _ in range(5):
        assert c.request("POST", "/full/a", CHUNK, ct).status == 204
    acked += 5
    c.close()
    assert srv.proc is not None and srv.proc.poll() is None
    assert ('"log_writes": "direct (Linux AIO)"' if direct else '"log_writes": "sync thread"') in srv.read_log()

    srv.kill()
    again = ServerProcess(data, "--wal-file-bytes", str(256 * 1024), *log_io).start()
    c2 = Client(again.port)
    size = 0
    offset = "-1"
    while True:
        r = c2.request("GET", f"/full/a?offset={offset}")
        assert r.status == 200 and set(r.body) <= {ord("z")}
        size += len(r.body)
        offset = r.header("stream-next-offset") or offset
        if r.header("stream-up-to-date") == "true":
            break
    assert size == len(CHUNK) * acked
    c2.close()
    again.kill()

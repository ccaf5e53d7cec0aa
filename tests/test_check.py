"""Damage the daemon must refuse to start on, and `check --repair`.

Real daemon processes on a real data directory: the damage is done to the
files by hand, as a failing disk or an operator's mistake would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.client import Client
from tests.support.server import ROOT, ServerProcess


def run_check(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "durable_streamsd", "check", "--data-dir", str(data), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def fill(data: Path, *args: str, appends: int = 20) -> ServerProcess:
    srv = ServerProcess(data, *args).start()
    c = Client(srv.port)
    assert c.request("PUT", "/k/a", b"start;", {"Content-Type": "text/plain"}).status == 201
    for i in range(appends):
        assert c.request("POST", "/k/a", b"a%d;" % i, {"Content-Type": "text/plain"}).status == 204
    c.close()
    return srv


def refused_start(data: Path) -> str:
    """Start the daemon on damaged data: it must exit; returns what it said."""
    with pytest.raises(RuntimeError) as refused:
        ServerProcess(data).start(timeout=10)
    return str(refused.value)


def read(srv: ServerProcess, path: str) -> bytes:
    c = Client(srv.port)
    try:
        r = c.request("GET", path)
        assert r.status == 200, r
        return r.body
    finally:
        c.close()


def test_healthy_directory_checks_clean(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fill(data).stop()
    out = run_check(data)
    assert out.returncode == 0, out.stderr
    assert "streams: 1 verified" in out.stdout


def test_segment_made_ahead_of_the_tail_survives_a_kill(tmp_path: Path) -> None:
    """Appends past half a segment have the disk thread make the next one;
    after kill -9 that empty file beyond the tail is neither damage to
    `check` nor in the way of recovery."""
    data = tmp_path / "data"
    srv = ServerProcess(data, "--segment-bytes", "4096").start()
    c = Client(srv.port)
    assert c.request("PUT", "/k/p", None, {"Content-Type": "application/octet-stream"}).status == 201
    assert c.request("POST", "/k/p", b"z" * 3000, {"Content-Type": "application/octet-stream"}).status == 204
    c.close()
    (stream_dir,) = (data / "streams").iterdir()
    deadline = time.monotonic() + 5
    while len(list(stream_dir.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(list(stream_dir.iterdir())) == 2
    srv.kill()
    out = run_check(data)
    assert out.returncode == 0, out.stdout + out.stderr
    srv = ServerProcess(data).start()
    try:
        assert read(srv, "/k/p") == b"z" * 3000
    finally:
        srv.stop()


def test_damaged_catalog_refuses_start_and_repair_rebuilds_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = fill(data, "--checkpoint-interval", "0.2")
    # Two checkpoints with data between them: the previous catalog is older.
    c = Client(srv.port)
    for i in range(5):
        assert c.request("POST", "/k/a", b"b%d;" % i, {"Content-Type": "text/plain"}).status == 204
    c.close()
    expected = read(srv, "/k/a")
    srv.stop()
    catalog = data / "catalog.json"
    raw = bytearray(catalog.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    catalog.write_bytes(bytes(raw))

    message = refused_start(data)
    assert "catalog.json" in message and "check" in message

    out = run_check(data)
    assert out.returncode == 1 and "catalog.json" in out.stderr
    out = run_check(data, "--repair")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "restored the previous catalog" in out.stdout
    again = ServerProcess(data).start()
    assert read(again, "/k/a") == expected
    again.stop()


def test_corrupt_log_record_refuses_start_and_repair_cuts_the_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = fill(data, "--checkpoint-interval", "3600")
    srv.kill()  # no checkpoint: everything is only in the log
    wal = sorted((data / "wal").glob("*.wal"))[-1]
    raw = bytearray(wal.read_bytes())
    # Somewhere in the middle of the records, well before the last one.
    used = len(bytes(raw).rstrip(b"\0"))
    raw[used // 2] ^= 0xFF
    wal.write_bytes(bytes(raw))

    message = refused_start(data)
    assert wal.name in message

    out = run_check(data)
    assert out.returncode == 1 and wal.name in out.stderr and "byte" in out.stderr
    out = run_check(data, "--repair")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cut the log" in out.stdout
    srv2 = ServerProcess(data).start()
    body = read(srv2, "/k/a")
    # What precedes the damage survives, in order, and nothing is invented.
    assert body.startswith(b"start;")
    parts = body.split(b";")[1:-1]
    assert parts == [b"a%d" % i for i in range(len(parts))]
    assert len(parts) < 20
    srv2.stop()


def test_torn_segment_tail_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    """Segment bytes written after the last checkpoint come back from the log."""
    data = tmp_path / "data"
    srv = fill(data, "--checkpoint-interval", "3600")
    expected = read(srv, "/k/a")
    srv.kill()
    for seg in (data / "streams").rglob("*.seg"):
        with open(seg, "r+b") as f:
            f.truncate(3)  # torn: most of what was written is gone
    again = ServerProcess(data).start()
    assert read(again, "/k/a") == expected
    again.stop()


def test_checksum_mismatch_in_checkpointed_data_refuses_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = fill(data)
    srv.stop()  # clean stop: the data is checkpointed, the log no longer has it
    seg = next((data / "streams").rglob("*.seg"))
    raw = bytearray(seg.read_bytes())
    stored = b"start;" + b"".join(b"a%d;" % i for i in range(20))
    assert raw[: len(stored)] == stored
    raw[len(stored) - 2] ^= 0x01  # a bit flip inside the last append
    seg.write_bytes(bytes(raw))
    message = refused_start(data)
    assert "checksum mismatch" in message and "position" in message
    out = run_check(data)
    assert out.returncode == 1 and "PROBLEM" in out.stderr and "checksum mismatch" in out.stderr


def test_missing_catalog_refuses_start_and_repair_restores_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = fill(data, "--checkpoint-interval", "0.2")
    c = Client(srv.port)
    for i in range(4):
        # Several checkpoints apart: the log before the previous one is dropped.
        time.sleep(0.6)
        assert c.request("POST", "/k/a", b"m%d;" % i, {"Content-Type": "text/plain"}).status == 204
    c.close()
    expected = read(srv, "/k/a")
    srv.stop()
    assert min(int(p.stem) for p in (data / "wal").glob("*.wal")) > 1, "the log was never truncated"
    (data / "catalog.json").unlink()
    message = refused_start(data)
    assert "catalog.json" in message and "missing" in message
    out = run_check(data, "--repair")
    assert out.returncode == 0, out.stdout + out.stderr
    again = ServerProcess(data).start()
    assert read(again, "/k/a") == expected
    again.stop()


@pytest.mark.parametrize("value", ["5000", "0", "-4096", "lots"])
def test_bad_segment_size_is_refused_before_anything_is_made(tmp_path: Path, value: str) -> None:
    """A segment size the layout cannot use stops `serve` with a usage
    error naming the option; no data directory is created."""
    data = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "durable_streamsd", "serve", "--data-dir", str(data), "--segment-bytes", value],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert b"--segment-bytes" in done.stderr
    assert not data.exists()

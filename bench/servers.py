"""Start and stop the servers under test, each pinned to its own core.

Every measurement gets a fresh process and a fresh data directory, so no
workload inherits another's streams, caches or heap. Our server runs with
its defaults (``--fsync always``: durable group commit); the reference runs
through tests/conformance/ref_server.mjs, in memory or file-backed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
FLOOR_SCRIPT = Path(__file__).resolve().parent / "floor_server.py"
REF_SCRIPT = REPO / "tests" / "conformance" / "ref_server.mjs"
REF_PACKAGE = REPO / "tests" / "conformance" / "node_modules" / "@durable-streams" / "server"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ServerKind:
    name: str
    label: str
    ours: bool
    file_backed: bool
    # The no-op ceiling (bench/floor_server.py): request-rate workloads only.
    floor: bool = False


OURS = ServerKind("ours", "durable-streamsd (fsync always)", True, True)
REF_MEM = ServerKind("ref-mem", "reference, in memory", False, False)
REF_FILE = ServerKind("ref-file", "reference, file-backed", False, True)
FLOOR = ServerKind("floor", "no-op uvloop + httptools ceiling", False, False, floor=True)
FLOOR_SYNC = ServerKind("floor-sync", "uvloop + httptools + group-committed log ceiling", False, True, floor=True)
ALL_KINDS = (OURS, REF_MEM, REF_FILE)
FLOORS = (FLOOR, FLOOR_SYNC)
KINDS = {k.name: k for k in (*ALL_KINDS, *FLOORS)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def missing_prerequisites() -> list[str]:
    """What `make bench` would have installed, if absent."""
    out = []
    if shutil.which("wrk") is None:
        out.append("wrk (apt-get install -y wrk)")
    if shutil.which("node") is None:
        out.append("node")
    if not REF_PACKAGE.is_dir():
        out.append("@durable-streams/server (cd tests/conformance && npm ci)")
    if not (VENV_BIN / "durable-streamsd").exists():
        out.append(".venv with durable-streamsd (make install)")
    return out


class Server:
    """One running server process; use as a context manager."""

    def __init__(self, kind: ServerKind, workdir: Path, cpu: str | None, tag: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.host = HOST
        self.cpu = cpu
        self.dir = Path(tempfile.mkdtemp(prefix=f"{kind.name}-{tag}-", dir=workdir))
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        if self.kind.ours:
            cmd = [str(VENV_BIN / "durable-streamsd"), "serve", "--data-dir", str(self.data_dir)]
            cmd += ["--host", HOST, "--port", str(self.port)]
        elif self.kind.floor:
            cmd = [str(VENV_BIN / "python"), str(FLOOR_SCRIPT), str(self.port)]
            if self.kind.file_backed:
                cmd.append(str(self.data_dir / "log"))
        else:
            cmd = ["node", str(REF_SCRIPT), str(self.port)]
            if self.kind.file_backed:
                cmd.append(str(self.data_dir))
        # taskset execs the server, so the PID we hold is the server's own.
        return (["taskset", "-c", self.cpu] if self.cpu is not None else []) + cmd

    def start(self) -> Server:
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
            )
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind.name} exited at start-up; see {self.log_path}:\n{self.tail_log()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as s:
                    s.sendall(b"GET /bench-probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(16).startswith(b"HTTP/1."):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind.name} not ready within {READY_TIMEOUT_S}s; see {self.log_path}")

    def tail_log(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def cleanup(self, keep_logs: bool) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def disk_usage_mib(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total / (1024 * 1024)

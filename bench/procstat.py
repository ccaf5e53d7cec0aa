"""Server resource figures read straight from /proc: CPU time, memory, descriptors.

The kernel's own counters are what the issue asks for (utime+stime deltas,
VmHWM, /proc/PID/fd) and need no extra dependency. The peak (VmHWM) is reset
through /proc/PID/clear_refs before each measured phase so it describes that
phase, not server start-up or an earlier workload; a background sampler
backs it up where the reset is refused.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
KIB = 1024
MIB = 1024 * 1024


def cpu_seconds(pid: int) -> float:
    """utime+stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    # The command name may contain spaces; fields resume after its ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (KiB) from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            key, _, rest = line.partition(b":")
            if key in (b"VmRSS", b"VmHWM", b"RssAnon", b"RssFile"):
                out[key.decode()] = int(rest.split()[0])
    return out


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, needs ptrace rights)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def core_ticks(cores: list[str]) -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies per core from /proc/stat. Busy time on the
    server's core that the server did not spend is someone else's (another
    job on this shared machine, or softirq work) and explains noisy runs."""
    out: dict[str, tuple[int, int]] = {}
    with open("/proc/stat", "rb") as f:
        for line in f:
            name, _, rest = line.partition(b" ")
            core = name[3:].decode()
            if name.startswith(b"cpu") and core in cores:
                v = [int(x) for x in rest.split()]
                idle = v[3] + v[4]  # idle + iowait
                out[core] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def speed_probe_ms(repeats: int = 5) -> float:
    """Milliseconds for a fixed piece of work on the calling thread's core:
    pure-Python arithmetic plus small socket sends and receives (the
    servers' work is mostly the latter), each the best of a few tries.

    This machine has phases where every server runs at a quarter of its
    rate without any other process showing busy (the host is shared); a
    probe taken before each measurement shows which ones ran in one."""
    a, b = socket.socketpair()
    try:
        python = syscalls = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            x = 0
            for i in range(100_000):
                x += i
            t1 = time.perf_counter()
            for _ in range(1_000):
                a.send(b"p" * 100)
                b.recv(128)
            t2 = time.perf_counter()
            python, syscalls = min(python, t1 - t0), min(syscalls, t2 - t1)
    finally:
        a.close()
        b.close()
    return round((python + syscalls) * 1000, 2)


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Usage:
    """What one measured phase cost the server."""

    wall_s: float
    cpu_s: float
    cpu_pct: float  # of one core
    peak_rss_mib: float
    rss_end_mib: float
    peak_anon_mib: float
    client_cpu_pct: float
    core_busy_pct: dict[str, float]

    def as_dict(self) -> dict[str, float]:
        return {
            **{f"{k}_busy_pct": round(v, 1) for k, v in self.core_busy_pct.items()},
            "wall_s": round(self.wall_s, 3),
            "server_cpu_s": round(self.cpu_s, 3),
            "server_cpu_pct": round(self.cpu_pct, 1),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "rss_end_mib": round(self.rss_end_mib, 1),
            "peak_anon_mib": round(self.peak_anon_mib, 1),
            "client_cpu_pct": round(self.client_cpu_pct, 1),
        }


class Meter:
    """Measures one phase: start() before the load, stop() after it.

    A daemon thread samples RSS every ``interval`` seconds (cheap: one small
    file read) so RssAnon has a peak too, and so a refused VmHWM reset still
    yields a phase-local peak.
    """

    def __init__(self, pid: int, interval: float = 0.1, cores: dict[str, str | None] | None = None) -> None:
        self.pid = pid
        self.cores = {k: v for k, v in (cores or {}).items() if v is not None}
        self._ticks0: dict[str, tuple[int, int]] = {}
        self.interval = interval
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._self0 = 0.0
        self._reset_ok = False
        self._peak_rss = 0
        self._peak_anon = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._reset_ok = reset_peak(self.pid)
        m = memory_kib(self.pid)
        self._peak_rss = m.get("VmRSS", 0)
        self._peak_anon = m.get("RssAnon", 0)
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        self._ticks0 = core_ticks(list(self.cores.values()))
        self._cpu0 = cpu_seconds(self.pid)
        self._self0 = self_cpu_seconds()
        self._t0 = time.monotonic()

    def stop(self) -> Usage:
        wall = max(1e-9, time.monotonic() - self._t0)
        cpu = cpu_seconds(self.pid) - self._cpu0
        client = self_cpu_seconds() - self._self0
        ticks = core_ticks(list(self.cores.values()))
        busy: dict[str, float] = {}
        for label, core in self.cores.items():
            (b0, t0), (b1, t1) = self._ticks0.get(core, (0, 0)), ticks.get(core, (0, 0))
            if t1 > t0:
                busy[label] = 100.0 * (b1 - b0) / (t1 - t0)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        m = memory_kib(self.pid)
        peak = max(self._peak_rss, m.get("VmRSS", 0))
        if self._reset_ok:
            peak = max(peak, m.get("VmHWM", 0))
        anon = max(self._peak_anon, m.get("RssAnon", 0))
        return Usage(
            wall, cpu, 100.0 * cpu / wall, peak / KIB, m.get("VmRSS", 0) / KIB, anon / KIB, 100.0 * client / wall, busy
        )

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                m = memory_kib(self.pid)
            except OSError:
                return
            self._peak_rss = max(self._peak_rss, m.get("VmRSS", 0))
            self._peak_anon = max(self._peak_anon, m.get("RssAnon", 0))

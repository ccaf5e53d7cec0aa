"""Catch-up readers: whole-stream reads from offset -1, following
Stream-Next-Offset until Stream-Up-To-Date, by several readers at once.

Readers are threads on blocking sockets: ``recv_into`` releases the GIL and
the bodies are only counted (into one reused buffer), so four readers cost
the load core a memcpy per byte and little else. Each reader checks that a
pass returned exactly the stream's size, so a short read cannot pass for a
fast one.
"""

from __future__ import annotations

import threading
import time

from .httpclient import HttpClient, append, create_stream

MIB = 1024 * 1024
MAX_REQUESTS_PER_PASS = 100_000


def populate(host: str, port: int, path: str, size: int, piece: int = MIB) -> None:
    """Create an octet-stream of exactly size bytes, appended piece by piece."""
    block = bytes(range(256)) * (piece // 256 + 1)
    with HttpClient(host, port) as c:
        create_stream(c, path, "application/octet-stream")
        left = size
        while left > 0:
            n = min(piece, left)
            append(c, path, "application/octet-stream", block[:n])
            left -= n


def read_whole(c: HttpClient, path: str) -> tuple[int, int]:
    """One full catch-up pass; returns (bytes, requests)."""
    offset = "-1"
    total = 0
    for requests in range(1, MAX_REQUESTS_PER_PASS + 1):
        r = c.request("GET", f"{path}?offset={offset}", keep_body=False)
        if r.status != 200:
            raise RuntimeError(f"GET {path}?offset={offset}: {r.status}")
        total += r.body_len
        offset = r.header("stream-next-offset")
        if not offset:
            raise RuntimeError("response without Stream-Next-Offset")
        if "stream-up-to-date" in r.headers:
            return total, requests
    raise RuntimeError(f"no Stream-Up-To-Date after {MAX_REQUESTS_PER_PASS} requests")


def catch_up(
    host: str, port: int, path: str, size: int, readers: int, duration_s: float, max_passes: int
) -> dict[str, float]:
    """Every reader repeats whole passes until duration_s has passed (at
    least one, at most max_passes); throughput is all bytes over wall time."""
    totals = [0] * readers
    passes = [0] * readers
    requests = [0] * readers
    errors: list[BaseException] = []
    start = threading.Barrier(readers + 1)
    deadline = [0.0]

    def reader(i: int) -> None:
        try:
            with HttpClient(host, port, timeout=120) as c:
                start.wait()
                while passes[i] < max_passes:
                    n, reqs = read_whole(c, path)
                    if n != size:
                        raise RuntimeError(f"pass read {n} bytes, stream has {size}")
                    totals[i] += n
                    requests[i] += reqs
                    passes[i] += 1
                    if time.monotonic() >= deadline[0]:
                        break
        except BaseException as exc:  # reported to the caller
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(readers)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    deadline[0] = t0 + duration_s
    start.wait()
    for t in threads:
        t.join(timeout=duration_s + 300)
    wall = time.monotonic() - t0
    if errors:
        raise RuntimeError(f"catch-up reader failed: {errors[0]!r}")
    return {
        "mib_s": round(sum(totals) / MIB / wall, 1),
        "passes": sum(passes),
        "requests": sum(requests),
        "read_mib": round(sum(totals) / MIB, 1),
        "seconds": round(wall, 3),
    }

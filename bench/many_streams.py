"""Many small streams: create N streams (a small first message each), then
read every one of them once, over a few keep-alive connections.

It shows what a stream costs the server when it is merely known (RSS and
open descriptors afterwards), which per-stream files, maps or caches make
visible. Both phases stop at their time limit; the counts say how far they
got.
"""

from __future__ import annotations

import asyncio
import time
from array import array

from .aclient import AsyncHttp

REQUEST_TIMEOUT_S = 30.0
BODY = b"hello from a small stream, " + b"x" * 37  # 64 bytes


async def many_streams(
    host: str, port: int, prefix: str, n: int, conns: int, phase_timeout_s: float
) -> dict[str, object]:
    created = 0
    read = 0
    errors = 0
    statuses: dict[str, int] = {}
    ctype = b"Content-Type: text/plain\r\n"

    lat_ns: dict[str, array[int]] = {"create": array("q"), "read": array("q")}

    async def phase(kind: str) -> tuple[int, float]:
        nonlocal errors
        next_i = 0
        done = 0
        t0 = time.monotonic()
        deadline = t0 + phase_timeout_s

        async def worker() -> None:
            nonlocal next_i, done, errors
            c = AsyncHttp(host, port)
            try:
                while next_i < n and time.monotonic() < deadline:
                    i = next_i
                    next_i += 1
                    t_req = time.monotonic_ns()
                    try:
                        if kind == "create":
                            r = await c.request("PUT", f"{prefix}{i}", ctype, BODY, timeout=REQUEST_TIMEOUT_S)
                            ok, why = r.status == 201, str(r.status)
                        else:
                            r = await c.request("GET", f"{prefix}{i}?offset=-1", timeout=REQUEST_TIMEOUT_S)
                            ok = r.status == 200 and r.body == BODY
                            why = str(r.status) if r.status != 200 else "wrong body"
                    except (TimeoutError, ConnectionError, OSError) as exc:
                        ok, why = False, type(exc).__name__
                    lat_ns[kind].append(time.monotonic_ns() - t_req)
                    if ok:
                        done += 1
                    else:
                        errors += 1
                        key = f"{kind} {why}"
                        statuses[key] = statuses.get(key, 0) + 1
            finally:
                c.close()

        await asyncio.gather(*(worker() for _ in range(conns)))
        return done, time.monotonic() - t0

    created, create_s = await phase("create")
    read, read_s = await phase("read")
    return {
        "streams_target": n,
        "created": created,
        "read": read,
        "errors": errors,
        "error_statuses": statuses,
        "create_per_s": round(created / create_s, 1),
        "read_per_s": round(read / read_s, 1),
        "create_s": round(create_s, 2),
        "read_s": round(read_s, 2),
        **{f"{k}_{name}_ms": v for k, a in lat_ns.items() for name, v in _percentiles(a).items()},
    }


def _percentiles(a: array[int]) -> dict[str, float]:
    """p50/p99/max in ms; a max near REQUEST_TIMEOUT_S means a stall."""
    if not a:
        return {}
    s = sorted(a)
    return {
        name: round(s[min(len(s) - 1, int(q * (len(s) - 1)))] / 1e6, 2)
        for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
    }

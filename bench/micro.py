"""Python cost per request of the hot paths, in process, without sockets.

The side-by-side benchmark measures throughput on a shared 2-core machine,
where a noisy neighbour moves results by +-15%; that hides a 5% win. This
drives the real HTTP layer, protocol and engine (on a real data directory,
group commit on, the fdatasync itself skipped so no disk wait is timed) with preformatted requests fed
to one connection, and reports the best of several rounds in microseconds
per request. Use it before and after a hot-path change; use ``bench.run``
for the claims.

    python -m bench.micro [--requests 20000] [--rounds 5] [--only post_small]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import uvloop

from durable_streamsd.engine import Engine, EngineOptions
from durable_streamsd.http.connection import HttpConnection, ServerState
from durable_streamsd.http.limits import HttpLimits
from durable_streamsd.protocol.app import ProtocolConfig, StreamsApp
from durable_streamsd.protocol.headers import COMMON

CONNECTIONS = 32
SMALL = b"x" * 100
JSON = b'{"id":12345,"kind":"token","text":"hello world from the benchmark","n":[1,2,3],"ok":true}'


class _Transport:
    """Accepts writes and counts them; enough of a transport for the layer."""

    def __init__(self) -> None:
        self.bytes = 0
        self.responses = 0
        self.statuses: dict[bytes, int] = {}
        # Resolved once responses reaches want: the driver waits in the
        # loop's poll, not spinning, so the sync thread gets the GIL and the
        # run's work is the same from run to run (callgrind counts agree).
        self.want = 0
        self.arrived: asyncio.Future[None] | None = None

    def write(self, data: Any) -> None:
        self.bytes += len(data)
        self.responses += 1
        status = bytes(data[9:12])
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if self.responses >= self.want and self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)

    async def until(self, want: int) -> None:
        if self.responses < want:
            self.want = want
            self.arrived = asyncio.get_running_loop().create_future()
            await self.arrived
            self.arrived = None

    def writelines(self, parts: Any) -> None:
        parts = list(parts)
        self.write(parts[0])
        for p in parts[1:]:
            self.bytes += len(p)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        raise RuntimeError("the benchmark connection was closed: a request failed")


def _request(method: str, target: str, body: bytes = b"", ctype: str | None = None) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:4437\r\n"
    if ctype is not None:
        head += f"Content-Type: {ctype}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


WORKLOADS: dict[str, Callable[[int], list[bytes]]] = {
    "post_small": lambda n: [_request("POST", "/a", SMALL, "application/octet-stream")] * n,
    "post_many": lambda n: [_request("POST", f"/m{i % 1000}", SMALL, "application/octet-stream") for i in range(n)],
    "post_json": lambda n: [_request("POST", "/j", JSON, "application/json")] * n,
    "get_small": lambda n: [_request("GET", "/r?offset=-1")] * n,
    "head": lambda n: [_request("HEAD", "/r")] * n,
}


def _no_sync(fd: int) -> None:
    return None


def _setup_requests() -> list[bytes]:
    reqs = [
        _request("PUT", "/a", ctype="application/octet-stream"),
        _request("PUT", "/j", ctype="application/json"),
        _request("PUT", "/r", b"r" * 1024, "application/octet-stream"),
    ]
    return reqs + [_request("PUT", f"/m{i}", ctype="application/octet-stream") for i in range(1000)]


async def _run(name: str, requests: int, rounds: int) -> float:
    tmp = tempfile.mkdtemp(prefix="ds-micro-")
    try:
        engine = Engine(tmp, EngineOptions(fsync="always"))
        engine.open()
        # Group commit as in production, minus the wait for the device.
        engine.committer.sync = _no_sync
        loop = asyncio.get_running_loop()
        engine.start(loop)
        app = StreamsApp(engine, ProtocolConfig())
        state = ServerState(handler=app.handle, limits=HttpLimits(), common_headers=COMMON)
        transport = _Transport()
        # Like the load generator: CONNECTIONS clients, one request each in flight.
        conns = [HttpConnection(state) for _ in range(CONNECTIONS)]
        for conn in conns:
            conn.connection_made(transport)  # type: ignore[arg-type]
        for data in _setup_requests():
            want = transport.responses + 1
            conns[0].data_received(data)
            await transport.until(want)
        batch = WORKLOADS[name](requests)
        best = float("inf")
        for _ in range(rounds):
            expected = transport.responses
            t0 = time.perf_counter()
            for first in range(0, len(batch), CONNECTIONS):
                for conn, data in zip(conns, batch[first : first + CONNECTIONS], strict=False):
                    conn.data_received(data)
                    expected += 1
                await transport.until(expected)
            best = min(best, (time.perf_counter() - t0) / len(batch))
        for conn in conns:
            conn.connection_lost(None)
        bad = {k.decode(): v for k, v in transport.statuses.items() if not k.startswith(b"2")}
        if bad:
            raise SystemExit(f"{name}: unexpected answers {bad}")
        await engine.close()
        return best * 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--only", action="append", choices=sorted(WORKLOADS))
    args = ap.parse_args()
    for name in args.only or list(WORKLOADS):
        us = uvloop.run(_run(name, args.requests, args.rounds))
        print(f"{name:12s} {us:7.2f} us/request")


if __name__ == "__main__":
    main()

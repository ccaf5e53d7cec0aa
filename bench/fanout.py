"""Fan-out: many live readers on one stream, one writer at a fixed rate.

One asyncio process (uvloop) holds every reader: each is a bare
asyncio.Protocol with an httptools response parser, so 10,000 connections
cost little memory and each delivery costs a regex over the bytes that
arrived, not an SSE or JSON parser. Messages are JSON objects that end in
``"s":<seq>,"t":<send time ns>}``, stamped with the writer's monotonic clock;
the readers live in the same process, so a delivery's latency is receive
time minus ``t``. Because the pattern ends with ``}``, a message cut by a
TCP segment boundary never matches half-way: the unmatched tail is carried
to the next read. Each reader keeps a bitmap of the sequence numbers it got,
so a duplicate or a reordering can neither inflate nor hide a loss.

The writer is open-loop: message i leaves at t0 + i/rate on any free
connection of a small pool, whether or not earlier POSTs were answered, so a
slow server sees the offered rate instead of slowing its own load down.
Every phase is bounded in time (connect, publish, grace).
"""

from __future__ import annotations

import asyncio
import re
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

from .aclient import AsyncHttp
from .procstat import self_cpu_seconds

MSG_RE = re.compile(rb'"s":(\d+),"t":(\d+)\}')
OFFSET_KEY = b'"streamNextOffset":"'
CONNECT_CONCURRENCY = 256
CONNECT_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 60.0
WRITER_CONNECTIONS = 64
POST_TIMEOUT_S = 30.0
MAX_RECONNECTS_PER_READER = 5
CURVE_QUANTILES = [float(q) for q in range(0, 100)] + [99.5, 99.9, 100.0]


def message(seq: int, sent_ns: int, pad: int = 48) -> bytes:
    """~100 bytes of JSON, sequence and send time last (see module doc)."""
    return b'{"kind":"bench","p":"%s","s":%d,"t":%d}' % (b"x" * pad, seq, sent_ns)


@dataclass
class FanoutRun:
    host: str
    port: int
    path: bytes
    sse: bool
    planned: int
    expected: int = 0  # messages actually sent; set when the writer is done
    lat_ns: array[int] = field(default_factory=lambda: array("q"))
    active: bool = True
    writer_done: bool = False
    ready: int = 0
    reconnects: int = 0
    resumes: int = 0
    errors: int = 0
    duplicates: int = 0
    connect_failures: int = 0

    def request(self, offset: bytes) -> bytes:
        live = b"sse" if self.sse else b"long-poll"
        host = self.host.encode()
        return b"GET %s?offset=%s&live=%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (self.path, offset, live, host, self.port)


class Reader(asyncio.Protocol):
    """One live reader; SSE sessions are resumed from the last control offset
    and long-polls re-issued from Stream-Next-Offset, until the run ends."""

    __slots__ = ("run", "transport", "parser", "offset", "next_offset", "got", "seen", "carry", "status", "ready",
                 "attempts")  # fmt: skip

    def __init__(self, run: FanoutRun, offset: bytes) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.offset = offset
        self.next_offset: bytes | None = None
        self.got = 0
        self.seen = bytearray(run.planned)
        self.carry = b""
        self.status = 0
        self.ready = False
        self.attempts = 0

    @property
    def finished(self) -> bool:
        return self.run.writer_done and self.got >= self.run.expected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        transport.write(self.run.request(self.offset))  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        run = self.run
        if run.active and not self.finished and self.attempts < MAX_RECONNECTS_PER_READER:
            self.attempts += 1
            run.reconnects += 1
            asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        run = self.run
        try:
            await asyncio.get_running_loop().create_connection(lambda: self, run.host, run.port)
        except OSError:
            run.connect_failures += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserError:
            self.run.errors += 1
            if self.transport is not None:
                self.transport.close()

    # -- parser callbacks

    def on_message_begin(self) -> None:
        self.carry = b""
        self.next_offset = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 18 and name.lower() == b"stream-next-offset":
            self.next_offset = value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()  # type: ignore[union-attr]
        if not self.ready:
            self.ready = True
            self.run.ready += 1

    def on_body(self, body: bytes) -> None:
        if self.status != 200:
            return
        buf = self.carry + body if self.carry else body
        found = MSG_RE.findall(buf)
        if found:
            now = time.monotonic_ns()
            lat = self.run.lat_ns
            seen = self.seen
            for s, t in found:
                seq = int(s)
                if seq < len(seen) and not seen[seq]:
                    seen[seq] = 1
                    self.got += 1
                    lat.append(now - int(t))
                else:
                    self.run.duplicates += 1
        cut = buf.rfind(b"}")
        self.carry = (buf[cut + 1 :] if cut >= 0 else buf)[-1024:]
        if self.run.sse:
            k = buf.rfind(OFFSET_KEY)
            if k >= 0:
                e = buf.find(b'"', k + len(OFFSET_KEY))
                if e > 0:
                    self.offset = buf[k + len(OFFSET_KEY) : e]

    def on_message_complete(self) -> None:
        run = self.run
        if self.status not in (200, 204):
            run.errors += 1
        if not run.sse and self.next_offset:
            self.offset = self.next_offset
        if run.sse:
            run.resumes += 1  # the server ended the session (reconnect interval)
        t = self.transport
        if t is not None and run.active and not self.finished:
            t.write(run.request(self.offset))


class Writer:
    """Open-loop publisher over a pool of keep-alive connections."""

    def __init__(self, run: FanoutRun, path: str) -> None:
        self.run = run
        self.path = path
        self.free: asyncio.Queue[AsyncHttp] = asyncio.Queue()
        self.opened = 0
        self.sent = 0
        self.post_ns = array("q")
        self.lag_ns = 0
        self.failed = 0
        self.conns: list[AsyncHttp] = []

    async def _conn(self) -> AsyncHttp:
        if self.free.empty() and self.opened < WRITER_CONNECTIONS:
            self.opened += 1
            c = AsyncHttp(self.run.host, self.run.port)
            self.conns.append(c)
            return c
        return await self.free.get()

    async def publish(self, seq: int, scheduled_ns: int) -> None:
        c = await self._conn()
        try:
            sent = time.monotonic_ns()
            self.lag_ns = max(self.lag_ns, sent - scheduled_ns)
            raw = c.encode("POST", self.path, b"Content-Type: application/json\r\n", message(seq, sent))
            self.sent += 1
            res = await c.send(raw, POST_TIMEOUT_S)
            self.post_ns.append(time.monotonic_ns() - sent)
            if res.status not in (200, 204):
                self.failed += 1
        except (TimeoutError, ConnectionError, OSError):
            self.failed += 1
        finally:
            self.free.put_nowait(c)

    def close(self) -> None:
        for c in self.conns:
            c.close()


def _quantiles(values: array[int], qs: list[float]) -> list[float]:
    """Quantiles in ms (numpy when present: it comes with matplotlib)."""
    if not values:
        return [float("nan")] * len(qs)
    try:
        import numpy as np

        a = np.frombuffer(values, dtype=np.int64)
        return [float(x) / 1e6 for x in np.percentile(a, qs)]
    except ImportError:
        s = sorted(values)
        return [s[min(len(s) - 1, int(q / 100 * (len(s) - 1) + 0.5))] / 1e6 for q in qs]


@dataclass
class Probe:
    """Hooks into the server process, supplied by the runner."""

    rss_kib: Callable[[], int]
    cpu_seconds: Callable[[], float]


async def _connect_all(run: FanoutRun, rs: list[Reader]) -> None:
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(r: Reader) -> None:
        async with sem:
            for _ in range(3):
                try:
                    await loop.create_connection(lambda: r, run.host, run.port)
                    return
                except OSError:
                    await asyncio.sleep(0.2)
            run.connect_failures += 1

    await asyncio.wait_for(asyncio.gather(*(connect(r) for r in rs)), CONNECT_TIMEOUT_S)


async def run_fanout(
    host: str,
    port: int,
    path: str,
    start_offset: str,
    sse: bool,
    readers: int,
    rate: float,
    duration_s: float,
    grace_s: float,
    probe: Probe,
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    run = FanoutRun(host, port, path.encode(), sse, planned=max(1, int(rate * duration_s)))
    rs = [Reader(run, start_offset.encode()) for _ in range(readers)]

    rss_before = probe.rss_kib()
    t_connect = loop.time()
    await _connect_all(run, rs)
    # SSE answers at once (headers and a first control event); a long-poll
    # parks silently, so give the server a moment to take every request in.
    deadline = loop.time() + READY_TIMEOUT_S
    while sse and run.ready < readers - run.connect_failures and loop.time() < deadline:
        await asyncio.sleep(0.05)
    connect_s = loop.time() - t_connect
    await asyncio.sleep(1.0 + readers / 10000)
    rss_idle = probe.rss_kib()

    writer = Writer(run, path)
    cpu0 = probe.cpu_seconds()
    self0 = self_cpu_seconds()
    t0 = loop.time()
    t0_ns = time.monotonic_ns()
    tasks = []
    for i in range(run.planned):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(writer.publish(i, t0_ns + int(i / rate * 1e9))))
    end = loop.time() + grace_s
    _, pending = await asyncio.wait(tasks, timeout=max(0.1, end - loop.time()))
    for task in pending:
        task.cancel()
    run.expected = writer.sent
    run.writer_done = True
    publish_s = loop.time() - t0
    while loop.time() < end and not all(r.got >= run.expected for r in rs):
        await asyncio.sleep(0.05)
    wall = loop.time() - t0
    server_cpu = probe.cpu_seconds() - cpu0
    client_cpu = self_cpu_seconds() - self0
    run.active = False
    writer.close()
    for r in rs:
        if r.transport is not None:
            r.transport.close()
    await asyncio.sleep(0.2)

    expected = max(1, run.expected)
    delivered = sum(min(r.got, expected) for r in rs)
    complete = sum(1 for r in rs if r.got >= expected)
    p = dict(zip(CURVE_QUANTILES, _quantiles(run.lat_ns, CURVE_QUANTILES), strict=True))
    posts = _quantiles(writer.post_ns, [50.0, 99.0])
    return {
        "readers": readers,
        "messages": run.expected,
        "messages_planned": run.planned,
        "delivered_fraction": round(delivered / (readers * expected), 6),
        "readers_complete_fraction": round(complete / readers, 6),
        # Exact counts for the target: a rounded fraction hides a few losses.
        "missed": readers * expected - delivered,
        "readers_incomplete": readers - complete,
        "latency_p50_ms": round(p[50.0], 3),
        "latency_p99_ms": round(p[99.0], 3),
        "latency_max_ms": round(p[100.0], 3),
        "latency_curve_ms": [[q, round(v, 3)] for q, v in p.items()],
        "connect_s": round(connect_s, 3),
        "idle_rss_per_reader_kib": round((rss_idle - rss_before) / readers, 2),
        "rss_idle_mib": round(rss_idle / 1024, 1),
        "publish_s": round(publish_s, 3),
        "writer_lag_max_ms": round(writer.lag_ns / 1e6, 1),
        "writer_connections": writer.opened,
        "post_failures": writer.failed,
        "post_p50_ms": round(posts[0], 3),
        "post_p99_ms": round(posts[1], 3),
        "server_cpu_pct_publish": round(100 * server_cpu / wall, 1),
        "client_cpu_pct_publish": round(100 * client_cpu / wall, 1),
        "reconnects": run.reconnects,
        "sse_resumes": run.resumes,
        "errors": run.errors,
        "duplicates": run.duplicates,
        "connect_failures": run.connect_failures,
    }

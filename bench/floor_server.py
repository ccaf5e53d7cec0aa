"""The ceiling: a uvloop + httptools server that parses each request and
answers it with the bytes our server would send, storing nothing.

Run beside ours (``--servers ours,floor``), it shows how much of a request's
cost is the event loop, the kernel's TCP work and HTTP parsing, which no
Python server on these libraries can avoid, and how much is ours (checking,
storing, logging, group commit, building the answer). Only the request-rate
workloads make sense against it: it keeps no streams.

    python bench/floor_server.py PORT
"""

from __future__ import annotations

import asyncio
import os
import queue
import struct
import sys
import threading
import time

import httptools
import uvloop

from durable_streamsd.engine.direct import Aio, DirectLog
from durable_streamsd.protocol.headers import COMMON

_OFFSET = b"stream-next-offset: 0000000000000001_0000000000000064\r\n"
_READ_BODY = b"r" * 1024


def _answer(status: bytes, headers: bytes, body: bytes = b"") -> bytes:
    date = time.strftime("date: %a, %d %b %Y %H:%M:%S GMT\r\n", time.gmtime()).encode()
    length = b"content-length: %d\r\n" % len(body) if body or status.startswith(b"201") else b""
    return b"HTTP/1.1 " + status + b"\r\n" + date + COMMON + headers + length + b"\r\n" + body


# One answer per method, as ours answers a create, an append and a tail read.
ANSWERS = {
    b"PUT": _answer(b"201 Created", b"content-type: application/octet-stream\r\n" + _OFFSET),
    b"POST": _answer(b"204 No Content", _OFFSET),
    b"GET": _answer(
        b"200 OK",
        b"content-type: application/octet-stream\r\n" + _OFFSET + b'etag: "1.0.100"\r\nstream-up-to-date: true\r\n',
        _READ_BODY,
    ),
}
ANSWERS[b"HEAD"] = ANSWERS[b"GET"][: -len(_READ_BODY)]


# The log is zero-filled once and then reused from the start whenever it is
# full: every write lands on allocated blocks, as in our preallocated files.
LOG_BYTES = 64 * 1024 * 1024
_RECORD_HEAD = struct.Struct(">I")
_RWF_DSYNC: int | None = getattr(os, "RWF_DSYNC", None)


class GroupLog:
    """Group commit as ours does it: records wait while one batch is being
    written and synced, the next batch starts at the loop turn after that
    one returns, and its answers are written when it is durable. Like ours,
    a batch goes out from the loop with direct I/O through Linux AIO where
    the file system allows, and through a writer thread otherwise."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        zeros = bytes(1024 * 1024)
        for _ in range(LOG_BYTES // len(zeros)):
            os.write(self.fd, zeros)
        os.fsync(self.fd)
        self.path = path
        self.aio = Aio.open(loop)
        self.direct = DirectLog.open(path) if self.aio is not None else None
        self.offset = 0
        self.batch = bytearray()
        self.waiting: list[tuple[FloorConnection, bytes]] = []
        self.in_flight = False
        self.kick_due = False
        self.jobs: queue.SimpleQueue[tuple[bytes, int, list[tuple[FloorConnection, bytes]]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="floor-sync", daemon=True).start()

    def add(self, conn: FloorConnection, record: bytes, answer: bytes) -> None:
        self.batch += record
        self.waiting.append((conn, answer))
        if not self.in_flight:
            self._kick_soon()

    def _kick_soon(self) -> None:
        if not self.kick_due:
            self.kick_due = True
            self.loop.call_soon(self._kick)

    def _kick(self) -> None:
        self.kick_due = False
        if self.in_flight or not self.waiting:
            return
        data, self.batch = bytes(self.batch), bytearray()
        answers, self.waiting = self.waiting, []
        if self.offset + len(data) > LOG_BYTES:
            self.offset = 0
            if self.direct is not None:  # direct writes run sequentially: start the file over
                self.direct.close()
                self.direct = DirectLog.open(self.path)
        self.in_flight = True
        if self.direct is not None and self.aio is not None:
            self.direct.submit(self.aio, self.offset, data, lambda exc: self._direct_done(exc, answers))
        else:
            self.jobs.put((data, self.offset, answers))
        self.offset += len(data)

    def _direct_done(self, exc: BaseException | None, answers: list[tuple[FloorConnection, bytes]]) -> None:
        if exc is not None:
            print(f"floor-sync: log write failed: {exc!r}", file=sys.stderr, flush=True)
            os._exit(1)
        self._synced(answers)

    def _run(self) -> None:
        try:
            while True:
                data, offset, answers = self.jobs.get()
                view = memoryview(data)
                while view:
                    if _RWF_DSYNC is not None:
                        n = os.pwritev(self.fd, [view], offset, _RWF_DSYNC)
                    else:
                        n = os.pwrite(self.fd, view, offset)
                        os.fdatasync(self.fd)
                    view, offset = view[n:], offset + n
                self.loop.call_soon_threadsafe(self._synced, answers)
        except BaseException as exc:  # noqa: BLE001 - a ceiling that cannot sync must not answer
            print(f"floor-sync: log write failed: {exc!r}", file=sys.stderr, flush=True)
            os._exit(1)

    def _synced(self, answers: list[tuple[FloorConnection, bytes]]) -> None:
        self.in_flight = False
        for conn, answer in answers:
            conn.answer(answer)
        if self.waiting:
            self._kick_soon()


LOG: GroupLog | None = None


class FloorConnection(asyncio.Protocol):
    """Collects what our connection collects (URL, header dict, body parts),
    then writes the method's canned answer (with a log: a POST's once its
    body is durable, and any answer after one waits its turn)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.unanswered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        answer = ANSWERS.get(method, ANSWERS[b"GET"])
        body = b"".join(self.body)
        self.url, self.headers, self.body = b"", {}, []
        if LOG is not None and (method == b"POST" or self.unanswered):
            self.unanswered += 1
            LOG.add(self, _RECORD_HEAD.pack(len(body)) + body if method == b"POST" else b"", answer)
        elif self.transport is not None:
            self.transport.write(answer)

    def answer(self, answer: bytes) -> None:
        self.unanswered -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def serve(port: int, log_path: str | None) -> None:
    global LOG
    loop = asyncio.get_running_loop()
    if log_path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        LOG = GroupLog(log_path, loop)
    server = await loop.create_server(FloorConnection, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))


if __name__ == "__main__":
    main()

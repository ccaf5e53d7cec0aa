"""A small asyncio HTTP/1.1 client (httptools for parsing) for the writer of
the fan-out runs and for the many-streams run.

One request at a time per connection, keep-alive, and no dependency beyond
what our server already uses (uvloop, httptools).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httptools


@dataclass
class AResponse:
    status: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[AResponse] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.headers = {}
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(AResponse(self.parser.get_status_code(), self.headers, b"".join(self.body)))


class AsyncHttp:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._p: _Protocol | None = None
        self._host_line = f"Host: {host}:{port}\r\n".encode()

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, p = await loop.create_connection(_Protocol, self.host, self.port)
        return p

    def close(self) -> None:
        if self._p is not None and self._p.transport is not None:
            self._p.transport.close()
        self._p = None

    def encode(self, method: str, path: str, headers: bytes = b"", body: bytes = b"") -> bytes:
        return b"".join(
            (
                f"{method} {path} HTTP/1.1\r\n".encode(),
                self._host_line,
                b"Content-Length: %d\r\n" % len(body),
                headers,
                b"\r\n",
                body,
            )
        )

    async def send(self, raw: bytes, timeout: float = 30.0) -> AResponse:
        """Send one preformatted request and wait for its response."""
        if self._p is None or self._p.closed:
            self._p = await self._connect()
        p = self._p
        assert p.transport is not None
        p.waiter = asyncio.get_running_loop().create_future()
        p.transport.write(raw)
        try:
            return await asyncio.wait_for(p.waiter, timeout)
        except BaseException:
            self.close()
            raise

    async def request(
        self, method: str, path: str, headers: bytes = b"", body: bytes = b"", timeout: float = 30.0
    ) -> AResponse:
        return await self.send(self.encode(method, path, headers, body), timeout)

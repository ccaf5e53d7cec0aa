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
import sys
import time

import httptools
import uvloop

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


class FloorConnection(asyncio.Protocol):
    """Collects what our connection collects (URL, header dict, body parts),
    then writes the method's canned answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

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
        answer = ANSWERS.get(self.parser.get_method(), ANSWERS[b"GET"])
        self.url, self.headers, self.body = b"", {}, []
        if self.transport is not None:
            self.transport.write(answer)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorConnection, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()

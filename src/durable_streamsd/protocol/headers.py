"""Header names, the headers every response carries, and small builders."""

from __future__ import annotations

import binascii
import functools
import struct
import time
from typing import Final

from ..engine import Stream

EXPOSED: Final = (
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "
    "Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, Producer-Seq, "
    "Producer-Expected-Seq, Producer-Received-Seq, ETag, Location, Content-Type"
)
ALLOWED_REQUEST_HEADERS: Final = (
    "Content-Type, Authorization, If-None-Match, Stream-Seq, Stream-TTL, Stream-Expires-At, "
    "Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, Stream-Forked-From, "
    "Stream-Fork-Offset, Stream-Fork-Sub-Offset"
)
ALLOWED_METHODS: Final = "GET, HEAD, POST, PUT, DELETE, OPTIONS"

# Browser security headers (section 12.7) and CORS, on every response.
COMMON: Final = (
    "x-content-type-options: nosniff\r\n"
    "cross-origin-resource-policy: cross-origin\r\n"
    "access-control-allow-origin: *\r\n"
    f"access-control-expose-headers: {EXPOSED}\r\n"
).encode()

NO_STORE: Final = b"cache-control: no-store\r\n"
CACHEABLE: Final = b"cache-control: public, max-age=60, stale-while-revalidate=300\r\n"
UP_TO_DATE: Final = b"stream-up-to-date: true\r\n"
CLOSED: Final = b"stream-closed: true\r\n"
TEXT: Final = b"content-type: text/plain; charset=utf-8\r\n"


def line(name: str, value: str | int) -> bytes:
    return f"{name}: {value}\r\n".encode("latin-1", "replace")


# The same text as format_offset, made without string formatting (on every
# append's answer): packed big-endian, hex-encoded with "_" between halves.
_pack_ids: Final = struct.Struct(">QQ").pack
_hexlify: Final = binascii.hexlify


def next_offset(s: Stream, position: int) -> bytes:
    return b"stream-next-offset: " + _hexlify(_pack_ids(s.id, position), b"_", 8) + b"\r\n"


def content_type(s: Stream) -> bytes:
    return content_type_line(s.config.content_type)


@functools.lru_cache(maxsize=1024)
def content_type_line(ctype: str) -> bytes:
    return line("content-type", ctype)


def rfc3339(ts: float) -> str:
    # Round once, on the whole value, so 0.9996 s carries into the seconds.
    seconds, ms = divmod(round(ts * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def expiry(s: Stream) -> bytes:
    out = b""
    if s.config.ttl is not None:
        out += line("stream-ttl", s.config.ttl)
    if s.config.expires_at is not None:
        out += line("stream-expires-at", rfc3339(s.config.expires_at))
    return out

"""Write-ahead log records: framing, checksums and the record bodies.

Frame: ``<body length u32><crc32 u32><lsn u64><type u8><body>``; the CRC
covers lsn, type and body, so a torn or bit-flipped record never verifies.
An append record carries its payload together with the producer and
Stream-Seq state it establishes, so data and writer state commit atomically.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

import orjson

HEADER: Final = struct.Struct("<IIQB")
HEADER_SIZE: Final = HEADER.size
_CRC_START: Final = 8  # the CRC covers everything after length and crc

CREATE: Final = 1
APPEND: Final = 2
DELETE: Final = 3

F_CLOSE: Final = 1
F_PRODUCER: Final = 2
F_SEQ: Final = 4

_APPEND_HEAD: Final = struct.Struct("<QQBI")
_PRODUCER: Final = struct.Struct("<QQ")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")

MAX_RECORD: Final = 1 << 31


class Producer:
    """An idempotent producer's identity and the batch that establishes state.

    A plain class: built per producer append, and compiled, a dataclass's
    generated __init__ stays interpreted Python."""

    __slots__ = ("id", "epoch", "seq")

    def __init__(self, id: str, epoch: int, seq: int) -> None:
        self.id = id
        self.epoch = epoch
        self.seq = seq

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Producer):
            return NotImplemented
        return (self.id, self.epoch, self.seq) == (other.id, other.epoch, other.seq)

    def __repr__(self) -> str:
        return f"Producer({self.id!r}, {self.epoch}, {self.seq})"


@dataclass(slots=True)
class AppendBody:
    stream_id: int
    position: int
    close: bool
    unit_lengths: list[int]
    producer: Producer | None
    seq: bytes | None
    payload: bytes


@dataclass(slots=True)
class CreateBody:
    stream_id: int
    meta: dict[str, object]
    append: AppendBody


def frame(lsn: int, rtype: int, body: bytes) -> bytes:
    head = struct.pack("<QB", lsn, rtype)
    crc = zlib.crc32(body, zlib.crc32(head))
    return _LEN_CRC.pack(len(body), crc) + head + body


# An append of one unit with no writer state: the common record, packed in one go.
_APPEND_ONE: Final = struct.Struct("<QQBII")
_LEN_CRC: Final = struct.Struct("<II")
# What the CRC covers in a one-unit append frame: lsn, type, then the body head.
_APPEND_ONE_CRC: Final = struct.Struct("<QB" + _APPEND_ONE.format[1:])
# Bound once for the append path: compiled, a Final is a C static, while
# `zlib.crc32`, `S.pack` and `S.size` are attribute lookups on every call.
crc32: Final = zlib.crc32
_pack_append_one: Final = _APPEND_ONE_CRC.pack
_pack_len_crc: Final = _LEN_CRC.pack
_APPEND_ONE_SIZE: Final = _APPEND_ONE.size


def frame_append(
    lsn: int,
    stream_id: int,
    position: int,
    close: bool,
    lengths: list[int],
    producer: Producer | None,
    seq: bytes | None,
    payload: bytes,
) -> bytes:
    """frame(lsn, APPEND, encode_append(...)) of an append given by its
    fields: the usual record (one unit, no writer state) is packed in one
    step with its payload copied once, and no AppendBody is built for it."""
    if producer is None and seq is None and len(lengths) == 1:
        covered = _pack_append_one(lsn, APPEND, stream_id, position, F_CLOSE if close else 0, 1, len(payload))
        return _pack_len_crc(_APPEND_ONE_SIZE + len(payload), crc32(payload, crc32(covered))) + covered + payload
    return frame(lsn, APPEND, encode_append(AppendBody(stream_id, position, close, lengths, producer, seq, payload)))


def encode_append(a: AppendBody) -> bytes:
    flags = (F_CLOSE if a.close else 0) | (F_PRODUCER if a.producer else 0) | (F_SEQ if a.seq is not None else 0)
    parts = [_APPEND_HEAD.pack(a.stream_id, a.position, flags, len(a.unit_lengths))]
    if a.unit_lengths:
        parts.append(struct.pack(f"<{len(a.unit_lengths)}I", *a.unit_lengths))
    if a.producer is not None:
        pid = a.producer.id.encode()
        parts.append(_U16.pack(len(pid)))
        parts.append(pid)
        parts.append(_PRODUCER.pack(a.producer.epoch, a.producer.seq))
    if a.seq is not None:
        parts.append(_U16.pack(len(a.seq)))
        parts.append(a.seq)
    parts.append(a.payload)
    return b"".join(parts)


def decode_append(body: bytes | memoryview, start: int = 0) -> AppendBody:
    mv = memoryview(body)
    stream_id, position, flags, n = _APPEND_HEAD.unpack_from(mv, start)
    off = start + _APPEND_HEAD.size
    lengths = list(struct.unpack_from(f"<{n}I", mv, off)) if n else []
    off += 4 * n
    producer = None
    if flags & F_PRODUCER:
        (plen,) = _U16.unpack_from(mv, off)
        off += 2
        pid = bytes(mv[off : off + plen]).decode()
        off += plen
        epoch, pseq = _PRODUCER.unpack_from(mv, off)
        off += _PRODUCER.size
        producer = Producer(pid, epoch, pseq)
    seq = None
    if flags & F_SEQ:
        (slen,) = _U16.unpack_from(mv, off)
        off += 2
        seq = bytes(mv[off : off + slen])
        off += slen
    payload = bytes(mv[off:])
    if sum(lengths) != len(payload):
        raise ValueError("append record payload does not match its unit lengths")
    return AppendBody(stream_id, position, bool(flags & F_CLOSE), lengths, producer, seq, payload)


def encode_create(c: CreateBody) -> bytes:
    meta = orjson.dumps(c.meta)
    return _U64.pack(c.stream_id) + _U32.pack(len(meta)) + meta + encode_append(c.append)


def decode_create(body: bytes | memoryview) -> CreateBody:
    mv = memoryview(body)
    (stream_id,) = _U64.unpack_from(mv, 0)
    (mlen,) = _U32.unpack_from(mv, 8)
    meta = orjson.loads(bytes(mv[12 : 12 + mlen]))
    return CreateBody(stream_id, meta, decode_append(mv, 12 + mlen))


def encode_delete(stream_id: int) -> bytes:
    return _U64.pack(stream_id)


def decode_delete(body: bytes | memoryview) -> int:
    return int(_U64.unpack_from(body, 0)[0])


def parse_frame(buf: bytes | memoryview, off: int) -> tuple[int, int, memoryview, int] | None:
    """Parse the frame at off: (lsn, type, body, next offset), or None if it
    is incomplete or fails its checksum."""
    mv = memoryview(buf)
    if off + HEADER_SIZE > len(mv):
        return None
    length, crc, lsn, rtype = HEADER.unpack_from(mv, off)
    end = off + HEADER_SIZE + length
    if length > MAX_RECORD or end > len(mv):
        return None
    if zlib.crc32(mv[off + _CRC_START : end]) != crc:
        return None
    return lsn, rtype, mv[off + HEADER_SIZE : end], end

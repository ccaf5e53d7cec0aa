"""Parsing and validating request parameters and headers.

Every function either returns a clean value or raises a 400 that names the
offending parameter; nothing here touches stream state.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Final
from urllib.parse import parse_qsl

from ..engine import Producer
from .errors import bad_request

MAX_SAFE_INTEGER: Final = 2**53 - 1
MAX_TOKEN_BYTES: Final = 1024
# Timestamps must stay expressible in RFC 3339's four-digit years, in UTC.
_YEAR_1: Final = -62135596800
_YEAR_10000: Final = 253402300800

_DECIMAL: Final = re.compile(r"0|[1-9][0-9]*")
_RFC3339: Final = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE: Final = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*(;.*)?", re.DOTALL)


def query_params(query: str) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    if "%" not in query and "+" not in query:
        # Nothing to decode (offsets, live modes and cursors never need it):
        # the same pairs parse_qsl would give, without its per-pair work.
        for pair in query.split("&"):
            if pair:
                name, _, value = pair.partition("=")
                values = params.get(name)
                if values is None:
                    params[name] = [value]
                else:
                    values.append(value)
        return params
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise bad_request("malformed query string") from None
    for k, v in pairs:
        params.setdefault(k, []).append(v)
    return params


def single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise bad_request(f"query parameter {name!r} given more than once")
    return values[0]


def is_true(value: str | None) -> bool:
    """Stream-Closed counts only when it is exactly 'true' (any case)."""
    return value is not None and value.strip().lower() == "true"


def parse_ttl(value: str | None) -> int | None:
    if value is None:
        return None
    v = value.strip()
    if not _DECIMAL.fullmatch(v) or int(v) > MAX_SAFE_INTEGER:
        raise bad_request("Stream-TTL must be a non-negative integer number of seconds")
    return int(v)


def parse_expires_at(value: str | None) -> float | None:
    if value is None:
        return None
    v = value.strip()
    if not _RFC3339.fullmatch(v):
        raise bad_request("Stream-Expires-At must be an RFC 3339 timestamp")
    text = v.upper().replace("Z", "+00:00")
    # datetime accepts at most microseconds: drop extra fraction digits.
    m = re.match(r"(.*\.\d{6})\d+(.*)", text)
    if m:
        text = m.group(1) + m.group(2)
    try:
        ts = datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        raise bad_request("Stream-Expires-At is not a valid date and time") from None
    # Checked after rounding to the milliseconds it is echoed back with.
    if not _YEAR_1 * 1000 <= round(ts * 1000) < _YEAR_10000 * 1000:
        raise bad_request("Stream-Expires-At is out of range")
    return ts


# Clients send the same few values over and over, and the regex ran on every
# append; bounded, since the header is the client's choice (errors are not kept).
@functools.lru_cache(maxsize=1024)
def media_type(content_type: str) -> str:
    """Lower-cased type/subtype without parameters, or 400 if malformed."""
    m = _MEDIA_TYPE.fullmatch(content_type)
    if m is None:
        raise bad_request("malformed Content-Type")
    return f"{m.group(1)}/{m.group(2)}".lower()


def parse_producer(headers: dict[str, str]) -> Producer | None:
    pid = headers.get("producer-id")
    epoch = headers.get("producer-epoch")
    seq = headers.get("producer-seq")
    if pid is None and epoch is None and seq is None:
        return None
    if pid is None or epoch is None or seq is None:
        raise bad_request("Producer-Id, Producer-Epoch and Producer-Seq must be sent together")
    if not pid.strip():
        raise bad_request("Producer-Id must not be empty")
    if len(pid.encode()) > MAX_TOKEN_BYTES:
        raise bad_request(f"Producer-Id longer than {MAX_TOKEN_BYTES} bytes")
    return Producer(pid, _producer_int("Producer-Epoch", epoch), _producer_int("Producer-Seq", seq))


def _producer_int(name: str, value: str) -> int:
    v = value.strip()
    if not _DECIMAL.fullmatch(v) or int(v) > MAX_SAFE_INTEGER:
        raise bad_request(f"{name} must be an integer from 0 to 2^53-1")
    return int(v)


def parse_stream_seq(value: str | None) -> bytes | None:
    if value is None:
        return None
    raw = value.encode("latin-1")
    if not raw:
        raise bad_request("Stream-Seq must not be empty")
    if len(raw) > MAX_TOKEN_BYTES:
        raise bad_request(f"Stream-Seq longer than {MAX_TOKEN_BYTES} bytes")
    return raw

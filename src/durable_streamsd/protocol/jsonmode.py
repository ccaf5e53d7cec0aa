"""JSON mode framing (section 9.1).

Each message is stored as its compact JSON text followed by ``,``; a read of
[a, b) is then ``[`` + bytes[a:b-1] + ``]`` with no per-message work. A POST
body that is an array is flattened one level; ``[]`` is an error on POST and
an empty stream on PUT.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

from .errors import bad_request


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# orjson turns integers beyond 64 bits into floats, silently changing the
# message; bodies with a run of 19 or more digits take the exact (slower)
# path. The run is found by mapping digits to "0" and everything else to a
# space, then one substring search: the regex \d{19,} cost ~13,000
# instructions on a 90-byte message, more than the rest of the append.
_DIGITS_AS_ZEROS: Final = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))
_LONG_RUN: Final = b"0" * 19


def has_long_digit_run(body: bytes) -> bool:
    return _LONG_RUN in body.translate(_DIGITS_AS_ZEROS)


def _loads(body: bytes) -> Any:
    if not has_long_digit_run(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise bad_request("body is not valid JSON") from None
    # The standard library keeps big integers exact (NaN and Infinity it
    # must still refuse).
    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad_request("body is not valid JSON") from None


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON syntax but has no finite value; storing it would
    # mean writing null or Infinity, changing the message or breaking JSON.
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except RecursionError:
        raise bad_request("JSON nested too deeply") from None
    except (ValueError, UnicodeEncodeError):
        # Lone surrogates (\ud800) and non-finite numbers cannot be stored
        # as valid UTF-8 JSON.
        raise bad_request("body holds a value that cannot be stored as valid JSON") from None


def frame_messages(body: bytes, allow_empty: bool) -> tuple[bytes, list[int]]:
    """Validate a JSON body and return (framed payload, message lengths)."""
    value = _loads(body)
    if not isinstance(value, list):  # the usual case: one message
        one = _dumps(value) + b","
        return one, [len(one)]
    if not value and not allow_empty:
        raise bad_request("empty JSON array: nothing to append")
    parts = [_dumps(v) + b"," for v in value]
    return b"".join(parts), [len(p) for p in parts]


def wrap_array(views: list[memoryview]) -> list[bytes | memoryview]:
    """A read body: the stored messages inside [ ], minus the last comma."""
    if not views:
        return [b"[]"]
    last = views[-1]
    body: list[bytes | memoryview] = [b"["]
    body.extend(views[:-1])
    if len(last) > 1:
        body.append(last[:-1])
    body.append(b"]")
    return body

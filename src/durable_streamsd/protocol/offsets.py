"""Offset tokens: ``<stream id>_<position>``, both fixed-width lowercase
hex, so that within a stream string order is position order.

The stream id makes offsets unique across incarnations of a path: after a
stream is deleted and recreated, offsets of the old one (and any responses a
CDN cached under them) can never be mistaken for positions of the new one.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import bad_request

_TOKEN: Final = re.compile(r"([0-9a-f]{16})_([0-9a-f]{16})")
BEGINNING: Final = "-1"
NOW: Final = "now"


def format_offset(stream_id: int, position: int) -> str:
    return f"{stream_id:016x}_{position:016x}"


def parse_offset(token: str) -> tuple[int, int]:
    """(stream id, position) of a server-minted offset token; 400 otherwise."""
    m = _TOKEN.fullmatch(token)
    if m is None:
        raise bad_request("malformed offset")
    return int(m.group(1), 16), int(m.group(2), 16)

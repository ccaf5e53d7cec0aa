"""Offset tokens: fixed-width, lowercase, zero-padded hex, so that string
order is position order. The first field is reserved (always zero today) so
the format can grow without breaking the ordering of existing tokens."""

from __future__ import annotations

import re

from .errors import bad_request

_TOKEN = re.compile(r"[0-9a-f]{16}_[0-9a-f]{16}")
_PREFIX = "0" * 16 + "_"
BEGINNING = "-1"
NOW = "now"


def format_offset(position: int) -> str:
    return f"{_PREFIX}{position:016x}"


def parse_offset(token: str) -> int:
    """Position of a server-minted offset token; 400 for anything else."""
    if not _TOKEN.fullmatch(token) or not token.startswith(_PREFIX):
        raise bad_request("malformed offset")
    return int(token[17:], 16)

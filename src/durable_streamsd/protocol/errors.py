"""Client mistakes as exceptions carrying their answer."""

from __future__ import annotations


class ProtocolError(Exception):
    """A request the protocol rejects: status, a short reason, extra headers."""

    def __init__(self, status: int, message: str, headers: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def bad_request(message: str) -> ProtocolError:
    return ProtocolError(400, message)


def not_found(path: str) -> ProtocolError:
    return ProtocolError(404, "stream not found")

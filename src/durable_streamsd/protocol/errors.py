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
    """Names the path as the server decoded it, so a client can tell a
    missing stream from a URL it spelled or escaped wrong."""
    return ProtocolError(404, f"stream not found: {path}")


def storage_failed(reason: object) -> ProtocolError:
    """503: the log could not be made durable. The write may or may not be
    on disk, so the client must treat its outcome as unknown."""
    return ProtocolError(503, f"storage failed: {reason}")

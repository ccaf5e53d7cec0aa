"""A minimal blocking HTTP/1.1 keep-alive client for set-up and catch-up reads.

Why not urllib/http.client: catch-up reads move hundreds of MiB, and this
client can count a body straight off the socket with ``recv_into`` into one
reused buffer (no per-response allocation, no joining), which keeps the load
generator far cheaper than the server it measures. It speaks just what the
two servers answer with: Content-Length or chunked bodies, keep-alive.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
SCRATCH = 1024 * 1024


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    body_len: int = 0

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


class HttpClient:
    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._scratch = bytearray(SCRATCH)
        self._mv = memoryview(self._scratch)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"", keep_body: bool = True
    ) -> Response:
        """One request/response; with keep_body=False the body is only counted."""
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._sock.sendall(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self._sock.sendall(body)
        try:
            return self._read_response(method == "HEAD", keep_body)
        except BaseException:
            self.close()
            raise

    # -- response parsing

    def _recv_more(self) -> None:
        assert self._sock is not None
        n = self._sock.recv_into(self._mv, 65536)
        if n == 0:
            raise ConnectionError("server closed the connection")
        self._buf += self._mv[:n]

    def _read_line(self) -> bytes:
        while True:
            i = self._buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 2]
                return line
            if len(self._buf) > MAX_HEAD:
                raise ValueError("response line too long")
            self._recv_more()

    def _read_response(self, head_only: bool, keep_body: bool) -> Response:
        while True:
            i = self._buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if len(self._buf) > MAX_HEAD:
                raise ValueError("response head too large")
            self._recv_more()
        head = bytes(self._buf[:i]).decode("latin-1").split("\r\n")
        del self._buf[: i + 4]
        status = int(head[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        res = Response(status, headers)
        if head_only or status in (204, 304) or 100 <= status < 200:
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self._read_line().split(b";", 1)[0], 16)
                if size == 0:
                    while self._read_line():
                        pass
                    break
                got = self._read_exact(size, keep_body)
                res.body_len += size
                if keep_body:
                    parts.append(got)
                if self._read_line():
                    raise ValueError("bad chunk terminator")
            res.body = b"".join(parts)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            res.body = self._read_exact(n, keep_body)
            res.body_len = n
        else:
            raise ValueError("response without length (read-until-close is not supported)")
        if headers.get("connection", "").lower() == "close":
            self.close()
        return res

    def _read_exact(self, n: int, keep: bool) -> bytes:
        """Read n body bytes; never reads past them, so no re-buffering."""
        out = bytearray() if keep else None
        take = min(n, len(self._buf))
        if take:
            if out is not None:
                out += self._buf[:take]
            del self._buf[:take]
            n -= take
        sock = self._sock
        assert sock is not None
        mv = self._mv
        while n > 0:
            got = sock.recv_into(mv, min(n, SCRATCH))
            if got == 0:
                raise ConnectionError("server closed the connection mid-body")
            if out is not None:
                out += mv[:got]
            n -= got
        return bytes(out) if out is not None else b""


def create_stream(c: HttpClient, path: str, content_type: str, body: bytes = b"") -> Response:
    r = c.request("PUT", path, {"Content-Type": content_type}, body)
    if r.status not in (200, 201):
        raise RuntimeError(f"PUT {path}: {r.status} {r.body[:200]!r}")
    return r


def append(c: HttpClient, path: str, content_type: str, body: bytes) -> Response:
    r = c.request("POST", path, {"Content-Type": content_type}, body)
    if r.status not in (200, 204):
        raise RuntimeError(f"POST {path}: {r.status} {r.body[:200]!r}")
    return r

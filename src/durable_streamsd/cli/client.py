"""A small client for scripts and debugging: create, append, read, tail,
head, delete. Speaks plain HTTP/1.1 with the standard library."""

from __future__ import annotations

import http.client
import sys
from urllib.parse import quote, urlsplit

import click

DEFAULT_SERVER = "http://127.0.0.1:4437"
server_option = click.option("--server", envvar="DS_SERVER", default=DEFAULT_SERVER, show_default=True)


def _request(
    server: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 60.0,
) -> http.client.HTTPResponse:
    u = urlsplit(server)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    return conn.getresponse()


def _fail(resp: http.client.HTTPResponse) -> None:
    msg = resp.read().decode(errors="replace").strip()
    click.echo(f"error: {resp.status} {resp.reason}: {msg}", err=True)
    sys.exit(1)


@click.command()
@server_option
@click.argument("path")
@click.option("--content-type", default="application/octet-stream", show_default=True)
@click.option("--ttl", type=int, help="Sliding time-to-live in seconds.")
@click.option("--closed", is_flag=True, help="Create the stream already closed.")
def create(server: str, path: str, content_type: str, ttl: int | None, closed: bool) -> None:
    """Create a stream (body from stdin if it is not a terminal)."""
    headers = {"Content-Type": content_type}
    if ttl is not None:
        headers["Stream-TTL"] = str(ttl)
    if closed:
        headers["Stream-Closed"] = "true"
    body = b"" if sys.stdin.isatty() else sys.stdin.buffer.read()
    resp = _request(server, "PUT", path, headers, body)
    if resp.status not in (200, 201):
        _fail(resp)
    click.echo(resp.headers.get("Stream-Next-Offset", ""))


@click.command()
@server_option
@click.argument("path")
@click.argument("data", required=False)
@click.option("--content-type", default="application/octet-stream", show_default=True)
@click.option("--close", is_flag=True, help="Close the stream with this append.")
def append(server: str, path: str, data: str | None, content_type: str, close: bool) -> None:
    """Append DATA (or stdin) to a stream; prints the new tail offset."""
    body = data.encode() if data is not None else sys.stdin.buffer.read()
    headers = {"Content-Type": content_type} if body else {}
    if close:
        headers["Stream-Closed"] = "true"
    resp = _request(server, "POST", path, headers, body)
    if resp.status not in (200, 204):
        _fail(resp)
    click.echo(resp.headers.get("Stream-Next-Offset", ""))


@click.command()
@server_option
@click.argument("path")
@click.option("--offset", default="-1", show_default=True)
def read(server: str, path: str, offset: str) -> None:
    """Read everything from an offset to the current tail."""
    while True:
        resp = _request(server, "GET", f"{path}?offset={quote(offset)}")
        if resp.status != 200:
            _fail(resp)
        sys.stdout.buffer.write(resp.read())
        offset = resp.headers.get("Stream-Next-Offset", offset)
        if resp.headers.get("Stream-Up-To-Date") == "true":
            break
    sys.stdout.buffer.flush()
    click.echo(f"\n# next offset {offset}", err=True)


@click.command()
@server_option
@click.argument("path")
@click.option("--offset", default="now", show_default=True)
def tail(server: str, path: str, offset: str) -> None:
    """Follow a stream with long-polls until it is closed."""
    while True:
        resp = _request(server, "GET", f"{path}?offset={quote(offset)}&live=long-poll", timeout=120.0)
        if resp.status not in (200, 204):
            _fail(resp)
        sys.stdout.buffer.write(resp.read())
        sys.stdout.buffer.flush()
        offset = resp.headers.get("Stream-Next-Offset", offset)
        if resp.headers.get("Stream-Closed") == "true":
            break


@click.command()
@server_option
@click.argument("path")
def head(server: str, path: str) -> None:
    """Show a stream's metadata."""
    resp = _request(server, "HEAD", path)
    if resp.status != 200:
        _fail(resp)
    for name in ("Content-Type", "Stream-Next-Offset", "Stream-TTL", "Stream-Expires-At", "Stream-Closed"):
        value = resp.headers.get(name)
        if value is not None:
            click.echo(f"{name}: {value}")


@click.command()
@server_option
@click.argument("path")
def delete(server: str, path: str) -> None:
    """Delete a stream."""
    resp = _request(server, "DELETE", path)
    if resp.status != 204:
        _fail(resp)

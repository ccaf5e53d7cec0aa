"""Optional bearer-token access control (--auth-token-file), end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import Client
from tests.support.server import ServerProcess

TOKENS = """
# token        scope  prefix
reader-token   read   /pub/
writer-token   write  /pub/
admin-token    all    /
writer-token   read   /pub/own/
"""


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[Client]:
    token_file = tmp_path / "tokens"
    token_file.write_text(TOKENS)
    srv = ServerProcess(tmp_path / "data", "--auth-token-file", str(token_file)).start()
    c = Client(srv.port)
    yield c
    c.close()
    srv.kill()


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def test_scopes_and_prefixes(authed: Client) -> None:
    ct = {"Content-Type": "text/plain"}
    assert authed.request("PUT", "/pub/a", b"x", bearer("writer-token", **ct)).status == 201
    assert authed.request("POST", "/pub/a", b"y", bearer("writer-token", **ct)).status == 204
    assert authed.request("GET", "/pub/a", headers=bearer("reader-token")).body == b"xy"
    assert authed.request("HEAD", "/pub/a", headers=bearer("reader-token")).status == 200
    # Read-only tokens cannot write; write-only tokens cannot read outside their read grant.
    assert authed.request("POST", "/pub/a", b"z", bearer("reader-token", **ct)).status == 403
    assert authed.request("DELETE", "/pub/a", headers=bearer("reader-token")).status == 403
    assert authed.request("GET", "/pub/a", headers=bearer("writer-token")).status == 403
    assert authed.request("PUT", "/pub/own/b", b"", bearer("writer-token", **ct)).status == 201
    assert authed.request("GET", "/pub/own/b", headers=bearer("writer-token")).status == 200
    # Outside the prefix.
    assert authed.request("PUT", "/private/c", b"", bearer("writer-token", **ct)).status == 403
    assert authed.request("PUT", "/private/c", b"", bearer("admin-token", **ct)).status == 201
    assert authed.request("GET", "/pub/a", headers=bearer("reader-token")).body == b"xy"


def test_missing_or_wrong_token_is_401_and_reveals_nothing(authed: Client) -> None:
    ct = {"Content-Type": "text/plain"}
    assert authed.request("PUT", "/pub/exists", b"", bearer("admin-token", **ct)).status == 201
    for path in ("/pub/exists", "/pub/missing"):
        r = authed.request("GET", path)
        assert r.status == 401 and r.header("www-authenticate") is not None
        assert authed.request("GET", path, headers=bearer("nope")).status == 401
        assert authed.request("GET", path, headers={"Authorization": "Basic YTpi"}).status == 401
    # 403 for an existing and a missing stream alike.
    assert authed.request("GET", "/private/exists", headers=bearer("reader-token")).status == 403
    assert authed.request("GET", "/private/missing", headers=bearer("reader-token")).status == 403
    # Nothing was created by the refused requests.
    assert authed.request("HEAD", "/pub/missing", headers=bearer("admin-token")).status == 404


def test_cors_preflight_needs_no_token(authed: Client) -> None:
    r = authed.request("OPTIONS", "/pub/a", headers={"Origin": "https://x", "Access-Control-Request-Method": "GET"})
    assert r.status == 204 and "authorization" in (r.header("access-control-allow-headers") or "").lower()


def test_bad_token_file_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "tokens"
    bad.write_text("just-a-token\n")
    with pytest.raises(RuntimeError, match="token file"):
        ServerProcess(tmp_path / "data", "--auth-token-file", str(bad)).start(timeout=10)

"""The request path leaves no reference cycles behind.

Compiled with mypyc, a closure and the state it captures refer to each
other: one per append made the cyclic collector run every ~160 requests.
The server reports the collector's work (python_gc_objects_collected_total
counts objects it found unreachable in cycles), so this drives every kind
of request over real sockets and checks that the count stays near zero.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import Client
from tests.support.server import ServerProcess, free_port

ROUNDS = 200


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServerProcess, int]]:
    # The collector runs once 700 more objects were made than freed; a
    # request path that frees what it makes rarely gets there, so a few
    # hundred leaked cycles could sit uncounted. A low threshold, set in
    # the server process at startup, collects (and counts) them promptly.
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text("import gc\ngc.set_threshold(20, 5, 5)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")])))
    metrics_port = free_port()
    srv = ServerProcess(
        tmp_path / "data", "--metrics-port", str(metrics_port), "--long-poll-timeout", "0.01"
    ).start()
    yield srv, metrics_port
    srv.stop()


def collected(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("python_gc_objects_collected_total{")]
    assert lines, "the server reports its collector's work"
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def one_of_each(c: Client, i: int) -> None:
    """Every operation, the error answers and the answers given only once
    something else is durable (repeat create, duplicate, close retry)."""
    path = f"/v1/stream/g{i}"
    octet = {"Content-Type": "application/octet-stream"}
    assert c.request("PUT", path, headers=octet).status == 201
    assert c.request("PUT", path, headers=octet).status == 200
    assert c.request("POST", path, b"a" * 100, octet).status == 204
    producer = octet | {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "0"}
    assert c.request("POST", path, b"b", producer).status == 200
    assert c.request("POST", path, b"b", producer).status == 204  # duplicate
    read = c.request("GET", f"{path}?offset=-1")
    assert read.status == 200 and read.body == b"a" * 100 + b"b"
    tail = read.header("stream-next-offset")
    assert c.request("GET", f"{path}?offset={tail}&live=long-poll").status == 204
    assert c.request("HEAD", path).status == 200
    assert c.request("POST", path, b"", {"Stream-Closed": "true"}).status == 204
    assert c.request("POST", path, b"", {"Stream-Closed": "true"}).status == 204  # close retry
    assert c.request("POST", path, b"c", octet).status == 409
    assert c.request("GET", f"{path}?offset=bogus").status == 400
    assert c.request("DELETE", path).status == 204
    assert c.request("GET", path).status == 404


def test_requests_leave_no_reference_cycles(server: tuple[ServerProcess, int]) -> None:
    srv, metrics_port = server
    c = Client(srv.port)
    one_of_each(c, -1)  # first use: caches, lazily built state
    before = collected(metrics_port)
    for i in range(ROUNDS):
        one_of_each(c, i)
    after = collected(metrics_port)
    c.close()
    # Fewer than one object per round of 14 requests: one leaked cycle of
    # a single object per DELETE (tried) makes this fail.
    assert after - before < ROUNDS, f"{after - before:.0f} objects left in cycles by {ROUNDS * 14} requests"

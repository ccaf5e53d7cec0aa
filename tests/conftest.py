"""Fixtures: a real daemon on an ephemeral port with a real data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import durable_streamsd
from tests.support.client import Client
from tests.support.server import ServerProcess

PACKAGE = Path(durable_streamsd.__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test extensions older than their sources: compiled
    modules shadow the .py files, so an edit would silently go untested."""
    built = list(PACKAGE.rglob("*.so"))
    if not built:
        return
    oldest = min(p.stat().st_mtime for p in built)
    stale = [p for p in PACKAGE.rglob("*.py") if _compiled(p) and p.stat().st_mtime > oldest]
    if stale:
        pytest.exit(f"{stale[0]} is newer than its compiled build: run `make install` (or `make test`)", 2)


def _compiled(source: Path) -> bool:
    return any(source.parent.glob(source.stem + ".*.so"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data", "--long-poll-timeout", "1", "--sse-reconnect-interval", "5").start()
    yield srv
    srv.kill()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    c = Client(server.port)
    yield c
    c.close()

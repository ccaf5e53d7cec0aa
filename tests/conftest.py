"""Fixtures: a real daemon on an ephemeral port with a real data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import Client
from tests.support.server import ServerProcess


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

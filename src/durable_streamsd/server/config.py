"""Daemon configuration (every option also settable as a DS_ variable)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    data_dir: str
    host: str = "127.0.0.1"
    port: int = 4437
    fsync: str = "always"
    fsync_interval: float = 0.05
    long_poll_timeout: float = 30.0
    sse_reconnect_interval: float = 60.0
    max_append_bytes: int = 64 * 1024 * 1024
    max_read_bytes: int = 1024 * 1024
    max_header_bytes: int = 16 * 1024
    max_open_segments: int = 4096
    checkpoint_interval: float = 30.0
    wal_file_bytes: int = 16 * 1024 * 1024
    direct_io: bool = True
    segment_bytes: int = 64 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    shutdown_grace: float = 10.0
    metrics_port: int = 0
    auth_token_file: str | None = None
    log_level: str = "info"
    log_format: str = "auto"

"""Run profiles: how long and how big. ``quick`` is a smoke run (minutes),
``default`` the everyday run, ``full`` the one to quote. Only ``rounds``
trades time for confidence; the sizes in the issue (64 MiB catch-up,
1,000/10,000 readers, 100,000 streams) hold in default and full."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int
    wrk_duration_s: float
    wrk_warmup_s: float
    connections: int
    catchup_sizes_mib: tuple[int, int]
    catchup_readers: int
    catchup_duration_s: float
    catchup_max_passes: int
    fanout_readers: tuple[int, int]
    fanout_rate: float
    fanout_duration_s: float
    fanout_grace_s: float
    many_streams: int
    many_streams_conns: int
    many_streams_timeout_s: float


PROFILES = {
    "quick": Profile(
        name="quick",
        rounds=1,
        wrk_duration_s=3,
        wrk_warmup_s=1,
        connections=32,
        catchup_sizes_mib=(8, 64),
        catchup_readers=4,
        catchup_duration_s=2,
        catchup_max_passes=8,
        fanout_readers=(1000, 10000),
        fanout_rate=20,
        fanout_duration_s=5,
        fanout_grace_s=10,
        many_streams=10_000,
        many_streams_conns=32,
        many_streams_timeout_s=60,
    ),
    "default": Profile(
        name="default",
        rounds=2,
        wrk_duration_s=5,
        wrk_warmup_s=2,
        connections=32,
        catchup_sizes_mib=(8, 64),
        catchup_readers=4,
        catchup_duration_s=4,
        catchup_max_passes=20,
        fanout_readers=(1000, 10000),
        fanout_rate=20,
        fanout_duration_s=10,
        fanout_grace_s=15,
        many_streams=100_000,
        many_streams_conns=32,
        many_streams_timeout_s=120,
    ),
    "full": Profile(
        name="full",
        rounds=3,
        wrk_duration_s=10,
        wrk_warmup_s=3,
        connections=32,
        catchup_sizes_mib=(8, 64),
        catchup_readers=4,
        catchup_duration_s=8,
        catchup_max_passes=40,
        fanout_readers=(1000, 10000),
        fanout_rate=20,
        fanout_duration_s=20,
        fanout_grace_s=20,
        many_streams=100_000,
        many_streams_conns=32,
        many_streams_timeout_s=240,
    ),
}

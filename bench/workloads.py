"""The workloads of the issue: each sets up a fresh server, drives one kind
of load, and returns its figures together with what the server spent
(CPU from utime+stime, peak RSS from VmHWM, descriptors)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvloop

from . import procstat
from .fanout import Probe, run_fanout
from .httpclient import HttpClient, create_stream
from .many_streams import many_streams
from .profiles import Profile
from .readers import MIB, catch_up, populate
from .servers import Server, disk_usage_mib
from .wrk import run_wrk

Metrics = dict[str, object]


@dataclass(frozen=True)
class Ctx:
    profile: Profile
    load_cpu: str | None


@dataclass(frozen=True)
class Workload:
    name: str
    figure: str  # the metric that ratios are taken of
    unit: str
    higher_is_better: bool
    run: Callable[[Ctx, Server], Metrics]
    describe: str
    # Output per server CPU-second: steadier than the figure on a shared machine.
    efficiency: str | None = None


SMALL_BODY = b"x" * 100
JSON_BODY = json.dumps({"id": 123456, "kind": "bench.event", "user": "u-0042", "msg": "y" * 36}, separators=(",", ":"))


def _cores(ctx: Ctx, server: Server) -> dict[str, str | None]:
    return {"server_core": server.cpu, "load_core": ctx.load_cpu}


def _server_tail(server: Server) -> Metrics:
    return {
        "open_fds_end": procstat.open_fds(server.pid),
        "rss_end_mib": round(procstat.memory_kib(server.pid)["VmRSS"] / 1024, 1),
    }


def _wrk(ctx: Ctx, server: Server, script: str, env: dict[str, str]) -> Metrics:
    p = ctx.profile
    run_wrk(server.host, server.port, script, env, p.connections, p.wrk_warmup_s, ctx.load_cpu)
    meter = procstat.Meter(server.pid, cores=_cores(ctx, server))
    meter.start()
    r = run_wrk(server.host, server.port, script, env, p.connections, p.wrk_duration_s, ctx.load_cpu)
    u = meter.stop()
    out: Metrics = {**r.as_dict(), **u.as_dict()}
    answered_ok = r.rps * r.duration_s  # successes only, like the rate
    out["requests_per_server_cpu_s"] = round(answered_ok / u.cpu_s, 1) if u.cpu_s > 0 else None
    out["server_cpu_us_per_request"] = round(1e6 * u.cpu_s / answered_ok, 1) if answered_ok else None
    return out | _server_tail(server)


def append_small(ctx: Ctx, server: Server) -> Metrics:
    with HttpClient(server.host, server.port) as c:
        create_stream(c, "/bench/a", "application/octet-stream")
    return _wrk(ctx, server, "post.lua", {"BENCH_PATH": "/bench/a", "BENCH_BODY": SMALL_BODY.decode()})


def append_many(ctx: Ctx, server: Server) -> Metrics:
    n = 1000
    with HttpClient(server.host, server.port) as c:
        for i in range(n):
            create_stream(c, f"/bench/m{i}", "application/octet-stream")
    env = {"BENCH_PATH": "/bench/m", "BENCH_STREAMS": str(n), "BENCH_BODY": SMALL_BODY.decode()}
    return _wrk(ctx, server, "post.lua", env)


def append_json(ctx: Ctx, server: Server) -> Metrics:
    with HttpClient(server.host, server.port) as c:
        create_stream(c, "/bench/j", "application/json")
    env = {"BENCH_PATH": "/bench/j", "BENCH_CONTENT_TYPE": "application/json", "BENCH_BODY": JSON_BODY}
    return _wrk(ctx, server, "post.lua", env) | {"body_bytes": len(JSON_BODY)}


def read_small(ctx: Ctx, server: Server) -> Metrics:
    with HttpClient(server.host, server.port) as c:
        create_stream(c, "/bench/r", "application/octet-stream", b"r" * 1024)
    return _wrk(ctx, server, "get.lua", {"BENCH_PATH": "/bench/r?offset=-1"})


def read_catchup(ctx: Ctx, server: Server) -> Metrics:
    """Throughput on the large stream; the small one is there to show
    whether read memory grows with stream size."""
    p = ctx.profile
    small, big = p.catchup_sizes_mib
    populate(server.host, server.port, "/bench/c_small", small * MIB)
    populate(server.host, server.port, "/bench/c_big", big * MIB)
    time.sleep(0.5)
    base = procstat.memory_kib(server.pid)
    out: Metrics = {"sizes_mib": [small, big], "readers": p.catchup_readers}
    for label, path, size in (("small", "/bench/c_small", small), ("big", "/bench/c_big", big)):
        meter = procstat.Meter(server.pid, interval=0.02, cores=_cores(ctx, server))
        meter.start()
        r = catch_up(
            server.host, server.port, path, size * MIB, p.catchup_readers, p.catchup_duration_s, p.catchup_max_passes
        )
        u = meter.stop()
        suffix = "" if label == "big" else "_small"
        out[f"mib_s{suffix}"] = r["mib_s"]
        out[f"read_mib{suffix}"] = r["read_mib"]
        out[f"requests{suffix}"] = r["requests"]
        out[f"server_cpu_pct{suffix}"] = round(u.cpu_pct, 1)
        for core, busy in u.core_busy_pct.items():
            out[f"{core}_busy_pct{suffix}"] = round(busy, 1)
        out[f"client_cpu_pct{suffix}"] = round(u.client_cpu_pct, 1)
        out[f"peak_rss_mib{suffix}"] = round(u.peak_rss_mib, 1)
        out[f"rss_growth_mib{suffix}"] = round(u.peak_rss_mib - base["VmRSS"] / 1024, 1)
        out[f"anon_growth_mib{suffix}"] = round(u.peak_anon_mib - base["RssAnon"] / 1024, 1)
        if u.cpu_s > 0:
            out[f"mib_per_server_cpu_s{suffix}"] = round(r["read_mib"] / u.cpu_s, 1)
    out["rss_before_reads_mib"] = round(base["VmRSS"] / 1024, 1)
    return out | _server_tail(server)


def _fanout(sse: bool, readers_index: int) -> Callable[[Ctx, Server], Metrics]:
    def run(ctx: Ctx, server: Server) -> Metrics:
        p = ctx.profile
        with HttpClient(server.host, server.port) as c:
            create_stream(c, "/bench/fan", "application/json")
            tail = c.request("GET", "/bench/fan?offset=now").header("stream-next-offset")
        pid = server.pid
        probe = Probe(lambda: procstat.memory_kib(pid)["VmRSS"], lambda: procstat.cpu_seconds(pid))
        meter = procstat.Meter(pid, interval=0.25, cores=_cores(ctx, server))
        meter.start()
        res = uvloop.run(
            run_fanout(
                server.host,
                server.port,
                "/bench/fan",
                tail,
                sse,
                p.fanout_readers[readers_index],
                p.fanout_rate,
                p.fanout_duration_s,
                p.fanout_grace_s,
                probe,
            )
        )
        u = meter.stop()
        busy = {f"{k}_busy_pct": round(v, 1) for k, v in u.core_busy_pct.items()}
        return res | busy | {"peak_rss_mib": round(u.peak_rss_mib, 1), "server_cpu_pct": round(u.cpu_pct, 1)}

    return run


def many_streams_memory(ctx: Ctx, server: Server) -> Metrics:
    p = ctx.profile
    pid = server.pid
    before = procstat.memory_kib(pid)
    meter = procstat.Meter(pid, interval=0.25, cores=_cores(ctx, server))
    meter.start()
    res = uvloop.run(
        many_streams(
            server.host, server.port, "/bench/ms/s", p.many_streams, p.many_streams_conns, p.many_streams_timeout_s
        )
    )
    u = meter.stop()
    time.sleep(1.0)
    after = procstat.memory_kib(pid)
    created = int(str(res["created"])) or 1
    out: Metrics = dict(res)
    out |= {
        "rss_mib": round(after["VmRSS"] / 1024, 1),
        "rss_anon_mib": round(after["RssAnon"] / 1024, 1),
        "peak_rss_mib": round(u.peak_rss_mib, 1),
        "rss_per_stream_kib": round((after["VmRSS"] - before["VmRSS"]) / created, 2),
        "open_fds": procstat.open_fds(pid),
        "server_cpu_pct": round(u.cpu_pct, 1),
        **{f"{k}_busy_pct": round(v, 1) for k, v in u.core_busy_pct.items()},
        "disk_mib": round(disk_usage_mib(server.data_dir), 1) if server.kind.file_backed else 0.0,
    }
    return out


WORKLOADS: list[Workload] = [
    Workload(
        "append_small",
        "rps",
        "req/s",
        True,
        append_small,
        "100-byte POSTs to one stream, 32 connections",
        "requests_per_server_cpu_s",
    ),
    Workload(
        "append_many",
        "rps",
        "req/s",
        True,
        append_many,
        "100-byte POSTs over 1000 streams, 32 connections",
        "requests_per_server_cpu_s",
    ),
    Workload(
        "append_json",
        "rps",
        "req/s",
        True,
        append_json,
        "~100-byte JSON messages to a JSON stream",
        "requests_per_server_cpu_s",
    ),
    Workload(
        "read_small",
        "rps",
        "req/s",
        True,
        read_small,
        "GET of a 1 KiB stream, 32 connections",
        "requests_per_server_cpu_s",
    ),
    Workload(
        "read_catchup",
        "mib_s",
        "MiB/s",
        True,
        read_catchup,
        "4 readers, whole 64 MiB stream, repeated",
        "mib_per_server_cpu_s",
    ),
    Workload("fanout_sse_1000", "latency_p99_ms", "ms p99", False, _fanout(True, 0), "1,000 SSE readers, 20 msg/s"),
    Workload("fanout_sse_10000", "latency_p99_ms", "ms p99", False, _fanout(True, 1), "10,000 SSE readers, 20 msg/s"),
    Workload(
        "fanout_longpoll_1000",
        "latency_p99_ms",
        "ms p99",
        False,
        _fanout(False, 0),
        "1,000 long-poll readers, 20 msg/s",
    ),
    Workload(
        "fanout_longpoll_10000",
        "latency_p99_ms",
        "ms p99",
        False,
        _fanout(False, 1),
        "10,000 long-poll readers, 20 msg/s",
    ),
    Workload(
        "many_streams_memory",
        "rss_mib",
        "MiB RSS",
        False,
        many_streams_memory,
        "small streams created and read once (100,000; quick: 10,000)",
    ),
]
BY_NAME = {w.name: w for w in WORKLOADS}
# What the no-op ceiling server can stand in for: one request, one canned answer.
FLOOR_WORKLOADS = frozenset(("append_small", "append_many", "append_json", "read_small"))

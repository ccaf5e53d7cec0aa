"""Run wrk (pinned to the load core) with one of our Lua scripts and parse
the JSON line the script's done() prints.

wrk drives request-rate workloads because a Python client could not keep a
Node or uvloop server busy from one core; the Lua scripts only pick
preformatted requests, so wrk's own cost per request stays tiny.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
SUMMARY_PREFIX = "BENCH_JSON "


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    raw: dict[str, float]

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
        }


def run_wrk(
    host: str,
    port: int,
    script: str,
    env: dict[str, str],
    connections: int,
    duration_s: float,
    cpu: str | None,
    threads: int = 1,
) -> WrkResult:
    url = f"http://{host}:{port}/"
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "10s"]
    cmd += ["-s", str(LUA_DIR / script), url]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    full_env = dict(os.environ, BENCH_LUA_DIR=str(LUA_DIR), **env)
    proc = subprocess.run(cmd, env=full_env, capture_output=True, timeout=duration_s + 60, check=False)
    out = proc.stdout.decode(errors="replace")
    result = parse_summary(out)
    if result is None:
        raise RuntimeError(
            f"wrk gave no summary (exit {proc.returncode}):\n{out}\n{proc.stderr.decode(errors='replace')}"
        )
    return result


def parse_summary(out: str) -> WrkResult | None:
    """The result in wrk's output (the line lua/common.lua's done() prints),
    or None if there is none."""
    for line in out.splitlines():
        if line.startswith(SUMMARY_PREFIX):
            raw = json.loads(line[len(SUMMARY_PREFIX) :])
            break
    else:
        return None
    secs = raw["duration_us"] / 1e6
    errors = sum(int(raw[k]) for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    # A request answered with an error status is no throughput: the rate
    # counts answered successes only (errors are reported beside it).
    answered_ok = int(raw["requests"]) - int(raw["err_status"])
    return WrkResult(
        requests=int(raw["requests"]),
        duration_s=secs,
        rps=answered_ok / secs if secs > 0 else 0.0,
        errors=errors,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        raw=raw,
    )

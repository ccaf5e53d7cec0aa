"""Entry point: ``python -m bench.run [--quick | --full] [--only ...]``.

Order of a run: for each workload, for each round, each server in turn
(the order flips every round so neither side always runs on a warmer
machine), each on a fresh process and data directory, the server pinned to
one core and every load generator (this process, wrk) to the other. Only
ratios from the same run are compared. Results: a table on stdout, JSON and
a PNG under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from . import chart, procstat, report
from .profiles import PROFILES
from .servers import KINDS, REPO, VENV_BIN, Server, missing_prerequisites
from .workloads import BY_NAME, FLOOR_WORKLOADS, WORKLOADS, Ctx, Workload

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_const", dest="profile", const="quick", help="smoke run (a few minutes)")
    g.add_argument("--full", action="store_const", dest="profile", const="full", help="longer runs, 3 rounds")
    ap.add_argument("--only", default="", help="comma-separated workloads (default: all): " + ",".join(BY_NAME))
    ap.add_argument(
        "--servers",
        default="ours,ref-mem,ref-file",
        help=(
            "comma-separated: ours,ref-mem,ref-file, and the ceilings (request rates only): floor (no-op)"
            " and floor-sync (no-op but for a group-committed log)"
        ),
    )
    ap.add_argument("--rounds", type=int, default=None, help="override the profile's number of rounds")
    ap.add_argument("--server-cpu", default="0", help="core for the server under test")
    ap.add_argument("--load-cpu", default="1", help="core for the load generators")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where JSON and PNG go")
    ap.add_argument("--workdir", type=Path, default=None, help="parent of the servers' data directories")
    ap.add_argument("--keep-logs", action="store_true", help="keep server logs (kept anyway for failed runs)")
    ap.add_argument("--py-spy", action="store_true", help="profile our server with py-spy during each workload")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--report", type=Path, default=None, help="only re-print and re-draw an earlier results JSON")
    ap.set_defaults(profile="default")
    return ap.parse_args(argv)


def raise_nofile() -> int:
    """10,000 fan-out readers need more descriptors than the usual 1024;
    servers started from here inherit the raised limit too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin(server_cpu: str, load_cpu: str) -> tuple[str | None, str | None]:
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2 or int(server_cpu) not in cpus or int(load_cpu) not in cpus:
        print(
            f"warning: cores {server_cpu}/{load_cpu} not both available ({sorted(cpus)}); not pinning", file=sys.stderr
        )
        return None, None
    os.sched_setaffinity(0, {int(load_cpu)})
    return server_cpu, load_cpu


def start_py_spy(server: Server, out: Path, tag: str, load_cpu: str | None) -> subprocess.Popen[bytes] | None:
    exe = VENV_BIN / "py-spy"
    if not exe.exists():
        print("warning: --py-spy given but .venv/bin/py-spy missing (pip install py-spy)", file=sys.stderr)
        return None
    cmd = [
        str(exe),
        "record",
        "--pid",
        str(server.pid),
        "--nonblocking",
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out / f"pyspy-{tag}.txt"),
        "--duration",
        "600",
    ]
    if load_cpu is not None:
        cmd = ["taskset", "-c", load_cpu, *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(p: subprocess.Popen[bytes] | None) -> None:
    if p is None:
        return
    p.send_signal(signal.SIGINT)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_one(
    w: Workload,
    kind_name: str,
    rnd: int,
    ctx: Ctx,
    workdir: Path,
    args: argparse.Namespace,
    server_cpu: str | None,
    stamp: str,
) -> dict[str, object]:
    server = Server(KINDS[kind_name], workdir, server_cpu, w.name)
    entry: dict[str, object] = {"workload": w.name, "server": kind_name, "round": rnd + 1}
    entry["loadavg_before"] = round(os.getloadavg()[0], 2)
    entry["speed_probe_ms"] = procstat.speed_probe_ms()
    # Others commit while a long run goes on, and each server start loads the
    # current source: record which code each measurement ran.
    entry["commit"] = git_commit()
    t0 = time.monotonic()
    spy = None
    failed = False
    try:
        server.start()
        if args.py_spy and server.kind.ours:
            spy = start_py_spy(server, args.out, f"{stamp}-{w.name}-r{rnd + 1}", ctx.load_cpu)
        entry["metrics"] = w.run(ctx, server)
    except Exception as exc:  # one failed measurement must not lose the rest
        failed = True
        entry["error"] = repr(exc)
        entry["log_tail"] = server.tail_log()
        entry["log"] = str(server.log_path)
    finally:
        stop_py_spy(spy)
        server.stop()
        server.cleanup(keep_logs=args.keep_logs or failed)
    entry["seconds"] = round(time.monotonic() - t0, 1)
    return entry


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every started server is stopped."""
    raise SystemExit(128 + signum)


def print_summary(
    summary: report.Summary, servers: list[str], targets: list[report.Target], runs: list[report.Run]
) -> None:
    print(report.format_tables(summary, servers))
    ceiling = report.format_ceiling(summary)
    if ceiling:
        print(
            "\nceiling (floor: uvloop + httptools parsing and answering, storing nothing; floor-sync: the same,"
            " answering POSTs once a group-committed log write holds them; us: server CPU):"
        )
        print(ceiling)
    print("\ntargets (ours, durable default):")
    print(report.format_targets(targets))
    _print_section(
        "interference (server core busy beyond the server: other jobs, or kernel I/O work it triggers"
        " (ref-file); prefer per-CPU ratios)",
        report.interference(summary),
    )
    _print_section(
        "slow machine (the speed probe before these measurements took much longer than the run's best:"
        " their absolute figures, and ratios to servers measured in a normal phase, are suspect)",
        report.slow_machine(runs),
    )


def _print_section(title: str, lines: list[str]) -> None:
    if lines:
        print(f"\n{title}:")
        print("\n".join(lines))


def rerender(path: Path, no_chart: bool) -> int:
    data = json.loads(path.read_text())
    runs = data["runs"]
    summary = report.summarise(runs)
    servers = list(data.get("meta", {}).get("servers") or report.REFS)
    print_summary(summary, servers, report.evaluate_targets(summary), runs)
    if not no_chart and chart.draw(summary, path.with_suffix(".png"), f"durable-streamsd vs reference - {path.name}"):
        print(f"\nchart: {path.with_suffix('.png')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        return rerender(args.report, args.no_chart)
    signal.signal(signal.SIGTERM, _terminate)
    profile = PROFILES[args.profile]
    rounds = args.rounds or profile.rounds
    missing = missing_prerequisites()
    if missing:
        print("missing: " + "; ".join(missing) + "\n(run `make bench`, which installs them)", file=sys.stderr)
        return 2
    workloads = [BY_NAME[n] for n in args.only.split(",") if n] if args.only else list(WORKLOADS)
    servers = [s for s in args.servers.split(",") if s]
    for s in servers:
        if s not in KINDS:
            print(f"unknown server {s!r}; choose from {', '.join(KINDS)}", file=sys.stderr)
            return 2
    server_cpu, load_cpu = pin(args.server_cpu, args.load_cpu)
    fd_limit = raise_nofile()
    ctx = Ctx(profile, load_cpu)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ds-bench-", dir=args.workdir))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.out / f"bench-{stamp}.json"
    meta: dict[str, object] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "profile": asdict(profile) | {"rounds": rounds},
        "servers": servers,
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "fd_limit": fd_limit,
        "commit": git_commit(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cores": os.cpu_count(),
        "node": shutil.which("node"),
    }
    print(
        f"bench: profile {profile.name}, {rounds} round(s), servers {servers}, server core {server_cpu}, "
        f"load core {load_cpu}",
        flush=True,
    )
    runs: list[dict[str, object]] = []
    plan = {w.name: [k for k in servers if not KINDS[k].floor or w.name in FLOOR_WORKLOADS] for w in workloads}
    total = rounds * sum(len(kinds) for kinds in plan.values())
    t_start = time.monotonic()
    try:
        for w in workloads:
            for rnd in range(rounds):
                kinds = plan[w.name]
                order = kinds if rnd % 2 == 0 else kinds[::-1]
                for kind_name in order:
                    entry = run_one(w, kind_name, rnd, ctx, workdir, args, server_cpu, stamp)
                    runs.append(entry)
                    m = entry.get("metrics")
                    shown = f"{m.get(w.figure)} {w.unit}" if isinstance(m, dict) else f"FAILED {entry.get('error')}"
                    print(
                        f"[{len(runs)}/{total}] {w.name:22} {kind_name:8} round {rnd + 1}: {shown} "
                        f"({entry['seconds']}s)",
                        flush=True,
                    )
                    report.write_json(json_path, {"meta": meta, "runs": runs, "partial": True})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    summary = report.summarise(runs)
    targets = report.evaluate_targets(summary)
    ratios = {
        w.name: {ref: report.ratio(summary, w.name, ref) for ref in report.REFS} for w in workloads if w.name in summary
    }
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    payload = {
        "meta": meta,
        "summary": summary,
        "ratios": ratios,
        "targets": [asdict(t) for t in targets],
        "runs": runs,
    }
    report.write_json(json_path, payload)
    shutil.copyfile(json_path, args.out / "latest.json")
    print()
    print_summary(summary, servers, targets, runs)
    if not args.no_chart:
        png = json_path.with_suffix(".png")
        if chart.draw(
            summary, png, f"durable-streamsd vs reference - {profile.name}, {rounds} round(s), {meta['started']}"
        ):
            shutil.copyfile(png, args.out / "latest.png")
            print(f"\nchart: {png}")
        else:
            print("\nchart skipped: matplotlib not installed (make bench installs it)")
    print(f"json:  {json_path}")
    failures = [r for r in runs if "error" in r]
    for r in failures:
        print(f"FAILED {r['workload']} on {r['server']}: {r['error']} (log: {r.get('log')})", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

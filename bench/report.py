"""Turn raw runs into the summary: medians over rounds, ratios to the
reference from the same run, the issue's targets, a table and a JSON file.

Ratios are oriented so that above 1 always means "ours is better": for
rates ours/ref, for latencies and memory ref/ours.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from .servers import FLOORS
from .workloads import BY_NAME

Run = dict[str, object]
Summary = dict[str, dict[str, dict[str, object]]]
REFS = ("ref-mem", "ref-file")
# Counts of failures: summarised by the worst round, not the median, so one
# bad round out of three still shows.
WORST_OF_ROUNDS = frozenset(("errors", "missed", "readers_incomplete", "post_failures"))


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def summarise(runs: list[Run]) -> Summary:
    """Median of every numeric metric per workload and server (the worst
    round for failure counts); curves are averaged point by point; anything
    else is taken from the first round."""
    grouped: dict[str, dict[str, list[dict[str, object]]]] = {}
    for r in runs:
        if "metrics" not in r:
            continue
        grouped.setdefault(str(r["workload"]), {}).setdefault(str(r["server"]), []).append(r["metrics"])  # type: ignore[arg-type]
    out: Summary = {}
    for wl, by_server in grouped.items():
        out[wl] = {}
        for server, ms in by_server.items():
            merged: dict[str, object] = {"rounds": len(ms)}
            for key in ms[0]:
                vals = [_num(m.get(key)) for m in ms]
                nums = [v for v in vals if v is not None]
                if nums and len(nums) == len(vals):
                    merged[key] = max(nums) if key in WORST_OF_ROUNDS else round(statistics.median(nums), 3)
                elif key == "latency_curve_ms":
                    curves = [m[key] for m in ms]
                    merged[key] = [
                        [pts[0][0], round(statistics.mean(p[1] for p in pts), 3)] for pts in zip(*curves, strict=False)
                    ]
                else:
                    merged[key] = ms[0][key]
            out[wl][server] = merged
    return out


def ratio(summary: Summary, workload: str, ref: str, key: str | None = None) -> float | None:
    w = BY_NAME[workload]
    key = key or w.figure
    ours = _num(summary.get(workload, {}).get("ours", {}).get(key))
    other = _num(summary.get(workload, {}).get(ref, {}).get(key))
    if ours is None or other is None or ours <= 0 or other <= 0:
        return None
    return ours / other if w.higher_is_better else other / ours


@dataclass
class Target:
    name: str
    status: str  # PASS, FAIL, N/A
    detail: str


def _get(summary: Summary, wl: str, server: str, key: str) -> float | None:
    return _num(summary.get(wl, {}).get(server, {}).get(key))


def _fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def evaluate_targets(
    summary: Summary, many_streams_target: int = 100_000, max_open_segments: int = 4096
) -> list[Target]:
    t: list[Target] = []

    def check(name: str, ok: bool | None, detail: str) -> None:
        t.append(Target(name, "N/A" if ok is None else ("PASS" if ok else "FAIL"), detail))

    for wl in ("append_small", "append_many", "append_json"):
        rm, rf = ratio(summary, wl, "ref-mem"), ratio(summary, wl, "ref-file")
        check(f"{wl} >= 1.5x ref in memory", None if rm is None else rm >= 1.5, f"{_fmt_ratio(rm)}")
        check(f"{wl} >= 30x ref file-backed", None if rf is None else rf >= 30, f"{_fmt_ratio(rf)}")
        errs = _get(summary, wl, "ours", "errors")
        if errs:
            check(f"{wl} without errors", False, f"{errs:.0f} wrk errors")
    rm = ratio(summary, "read_small", "ref-mem")
    check("read_small >= 1.5x ref in memory", None if rm is None else rm >= 1.5, _fmt_ratio(rm))
    rm, rf = ratio(summary, "read_catchup", "ref-mem"), ratio(summary, "read_catchup", "ref-file")
    check(
        "read_catchup >= 2x ref (in memory)",
        None if rm is None else rm >= 2,
        f"{_fmt_ratio(rm)} (file-backed: {_fmt_ratio(rf)})",
    )
    rc = summary.get("read_catchup", {}).get("ours", {})
    gs, gb = _num(rc.get("anon_growth_mib_small")), _num(rc.get("anon_growth_mib"))
    sizes = rc.get("sizes_mib") or [8, 64]
    if gs is not None and gb is not None and isinstance(sizes, list):
        allowance = max(4.0, 0.1 * (float(sizes[1]) - float(sizes[0])))
        check(
            "read_catchup memory flat in stream size",
            gb - gs <= allowance,
            f"private memory growth while reading {sizes[0]} MiB: {gs:.1f} MiB, {sizes[1]} MiB: {gb:.1f} MiB "
            f"(allowance {allowance:.1f}); RSS incl. mapped file pages: "
            f"{rc.get('rss_growth_mib_small')} / {rc.get('rss_growth_mib')} MiB",
        )
    else:
        check("read_catchup memory flat in stream size", None, "not measured")
    f10 = summary.get("fanout_sse_10000", {}).get("ours", {})
    df, rc10 = _num(f10.get("delivered_fraction")), _num(f10.get("readers_complete_fraction"))
    missed, incomplete = _num(f10.get("missed")), _num(f10.get("readers_incomplete"))
    if missed is not None and incomplete is not None:
        # Judged on exact counts in the worst round.
        every: bool | None = missed == 0 and incomplete == 0
    else:  # results from before the counts were recorded
        every = None if df is None else (df >= 1.0 and rc10 == 1.0)
    detail = "not measured" if df is None else f"delivered {df:.4%}, complete readers {rc10:.2%}"
    if missed is not None:
        detail += f"; worst round: {missed:.0f} messages missed, {incomplete:.0f} readers incomplete"
    check("fanout: every reader gets every message at 10,000 SSE", every, detail)
    for mode in ("sse", "longpoll"):
        wl = f"fanout_{mode}_1000"
        ours = _get(summary, wl, "ours", "latency_p99_ms")
        for ref in REFS:
            other = _get(summary, wl, ref, "latency_p99_ms")
            ok = None if ours is None or other is None else ours < other
            check(f"{wl} p99 below {ref}", ok, f"ours {ours} ms vs {other} ms")
    for wl in ("fanout_sse_1000", "fanout_sse_10000"):
        per = _get(summary, wl, "ours", "idle_rss_per_reader_kib")
        check(f"{wl}: idle SSE reader < 20 KiB", None if per is None else per < 20, f"{per} KiB per reader")
    ms = summary.get("many_streams_memory", {}).get("ours", {})
    # A create that timed out may still have been made: the read phase counts what exists.
    made = [v for v in (_num(ms.get("created")), _num(ms.get("read"))) if v is not None]
    created = max(made) if made else None
    rss, fds = _num(ms.get("rss_mib")), _num(ms.get("open_fds"))
    full = created is not None and created >= many_streams_target
    check(
        f"many_streams: {many_streams_target:,} streams under 1 GiB RSS",
        None if rss is None or not full else rss < 1024,
        f"{_cell(created)} streams created, RSS {_cell(rss)} MiB" + ("" if full else " (not the full count)"),
    )
    errs, slowest = _num(ms.get("errors")), _num(ms.get("create_max_ms"))
    check(
        "many_streams: every create answered, none stalled (>= 10 s)",
        None if errs is None else (errs == 0 and (slowest or 0) < 10_000),
        f"{_cell(errs, 0)} errors {ms.get('error_statuses') or ''}, slowest create {_cell(slowest)} ms",
    )
    bound = max_open_segments + 256
    check(
        "many_streams: open descriptors bounded",
        None if fds is None else fds <= bound,
        f"{_cell(fds, 0)} open fds (bound: --max-open-segments {max_open_segments} + 256 for sockets/logs)",
    )
    return t


# ---------------------------------------------------------------- printing


def _cell(v: object, digits: int = 1) -> str:
    n = _num(v)
    if n is None:
        return "-" if v is None else str(v)
    if abs(n) >= 1000:
        return f"{n:,.0f}"
    return f"{n:.{digits}f}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(
            c.rjust(w) if 0 < i < len(r) - 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join([line, sep, *body])


def format_tables(summary: Summary, servers: list[str]) -> str:
    main_rows = []
    for w in BY_NAME.values():
        if w.name not in summary:
            continue
        row = [w.name, w.unit]
        row += [_cell(summary[w.name].get(s, {}).get(w.figure)) for s in servers]
        refs = [ref for ref in REFS if ref in servers and "ours" in servers]
        row += [_fmt_ratio(ratio(summary, w.name, ref)) for ref in refs]
        row += [_fmt_ratio(ratio(summary, w.name, ref, w.efficiency)) if w.efficiency else "" for ref in refs]
        main_rows.append(row)
    refs = [ref for ref in REFS if ref in servers and "ours" in servers]
    header = ["workload", "figure", *servers] + [f"vs {r}" for r in refs] + [f"per-CPU vs {r}" for r in refs]
    out = [
        _table(main_rows, header),
        "(vs: above 1x means ours is better; rates ours/ref, latency and memory ref/ours."
        " per-CPU: output per server CPU-second, ours/ref: steadier when other jobs share the machine)",
        "",
    ]

    detail_rows = []
    for w in BY_NAME.values():
        for s in servers:
            m = summary.get(w.name, {}).get(s)
            if m is None:
                continue
            if w.name.startswith("fanout"):
                lat = "/".join(_cell(m.get(k)) for k in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms"))
                extra = (
                    f"delivered {_cell(100 * (_num(m.get('delivered_fraction')) or 0.0), 2)}%, "
                    f"idle {_cell(m.get('idle_rss_per_reader_kib'))} KiB/reader, "
                    f"post p50 {_cell(m.get('post_p50_ms'))} ms, client cpu {_cell(m.get('client_cpu_pct_publish'))}%"
                )
                cpu = m.get("server_cpu_pct_publish")
            elif w.name == "many_streams_memory":
                lat = "-"
                extra = (
                    f"{_cell(m.get('created'))} created @ {_cell(m.get('create_per_s'))}/s, read @ "
                    f"{_cell(m.get('read_per_s'))}/s, fds {_cell(m.get('open_fds'))}, "
                    f"{_cell(m.get('rss_per_stream_kib'), 2)} KiB/stream"
                )
                cpu = m.get("server_cpu_pct")
            elif w.name == "read_catchup":
                lat = "-"
                extra = (
                    f"small {_cell(m.get('mib_s_small'))} MiB/s; growth anon {_cell(m.get('anon_growth_mib_small'))}"
                    f"->{_cell(m.get('anon_growth_mib'))} MiB, rss {_cell(m.get('rss_growth_mib_small'))}"
                    f"->{_cell(m.get('rss_growth_mib'))} MiB"
                )
                cpu = m.get("server_cpu_pct")
            else:
                lat = f"{_cell(m.get('p50_ms'), 2)}/{_cell(m.get('p99_ms'), 2)}/{_cell(m.get('max_ms'), 1)}"
                extra = f"{_cell(m.get('server_cpu_us_per_request'))} us CPU/req, errors {_cell(m.get('errors'), 0)}"
                cpu = m.get("server_cpu_pct")
            cores = f"{_cell(m.get('server_core_busy_pct'), 0)}/{_cell(m.get('load_core_busy_pct'), 0)}"
            detail_rows.append(
                [w.name, s, _cell(m.get(w.figure)), lat, _cell(cpu), cores, _cell(m.get("peak_rss_mib")), extra]
            )
    out.append(
        _table(
            detail_rows, ["workload", "server", "figure", "p50/p99/max ms", "cpu%", "cores busy%", "peak MiB", "notes"]
        )
    )
    return "\n".join(out)


def format_ceiling(summary: Summary) -> str:
    """Ours beside the floor servers: the share of each floor's rate we
    reach, and how a request's CPU splits into the floor's part (loop,
    kernel TCP, parsing; with floor-sync also the group-committed log
    write) and what we add to it."""
    rows = []
    for name, by_server in summary.items():
        ours = by_server.get("ours")
        if ours is None:
            continue
        rate_o, cpu_o = _num(ours.get("rps")), _num(ours.get("server_cpu_us_per_request"))
        for floor in (k.name for k in FLOORS):
            if floor not in by_server:
                continue
            rate_f = _num(by_server[floor].get("rps"))
            cpu_f = _num(by_server[floor].get("server_cpu_us_per_request"))
            share = f"{100 * rate_o / rate_f:.0f}%" if rate_o and rate_f else "n/a"
            added = _cell(cpu_o - cpu_f) if cpu_o is not None and cpu_f is not None else "-"
            rows.append([name, floor, _cell(rate_o), _cell(rate_f), share, _cell(cpu_o), _cell(cpu_f), added])
    if not rows:
        return ""
    header = ["workload", "floor", "ours req/s", "floor req/s", "share", "ours us/req", "floor us/req", "ours adds us"]
    return _table(rows, header)


def interference(summary: Summary, threshold: float = 20.0) -> list[str]:
    """Runs where the server's core was busy with work not the server's:
    their absolute figures (not their per-CPU ones) are suspect."""
    out = []
    for wl, by_server in summary.items():
        for server, m in by_server.items():
            busy, own = _num(m.get("server_core_busy_pct")), _num(m.get("server_cpu_pct"))
            if busy is not None and own is not None and busy - own > threshold:
                out.append(f"  {wl} / {server}: server core {busy:.0f}% busy, the server itself {own:.0f}%")
    return out


def slow_machine(runs: list[Run], factor: float = 2.0) -> list[str]:
    """Measurements whose speed probe (taken just before) was factor times
    the run's fastest or slower."""
    probes = [(r, _num(r.get("speed_probe_ms"))) for r in runs]
    best = min((p for _, p in probes if p), default=None)
    if best is None:
        return []
    return [
        f"  {r['workload']} / {r['server']} round {r.get('round')}: probe {p:.1f} ms, {p / best:.1f}x the best"
        for r, p in probes
        if p is not None and p >= factor * best
    ]


def format_targets(targets: list[Target]) -> str:
    return "\n".join(f"  [{t.status:4}] {t.name}: {t.detail}" for t in targets)


def write_json(path: Path, payload: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    tmp.replace(path)

"""The benchmark's own arithmetic and its ceiling server.

The issue's targets are judged by bench/report.py from what bench/wrk.py
reads out of wrk: a wrong orientation, median or threshold there would pass
or fail a target silently, so they are checked here on known figures. The
floor-sync ceiling is started for real and must answer a POST only with
the body in its log.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from bench import report
from bench.servers import FLOOR_SYNC, Server
from bench.wrk import LUA_DIR, SUMMARY_PREFIX, parse_summary
from tests.support.client import Client


def _wrk_line(**fields: float) -> str:
    keys = re.findall(r'"(\w+)":%', (LUA_DIR / "common.lua").read_text())
    assert keys, "common.lua prints no JSON keys"
    values = dict.fromkeys(keys, 0) | fields
    return SUMMARY_PREFIX + json.dumps({k: values[k] for k in keys})


def test_wrk_summary_reads_what_the_lua_script_prints() -> None:
    out = "Running 10s test\n" + _wrk_line(
        requests=1_000, duration_us=2_000_000, err_status=100, err_timeout=3, p50_us=1500, p99_us=9000, max_us=12000
    )
    r = parse_summary(out + "\nsome trailer\n")
    assert r is not None
    assert r.requests == 1_000
    # Answers with an error status are no throughput.
    assert r.rps == pytest.approx(450.0)
    assert r.errors == 103
    assert (r.p50_ms, r.p99_ms, r.max_ms) == (1.5, 9.0, 12.0)


def test_wrk_output_without_the_summary_gives_nothing() -> None:
    assert parse_summary("unable to connect to 127.0.0.1:1 Connection refused\n") is None


def _run(workload: str, server: str, **metrics: object) -> report.Run:
    return {"workload": workload, "server": server, "metrics": metrics}


def test_summary_takes_medians_and_averages_curves() -> None:
    runs = [
        _run("append_small", "ours", rps=100.0, latency_curve_ms=[[0, 1.0]], note="first"),
        _run("append_small", "ours", rps=300.0, latency_curve_ms=[[0, 3.0]], note="second"),
        _run("append_small", "ours", rps=200.0, latency_curve_ms=[[0, 5.0]], note="third"),
        {"workload": "append_small", "server": "ours", "error": "round lost"},
    ]
    merged = report.summarise(runs)["append_small"]["ours"]
    assert merged["rounds"] == 3
    assert merged["rps"] == 200.0
    assert merged["latency_curve_ms"] == [[0, 3.0]]
    assert merged["note"] == "first"


def test_ratios_always_read_above_one_as_ours_better() -> None:
    s = report.summarise(
        [
            _run("append_small", "ours", rps=3000.0),
            _run("append_small", "ref-mem", rps=1000.0),
            _run("fanout_sse_1000", "ours", latency_p99_ms=10.0),
            _run("fanout_sse_1000", "ref-mem", latency_p99_ms=40.0),
            _run("read_small", "ours", rps=0.0),
            _run("read_small", "ref-mem", rps=10.0),
        ]
    )
    assert report.ratio(s, "append_small", "ref-mem") == pytest.approx(3.0)
    assert report.ratio(s, "fanout_sse_1000", "ref-mem") == pytest.approx(4.0)
    assert report.ratio(s, "read_small", "ref-mem") is None  # no figure, no ratio
    assert report.ratio(s, "append_small", "ref-file") is None


def _verdicts(runs: list[report.Run]) -> dict[str, str]:
    return {t.name: t.status for t in report.evaluate_targets(report.summarise(runs))}


def test_append_targets_hold_exactly_at_their_thresholds() -> None:
    v = _verdicts(
        [
            _run("append_small", "ours", rps=1500.0, errors=0),
            _run("append_small", "ref-mem", rps=1000.0),
            _run("append_small", "ref-file", rps=50.0),
            _run("append_many", "ours", rps=1490.0, errors=0),
            _run("append_many", "ref-mem", rps=1000.0),
            _run("append_many", "ref-file", rps=50.0),
        ]
    )
    assert v["append_small >= 1.5x ref in memory"] == "PASS"
    assert v["append_small >= 30x ref file-backed"] == "PASS"
    assert v["append_many >= 1.5x ref in memory"] == "FAIL"
    assert v["append_many >= 30x ref file-backed"] == "FAIL"
    assert v["append_json >= 1.5x ref in memory"] == "N/A"


def test_errors_of_ours_fail_an_append_workload() -> None:
    v = _verdicts([_run("append_json", "ours", rps=5000.0, errors=7), _run("append_json", "ref-mem", rps=1000.0)])
    assert v["append_json >= 1.5x ref in memory"] == "PASS"
    assert v["append_json without errors"] == "FAIL"


def _fanout_round(missed: int, incomplete: int) -> report.Run:
    # 10,000 readers of 200 messages: one message missed rounds to 100%.
    fraction = round(1 - missed / 2_000_000, 6)
    return _run(
        "fanout_sse_10000",
        "ours",
        delivered_fraction=fraction,
        readers_complete_fraction=round(1 - incomplete / 10_000, 6),
        missed=missed,
        readers_incomplete=incomplete,
    )


def test_fanout_needs_every_message_at_every_reader_in_every_round() -> None:
    name = "fanout: every reader gets every message at 10,000 SSE"
    assert _verdicts([_fanout_round(0, 0)] * 3)[name] == "PASS"
    one_lost = _fanout_round(1, 1)
    assert one_lost["metrics"]["delivered_fraction"] == 1.0  # type: ignore[index]
    assert _verdicts([_fanout_round(0, 0), one_lost, _fanout_round(0, 0)])[name] == "FAIL"


def test_one_round_with_errors_is_not_hidden_by_the_median() -> None:
    v = _verdicts([_run("append_small", "ours", rps=5000.0, errors=e) for e in (0, 0, 4)])
    assert v["append_small without errors"] == "FAIL"


def test_many_streams_judged_only_on_the_full_count() -> None:
    name = "many_streams: 100,000 streams under 1 GiB RSS"
    short = _verdicts([_run("many_streams_memory", "ours", created=99_999, read=99_999, rss_mib=10.0)])
    assert short[name] == "N/A"
    # A create that timed out but was made counts through the read phase.
    full = _run("many_streams_memory", "ours", created=99_990, read=100_000, rss_mib=900.0, open_fds=4352)
    v = _verdicts([full])
    assert v[name] == "PASS"
    assert v["many_streams: open descriptors bounded"] == "PASS"
    over = _verdicts([_run("many_streams_memory", "ours", created=100_000, rss_mib=1024.0, open_fds=4353)])
    assert over[name] == "FAIL"
    assert over["many_streams: open descriptors bounded"] == "FAIL"


def test_floor_sync_answers_a_post_once_its_body_is_in_the_log(tmp_path: Path) -> None:
    server = Server(FLOOR_SYNC, tmp_path, None, "test")
    c = Client(server.port)
    try:
        with server:
            body = b"floor-sync record " * 5
            reply = c.request("POST", "/bench/a", body, {"Content-Type": "application/octet-stream"})
            assert reply.status == 204
            assert reply.header("stream-next-offset")
            log = (server.data_dir / "log").read_bytes()
            assert struct.pack(">I", len(body)) + body in log
            read = c.request("GET", "/bench/a")
            assert read.status == 200 and len(read.body) == 1024
    finally:
        c.close()
        # Its 64 MiB log goes now, not with pytest's kept temporary dirs.
        server.cleanup(keep_logs=False)


def test_slow_machine_names_measurements_whose_probe_lagged() -> None:
    runs = [
        {"workload": "append_small", "server": "ours", "round": 1, "speed_probe_ms": 10.0},
        {"workload": "append_small", "server": "ref-mem", "round": 1, "speed_probe_ms": 19.9},
        {"workload": "append_small", "server": "ours", "round": 2, "speed_probe_ms": 40.0},
        {"workload": "append_small", "server": "ref-mem", "round": 2},
    ]
    slow = report.slow_machine(runs)
    assert len(slow) == 1 and "ours round 2" in slow[0] and "4.0x" in slow[0]
    assert report.slow_machine(runs[3:]) == []

"""Soak: crash the daemon with kill -9 again and again under load, for a while.

``python tests/soak/run_soak.py --seconds N`` (``make soak``) runs cycles on
one data directory until N seconds have passed. Each cycle:

1. (every few cycles) a fuzz burst: ``pytest tests/test_fuzz.py`` pointed at
   the running daemon with a large ``DS_FUZZ_EXAMPLES``, so hostile traffic
   lands on a daemon holding real data, and that data is verified after it;
2. load for a random 1-5 s: eight concurrent writers on text and JSON
   streams (three of them idempotent producers), a tailing reader, streams
   closed by a producer, close-only and racing a writer, a stream deleted
   and a path re-created (``tests/test_crash.py`` supplies all of that), plus
   streams with a short Stream-TTL or Stream-Expires-At being written while
   they expire;
3. ``kill -9`` at that random moment, restart, and verification: every
   acknowledged append present exactly once, in order, at its acknowledged
   offset, no torn or invented data, closures, deletions and producer state
   intact, and every expiring stream gone exactly when it should be (never
   before its deadline, never back after a client saw it expire).

Every few cycles the streams are verified one last time, deleted and
started afresh on the same data directory (a new generation), so the
verification work stays bounded however long the soak runs, and a deletion
that did not survive a crash would show as duplicated payloads.

At the end a summary is printed; the exit status is non-zero if anything
acknowledged was lost, duplicated or torn, or any other check failed
(including a failed fuzz burst).

Quick check that it works: ``python tests/soak/run_soak.py --seconds 20``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.client import Client  # noqa: E402
from tests.test_crash import (  # noqa: E402
    TEXT,
    WRITE_TIMEOUT,
    CrashRig,
    Tailer,
    Tally,
    Writer,
    WriterSpec,
    WriterState,
    cycle_side_work,
    standard_writers,
    verify_writers,
)
from tests.test_fuzz import FUZZ_SERVER_ARGS, expires_instant  # noqa: E402

# The fuzz module's server settings (short live-read and request timeouts,
# which a burst relies on), without its small read limit: verification reads
# every stream back each cycle and 64 KB chunks would make that slow.
_FUZZ_OPTIONS = dict(zip(FUZZ_SERVER_ARGS[::2], FUZZ_SERVER_ARGS[1::2], strict=True))
SOAK_SERVER_ARGS = tuple(x for name, value in _FUZZ_OPTIONS.items()
                         if name not in ("--max-read-bytes", "--checkpoint-interval") for x in (name, value))
# Checkpoint intervals drawn per cycle: crashes then land before, during and
# after checkpoints (which rotate and drop log files) as well as far from any.
CHECKPOINT_INTERVALS = ("0.3", "1", "30")
CYCLES_PER_GENERATION = 6
# A burst runs every fuzz test with DS_FUZZ_EXAMPLES=n: about 4.5 n cases,
# ~0.6 s per unit of n on two busy cores. Bursts take at most this share of
# the time left, so most of the soak is spent crashing.
FUZZ_SECONDS_PER_EXAMPLE = 0.6
FUZZ_SHARE = 0.15


# ------------------------------------------------------------ expiring streams


@dataclass
class Expiring:
    """A stream with a TTL or Expires-At, written while it expires."""

    state: WriterState
    kind: str  # "ttl" (sliding) or "expires-at" (absolute)
    ttl: float = 0.0
    expires_at: float = 0.0  # unix seconds, for "expires-at"
    expires_header: str = ""
    write_for: float = 0.0  # the writer stops after this long (sliding: then the stream idles out)
    last_ack_sent: float = 0.0  # send time of the last acknowledged append (a lower bound of the last access)
    observed_gone: float | None = None  # when a writer was told 404 (the client saw it expire)


class ExpiringWriter(Writer):
    """A writer for an expiring stream: a 404 is a definite refusal (the
    stream expired), not an anomaly; it paces itself, and records when it
    sent the appends that were acknowledged (those reset a sliding TTL)."""

    def __init__(self, exp: Expiring, port: int, stop: threading.Event) -> None:
        super().__init__(exp.state, port, stop)
        self.exp = exp
        self.t_end = time.monotonic() + exp.write_for

    def _append_one(self, conn: http.client.HTTPConnection) -> bool:
        if time.monotonic() >= self.t_end:
            self.state.ended = "done writing"
            return False
        st, spec = self.state, self.state.spec
        seq = st.next_seq
        st.unknown = seq
        sent = time.time()
        try:
            conn.request("POST", spec.path, body=spec.body(seq), headers=spec.headers(seq))
            resp = conn.getresponse()
            body = resp.read()
        except TimeoutError:
            st.ended = "timeout"
            st.anomalies.append(f"seq {seq}: no answer within {WRITE_TIMEOUT}s")
            return False
        except (OSError, http.client.HTTPException) as exc:
            st.ended = f"no answer ({type(exc).__name__})"
            return False
        if resp.status == 204:
            st.acked[seq] = resp.getheader("Stream-Next-Offset") or ""
            st.next_seq += 1
            st.unknown = None
            st.acked_this_cycle += 1
            self.exp.last_ack_sent = sent
            time.sleep(0.02)
            return True
        if resp.status == 404:
            st.unknown = None
            st.ended = "expired"
            self.exp.observed_gone = time.time()
            return False
        if resp.status == 503:
            st.ended = "503"
            return False
        st.anomalies.append(f"seq {seq}: unexpected {resp.status} {body[:200]!r}")
        st.ended = f"unexpected {resp.status}"
        return False


def make_expiring(c: Client, rng: random.Random, cycle: int) -> list[Expiring]:
    """This cycle's expiring streams: sliding TTLs that idle out after their
    writer stops, and absolute expiries that pass while the writer writes."""
    out = []
    for i in range(4):
        path = f"/soak/expiring-{cycle}-{i}"
        spec = WriterSpec(f"x{cycle}n{i}", path, TEXT)
        if i % 2 == 0:
            ttl = rng.choice([2, 3])
            exp = Expiring(WriterState(spec), "ttl", ttl=ttl, write_for=rng.uniform(0.2, 2.5))
            headers = {"Content-Type": TEXT, "Stream-TTL": str(ttl)}
        else:
            at = round(time.time() + rng.uniform(0.5, 4.0), 3)
            header = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(round(at * 1000)) % 1000:03d}Z"
            exp = Expiring(WriterState(spec), "expires-at", expires_at=expires_instant(header) or at,
                           expires_header=header, write_for=10.0)
            headers = {"Content-Type": TEXT, "Stream-Expires-At": header}
        exp.last_ack_sent = time.time()  # before the PUT: a lower bound of the server's first access
        r = c.request("PUT", path, b"", headers)
        assert r.status == 201, f"PUT {path}: {r.status} {r.body[:200]!r}"
        out.append(exp)
    return out


def verify_expiring(c: Client, exps: list[Expiring], kill_time: float, restart_t0: float, tally: Tally,
                    rng: random.Random, figures: dict[str, int]) -> None:
    """Right after the restart (before anything else touches the streams):
    each expiring stream is present with all its acknowledged appends or
    gone, and which one it is must agree with its deadline.

    A sliding TTL restarts at recovery (the daemon cannot know the last
    access before the crash), so a stream that had not expired at the kill
    must live at least until restart + TTL."""
    for e in exps:
        path = e.state.spec.path
        now = time.time()
        head = c.request("HEAD", path)
        gone = head.status == 404
        if e.kind == "expires-at":
            if gone and now < e.expires_at - 0.05:
                tally.lost += len(e.state.acked)
                tally.fail(f"{path}: gone {e.expires_at - now:.2f}s before its Expires-At {e.expires_header}")
            if not gone and now > e.expires_at + 0.05:
                tally.fail(f"{path}: still there {now - e.expires_at:.2f}s after its Expires-At {e.expires_header}")
            safe = not gone and now < e.expires_at - 1.0
        else:
            # The daemon dies a moment after kill_time: allow it some slack.
            could_have_expired = e.last_ack_sent + e.ttl <= kill_time + 0.5
            if gone and not could_have_expired and now < restart_t0 + e.ttl - 0.05:
                tally.lost += len(e.state.acked)
                tally.fail(f"{path}: TTL {e.ttl}s stream gone {now - restart_t0:.2f}s after the restart, "
                           f"though it had not expired at the crash")
            if not gone and e.observed_gone is not None and e.observed_gone < kill_time:
                tally.fail(f"{path}: a client was told it had expired before the crash, and it is back")
            # Reading resets the TTL, but only if it has not passed already.
            safe = not gone and e.observed_gone is None and \
                now < max(e.last_ack_sent, restart_t0) + e.ttl - 0.3
        if head.status not in (200, 404):
            tally.fail(f"{path}: HEAD {head.status}")
            continue
        if gone:
            figures["expired"] += 1
            figures["expired_appends"] += len(e.state.acked)
            # The path is free again, after the crash as before it.
            r = c.request("PUT", path, b"", {"Content-Type": TEXT})
            if r.status != 201:
                tally.fail(f"{path}: re-creating an expired path gave {r.status} {r.body[:100]!r}")
            c.request("DELETE", path)
            continue
        want = str(int(e.ttl)) if e.kind == "ttl" else None
        if head.header("stream-ttl") != want:
            tally.fail(f"{path}: Stream-TTL {head.header('stream-ttl')!r} after restart, want {want!r}")
        if e.kind == "expires-at":
            echoed = expires_instant(head.header("stream-expires-at") or "")
            if echoed is None or abs(echoed - e.expires_at) > 0.0015:
                tally.fail(f"{path}: Stream-Expires-At {head.header('stream-expires-at')!r}, "
                           f"set as {e.expires_header}")
        if safe:
            verify_writers(c, [e.state], tally, rng)
            figures["alive_verified"] += 1
        c.request("DELETE", path)


# ------------------------------------------------------------------- cycles


@dataclass
class Totals:
    cycles: int = 0
    generations: int = 0
    sent_acked: int = 0  # acknowledgements the writers received
    acked: int = 0  # acknowledged appends a final verification looked for
    expiring_acked: int = 0
    verified: int = 0
    lost: int = 0
    duplicated: int = 0
    torn: int = 0
    phantom: int = 0
    bad_offsets: int = 0
    kills: int = 0
    restarts: int = 0
    restart_max: float = 0.0
    inflight_present: int = 0
    inflight_absent: int = 0
    fuzz_bursts: int = 0
    fuzz_cases: int = 0
    fuzz_failures: int = 0
    expiring: dict[str, int] = field(default_factory=lambda: {"expired": 0, "alive_verified": 0,
                                                               "expired_appends": 0})
    problems: list[str] = field(default_factory=list)

    def add(self, tally: Tally) -> None:
        """Fold in a verification whose appends are not checked again later
        (the last one of a generation, or an expiring stream's)."""
        self.acked += tally.acked
        self.verified += tally.verified
        self.lost += tally.lost
        self.duplicated += tally.duplicated
        self.torn += tally.torn
        self.phantom += tally.phantom
        self.bad_offsets += tally.bad_offsets
        self.inflight_present += tally.inflight_present
        self.inflight_absent += tally.inflight_absent
        self.note(tally)

    def note(self, tally: Tally) -> None:
        """Record a verification's problems (each one once)."""
        for p in tally.problems:
            if p not in self.problems:
                self.problem(p)

    def problem(self, msg: str) -> None:
        print(f"  PROBLEM: {msg}", flush=True)
        if len(self.problems) < 200:
            self.problems.append(msg)

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.duplicated or self.torn or self.phantom or self.bad_offsets or self.problems
                    or self.fuzz_failures)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.base = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="ds-soak-"))
        self.data = self.base / "data"
        self.deadline: float = time.monotonic() + float(args.seconds)
        self.totals = Totals()
        self.rig = self._new_rig()
        # The latest verification of this generation: writers persist across
        # its cycles, so it covers every append acknowledged in it.
        self.gen_tally: Tally | None = None
        self.cycle = 0

    def _new_rig(self) -> CrashRig:
        rig = CrashRig(self.data, *SOAK_SERVER_ARGS, "--checkpoint-interval", "1", seed=self.rng.randrange(2**32))
        standard_writers(rig)
        return rig

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def start(self) -> float:
        """(Re)start the daemon with a checkpoint interval drawn for this cycle."""
        interval = self.rng.choice(CHECKPOINT_INTERVALS)
        self.rig.args = (*SOAK_SERVER_ARGS, "--checkpoint-interval", interval)
        restart = self.rig.start()
        self.totals.restarts += 1
        self.totals.restart_max = max(self.totals.restart_max, restart)
        return restart

    def run(self) -> int:
        print(f"soak: {self.args.seconds}s on {self.data} (seed {self.args.seed})", flush=True)
        self.start()
        c = self.rig.client()
        self.rig.create_streams(c)
        c.close()
        while self.left() > 1.0:
            try:
                self.one_cycle()
            except Exception as exc:  # keep soaking: record, restart, go on
                self.totals.problem(f"cycle {self.cycle}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                self._recover_after_error()
            self.cycle += 1
        self.finish()
        return self.summary()

    def _recover_after_error(self) -> None:
        srv = self.rig.server
        if srv is not None:
            srv.kill()
        try:
            self.start()
            self.gen_tally = self.rig.verify()
            self.totals.note(self.gen_tally)
        except Exception as exc:
            self.totals.problem(f"could not recover after an error: {exc}")
            raise

    def one_cycle(self) -> None:
        t_cycle = time.monotonic()
        rig, totals = self.rig, self.totals
        if self.args.fuzz_every and self.cycle % self.args.fuzz_every == 1:
            self.fuzz_burst()
        c = rig.client()
        during = cycle_side_work(rig, c, self.cycle)
        expiring = make_expiring(c, self.rng, self.cycle)
        load = self.rng.uniform(1.0, 5.0)
        # Side work lands at random moments of the load, always before the kill.
        during = [(self.rng.uniform(0.05, max(0.1, load * 0.8)), action) for _, action in during]
        writers = [w for w in rig.writers if w.ended != "stream closed"]
        kill_time = self.load(load, writers, expiring, during)
        c.close()
        totals.kills += 1
        acked = sum(w.acked_this_cycle for w in writers)
        exp_acked = sum(e.state.acked_this_cycle for e in expiring)
        totals.sent_acked += acked
        totals.expiring_acked += exp_acked
        restart_t0 = time.time()
        restart = self.start()
        tally = Tally()
        c = rig.client()
        verify_expiring(c, expiring, kill_time, restart_t0, tally, self.rng, totals.expiring)
        c.close()
        main = rig.verify()
        totals.add(tally)
        totals.note(main)
        self.gen_tally = main
        totals.cycles += 1
        rec = rig.recoveries[-1]
        print(f"cycle {self.cycle:3d}: load {load:.2f}s acked {acked}+{exp_acked} "
              f"verified {main.verified}/{main.acked} "
              f"lost {main.lost + tally.lost} dup {main.duplicated + tally.duplicated} torn {main.torn + tally.torn} "
              f"in-flight {main.inflight_present}/{main.inflight_present + main.inflight_absent} present; restart "
              f"{restart:.2f}s replayed {rec.get('replayed_records')} torn_bytes {rec.get('torn_bytes_truncated')}; "
              f"{time.monotonic() - t_cycle:.1f}s", flush=True)
        if (self.cycle + 1) % CYCLES_PER_GENERATION == 0:
            self.new_generation()

    def load(self, seconds: float, writers: list[WriterState], expiring: list[Expiring],
             during: list[tuple[float, Any]]) -> float:
        """Writers, expiring writers and a tailer for `seconds`, side work at
        its moments, then kill -9; returns the time of the kill."""
        rig = self.rig
        assert rig.server is not None
        stop = threading.Event()
        for w in writers:
            w.acked_this_cycle, w.ended = 0, ""
        threads: list[threading.Thread] = [Writer(w, rig.server.port, stop) for w in writers]
        threads += [ExpiringWriter(e, rig.server.port, stop) for e in expiring]
        text_paths = sorted({w.spec.path for w in writers if not w.spec.is_json})
        tailer = Tailer(rig.server.port, text_paths, stop, rig.seen, rig.tail_offsets)
        threads.append(tailer)
        for t in threads:
            t.start()
        t0 = time.monotonic()
        for at, action in sorted(during, key=lambda a: a[0]):
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            action()
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        early = [(w.spec.name, w.ended, w.anomalies) for w in writers if w.ended and w.ended != "stream closed"]
        if early:
            self.totals.problem(f"writers stopped before the kill: {early}")
        kill_time = time.time()
        rig.kill()
        stop.set()
        for t in threads:
            t.join(WRITE_TIMEOUT + 5)
            if t.is_alive():
                self.totals.problem(f"{t.name} hangs after the kill")
        for p in tailer.problems:
            self.totals.problem(f"tailer: {p}")
        for e in expiring:
            for a in e.state.anomalies:
                self.totals.problem(f"{e.state.spec.path}: {a}")
        return kill_time

    def fuzz_burst(self) -> None:
        """pytest tests/test_fuzz.py against the running daemon, sized to the
        time left; the data it holds is verified after the next crash."""
        rig = self.rig
        assert rig.server is not None and rig.server.proc is not None
        budget_s = min(self.left() * FUZZ_SHARE, self.args.fuzz_examples * FUZZ_SECONDS_PER_EXAMPLE)
        # At least a token burst (a short run must still show the burst works),
        # unless the time is nearly up.
        examples = max(3, int(budget_s / FUZZ_SECONDS_PER_EXAMPLE))
        if self.left() < 10:
            return
        stats = self.base / f"fuzz-{self.cycle}.json"
        out = self.base / f"fuzz-{self.cycle}.out"
        target = f"{rig.server.port}:{rig.server.proc.pid}"
        env = dict(os.environ, DS_FUZZ_EXAMPLES=str(examples), DS_FUZZ_TARGET=target,
                   DS_FUZZ_LOG=str(rig.server.log_path), DS_FUZZ_STATS=str(stats), DS_FUZZ_NO_SHRINK="1",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t0 = time.monotonic()
        limit = max(120.0, budget_s * 4)
        with open(out, "wb") as f:
            try:
                proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                       str(ROOT / "tests" / "test_fuzz.py")], cwd=ROOT, env=env, stdout=f,
                                      stderr=subprocess.STDOUT, timeout=limit)
                code: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                code = None
        cases = json.loads(stats.read_text())["cases"] if stats.exists() else 0
        self.totals.fuzz_bursts += 1
        self.totals.fuzz_cases += cases
        lines = out.read_text(errors="replace").strip().splitlines()
        print(f"fuzz burst: {examples} examples per test, {cases} cases in {time.monotonic() - t0:.1f}s: "
              f"{(lines or [''])[-1]}", flush=True)
        if code is None:
            self.totals.fuzz_failures += 1
            self.totals.problem(f"fuzz burst did not finish in {limit:.0f}s (a hang?); output in {out}")
        elif code != 0:
            self.totals.fuzz_failures += 1
            failed = sorted({ln.split(" - ")[0].removeprefix("FAILED ") for ln in lines if ln.startswith("FAILED")})
            self.totals.problem(f"fuzz burst failed: {', '.join(failed) or f'exit {code}'}; output in {out}")
        if rig.server.proc.poll() is not None:
            self.totals.problem("the daemon died during a fuzz burst")
            restart_t0 = time.monotonic()
            self.start()
            print(f"  restarted in {time.monotonic() - restart_t0:.2f}s", flush=True)

    def new_generation(self) -> None:
        """Delete every stream of this generation (their deletion is verified
        by the next generation reusing the same paths) and start afresh."""
        rig = self.rig
        c = rig.client()
        paths = {w.spec.path for w in rig.writers} | {cs.path for cs in rig.closed}
        if rig.recreated is not None:
            paths.add(rig.recreated[0])
        for path in sorted(paths):
            r = c.request("DELETE", path)
            if r.status not in (204, 404):
                self.totals.problem(f"generation end: DELETE {path} gave {r.status}")
        c.close()
        if self.gen_tally is not None:
            self.totals.add(self.gen_tally)
            self.gen_tally = None
        server = rig.server
        self.rig = self._new_rig()
        self.rig.server = server
        self.rig.recoveries = rig.recoveries[-1:]
        c = self.rig.client()
        self.rig.create_streams(c)
        c.close()
        self.totals.generations += 1

    def finish(self) -> None:
        """SIGTERM (the clean path), restart, verify once more, stop."""
        rig = self.rig
        assert rig.server is not None
        rc = rig.server.stop()
        if rc != 0:
            self.totals.problem(f"SIGTERM exit code {rc}")
        self.start()
        self.gen_tally = None
        self.totals.add(rig.verify())
        rec = rig.recoveries[-1]
        if rec.get("replayed_records") or rec.get("torn_bytes_truncated"):
            self.totals.problem(f"a clean shutdown should leave nothing to replay: {rec}")
        assert rig.server is not None
        rc = rig.server.stop()
        if rc != 0:
            self.totals.problem(f"final SIGTERM exit code {rc}")

    def summary(self) -> int:
        t = self.totals
        lines = [
            "",
            "=" * 72,
            f"soak summary ({self.args.seconds}s, seed {self.args.seed}, data {self.data})",
            f"  cycles                 {t.cycles} (generations {t.generations + 1})",
            f"  appends acknowledged   {t.sent_acked + t.expiring_acked} ({t.sent_acked} on steady streams, "
            f"{t.expiring_acked} on expiring ones)",
            f"  verified               {t.verified} of {t.acked} checked: present exactly once, in order, at their "
            f"offsets (every one on steady streams, the producer checks' own, those on expiring streams alive "
            f"when checked)",
            f"  lost                   {t.lost}",
            f"  duplicated             {t.duplicated}",
            f"  torn                   {t.torn}",
            f"  phantom / bad offsets  {t.phantom} / {t.bad_offsets}",
            f"  in flight at the kill  {t.inflight_present} present, {t.inflight_absent} absent",
            f"  faults injected        {t.kills} kill -9, {t.restarts} starts (slowest {t.restart_max:.2f}s)",
            f"  expiring streams       {t.expiring['expired']} expired on time (taking "
            f"{t.expiring['expired_appends']} appends with them), {t.expiring['alive_verified']} verified alive",
            f"  fuzz                   {t.fuzz_bursts} bursts, {t.fuzz_cases} cases, {t.fuzz_failures} failed",
            f"  other problems         {len(t.problems)}",
        ]
        lines += [f"    - {p}" for p in t.problems[:30]]
        lines.append("RESULT: " + ("FAIL" if t.failed else "OK"))
        print("\n".join(lines), flush=True)
        if not t.failed and not self.args.keep and not self.args.data_dir:
            shutil.rmtree(self.base, ignore_errors=True)
        elif t.failed:
            print(f"data directory, server logs and fuzz output kept in {self.base}")
        return 1 if t.failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=300.0, help="how long to soak (default 300)")
    p.add_argument("--seed", type=int, default=int(time.time()), help="random seed (default: the time)")
    p.add_argument("--fuzz-every", type=int, default=4, help="a fuzz burst every N cycles (0: none; default 4)")
    p.add_argument("--fuzz-examples", type=int, default=100,
                   help="DS_FUZZ_EXAMPLES for a burst, capped by the time left (default 100)")
    p.add_argument("--data-dir", help="work here instead of a fresh temporary directory (kept)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory even if all is well")
    args = p.parse_args(argv)
    soak = Soak(args)
    try:
        return soak.run()
    finally:
        if soak.rig.server is not None:
            soak.rig.server.kill()


if __name__ == "__main__":
    sys.exit(main())

"""Crash tests: the real daemon, real sockets, real ``kill -9``, no mocks.

The durability promise under test: with ``--fsync always`` an append is
acknowledged only once its log record is on disk, so after a crash every
acknowledged append is present exactly once, in its writer's order, at the
offset it was acknowledged with; whatever was in flight is either whole or
absent; closures and idempotent-producer state survive with the data.

Each writer's payloads carry its name and a sequence number and are a pure
function of both, so the bytes read back can be matched exactly against what
was sent: a torn, duplicated, reordered or invented payload cannot hide.
A writer has at most one request in flight, so after a crash at most one of
its payloads has an unknown outcome; the test resolves it from the data read
back and resumes the writer from there, which keeps every writer's payloads
in a stream contiguous (0, 1, 2, ...) across any number of crashes.

Figures (acknowledged, verified, lost, duplicated, restart time) are printed;
run with ``pytest -s`` to see them.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import Client
from tests.support.server import ServerProcess

TEXT = "text/plain"
JSON = "application/json"
WRITE_TIMEOUT = 10.0

_launched: list[ServerProcess] = []


def launch(data_dir: Path, *args: str, start: bool = True) -> ServerProcess:
    """A daemon on data_dir, killed at teardown even if the test fails
    half way (a crash test that leaks daemons would skew the next one).
    Small segments, so kills land while appends cross segment boundaries
    and grow files, not only inside one 64 MiB file."""
    srv = ServerProcess(data_dir, "--segment-bytes", str(64 * 1024), *args)
    _launched.append(srv)
    return srv.start() if start else srv


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    while _launched:
        _launched.pop().kill()

# --------------------------------------------------------------- payloads


def _pad(name: str, seq: int) -> str:
    """Deterministic filler of a size drawn per (writer, seq): mostly small,
    some a few KB, a few large enough to span pages and segment boundaries,
    so a torn write has something to tear."""
    rng = random.Random(f"{name}:{seq}")
    roll = rng.random()
    if roll < 0.70:
        n = rng.randint(8, 200)
    elif roll < 0.96:
        n = rng.randint(1_000, 8_000)
    else:
        n = rng.randint(30_000, 120_000)
    return rng.randbytes(n // 2 + 1).hex()[:n]


def text_payload(name: str, seq: int) -> bytes:
    """One self-identifying, self-checking line; only its last byte is a newline."""
    pad = _pad(name, seq)
    return f"<{name}|{seq:08d}|{len(pad)}|{pad}|{zlib.crc32(pad.encode()):08x}>\n".encode()


def json_message(name: str, seq: int) -> dict[str, Any]:
    pad = _pad(name, seq)
    return {"w": name, "seq": seq, "pad": pad, "crc": zlib.crc32(pad.encode())}


def producer_headers(pid: str, epoch: int, seq: int) -> dict[str, str]:
    return {"Producer-Id": pid, "Producer-Epoch": str(epoch), "Producer-Seq": str(seq)}


def position(token: str) -> int:
    """Byte position an offset token stands for.

    Offsets are opaque to clients, but this server documents its tokens as
    ``<16 hex stream id>_<16 hex position>``; decoding them lets the test
    check every acknowledged offset against the bytes read back. The
    black-box check (reading from sampled offsets) is done as well.
    """
    stream_id, _, pos = token.partition("_")
    assert re.fullmatch(r"[0-9a-f]{16}", stream_id) and re.fullmatch(r"[0-9a-f]{16}", pos), token
    return int(pos, 16)


def same_stream_offset(known: str, end: int) -> str:
    """A token for another position of the stream a known token belongs to."""
    return f"{known.partition('_')[0]}_{end:016x}"


@dataclass(frozen=True)
class WriterSpec:
    name: str
    path: str
    content_type: str
    producer: bool = False

    @property
    def is_json(self) -> bool:
        return self.content_type == JSON

    def body(self, seq: int) -> bytes:
        if self.is_json:
            return json.dumps(json_message(self.name, seq), separators=(",", ":")).encode()
        return text_payload(self.name, seq)

    def headers(self, seq: int) -> dict[str, str]:
        h = {"Content-Type": self.content_type}
        if self.producer:
            h.update(producer_headers(self.name, 0, seq))
        return h


@dataclass
class WriterState:
    """What one writer sent and what the server said, across every cycle."""

    spec: WriterSpec
    next_seq: int = 0
    acked: dict[int, str] = field(default_factory=dict)  # seq -> Stream-Next-Offset
    unknown: int | None = None  # the one request whose answer never came
    kept: dict[int, str] = field(default_factory=dict)  # unanswered, but found durable after a crash
    refused: list[int] = field(default_factory=list)
    acked_this_cycle: int = 0
    ended: str = ""
    anomalies: list[str] = field(default_factory=list)


class Writer(threading.Thread):
    """Appends back to back on its own keep-alive connection until stopped or
    until a request goes unanswered (the server died): then it stops, leaving
    that request's outcome unknown for the verification to resolve.

    It does not use the shared test client, which retries a request once on
    a dropped connection: a retried plain append could be applied twice, and
    the test must know exactly which requests it sent."""

    def __init__(self, state: WriterState, port: int, stop: threading.Event) -> None:
        super().__init__(name=state.spec.name, daemon=True)
        self.state = state
        self.port = port
        self.stop_event = stop

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WRITE_TIMEOUT)
        try:
            while not self.stop_event.is_set() and self._append_one(conn):
                pass
        finally:
            conn.close()

    def _append_one(self, conn: http.client.HTTPConnection) -> bool:
        st, spec = self.state, self.state.spec
        seq = st.next_seq
        st.unknown = seq
        try:
            conn.request("POST", spec.path, body=spec.body(seq), headers=spec.headers(seq))
            resp = conn.getresponse()
            body = resp.read()
        except TimeoutError as exc:
            st.ended = f"timeout ({exc!r})"
            st.anomalies.append(f"seq {seq}: no answer within {WRITE_TIMEOUT}s")
            return False
        except (OSError, http.client.HTTPException) as exc:
            st.ended = f"no answer ({type(exc).__name__})"
            return False
        expected = 200 if spec.producer else 204
        if resp.status == expected:
            offset = resp.getheader("Stream-Next-Offset")
            if not offset:
                st.anomalies.append(f"seq {seq}: {resp.status} without Stream-Next-Offset")
                return False
            st.acked[seq] = offset
            st.next_seq += 1
            st.unknown = None
            st.acked_this_cycle += 1
            return True
        if resp.status == 409 and (resp.getheader("Stream-Closed") or "").lower() == "true":
            st.unknown = None  # a definite refusal: the append was not made
            st.refused.append(seq)
            st.ended = "stream closed"
            return False
        if resp.status == 503:
            st.ended = "503"  # not made durable, as far as the server knows: outcome unknown
            return False
        st.anomalies.append(f"seq {seq}: unexpected {resp.status} {body[:200]!r}")
        st.ended = f"unexpected {resp.status}"
        return False


class Tailer(threading.Thread):
    """Tails text streams with catch-up reads while the writers run.

    Readers are only ever shown committed data, so whatever this thread saw
    before the crash must still be there, byte for byte, after the restart:
    a reader that saw data which then vanished would be a durability
    violation visible to clients. (Text streams only: their offsets are any
    byte position, so tailing is a plain loop.)"""

    def __init__(self, port: int, paths: list[str], stop: threading.Event, seen: dict[str, bytearray],
                 offsets: dict[str, str]) -> None:
        super().__init__(name="tailer", daemon=True)
        self.port = port
        self.paths = paths
        self.stop_event = stop
        self.seen = seen
        self.offsets = offsets
        self.reads = 0
        self.problems: list[str] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WRITE_TIMEOUT)
        try:
            while not self.stop_event.is_set():
                for path in self.paths:
                    offset = self.offsets.get(path, "-1")
                    try:
                        conn.request("GET", f"{path}?offset={offset}")
                        resp = conn.getresponse()
                        body = resp.read()
                    except (OSError, http.client.HTTPException):
                        return
                    if resp.status != 200:
                        self.problems.append(f"GET {path}?offset={offset}: {resp.status} {body[:100]!r}")
                        return
                    self.seen.setdefault(path, bytearray()).extend(body)
                    self.offsets[path] = resp.getheader("Stream-Next-Offset") or offset
                    self.reads += 1
                time.sleep(0.005)  # a reader, not a load generator
        finally:
            conn.close()


# ------------------------------------------------------------ reading back


@dataclass
class StreamImage:
    """A stream as read back: stored bytes (JSON re-framed as the server
    stores it, each message followed by a comma) and its tail metadata."""

    path: str
    content_type: str
    stored: bytes
    next_offset: str
    closed: bool
    chunks: int


def read_all(client: Client, path: str) -> StreamImage:
    """Catch-up read from the start, chunk by chunk, until Stream-Up-To-Date."""
    offset, stored, chunks = "-1", bytearray(), 0
    while True:
        r = client.request("GET", f"{path}?offset={offset}")
        assert r.status == 200, f"GET {path}?offset={offset}: {r.status} {r.body[:200]!r}"
        chunks += 1
        ctype = r.header("content-type") or ""
        if ctype.startswith(JSON):
            assert r.body[:1] == b"[" and r.body[-1:] == b"]", r.body[:100]
            if r.body != b"[]":
                stored += r.body[1:-1] + b","
        else:
            stored += r.body
        nxt = r.header("stream-next-offset")
        assert nxt, f"GET {path}: no Stream-Next-Offset"
        if r.header("stream-up-to-date") == "true":
            return StreamImage(path, ctype, bytes(stored), nxt, r.header("stream-closed") == "true", chunks)
        assert nxt != offset, f"GET {path}: no progress from {offset}"
        offset = nxt


@dataclass(frozen=True)
class Record:
    writer: str
    seq: int
    start: int
    end: int


_TEXT_RE = re.compile(rb"<([a-z0-9]+)\|(\d{8})\|\d+\|[0-9a-f]*\|[0-9a-f]{8}>\n")


def parse_records(image: StreamImage) -> tuple[list[Record], list[tuple[int, bytes]]]:
    """Split stored bytes into payloads; anything that is not exactly one of
    the payloads a writer would send is reported as torn (position, excerpt)."""
    data = image.stored
    records: list[Record] = []
    torn: list[tuple[int, bytes]] = []
    pos = 0
    if image.content_type.startswith(JSON):
        text = data.decode("ascii", errors="replace")
        decoder = json.JSONDecoder()
        while pos < len(data):
            try:
                obj, end = decoder.raw_decode(text, pos)
            except ValueError:
                torn.append((pos, data[pos : pos + 80]))
                break
            if data[end : end + 1] != b",":
                torn.append((pos, data[pos : pos + 80]))
                break
            if isinstance(obj, dict) and obj == json_message(str(obj.get("w")), int(obj.get("seq", -1))):
                records.append(Record(str(obj["w"]), int(obj["seq"]), pos, end + 1))
            else:
                torn.append((pos, data[pos : min(end, pos + 80)]))
            pos = end + 1
        return records, torn
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        m = _TEXT_RE.fullmatch(line)
        if m and line == text_payload(m.group(1).decode(), int(m.group(2))):
            records.append(Record(m.group(1).decode(), int(m.group(2)), pos, end))
        else:
            torn.append((pos, line[:80]))
        pos = end
    return records, torn


@dataclass
class Tally:
    """Figures of one verification."""

    acked: int = 0
    verified: int = 0
    lost: int = 0
    duplicated: int = 0
    torn: int = 0
    phantom: int = 0
    bad_offsets: int = 0
    inflight_present: int = 0
    inflight_absent: int = 0
    reader_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, msg: str) -> None:
        if len(self.problems) < 40:
            self.problems.append(msg)


def check_offsets_black_box(client: Client, image: StreamImage, records: list[Record], tally: Tally,
                            rng: random.Random, samples: int = 8) -> None:
    """Reading from a sampled acknowledged offset returns exactly the bytes
    stored after it (the opaque-token view of offset consistency)."""
    is_json = image.content_type.startswith(JSON)
    ends = [r.end for r in records]
    for end in rng.sample(ends, min(samples, len(ends))) + [len(image.stored)]:
        token = same_stream_offset(image.next_offset, end)
        r = client.request("GET", f"{image.path}?offset={token}")
        if r.status != 200:
            tally.fail(f"{image.path}: GET from acknowledged offset {token}: {r.status} {r.body[:120]!r}")
            tally.bad_offsets += 1
            continue
        got = (r.body[1:-1] + b"," if r.body != b"[]" else b"") if is_json else r.body
        if image.stored[end : end + len(got)] != got or (end == len(image.stored) and got):
            tally.fail(f"{image.path}: GET from offset {token} returned bytes that are not the ones stored there")
            tally.bad_offsets += 1


def verify_writers(client: Client, writers: list[WriterState], tally: Tally, rng: random.Random) -> None:
    """Every acknowledged append present exactly once, in order, at its
    acknowledged offset; in-flight ones whole or absent; nothing invented.
    Resolves each writer's unknown request and advances it past it if present."""
    by_path: dict[str, list[WriterState]] = {}
    for w in writers:
        by_path.setdefault(w.spec.path, []).append(w)
    for path, group in by_path.items():
        image = read_all(client, path)
        head = client.request("HEAD", path)
        assert head.status == 200, f"HEAD {path}: {head.status}"
        if head.header("stream-next-offset") != image.next_offset:
            tally.fail(f"{path}: HEAD says {head.header('stream-next-offset')}, GET tail is {image.next_offset}")
        if position(image.next_offset) != len(image.stored):
            tally.fail(f"{path}: tail offset {image.next_offset} but {len(image.stored)} bytes stored")
        records, torn = parse_records(image)
        tally.torn += len(torn)
        for pos, excerpt in torn:
            tally.fail(f"{path}: torn or foreign bytes at {pos}: {excerpt!r}")
        mine = {w.spec.name: w for w in group}
        seen: dict[str, list[Record]] = {name: [] for name in mine}
        for rec in records:
            if rec.writer not in mine:
                tally.phantom += 1
                tally.fail(f"{path}: payload of writer {rec.writer} who never wrote here")
                continue
            seen[rec.writer].append(rec)
        for name, w in mine.items():
            recs = seen[name]
            seqs = [r.seq for r in recs]
            dup = len(seqs) - len(set(seqs))
            if dup:
                tally.duplicated += dup
                tally.fail(f"{path}: writer {name} has {dup} duplicated payloads")
            if seqs != sorted(set(seqs)):
                tally.fail(f"{path}: writer {name} payloads out of order")
            at = {r.seq: r for r in recs}
            for seq, token in w.acked.items():
                tally.acked += 1
                found = at.get(seq)
                if found is None:
                    tally.lost += 1
                    tally.fail(f"{path}: acknowledged append {name}#{seq} (offset {token}) is missing")
                elif position(token) != found.end:
                    tally.bad_offsets += 1
                    tally.fail(f"{path}: {name}#{seq} acknowledged with {token} but ends at {found.end}")
                else:
                    tally.verified += 1
            for seq, token in w.kept.items():
                # Found durable after an earlier crash: it must stay, where it was.
                found = at.get(seq)
                if found is None or position(token) != found.end:
                    tally.lost += 1
                    tally.fail(f"{path}: {name}#{seq}, durable after an earlier crash, is gone or moved")
            if w.unknown is not None:
                if w.unknown in at:
                    tally.inflight_present += 1
                    w.kept[w.unknown] = same_stream_offset(image.next_offset, at[w.unknown].end)
                    w.next_seq = w.unknown + 1
                else:
                    tally.inflight_absent += 1
                w.unknown = None
            allowed = set(w.acked) | set(w.kept)
            for seq in at:
                if seq not in allowed:
                    tally.phantom += 1
                    tally.fail(f"{path}: {name}#{seq} present but never acknowledged nor in flight")
            if sorted(at) != list(range(len(at))):
                tally.fail(f"{path}: writer {name} payloads are not contiguous from 0: {sorted(at)[:10]}...")
        check_offsets_black_box(client, image, records, tally, rng)


def check_producer_resumes(client: Client, w: WriterState, tally: Tally) -> None:
    """Producer state survived: retrying the last acknowledged (id, epoch,
    seq) is a 204 duplicate naming the highest durable seq (as is retrying
    an unanswered one found durable), and the next seq is accepted (200) and
    becomes an acknowledged append of this writer. Call after verify_writers
    resolved the in-flight request (so next_seq is what the server expects)."""
    spec = w.spec
    durable = sorted(set(w.acked) | set(w.kept))
    retries = {max(w.acked), durable[-1]} if w.acked else set()
    for seq in sorted(retries):
        r = client.request("POST", spec.path, spec.body(seq), spec.headers(seq))
        if r.status != 204 or r.header("producer-seq") != str(durable[-1]):
            tally.fail(f"{spec.path}: retry of {spec.name}#{seq} gave {r.status} producer-seq="
                       f"{r.header('producer-seq')} (want 204 and {durable[-1]})")
    seq = w.next_seq
    r = client.request("POST", spec.path, spec.body(seq), spec.headers(seq))
    if r.status != 200:
        tally.fail(f"{spec.path}: next producer seq {spec.name}#{seq} gave {r.status} {r.body[:120]!r}")
        return
    w.acked[seq] = r.header("stream-next-offset") or ""
    w.next_seq += 1


# ------------------------------------------------------------------- rig


def recovered_line(server: ServerProcess) -> dict[str, Any]:
    for line in reversed(server.read_log().splitlines()):
        if line.startswith("{") and '"recovered"' in line:
            doc: dict[str, Any] = json.loads(line)
            if doc.get("event") == "recovered":
                return doc
    raise AssertionError(f"no 'recovered' line in the server log:\n{server.read_log()}")


@dataclass
class ClosedStream:
    path: str
    offset: str  # Stream-Next-Offset of the close
    closer: tuple[str, int, int, bytes] | None  # producer (id, epoch, seq, body) that closed it


class CrashRig:
    """One data directory, the daemon started and killed on it again and
    again, and everything the test wrote to it."""

    def __init__(self, data_dir: Path, *args: str, seed: int = 0) -> None:
        self.data_dir = data_dir
        self.args = args
        self.rng = random.Random(seed)
        self.server: ServerProcess | None = None
        self.writers: list[WriterState] = []
        self.closed: list[ClosedStream] = []
        self.gone: list[str] = []
        self.recreated: tuple[str, bytes] | None = None
        self.recoveries: list[dict[str, Any]] = []
        self.seen: dict[str, bytearray] = {}  # what the tailer was shown, per text stream
        self.tail_offsets: dict[str, str] = {}

    # ---- process

    def start(self) -> float:
        """Start the daemon on the data directory; returns the seconds until
        it accepted connections (the restart time)."""
        t0 = time.monotonic()
        self.server = launch(self.data_dir, *self.args)
        elapsed = time.monotonic() - t0
        self.recoveries.append(recovered_line(self.server))
        return elapsed

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()

    def client(self) -> Client:
        assert self.server is not None
        return Client(self.server.port)

    # ---- load

    def add_writer(self, spec: WriterSpec) -> WriterState:
        w = WriterState(spec)
        self.writers.append(w)
        return w

    def create_streams(self, c: Client) -> None:
        for path, ctype in {w.spec.path: w.spec.content_type for w in self.writers}.items():
            r = c.request("PUT", path, b"", {"Content-Type": ctype})
            assert r.status in (200, 201), f"PUT {path}: {r.status} {r.body!r}"

    def run_load(self, seconds: float, writers: list[WriterState], during: list[tuple[float, Any]] | None = None,
                 end: str = "kill") -> int | None:
        """Run the writers for ``seconds``, doing ``during`` actions at their
        times, then end the server (kill -9, or SIGTERM) while they are still
        writing. Returns the exit code for SIGTERM."""
        assert self.server is not None
        stop = threading.Event()
        for w in writers:
            w.acked_this_cycle, w.ended = 0, ""
        threads: list[Writer | Tailer] = [Writer(w, self.server.port, stop) for w in writers]
        text_paths = sorted({w.spec.path for w in writers if not w.spec.is_json})
        tailer = Tailer(self.server.port, text_paths, stop, self.seen, self.tail_offsets)
        threads.append(tailer)
        for t in threads:
            t.start()
        t0 = time.monotonic()
        for at, action in sorted(during or [], key=lambda a: a[0]):
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            action()
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        early = [(w.spec.name, w.ended, w.anomalies) for w in writers if w.ended and w.ended != "stream closed"]
        assert not early, f"writers stopped before the server was ended: {early}"
        rc: int | None = None
        if end == "kill":
            self.kill()
        else:
            rc = self.server.stop()
        stop.set()
        for t in threads:
            t.join(WRITE_TIMEOUT + 5)
            assert not t.is_alive(), f"{t.name} hangs after the server ended"
        assert not tailer.problems, tailer.problems
        return rc

    # ---- verification

    def verify(self) -> Tally:
        tally = Tally()
        c = self.client()
        try:
            verify_writers(c, self.writers, tally, self.rng)
            for path, seen in self.seen.items():
                stored = read_all(c, path).stored
                tally.reader_bytes += len(seen)
                if stored[: len(seen)] != seen:
                    tally.fail(f"{path}: a reader was shown {len(seen)} bytes before the crash that are not "
                               f"all there after it ({len(stored)} bytes stored)")
            for w in self.writers:
                for anomaly in w.anomalies:
                    tally.fail(f"{w.spec.name}: {anomaly}")
                w.anomalies.clear()
            for cs in self.closed:
                self._verify_closed(c, cs, tally)
            for path in self.gone:
                r = c.request("HEAD", path)
                if r.status != 404:
                    tally.fail(f"{path}: deleted and acknowledged, yet HEAD gives {r.status}")
            if self.recreated is not None:
                path, want = self.recreated
                got = read_all(c, path).stored
                if got != want:
                    tally.fail(f"{path}: re-created stream holds {got[:80]!r}, want {want[:80]!r}")
            for w in self.writers:
                if w.spec.producer:
                    check_producer_resumes(c, w, tally)
        finally:
            c.close()
        return tally

    def _verify_closed(self, c: Client, cs: ClosedStream, tally: Tally) -> None:
        """Closure survived: HEAD says closed at the acknowledged offset, a
        plain append is refused with 409, a close-only retry is 204, and the
        closing producer's retry is a 204 duplicate."""
        head = c.request("HEAD", cs.path)
        if head.status != 200 or head.header("stream-closed") != "true" or \
                head.header("stream-next-offset") != cs.offset:
            tally.fail(f"{cs.path}: closed at {cs.offset}; HEAD gives {head.status} "
                       f"closed={head.header('stream-closed')} offset={head.header('stream-next-offset')}")
        ctype = head.header("content-type") or TEXT
        body = b'{"after":"close"}' if ctype.startswith(JSON) else b"after close\n"
        r = c.request("POST", cs.path, body, {"Content-Type": ctype})
        if r.status != 409 or r.header("stream-closed") != "true":
            tally.fail(f"{cs.path}: append to closed stream gave {r.status} closed={r.header('stream-closed')}")
        r = c.request("POST", cs.path, b"", {"Stream-Closed": "true"})
        if r.status != 204 or r.header("stream-closed") != "true":
            tally.fail(f"{cs.path}: close-only retry gave {r.status}")
        if cs.closer is not None:
            pid, epoch, seq, final = cs.closer
            r = c.request("POST", cs.path, final,
                          {"Content-Type": ctype, "Stream-Closed": "true", **producer_headers(pid, epoch, seq)})
            if r.status != 204 or r.header("stream-closed") != "true":
                tally.fail(f"{cs.path}: retry of the closing producer append gave {r.status} {r.body[:100]!r}")


def report(label: str, acked: int, tally: Tally, restart: float, rec: dict[str, Any]) -> None:
    print(
        f"\n[{label}] acked={acked} verified={tally.verified}/{tally.acked} lost={tally.lost} "
        f"duplicated={tally.duplicated} torn={tally.torn} phantom={tally.phantom} bad_offsets={tally.bad_offsets} "
        f"in-flight present={tally.inflight_present} absent={tally.inflight_absent} "
        f"reader-seen bytes kept={tally.reader_bytes} "
        f"restart={restart:.2f}s recovery={rec.get('seconds')}s checkpoint_lsn={rec.get('checkpoint_lsn')} "
        f"replayed={rec.get('replayed_records')} torn_bytes={rec.get('torn_bytes_truncated')}"
    )


def assert_clean(tally: Tally) -> None:
    assert tally.lost == 0 and tally.duplicated == 0 and tally.torn == 0 and tally.phantom == 0, tally.problems
    assert tally.bad_offsets == 0 and not tally.problems, tally.problems
    assert tally.verified == tally.acked


# ------------------------------------------------------------------ helpers


def standard_writers(rig: CrashRig) -> None:
    """Eight writers: two plain and one producer sharing a text stream, a solo
    text writer, two plain writers sharing a JSON stream, a producer on its
    own text stream and a producer on its own JSON stream."""
    for spec in (
        WriterSpec("w0", "/crash/text-shared", TEXT),
        WriterSpec("w1", "/crash/text-shared", TEXT),
        WriterSpec("w2", "/crash/text-solo", TEXT),
        WriterSpec("w3", "/crash/json-shared", JSON),
        WriterSpec("w4", "/crash/json-shared", JSON),
        WriterSpec("w5", "/crash/text-producer", TEXT, producer=True),
        WriterSpec("w6", "/crash/json-producer", JSON, producer=True),
        WriterSpec("w7", "/crash/text-shared", TEXT, producer=True),
    ):
        rig.add_writer(spec)


def cycle_side_work(rig: CrashRig, c: Client, cycle: int) -> list[tuple[float, Any]]:
    """Per-cycle work besides the writers: streams closed (by a producer with
    a final append, and close-only, the latter racing a writer), a stream
    deleted, and a path deleted and re-created. Returns timed actions to run
    while the load is on, so closures land under load, before the crash."""
    closed_p = f"/crash/closed-{cycle}-producer"
    assert c.request("PUT", closed_p, b"first\n", {"Content-Type": TEXT}).status == 201
    r = c.request("POST", closed_p, b"second\n", {"Content-Type": TEXT, **producer_headers("closer", 0, 0)})
    assert r.status == 200, r
    closed_j = f"/crash/closed-{cycle}-json"
    assert c.request("PUT", closed_j, b'[{"n":1},{"n":2}]', {"Content-Type": JSON}).status == 201
    racing = rig.add_writer(WriterSpec(f"rc{cycle}", f"/crash/racing-close-{cycle}", TEXT))
    assert c.request("PUT", racing.spec.path, b"", {"Content-Type": TEXT}).status == 201

    gone = f"/crash/deleted-{cycle}"
    assert c.request("PUT", gone, b"doomed\n", {"Content-Type": TEXT}).status == 201
    assert c.request("POST", gone, b"still doomed\n", {"Content-Type": TEXT}).status == 204
    assert c.request("DELETE", gone).status == 204
    rig.gone.append(gone)
    again = "/crash/recreated"
    if rig.recreated is not None:
        assert c.request("DELETE", again).status == 204
    body = f"generation {cycle}\n".encode()
    assert c.request("PUT", again, body, {"Content-Type": TEXT}).status == 201
    rig.recreated = (again, body)

    def close_producer() -> None:
        final = b"final\n"
        r = c.request("POST", closed_p, final,
                      {"Content-Type": TEXT, "Stream-Closed": "true", **producer_headers("closer", 0, 1)})
        assert r.status == 200 and r.header("stream-closed") == "true", r
        rig.closed.append(ClosedStream(closed_p, r.header("stream-next-offset") or "", ("closer", 0, 1, final)))

    def close_json() -> None:
        r = c.request("POST", closed_j, b"", {"Stream-Closed": "true"})
        assert r.status == 204 and r.header("stream-closed") == "true", r
        rig.closed.append(ClosedStream(closed_j, r.header("stream-next-offset") or "", None))

    def close_racing() -> None:
        r = c.request("POST", racing.spec.path, b"", {"Stream-Closed": "true"})
        assert r.status == 204 and r.header("stream-closed") == "true", r
        rig.closed.append(ClosedStream(racing.spec.path, r.header("stream-next-offset") or "", None))

    return [(0.2, close_producer), (0.3, close_json), (0.4, close_racing)]


# ------------------------------------------------------------------- tests


@pytest.mark.timeout(120)
@pytest.mark.parametrize("extra", [(), ("--checkpoint-interval", "0.5")], ids=["log-only", "checkpoint-0.5s"])
def test_kill_9_under_concurrent_load_loses_nothing_acknowledged(tmp_path: Path, extra: tuple[str, ...]) -> None:
    """Three kill -9 / restart cycles under eight concurrent writers.

    Every acknowledged append must survive each crash exactly once, in its
    writer's order and at its acknowledged offset; closures, deletions and
    producer state must survive too. With a 0.5 s checkpoint interval the
    crashes also land before, during and after checkpoints (which rotate and
    delete log files), the riskiest moments for the log/catalog hand-off.
    """
    rig = CrashRig(tmp_path / "data", *extra, seed=len(extra))
    standard_writers(rig)
    cycles = 3
    totals = Tally()
    t_start = time.monotonic()
    rig.start()
    c = rig.client()
    rig.create_streams(c)
    c.close()
    for cycle in range(cycles):
        c = rig.client()
        during = cycle_side_work(rig, c, cycle)
        load = rig.rng.uniform(1.0, 2.0)
        writers = [w for w in rig.writers if w.ended != "stream closed"]
        rig.run_load(load, writers, during, end="kill")
        c.close()
        acked = sum(w.acked_this_cycle for w in writers)
        assert acked > 50, f"too little load to mean anything: {acked}"
        restart = rig.start()
        tally = rig.verify()
        label = f"{' '.join(extra) or 'log-only'} cycle {cycle + 1}/{cycles} kill after {load:.2f}s"
        report(label, acked, tally, restart, rig.recoveries[-1])
        assert_clean(tally)
        totals.acked, totals.verified = tally.acked, tally.verified
        totals.inflight_present += tally.inflight_present
        totals.inflight_absent += tally.inflight_absent
    assert rig.server is not None
    assert rig.server.stop() == 0
    print(f"[{' '.join(extra) or 'log-only'}] total acknowledged appends verified after {cycles} crashes: "
          f"{totals.verified}/{totals.acked}, in-flight at crash: {totals.inflight_present} present, "
          f"{totals.inflight_absent} absent; {time.monotonic() - t_start:.1f}s")
    if extra:
        # The periodic checkpoint really ran under load: some recovery started
        # from a catalog newer than the state the previous recovery rebuilt.
        recs = rig.recoveries
        advanced = [
            recs[i]["checkpoint_lsn"] > recs[i - 1]["checkpoint_lsn"] + recs[i - 1]["replayed_records"]
            for i in range(1, len(recs))
        ]
        assert any(advanced), recs


# ------------------------------------------------------------ log surgery

_FRAME = struct.Struct("<IIQB")


def make_frame(lsn: int, rtype: int, body: bytes) -> bytes:
    """A log frame built from the documented format, independently of the
    server's code: <u32 len><u32 crc32(lsn,type,body)><u64 lsn><u8 type><body>."""
    head = struct.pack("<QB", lsn, rtype)
    return struct.pack("<II", len(body), zlib.crc32(body, zlib.crc32(head))) + head + body


def frames(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, end, lsn) of each valid frame from the start; stops at the
    first frame that does not verify."""
    out: list[tuple[int, int, int]] = []
    off = 0
    while off + _FRAME.size <= len(data):
        length, crc, lsn, rtype = _FRAME.unpack_from(data, off)
        end = off + _FRAME.size + length
        if end > len(data) or zlib.crc32(data[off + 8 : end]) != crc:
            break
        out.append((off, end, lsn))
        off = end
    return out


def log_end(data: bytes) -> int:
    """End of the last whole record of a log file, checking that only zeros
    follow it: a file is either cut at its last record or preallocated and
    zero-filled beyond it; either way the next record would go here."""
    fs = frames(data)
    end = fs[-1][1] if fs else 0
    assert not any(data[end:]), f"non-zero bytes after the last record at {end}"
    return end


def wal_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "wal").glob("*.wal"))


def sequential_appends(c: Client, path: str, ctype: str, n: int, name: str, start: int = 0) -> list[str]:
    spec = WriterSpec(name, path, ctype)
    offsets = []
    for seq in range(start, start + n):
        r = c.request("POST", path, spec.body(seq), spec.headers(seq))
        assert r.status == 204, r
        offsets.append(r.header("stream-next-offset") or "")
    return offsets


def expected_text(name: str, n: int) -> bytes:
    return b"".join(text_payload(name, i) for i in range(n))


def expected_json(name: str, n: int) -> bytes:
    return b"".join(json.dumps(json_message(name, i), separators=(",", ":")).encode() + b"," for i in range(n))


TORN_TAILS = ["garbage", "truncated-copy-of-last-frame", "torn-next-frame", "header-only", "zero-block",
              "torn-frame-whose-payload-embeds-a-frame"]


def torn_tail(kind: str, wal: bytes) -> bytes:
    """Bytes that a crash in the middle of writing the next record could
    leave (or, for garbage, what a damaged last block could hold)."""
    fs = frames(wal[: log_end(wal)])
    last_off, last_end, last_lsn = fs[-1]
    rng = random.Random(kind)
    if kind == "garbage":
        return b"\xde\xad\xbe\xef" * 9 + b"\x01"
    if kind == "truncated-copy-of-last-frame":
        return wal[last_off:last_end][:-5]
    if kind == "torn-next-frame":
        return make_frame(last_lsn + 1, 2, rng.randbytes(3000))[:1234]
    if kind == "header-only":
        return make_frame(last_lsn + 1, 2, rng.randbytes(4096))[: _FRAME.size]
    if kind == "zero-block":
        return bytes(4096)
    if kind == "torn-frame-whose-payload-embeds-a-frame":
        # An append whose payload happens to contain log-frame bytes (a
        # client storing a copy of a log, say), torn after the embedded frame.
        embedded = wal[fs[0][0] : fs[0][1]]
        frame = make_frame(last_lsn + 1, 2, rng.randbytes(100) + embedded + rng.randbytes(5000))
        return frame[: _FRAME.size + 100 + len(embedded) + 50]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", TORN_TAILS)
def test_torn_log_tail_is_truncated_and_logged(tmp_path: Path, kind: str) -> None:
    """A record cut short at the end of the newest log file is what a crash
    mid-write leaves: it was never acknowledged, so recovery must drop it
    (truncating the file), say so in the log, and keep everything else."""
    data = tmp_path / "data"
    srv = launch(data, "--checkpoint-interval", "3600")
    c = Client(srv.port)
    assert c.request("PUT", "/torn/t", b"", {"Content-Type": TEXT}).status == 201
    assert c.request("PUT", "/torn/j", b"", {"Content-Type": JSON}).status == 201
    sequential_appends(c, "/torn/t", TEXT, 15, "a")
    sequential_appends(c, "/torn/j", JSON, 15, "b")
    c.close()
    assert srv.stop() == 0
    srv = launch(data, "--checkpoint-interval", "3600")
    c = Client(srv.port)
    t_offsets = sequential_appends(c, "/torn/t", TEXT, 15, "a", start=15)
    j_offsets = sequential_appends(c, "/torn/j", JSON, 15, "b", start=15)
    c.close()
    srv.kill()

    wal = wal_files(data)[-1]
    original = wal.read_bytes()
    end = log_end(original)
    assert len(frames(original)) >= 30, "the newest log file should hold the records written since the stop"
    tail = torn_tail(kind, original)
    with open(wal, "r+b") as f:  # where the next record would have gone
        f.seek(end)
        f.write(tail)
    witness = tmp_path / "wal-witness"
    os.link(wal, witness)  # a second name for the inode: recovery may delete the log file once checkpointed

    t0 = time.monotonic()
    try:
        srv = launch(data, "--checkpoint-interval", "3600")
    except RuntimeError as exc:
        pytest.fail(f"a torn tail ({kind}, {len(tail)} bytes) must not stop the server from starting:\n{exc}")
    restart = time.monotonic() - t0
    log = srv.read_log()
    rec = recovered_line(srv)
    print(f"\n[torn tail {kind}] {len(tail)} bytes written after the last record; recovered in {rec['seconds']}s "
          f"(restart {restart:.2f}s), torn_bytes={rec['torn_bytes_truncated']} replayed={rec['replayed_records']}")
    after = witness.read_bytes()
    assert after[:end] == original[:end] and not any(after[end:]), \
        "the log file was not cut back to its last whole record"
    if kind == "zero-block":
        # Zeros are what an unwritten (or preallocated) end of a log looks
        # like; reporting them as torn is optional, dropping them is not.
        assert rec["torn_bytes_truncated"] in (0, len(tail)), rec
    else:
        assert "torn" in log
        assert rec["torn_bytes_truncated"] in (len(tail), len(tail.rstrip(b"\0"))), rec
        assert str(rec["torn_file"]).endswith(wal.name), rec

    c = Client(srv.port)
    t = read_all(c, "/torn/t")
    j = read_all(c, "/torn/j")
    assert t.stored == expected_text("a", 30) and t.next_offset == t_offsets[-1]
    assert j.stored == expected_json("b", 30) and j.next_offset == j_offsets[-1]
    # The log is healthy again: appends after recovery survive another crash.
    sequential_appends(c, "/torn/t", TEXT, 3, "a", start=30)
    c.close()
    srv.kill()
    srv = launch(data, "--checkpoint-interval", "3600")
    assert recovered_line(srv)["torn_bytes_truncated"] == 0
    c = Client(srv.port)
    assert read_all(c, "/torn/t").stored == expected_text("a", 33)
    c.close()
    assert srv.stop() == 0


def snapshot(c: Client, paths: list[str], producers: list[WriterState]) -> dict[str, Any]:
    """Everything a client can observe without writing: HEAD metadata, full
    contents and ETags, and each producer's duplicate answer (a duplicate is
    answered from producer state without logging anything)."""
    snap: dict[str, Any] = {}
    for path in paths:
        head = c.request("HEAD", path)
        entry: dict[str, Any] = {"status": head.status}
        if head.status == 200:
            img = read_all(c, path)
            first = c.request("GET", f"{path}?offset=-1")
            entry |= {
                "head": {k: head.header(k) for k in ("content-type", "stream-next-offset", "stream-closed")},
                "stored": img.stored, "tail": img.next_offset, "closed": img.closed, "etag": first.header("etag"),
            }
        snap[path] = entry
    for w in producers:
        seq = max(w.acked) if w.acked else 0
        r = c.request("POST", w.spec.path, w.spec.body(seq), w.spec.headers(seq))
        snap[f"producer {w.spec.name}"] = (r.status, r.header("producer-seq"), r.header("stream-next-offset"))
    return snap


def test_recovering_twice_gives_the_same_state(tmp_path: Path) -> None:
    """Recovery from the log (first start after a crash) and recovery from
    the checkpoint that start wrote (second start) must agree byte for byte;
    a third start confirms the fixed point."""
    rig = CrashRig(tmp_path / "data", "--checkpoint-interval", "0.5", seed=7)
    standard_writers(rig)
    rig.start()
    c = rig.client()
    rig.create_streams(c)
    during = cycle_side_work(rig, c, 0)
    rig.run_load(1.2, list(rig.writers), during, end="kill")
    c.close()
    paths = sorted({w.spec.path for w in rig.writers} | {cs.path for cs in rig.closed} | set(rig.gone)
                   | {"/crash/recreated"})
    producers = [w for w in rig.writers if w.spec.producer]
    snaps = []
    for i in range(3):
        restart = rig.start()
        c = rig.client()
        snaps.append(snapshot(c, paths, producers))
        c.close()
        rec = rig.recoveries[-1]
        print(f"\n[recover twice] start {i + 1}: restart={restart:.2f}s recovery={rec['seconds']}s "
              f"checkpoint_lsn={rec['checkpoint_lsn']} replayed={rec['replayed_records']} "
              f"bytes={sum(len(s.get('stored', b'')) for s in snaps[-1].values() if isinstance(s, dict))}")
        rig.kill()
    for path in snaps[0]:
        assert snaps[1][path] == snaps[0][path], f"{path} differs between the first and second recovery"
        assert snaps[2][path] == snaps[0][path], f"{path} differs between the first and third recovery"
    assert rig.recoveries[-1]["replayed_records"] == 0  # nothing was written between the restarts
    # And the state they agree on is the right one.
    restart = rig.start()
    tally = rig.verify()
    report("recover twice, verification", sum(w.acked_this_cycle for w in rig.writers), tally, restart,
           rig.recoveries[-1])
    assert_clean(tally)
    assert rig.server is not None and rig.server.stop() == 0


CORRUPTIONS = ["length", "crc", "lsn", "type", "payload", "last-record-of-older-file"]


@pytest.mark.parametrize("where", CORRUPTIONS)
def test_corruption_in_the_middle_of_the_log_refuses_to_start(tmp_path: Path, where: str) -> None:
    """A damaged record followed by valid ones cannot be a torn write: the
    records after it were acknowledged, so skipping or truncating would lose
    them silently. The daemon must refuse to start, name the file, and leave
    the evidence untouched."""
    data = tmp_path / "data"
    srv = launch(data, "--checkpoint-interval", "3600")
    c = Client(srv.port)
    assert c.request("PUT", "/bad/s", b"", {"Content-Type": TEXT}).status == 201
    sequential_appends(c, "/bad/s", TEXT, 20, "z")
    c.close()
    srv.kill()
    (wal,) = wal_files(data)
    raw = bytearray(wal.read_bytes())
    fs = frames(bytes(raw))
    assert len(fs) == 21 and log_end(bytes(raw)) == fs[-1][1]
    target = wal
    if where == "last-record-of-older-file":
        # Split the log at a record boundary into two files named by their
        # first LSN (the layout a checkpoint's rotation leaves), then damage
        # the last record of the older one, which looks torn on its own.
        cut_off, _, cut_lsn = fs[10]
        newer = wal.with_name(f"{cut_lsn:020d}.wal")
        newer.write_bytes(raw[cut_off:])
        del raw[cut_off:]
        wal.write_bytes(raw)
        control = tmp_path / "control"
        shutil.copytree(data, control)
        ok = launch(control)  # the split layout alone is fine
        cc = Client(ok.port)
        assert read_all(cc, "/bad/s").stored == expected_text("z", 20)
        cc.close()
        assert ok.stop() == 0
        off, end, _ = fs[9]
        raw[(off + _FRAME.size + end) // 2] ^= 0xFF
    else:
        off, end, _ = fs[3]
        at = {"length": off, "crc": off + 4, "lsn": off + 8, "type": off + 16, "payload": (off + 17 + end) // 2}
        raw[at[where]] ^= 0x5A
    target.write_bytes(raw)
    before = {p.name: p.read_bytes() for p in wal_files(data)}
    catalog_before = (data / "catalog.json").read_bytes()

    srv = launch(data, "--checkpoint-interval", "3600", start=False)
    with pytest.raises(RuntimeError):
        srv.start()
    assert srv.proc is not None
    code = srv.proc.returncode
    assert code not in (0, None), code
    log = srv.read_log()
    print(f"\n[corrupt {where}] exit code {code}; log names the file: {target.name in log}")
    assert target.name in log, log[-2000:]
    assert {p.name: p.read_bytes() for p in wal_files(data)} == before, "a refused start must not alter the log"
    assert (data / "catalog.json").read_bytes() == catalog_before


@pytest.mark.timeout(60)
def test_sigterm_under_load_is_clean(tmp_path: Path) -> None:
    """SIGTERM while eight writers append: every in-flight append is answered
    or refused (no hang), the daemon exits 0 after a final checkpoint, and
    everything acknowledged is there after the restart."""
    rig = CrashRig(tmp_path / "data", seed=5)
    standard_writers(rig)
    rig.start()
    c = rig.client()
    rig.create_streams(c)
    c.close()
    assert rig.server is not None
    t0 = time.monotonic()
    writers = list(rig.writers)
    rc = rig.run_load(1.0, writers, end="sigterm")
    stop_s = time.monotonic() - t0 - 1.0
    acked = sum(w.acked_this_cycle for w in writers)
    endings = sorted({w.ended for w in writers})
    assert rc == 0, f"exit code {rc} on SIGTERM:\n{rig.server.read_log()[-3000:]}"
    assert not any(w.ended.startswith(("timeout", "unexpected")) for w in writers), endings
    restart = rig.start()
    rec = rig.recoveries[-1]
    tally = rig.verify()
    report(f"SIGTERM (stopped in {stop_s:.2f}s; writers ended with {endings})", acked, tally, restart, rec)
    assert rec["replayed_records"] == 0 and rec["torn_bytes_truncated"] == 0, "clean shutdown ends on a checkpoint"
    assert_clean(tally)
    assert rig.server.stop() == 0


"""The engine on its own: no sockets, a real data directory.

Property tests (hypothesis) cover the invariants everything else leans on:
offsets sort like positions, JSON framing round-trips, a read from any
offset returns exactly the bytes after it, and recovery (after a clean stop
or an abandoned process) rebuilds the same state, twice over.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_streamsd.engine import Engine, EngineOptions, Producer, StorageFailedError, Stream, StreamConfig
from durable_streamsd.engine.checkpoint import CorruptCatalogError
from durable_streamsd.engine.engine import MANY_FILES
from durable_streamsd.engine.records import (
    APPEND,
    AppendBody,
    decode_append,
    encode_append,
    frame,
    frame_append,
    parse_frame,
)
from durable_streamsd.engine.segments import MIN_ALLOC, SegmentCache, SegmentStore, prepare_segment, segment_name
from durable_streamsd.engine.stream import INDEX_ENTRY
from durable_streamsd.protocol.headers import next_offset
from durable_streamsd.protocol.jsonmode import frame_messages, has_long_digit_run, wrap_array
from durable_streamsd.protocol.offsets import format_offset, parse_offset
from durable_streamsd.protocol.params import query_params

SEGMENT = 16 * 1024
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Harness:
    """Runs an engine on a private event loop, one awaited operation at a time."""

    def __init__(self, data_dir: Path, fsync: str = "always", **overrides: Any) -> None:
        self.loop = asyncio.new_event_loop()
        # Small preallocated log files keep the many property examples quick;
        # small segments make them cross segment boundaries often.
        base: dict[str, Any] = {"fsync": fsync, "wal_file_bytes": 256 * 1024, "segment_bytes": SEGMENT}
        options = EngineOptions(**(base | overrides))
        self.engine = Engine(str(data_dir), options)
        self.report = self.engine.open()
        self.engine.start(self.loop)

    def wait(self, start: Callable[[Callable[[BaseException | None], None]], Any]) -> Any:
        fut: asyncio.Future[BaseException | None] = self.loop.create_future()
        result = start(lambda exc: fut.set_result(exc))
        exc = self.loop.run_until_complete(fut)
        if exc is not None:
            raise exc
        return result

    def create(self, path: str, ctype: str = "application/octet-stream", body: bytes = b"") -> Stream:
        lengths = [len(body)] if body else []
        return self.wait(lambda done: self.engine.create(path, StreamConfig(ctype), False, body, lengths, done))

    def append(self, s: Stream, data: bytes, **kw: Any) -> int:
        return self.wait(lambda done: self.engine.append(s, data, [len(data)] if data else [], done=done, **kw))

    def read_all(self, s: Stream, limit: int = 1 << 20) -> bytes:
        out = bytearray()
        pos = s.start
        while pos < s.tail:
            views, pos = self.engine.read(s, pos, limit)
            for v in views:
                out += v
        return bytes(out)

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.close())
        self.loop.close()

    def abandon(self) -> None:
        """Leave without a checkpoint, as a crash after the last sync would."""
        if self.engine.wal is not None:
            self.engine.wal.close()
        if self.engine.committer.aio is not None:
            # As the kernel does at exit: in-flight writes finish, the context goes.
            self.engine.committer.aio.close()
        self.engine.executor.shutdown(wait=True)
        self.engine.sync_executor.shutdown(wait=True)
        if self.engine.spares is not None:
            self.engine.spares.join()
        self.loop.close()


def recovered(data_dir: Path, path: str, **overrides: Any) -> bytes | None:
    """What a fresh start on data_dir reads back of the stream at path
    (None: no such stream)."""
    again = Harness(data_dir, **overrides)
    try:
        s = again.engine.get(path)
        return None if s is None else again.read_all(s)
    finally:
        again.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "data")
    yield h
    if not h.loop.is_closed():
        h.close()


# --------------------------------------------------------------- offsets


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_offsets_sort_like_positions(a: int, b: int) -> None:
    ta, tb = format_offset(7, a), format_offset(7, b)
    assert (ta < tb) == (a < b) and (ta == tb) == (a == b)
    assert parse_offset(ta) == (7, a)
    assert format_offset(8, a) != ta
    assert ta not in ("-1", "now") and not set(ta) & set(",&=?/")


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_next_offset_header_carries_the_offset_token(stream_id: int, position: int) -> None:
    store = SegmentStore("/nonexistent", 0, SegmentCache(1))
    s = Stream(stream_id, "/s", StreamConfig("text/plain"), store, 0.0)
    assert next_offset(s, position) == f"stream-next-offset: {format_offset(stream_id, position)}\r\n".encode()


@given(st.text(alphabet="ab=&;-_.~09xyzé%+", max_size=40))
def test_query_params_match_the_standard_parser(query: str) -> None:
    """The fast split of plain queries gives exactly what parse_qsl gives."""
    expected: dict[str, list[str]] = {}
    try:
        for k, v in parse_qsl(query, keep_blank_values=True, errors="strict"):
            expected.setdefault(k, []).append(v)
    except UnicodeDecodeError:
        return  # the slow path's 400, tested with bad input
    assert query_params(query) == expected


@given(
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**63 - 1),
    st.booleans(),
    st.lists(st.binary(min_size=1, max_size=40), max_size=4),
    st.one_of(st.none(), st.builds(Producer, st.text(min_size=1, max_size=8), st.integers(0, 99), st.integers(0, 99))),
    st.one_of(st.none(), st.binary(min_size=1, max_size=8)),
)
def test_append_records_round_trip(
    stream_id: int, position: int, close: bool, units: list[bytes], producer: Producer | None, seq: bytes | None
) -> None:
    """Every shape of append record (the packed one-unit form included)
    decodes to what was encoded, and survives framing."""
    a = AppendBody(stream_id, position, close, [len(u) for u in units], producer, seq, b"".join(units))
    assert decode_append(encode_append(a)) == a
    framed = frame(5, APPEND, encode_append(a))
    assert frame_append(5, stream_id, position, close, a.unit_lengths, producer, seq, a.payload) == framed
    parsed = parse_frame(framed, 0)
    assert parsed is not None and parsed[0] == 5 and decode_append(parsed[2]) == a


@PROPS
@given(
    size=st.sampled_from([4096, 8192, 16384]),
    chunks=st.lists(st.integers(0, 40_000), max_size=12),
    origin=st.sampled_from([0, 5, 70_000]),
)
def test_segment_store_reads_back_what_was_written(size: int, chunks: list[int], origin: int) -> None:
    """Whatever the append sizes, every range reads back as written, every
    segment but the last is allocated in full, and files never hold much
    more than twice the data (they grow in place by doubling)."""
    with tempfile.TemporaryDirectory() as tmp:
        # A cache of one map: eviction between reserve, write and read too.
        store = SegmentStore(tmp, origin, SegmentCache(1), size)
        expected = bytearray()
        for i, n in enumerate(chunks):
            data = bytes([i % 251 + 1]) * n
            store.reserve(origin + len(expected), n)
            store.write(origin + len(expected), data)
            expected += data
            assert store.allocated >= len(expected) or n == 0
        assert store.read_bytes(origin, origin + len(expected)) == bytes(expected)
        for cut in {0, len(expected) // 3, len(expected) // 2, len(expected)}:
            assert store.read_bytes(origin + cut, origin + len(expected)) == bytes(expected[cut:])
        sizes = {int(name[:-4], 16): os.path.getsize(os.path.join(tmp, name)) for name in os.listdir(tmp)}
        assert all(sizes[base] == size for base in sizes if base != max(sizes))
        assert all(0 < n <= size for n in sizes.values())
        assert sum(sizes.values()) <= 2 * len(expected) + size + MIN_ALLOC


def test_segment_store_names_each_segment_written_since_the_last_checkpoint(tmp_path: Path) -> None:
    """What a checkpoint must flush: every segment written since the last
    one, each once, and nothing when nothing was written."""
    size = 4096
    store = SegmentStore(str(tmp_path), 0, SegmentCache(8), size)

    def write(position: int, n: int) -> None:
        store.reserve(position, n)
        store.write(position, b"d" * n)

    def paths(*bases: int) -> list[str]:
        return [str(tmp_path / segment_name(b)) for b in bases]

    write(0, 10_000)
    assert store.take_dirty(10_000) == paths(0, 4096, 8192)
    assert store.take_dirty(10_000) == []
    write(10_000, 100)
    assert store.take_dirty(10_100) == paths(8192)
    write(10_100, 3_000)  # crosses into the next segment
    write(13_100, 10)
    assert store.take_dirty(13_110) == paths(8192, 12288)


def test_segment_cache_keeps_maps_in_use_and_evicts_idle_ones(tmp_path: Path) -> None:
    """Second chance: a stream written between evictions keeps its map open
    while streams written once lose theirs (after the first pass, which
    finds every map used and clears them all); the bound always holds."""
    cache = SegmentCache(3)
    hot = SegmentStore(str(tmp_path / "hot"), 0, cache, 4096)
    os.makedirs(tmp_path / "hot")
    hot.reserve(0, 10)
    hot.write(0, b"h" * 10)
    # Held here, so a reopened map cannot reuse a dropped one's address.
    hot_maps = [cache.get(str(tmp_path / "hot"), 0)]
    for i in range(20):
        d = tmp_path / f"cold{i}"
        os.makedirs(d)
        cold = SegmentStore(str(d), 0, cache, 4096)
        cold.reserve(0, 5)
        cold.write(0, bytes([i]) * 5)
        hot.write(10 + i, b"h")
        assert len(cache) <= 3
        assert cold.read_bytes(0, 5) == bytes([i]) * 5
        hot_maps.append(cache.get(str(tmp_path / "hot"), 0))
    assert len({id(m) for m in hot_maps}) <= 2  # reopened once at most, not once per eviction
    assert hot.read_bytes(0, 30) == b"h" * 30
    # An evicted cold stream reopens its file and reads what it wrote.
    again = SegmentStore(str(tmp_path / "cold0"), 0, cache, 4096)
    assert again.read_bytes(0, 5) == b"\x00" * 5


# ------------------------------------------------------------ JSON framing

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


_digit_pieces = st.sampled_from([b"1", b"23", b"456789", b"x", b" ", b"-"])


@given(st.binary(max_size=60) | st.lists(_digit_pieces, max_size=40).map(b"".join))
def test_long_digit_runs_are_found_exactly(body: bytes) -> None:
    """The check that sends bodies with integers orjson would turn into
    floats down the exact path finds what the regex \\d{19,} finds."""
    assert has_long_digit_run(body) == bool(re.search(rb"[0-9]{19,}", body))


@given(st.integers(2**63, 2**200) | st.integers(-(2**200), -(2**63) - 1))
def test_json_integers_beyond_64_bits_are_kept_exactly(n: int) -> None:
    payload, lengths = frame_messages(json.dumps({"n": n, "m": [n]}).encode(), allow_empty=False)
    assert json.loads(b"".join(wrap_array([memoryview(payload)]))) == [{"n": n, "m": [n]}]


@given(json_values)
def test_json_framing_round_trips(value: Any) -> None:
    body = orjson.dumps(value)
    if value == []:
        payload, lengths = frame_messages(body, allow_empty=True)
        assert payload == b"" and lengths == []
        return
    payload, lengths = frame_messages(body, allow_empty=False)
    expected = value if isinstance(value, list) else [value]
    assert sum(lengths) == len(payload) and len(lengths) == len(expected)
    assert orjson.loads(b"".join(wrap_array([memoryview(payload)]))) == expected
    # Any run of whole messages is itself a valid array of those messages.
    start = 0
    for i, n in enumerate(lengths):
        one = b"".join(wrap_array([memoryview(payload)[start : start + n]]))
        assert orjson.loads(one) == [expected[i]]
        start += n


def test_json_rejects_what_is_not_json() -> None:
    from durable_streamsd.protocol.errors import ProtocolError

    for bad in (b"{", b"NaN", b"[1,]", b"\xff\xfe", b"'x'", b"[]"):
        with pytest.raises(ProtocolError):
            frame_messages(bad, allow_empty=False)
    assert frame_messages(b"123456789012345678901234567890", allow_empty=False)[0] == b"123456789012345678901234567890,"


# ------------------------------------------------------------------ reads

chunks = st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=25)


@PROPS
@given(data=chunks, limit=st.integers(1, 5000), pick=st.integers(0, 10**6))
def test_read_from_any_offset_returns_exactly_the_bytes_after_it(
    tmp_path_factory: pytest.TempPathFactory, data: list[bytes], limit: int, pick: int
) -> None:
    h = Harness(tmp_path_factory.mktemp("reads"))
    try:
        s = h.create("/r")
        offsets = [0]
        for d in data:
            offsets.append(h.append(s, d))
        whole = b"".join(data)
        assert s.tail == len(whole)
        start = offsets[pick % len(offsets)]
        pos, got = start, bytearray()
        while pos < s.tail:
            views, end = h.engine.read(s, pos, limit)
            assert pos < end <= pos + limit
            for v in views:
                got += v
            pos = end
        assert bytes(got) == whole[start:]
    finally:
        h.close()


@PROPS
@given(messages=st.lists(json_values, min_size=1, max_size=20), limit=st.integers(1, 400))
def test_json_reads_return_whole_messages(
    tmp_path_factory: pytest.TempPathFactory, messages: list[Any], limit: int
) -> None:
    h = Harness(tmp_path_factory.mktemp("json"))
    try:
        s = h.create("/j", "application/json")
        for m in messages:
            payload, lengths = frame_messages(orjson.dumps([m]), allow_empty=False)
            h.wait(lambda done, p=payload, n=lengths: h.engine.append(s, p, n, done=done))
        got: list[Any] = []
        pos = 0
        while pos < s.tail:
            views, pos = h.engine.read(s, pos, limit)
            got.extend(orjson.loads(b"".join(wrap_array(views))))
            assert h.engine.valid_position(s, pos)
        assert got == messages
    finally:
        h.close()


def test_readers_never_see_uncommitted_bytes(harness: Harness) -> None:
    """The visible tail moves at commit, not when the record is written."""
    s = harness.create("/v")
    seen: list[int] = []
    harness.engine.append(s, b"abc", [3], done=lambda exc: seen.append(s.tail))
    assert s.tail == 0 and s.pending_tail == 3
    assert harness.engine.read(s, 0, 100) == ([], 0)
    harness.loop.run_until_complete(asyncio.sleep(0.05))
    assert seen == [3] and harness.read_all(s) == b"abc"


def test_group_commit_shares_syncs(harness: Harness) -> None:
    streams = [harness.create(f"/g{i}") for i in range(20)]
    before = harness.engine.committer.syncs
    fut: asyncio.Future[None] = harness.loop.create_future()
    pending = [0]

    def done(exc: BaseException | None) -> None:
        pending[0] -= 1
        if pending[0] == 0:
            fut.set_result(None)

    for _ in range(10):
        for s in streams:
            pending[0] += 1
            harness.engine.append(s, b"x" * 100, [100], done=done)
    harness.loop.run_until_complete(fut)
    # All written in one loop turn: the sync starts at the next turn and
    # takes them all (started at once, the first append got a sync alone).
    syncs = harness.engine.committer.syncs - before
    assert syncs == 1, f"{syncs} syncs for 200 appends written in one turn"


def test_readers_are_woken_once_per_commit_batch(harness: Harness) -> None:
    """Records committed by one sync wake a stream's parked readers once, at
    the batch's tail, and only after every writer in it has been answered."""
    s = harness.create("/wake")
    events: list[object] = []
    woken: list[tuple[int, int]] = []

    def listener(stream: Stream, groups: list[tuple[int, list[object]]]) -> None:
        for position, waiters in groups:
            woken.append((position, stream.tail))
            events.append("wake")
            harness.engine.wait(stream, stream.tail, waiters[0])  # park again, like a live reader

    harness.engine.wake_listener = listener
    harness.engine.wait(s, 0, object())
    fut: asyncio.Future[None] = harness.loop.create_future()

    def done(exc: BaseException | None) -> None:
        events.append("ack")
        if events.count("ack") == 10:
            harness.loop.call_later(0.05, fut.set_result, None)

    for _ in range(10):
        harness.engine.append(s, b"y" * 10, [10], done=done)
    harness.loop.run_until_complete(fut)
    assert s.tail == 100
    # The first append's sync may commit alone; the nine written while it
    # ran commit together. Either way: far fewer wakes than records, each
    # after its batch's writers were answered, the last one at the tail.
    assert 1 <= len(woken) <= 2, woken
    assert woken[-1] == (woken[-1][0], 100)
    assert events[0] == "ack" and events[-1] == "wake"


def test_segments_are_made_and_grown_before_appends_need_them(harness: Harness) -> None:
    """A new stream's first segment is created by the disk thread; once an
    allocation is half used, the disk thread doubles it in place (or makes
    the next segment), so appends only map space that is already there."""
    s = harness.create("/prep")
    directory = s.store.directory

    def settle() -> dict[str, int]:
        harness.engine.executor.submit(lambda: None).result()
        if not os.path.isdir(directory):
            return {}
        return {name: os.path.getsize(os.path.join(directory, name)) for name in sorted(os.listdir(directory))}

    assert settle() == {segment_name(0): MIN_ALLOC}
    harness.append(s, b"a" * (MIN_ALLOC // 2 - 1))
    assert settle() == {segment_name(0): MIN_ALLOC}
    harness.append(s, b"b" * 2)  # past half: the file doubles, still one file
    assert settle() == {segment_name(0): 2 * MIN_ALLOC}
    harness.append(s, b"c" * (SEGMENT - MIN_ALLOC))  # past half of the last step: the next segment
    assert settle() == {segment_name(0): SEGMENT, segment_name(SEGMENT): SEGMENT}
    harness.append(s, b"d" * MIN_ALLOC)  # into the prepared segment
    assert harness.read_all(s) == b"a" * (MIN_ALLOC // 2 - 1) + b"bb" + b"c" * (SEGMENT - MIN_ALLOC) + b"d" * MIN_ALLOC
    # Deleted meanwhile: preparing finds no directory and does nothing.
    harness.wait(lambda done: harness.engine.delete(s, done))
    assert settle() == {}  # the directory's removal has run on the disk thread
    prepare_segment(directory, 3 * SEGMENT, SEGMENT, False)
    assert settle() == {}


def test_segment_size_is_kept_by_the_data_directory(tmp_path: Path) -> None:
    """Positions map to files through the segment size, so a data directory
    keeps the one it was made with, whatever a later start asks for."""
    first = Harness(tmp_path, "always")
    s = first.create("/kept")
    first.append(s, b"k" * (SEGMENT + 10))
    first.close()
    again = Engine(str(tmp_path), EngineOptions(segment_bytes=4 * SEGMENT))
    again.open()
    assert again.segment_bytes == SEGMENT
    kept = again.get("/kept")
    assert kept is not None and kept.store.read_bytes(0, SEGMENT + 10) == b"k" * (SEGMENT + 10)
    asyncio.new_event_loop().run_until_complete(again.close())
    with pytest.raises(ValueError):
        Engine(str(tmp_path), EngineOptions(segment_bytes=5000))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda doc: doc.update(version=1), "unsupported catalog version 1"),
        (lambda doc: doc.update(segment_bytes=5000), "invalid segment size 5000"),
        (lambda doc: doc.pop("segment_bytes"), "invalid segment size None"),
    ],
    ids=["format-1", "odd-segment-size", "no-segment-size"],
)
def test_catalog_of_another_format_or_segment_size_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    """A catalog this build cannot map positions to files with stops the
    start with a clear error, and nothing on disk is touched."""
    first = Harness(tmp_path, "always")
    first.append(first.create("/f"), b"f")
    first.close()
    catalog = tmp_path / "catalog.json"
    body = catalog.read_bytes().rstrip(b"\n").rpartition(b"\n")[0]
    doc = orjson.loads(body)
    change(doc)
    body = orjson.dumps(doc)
    catalog.write_bytes(body + b"\n%08x\n" % zlib.crc32(body))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(CorruptCatalogError, match=message):
        Engine(str(tmp_path)).open()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------- recovery


def snapshot(e: Engine) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, s in sorted(e.by_path.items()):
        data = bytearray()
        pos = s.start
        while pos < s.tail:
            views, pos = e.read(s, pos, 1 << 20)
            for v in views:
                data += v
        out[path] = (
            s.config.content_type,
            s.tail,
            s.closed,
            bytes(data),
            {k: (v.epoch, v.last_seq) for k, v in s.producers.items()},
            s.last_seq,
        )
    return out


ops = st.lists(
    st.tuples(
        st.sampled_from(["append", "append", "append", "create", "close", "delete", "producer"]),
        st.integers(0, 4),
        st.binary(min_size=1, max_size=200),
    ),
    min_size=1,
    max_size=40,
)


@PROPS
@given(script=ops, clean=st.booleans())
def test_recovery_rebuilds_the_same_state_twice(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[str, int, bytes]], clean: bool
) -> None:
    data_dir = tmp_path_factory.mktemp("recover")
    h = Harness(data_dir)
    seqs: dict[int, int] = {}
    for op, n, payload in script:
        path = f"/p{n}"
        s = h.engine.get(path)
        if op == "create" or s is None:
            if s is None:
                h.create(path, body=payload)
            continue
        if s.closing:
            continue
        if op == "append":
            h.append(s, payload, seq=b"%08d" % len(seqs))
        elif op == "producer":
            seq = seqs.get(n, -1) + 1
            seqs[n] = seq
            h.append(s, payload, producer=Producer(f"w{n}", 0, seq))
        elif op == "close":
            h.wait(lambda done, s=s: h.engine.append(s, b"", [], close=True, done=done))
        elif op == "delete":
            h.wait(lambda done, s=s: h.engine.delete(s, done))
            seqs.pop(n, None)
    before = snapshot(h.engine)
    if clean:
        h.close()
    else:
        h.abandon()
    again = Harness(data_dir)
    assert snapshot(again.engine) == before
    again.abandon()
    third = Harness(data_dir)
    assert snapshot(third.engine) == before
    third.close()


def test_checkpoint_of_many_streams_flushes_all_with_one_sync(tmp_path: Path) -> None:
    """Past MANY_FILES, index files are written unsynced and one sync()
    covers them and the segments; what the checkpoint covered is then read
    from segments and index files alone, after a crash, JSON boundaries
    included."""
    h = Harness(tmp_path / "d")
    streams = [h.create(f"/j{i}", "application/json") for i in range(MANY_FILES + 10)]
    for i, s in enumerate(streams):
        for k in range(3):
            h.append(s, b'{"k":%d,"i":%d},' % (k, i))
    h.loop.run_until_complete(h.engine.checkpoint(force=True))
    for s in streams:
        assert os.path.getsize(os.path.join(s.store.directory, "index")) == 3 * INDEX_ENTRY.size
    h.append(streams[0], b'{"after":1},')  # only in the log
    h.abandon()
    again = Harness(tmp_path / "d")
    for i in range(len(streams)):
        s2 = again.engine.get(f"/j{i}")
        assert s2 is not None
        reads = [again.engine.read(s2, pos, 1)[0] for pos in _positions(again, s2)]
        messages = [orjson.loads(b"".join(wrap_array(views))) for views in reads]
        expected = [[{"k": k, "i": i}] for k in range(3)] + ([[{"after": 1}]] if i == 0 else [])
        assert messages == expected
    again.close()


def _positions(h: Harness, s: Stream) -> list[int]:
    """Each message's start, reading one whole message at a time."""
    out, pos = [], s.start
    while pos < s.tail:
        out.append(pos)
        pos = h.engine.read(s, pos, 1)[1]
    return out


def test_torn_log_tail_is_truncated(tmp_path: Path) -> None:
    h = Harness(tmp_path / "d")
    s = h.create("/t", body=b"kept")
    h.append(s, b"-also-kept")
    h.abandon()
    wal = sorted((tmp_path / "d" / "wal").glob("*.wal"))[-1]
    size = wal.stat().st_size
    with open(wal, "ab") as f:
        f.write(b"\x40\x00\x00\x00garbage-that-is-not-a-record")
    h2 = Harness(tmp_path / "d")
    assert h2.report.torn_bytes > 0
    assert h2.read_all(h2.engine.by_path["/t"]) == b"kept-also-kept"
    assert not wal.exists() or (b"garbage" not in wal.read_bytes() and wal.stat().st_size <= size)
    h2.close()


def test_corrupt_record_mid_log_refuses_to_start(tmp_path: Path) -> None:
    from durable_streamsd.engine import CorruptLogError

    h = Harness(tmp_path / "d")
    s = h.create("/c", body=b"first")
    for i in range(5):
        h.append(s, b"record-%d" % i)
    h.abandon()
    wal = sorted((tmp_path / "d" / "wal").glob("*.wal"))[-1]
    raw = bytearray(wal.read_bytes())
    raw[30] ^= 0xFF  # inside the first record, with valid ones after it
    wal.write_bytes(bytes(raw))
    with pytest.raises(CorruptLogError, match=wal.name):
        Harness(tmp_path / "d")


def test_failed_sync_fails_the_append_and_blocks_writes(harness: Harness) -> None:
    """A sync error must not be reported as success (the fsyncgate lesson)."""
    s = harness.create("/f")

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    harness.engine.committer.sync = failing_sync
    with pytest.raises(StorageFailedError):
        harness.append(s, b"lost")
    with pytest.raises(StorageFailedError):
        harness.append(s, b"refused")
    assert s.tail == 0
    harness.abandon()


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
def test_every_fsync_mode_acknowledges_in_order_and_recovers(tmp_path: Path, fsync: str) -> None:
    """Creates and appends are answered in log order once the mode counts
    them committed (after the sync, or on the next loop turn), never inside
    the call that logged them; what was acknowledged is there after a
    restart."""
    h = Harness(tmp_path / "data", fsync=fsync)
    answered: list[tuple[str, int]] = []
    fut: asyncio.Future[None] = h.loop.create_future()
    s = h.engine.create(
        "/m", StreamConfig("text/plain"), False, b"c", [1], lambda exc: answered.append(("create", s.tail))
    )
    for i in range(50):

        def done(exc: BaseException | None, i: int = i) -> None:
            assert exc is None
            answered.append((f"a{i}", s.tail))
            if i == 49:
                fut.set_result(None)

        closes = i == 49
        h.engine.append(s, b"%02d" % i, [2], close=closes, producer=Producer("p", 0, i), done=done)
        assert not answered, "acknowledged inside the call that logged it"
    h.loop.run_until_complete(fut)
    assert [name for name, _ in answered] == ["create"] + [f"a{i}" for i in range(50)]
    # Each answer sees at least its own record visible.
    assert all(tail >= 1 + 2 * i for i, (_, tail) in enumerate(answered))
    assert s.closed and s.tail == 101
    h.close()
    again = Harness(tmp_path / "data", fsync=fsync)
    r = again.engine.get("/m")
    assert r is not None and r.closed and r.producers["p"].last_seq == 49
    assert again.read_all(r) == b"c" + b"".join(b"%02d" % i for i in range(50))
    again.close()


def test_failed_sync_fails_every_queued_append(harness: Harness) -> None:
    """Appends waiting on one sync all fail with it, in order, and none of
    them becomes visible."""
    streams = [harness.create(f"/q{i}") for i in range(3)]

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    harness.engine.committer.sync = failing_sync
    results: list[tuple[int, BaseException | None]] = []
    fut: asyncio.Future[None] = harness.loop.create_future()
    for i in range(9):

        def done(exc: BaseException | None, i: int = i) -> None:
            results.append((i, exc))
            if len(results) == 9:
                fut.set_result(None)

        harness.engine.append(streams[i % 3], b"x", [1], done=done)
    harness.loop.run_until_complete(fut)
    assert [i for i, _ in results] == list(range(9))
    assert all(isinstance(exc, StorageFailedError) for _, exc in results)
    assert all(s.tail == 0 and harness.read_all(s) == b"" for s in streams)
    harness.abandon()


def test_batches_are_written_and_synced_in_one_call(tmp_path: Path) -> None:
    """Through the sync thread (no direct I/O), with the operating system's
    fdatasync, each batch leaves in one pwritev(RWF_DSYNC); what was
    acknowledged reads back after a restart without a checkpoint."""
    h = Harness(tmp_path / "data", direct_io=False)
    s = h.create("/fused")
    for i in range(20):
        h.append(s, b"%03d" % i)
    assert h.engine.sync_executor.fused >= 20
    h.abandon()
    assert recovered(tmp_path / "data", "/fused") == b"".join(b"%03d" % i for i in range(20))


def test_without_rwf_dsync_batches_fall_back_to_write_then_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel or file system that refuses RWF_DSYNC costs nothing but the
    fused call: the batch is written and fdatasync'ed as two calls."""
    calls: list[int] = []

    def refuse(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        calls.append(flags)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "pwritev", refuse)
    h = Harness(tmp_path / "data", direct_io=False)
    s = h.create("/plain")
    for i in range(5):
        h.append(s, b"%03d" % i)
    assert len(calls) == 1 and h.engine.sync_executor.fused == 0
    h.abandon()
    assert recovered(tmp_path / "data", "/plain") == b"000001002003004"


def test_checkpoint_is_due_once_the_log_outgrows_its_budget_across_files(tmp_path: Path) -> None:
    """checkpoint_wal_bytes counts the whole log since the last checkpoint,
    not only the current file (preallocated files are smaller than it)."""
    h = Harness(tmp_path / "data", wal_file_bytes=64 * 1024, checkpoint_wal_bytes=256 * 1024, checkpoint_interval=3600)
    s = h.create("/big")
    for _ in range(50):  # 200,000 payload bytes: under the budget
        h.append(s, b"z" * 4000)
        assert not h.engine.checkpoint_due()
    assert len(list((tmp_path / "data" / "wal").glob("*.wal"))) >= 3  # the log spans several files
    for _ in range(30):  # the budget is passed within 120,000 more
        if h.engine.checkpoint_due():
            break
        h.append(s, b"z" * 4000)
    assert h.engine.checkpoint_due()
    h.loop.run_until_complete(h.engine.checkpoint())
    assert not h.engine.checkpoint_due()
    h.close()

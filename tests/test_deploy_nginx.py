"""The shipped nginx configs (deploy/nginx/) in front of real daemons.

These files are what operators put in front of the daemon as a cache / CDN
stand-in, so they are tested as shipped: each is rendered only for ephemeral
ports, a temporary cache directory and a 127.0.0.1 listener, then run by a
real nginx (installed by scripts/install-nginx.sh, which `make test` calls).
What we check is what the protocol's caching design (PROTOCOL.md section 10)
relies on: catch-up chunks are cached, identical concurrent misses collapse
into one origin request, long-poll and SSE still work live through the proxy,
and with several daemons one stream path always reaches the same daemon.

Origin requests are counted with the daemon's own ds_requests metric, so a
claim like "one origin fetch" does not rest on nginx's word alone.
"""

from __future__ import annotations

import grp
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.client import Client, Reply
from tests.support.server import ROOT, ServerProcess, free_port

DEPLOY = ROOT / "deploy" / "nginx"
SINGLE_CONF = DEPLOY / "durable-streamsd.conf"
SHARDED_CONF = DEPLOY / "sharded.conf"

# Short daemon timeouts keep the test quick; the shipped nginx timeouts
# (long-poll lock 35 s, SSE read 90 s) are longer than these, as they must be.
LONG_POLL_TIMEOUT = 3.0
SSE_RECONNECT_INTERVAL = 30.0


def find_nginx() -> str | None:
    """nginx lives in /usr/sbin on Debian, which a non-root PATH may lack."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")


NGINX = find_nginx()
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed: run scripts/install-nginx.sh (make test does)"
)


# --------------------------------------------------------------- rendering


def render(conf: str, *, listen_port: int, upstream_ports: list[int], cache_dir: Path) -> str:
    """The shipped config with only addresses and paths changed.

    Each substitution must match exactly where it is expected, so a config
    edit that the test no longer understands fails loudly instead of
    silently testing something else.
    """
    out, n = re.subn(r"^(\s*)listen\s+80;", rf"\1listen 127.0.0.1:{listen_port};", conf, flags=re.M)
    assert n == 1, "expected exactly one 'listen 80;'"
    out, n = re.subn(r"proxy_cache_path\s+\S+", f"proxy_cache_path {cache_dir}", out)
    assert n == 1, "expected exactly one proxy_cache_path"
    servers = list(re.finditer(r"^(\s*)server\s+127\.0\.0\.1:\d+([^;]*);\n", out, flags=re.M))
    assert servers, "expected upstream server lines"
    indent, params = servers[0].group(1), servers[0].group(2)
    replacement = "".join(f"{indent}server 127.0.0.1:{p}{params};\n" for p in upstream_ports)
    out = out[: servers[0].start()] + replacement + out[servers[-1].end():]
    return out


def main_conf(prefix: Path, site: Path) -> str:
    """A minimal nginx.conf around the site config, everything under prefix.

    Run as root, nginx would switch its workers to 'nobody', which cannot
    write pytest's private temp dirs; so workers run as whoever runs the test.
    """
    user = ""
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
    temp = {name: prefix / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for d in temp.values():
        d.mkdir(exist_ok=True)
    return f"""{user}worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 1024;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {site};
}}
"""


class Nginx:
    """A foreground nginx (master and workers) on an ephemeral port."""

    def __init__(self, prefix: Path, shipped: Path, upstream_ports: list[int]) -> None:
        assert NGINX is not None
        self.prefix = prefix
        self.port = free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "cache").mkdir(exist_ok=True)
        site = prefix / "site.conf"
        rendered = render(
            shipped.read_text(), listen_port=self.port, upstream_ports=upstream_ports, cache_dir=prefix / "cache"
        )
        site.write_text(rendered)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(main_conf(prefix, site))
        self.cmd = [NGINX, "-p", str(prefix), "-c", str(self.conf), "-e", str(prefix / "error.log")]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        check = subprocess.run([*self.cmd, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t rejected the rendered config:\n{check.stderr}"
        self.proc = subprocess.Popen(
            [*self.cmd, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not start:\n{self.error_log()}")

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM is nginx's fast shutdown; the master takes its workers along."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------ helpers


class Origin:
    """A daemon plus a reader for its request counter."""

    def __init__(self, data_dir: Path) -> None:
        self.metrics_port = free_port()
        self.server = ServerProcess(
            data_dir,
            "--long-poll-timeout", str(LONG_POLL_TIMEOUT),
            "--sse-reconnect-interval", str(SSE_RECONNECT_INTERVAL),
            "--metrics-port", str(self.metrics_port),
        )

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> Origin:
        self.server.start()
        self.requests()  # the metrics listener comes up just after the main one
        return self

    def requests(self) -> int:
        """Requests the daemon has dispatched since it started (ds_requests)."""
        deadline = time.monotonic() + 5
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                    text = r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        m = re.search(r"^ds_requests (\S+)$", text, flags=re.M)
        assert m is not None, text
        return int(float(m.group(1)))

    def pause(self) -> None:
        """SIGSTOP: the daemon accepts connections (the kernel does) but
        answers nothing, so requests reaching it are provably concurrent."""
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGCONT)


def cache_status(r: Reply) -> str | None:
    return r.header("x-cache-status")


def parallel(n: int, fn: Callable[[int], Reply]) -> list[Reply]:
    """Run fn(i) in n threads, released together; replies in index order."""
    results: list[Reply | BaseException | None] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # re-raised below, in the test's thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    replies: list[Reply] = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        assert r is not None, "a request did not finish"
        replies.append(r)
    return replies


def one_request(port: int, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> Reply:
    """One request on its own connection (for concurrent use)."""
    c = Client(port, timeout=timeout)
    try:
        return c.request(method, path, body, headers)
    finally:
        c.close()


def create(c: Client, path: str, body: bytes) -> str:
    r = c.request("PUT", path, body, {"Content-Type": "text/plain"})
    assert r.status == 201, r
    offset = r.header("stream-next-offset")
    assert offset
    return offset


def append(c: Client, path: str, body: bytes) -> str:
    r = c.request("POST", path, body, {"Content-Type": "text/plain"})
    assert r.status in (200, 204), r
    offset = r.header("stream-next-offset")
    assert offset
    return offset


# ----------------------------------------------------------------- fixtures


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Origin]:
    o = Origin(tmp_path / "data").start()
    yield o
    o.resume()  # never leave a stopped child behind
    o.server.kill()


@pytest.fixture
def proxy(tmp_path: Path, origin: Origin) -> Iterator[Client]:
    """A client talking to nginx (durable-streamsd.conf) in front of origin."""
    ngx = Nginx(tmp_path / "nginx", SINGLE_CONF, [origin.port]).start()
    c = Client(ngx.port)
    yield c
    c.close()
    ngx.stop()


# -------------------------------------------------------------------- tests


def test_catch_up_chunks_are_cached(proxy: Client, origin: Origin) -> None:
    """A chunk at an offset never changes, so the daemon marks it public and
    the proxy answers repeats itself; tail answers stay uncached (no-store),
    and HEAD is never answered from a cached GET."""
    tail = create(proxy, "/s/cached", b"hello")
    url = "/s/cached?offset=-1"

    before = origin.requests()
    first = proxy.request("GET", url)
    assert first.status == 200 and first.body == b"hello"
    assert cache_status(first) == "MISS"
    assert first.header("cache-control") == "public, max-age=60, stale-while-revalidate=300"
    assert first.header("stream-next-offset") == tail and first.header("stream-up-to-date") == "true"
    assert origin.requests() - before == 1

    second = proxy.request("GET", url)
    assert cache_status(second) == "HIT"
    assert second.status == 200 and second.body == b"hello"
    for name in ("etag", "stream-next-offset", "stream-up-to-date", "content-type", "cache-control"):
        assert second.header(name) == first.header(name), name
    assert origin.requests() - before == 1, "the repeat reached the daemon"

    # Conditional repeat: nginx answers 304 from its cache.
    etag = first.header("etag")
    assert etag
    cond = proxy.request("GET", url, headers={"If-None-Match": etag})
    assert cond.status == 304 and cond.body == b""

    # The empty answer at an open tail is no-store: every one goes to the daemon.
    before = origin.requests()
    for _ in range(2):
        r = proxy.request("GET", f"/s/cached?offset={tail}")
        assert r.status == 200 and r.body == b"" and r.header("cache-control") == "no-store"
        assert cache_status(r) == "MISS"
    assert origin.requests() - before == 2

    # offset=now and HEAD skip the cache entirely, and HEAD sees a new tail
    # at once even though a GET for the same URL is cached.
    now = proxy.request("GET", "/s/cached?offset=now")
    assert now.status == 200 and cache_status(now) == "BYPASS" and now.header("stream-next-offset") == tail
    head = proxy.request("HEAD", "/s/cached?offset=-1")
    assert head.status == 200 and cache_status(head) == "BYPASS" and head.header("etag") is None
    new_tail = append(proxy, "/s/cached", b" world")
    head = proxy.request("HEAD", "/s/cached")
    assert head.header("stream-next-offset") == new_tail and head.header("cache-control") == "no-store"
    # ... and a reader at the old tail continues past the cached chunk.
    nxt = proxy.request("GET", f"/s/cached?offset={tail}")
    assert nxt.status == 200 and nxt.body == b" world" and cache_status(nxt) == "MISS"


def test_concurrent_identical_reads_collapse(proxy: Client, origin: Origin) -> None:
    """N readers asking for the same fresh chunk at once cost the daemon one
    read (proxy_cache_lock). The daemon is paused while they arrive, so all N
    are provably in flight together rather than merely close in time."""
    n = 12
    tail = create(proxy, "/s/collapse", b"first")
    append(proxy, "/s/collapse", b"second")
    url = f"/s/collapse?offset={tail}"

    before = origin.requests()
    origin.pause()
    try:
        box: list[list[Reply]] = []
        runner = threading.Thread(target=lambda: box.append(parallel(n, lambda i: one_request(proxy.port, "GET", url))))
        runner.start()
        time.sleep(1.0)  # every request is now waiting: one at the daemon, the rest on the lock
    finally:
        origin.resume()
    runner.join(30)
    assert box, "requests did not finish"
    replies = box[0]

    assert all(r.status == 200 and r.body == b"second" for r in replies)
    statuses = sorted(cache_status(r) or "" for r in replies)
    assert statuses.count("MISS") == 1, statuses
    assert statuses.count("HIT") == n - 1, statuses
    assert len({r.header("etag") for r in replies}) == 1
    assert origin.requests() - before == 1, "identical concurrent misses were not collapsed"


def test_long_poll_delivers_appended_data(proxy: Client, origin: Origin) -> None:
    """A long-poll parked at the tail answers as soon as data is appended,
    through the proxy; a poll that times out comes back as a no-store 204."""
    tail = create(proxy, "/s/lp", b"x")
    url = f"/s/lp?offset={tail}&live=long-poll&cursor=1"

    box: list[Reply] = []
    poller = threading.Thread(target=lambda: box.append(one_request(proxy.port, "GET", url)))
    poller.start()
    time.sleep(0.5)
    appended_at = time.monotonic()
    new_tail = append(proxy, "/s/lp", b"fresh")
    poller.join(10)
    assert box, "long-poll did not answer"
    r = box[0]
    elapsed = time.monotonic() - appended_at
    # A poll that had timed out would be a 204 without the data.
    assert r.status == 200 and r.body == b"fresh", (r.status, r.body, f"{elapsed:.1f}s after the append")
    assert r.header("stream-next-offset") == new_tail and r.header("stream-cursor")

    t0 = time.monotonic()
    r = proxy.request("GET", f"/s/lp?offset={new_tail}&live=long-poll&cursor=1")
    assert r.status == 204 and r.header("cache-control") == "no-store" and r.header("stream-cursor")
    assert time.monotonic() - t0 >= LONG_POLL_TIMEOUT - 0.5


def test_long_polls_collapse(proxy: Client, origin: Origin) -> None:
    """Clients waiting at the same offset with the same cursor share one
    origin long-poll (the point of the cursor, section 10.1): the others wait
    on the cache lock and are answered from the cached 200."""
    n = 8
    tail = create(proxy, "/s/lpc", b"x")
    url = f"/s/lpc?offset={tail}&live=long-poll&cursor=7"

    before = origin.requests()
    box: list[list[Reply]] = []
    runner = threading.Thread(target=lambda: box.append(parallel(n, lambda i: one_request(proxy.port, "GET", url))))
    runner.start()
    time.sleep(1.0)  # all parked: one at the daemon, the rest on the lock
    direct = Client(origin.port)
    try:
        new_tail = append(direct, "/s/lpc", b"news")  # straight to the daemon: one more origin request
    finally:
        direct.close()
    runner.join(10)
    assert box, "long-polls did not answer"
    replies = box[0]

    assert all(r.status == 200 and r.body == b"news" for r in replies), [(r.status, r.body) for r in replies]
    assert all(r.header("stream-next-offset") == new_tail for r in replies)
    statuses = sorted(cache_status(r) or "" for r in replies)
    assert statuses.count("MISS") == 1 and statuses.count("HIT") == n - 1, statuses
    # Collapsed clients share one answer, so one cursor to echo next time.
    assert len({r.header("stream-cursor") for r in replies}) == 1
    assert origin.requests() - before == 2, "long-polls were not collapsed (expected one poll and the append)"


def test_long_poll_from_now_is_never_reused(proxy: Client, origin: Origin) -> None:
    """offset=now means "from the tail when this request arrives". The daemon
    marks a long-poll's 200 public, max-age=60 even for offset=now, so a cache
    keyed on the URL would hand the first poller's data to every later 'now'
    poller at once (instead of waiting); the shipped config keeps offset=now
    out of the cache."""
    create(proxy, "/s/now", b"x")
    url = "/s/now?offset=now&live=long-poll"

    box: list[Reply] = []
    poller = threading.Thread(target=lambda: box.append(one_request(proxy.port, "GET", url)))
    poller.start()
    time.sleep(1.0)  # parked at the daemon: "now" is the tail before the append
    append(proxy, "/s/now", b"first")
    poller.join(10)
    assert box and box[0].status == 200 and box[0].body == b"first"

    # A later poller from "now" must wait for data newer than that.
    t0 = time.monotonic()
    r = proxy.request("GET", url)
    assert r.body != b"first", "a later offset=now poll got an earlier poll's cached data"
    assert r.status == 204 and time.monotonic() - t0 >= LONG_POLL_TIMEOUT - 0.5
    assert cache_status(box[0]) == cache_status(r) == "BYPASS"


def test_sse_streams_through_unbuffered(proxy: Client, origin: Origin) -> None:
    """Each SSE event reaches every client while the responses are still
    open: the proxy must neither hold the event stream back until it ends
    nor make a second identical SSE request wait behind the first (as a
    cache lock would)."""
    tail = create(proxy, "/s/sse", b"x")
    conns = [http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10) for _ in range(2)]
    try:
        resps = []
        for conn in conns:
            conn.request("GET", f"/s/sse?offset={tail}&live=sse")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("content-type") == "text/event-stream"
            assert resp.getheader("x-cache-status") is None, "SSE went through the cache"
            got = read_until(resp, b'"upToDate":true')
            assert b"event: control" in got
            resps.append(resp)

        appended_at = time.monotonic()
        append(proxy, "/s/sse", b"live-event")
        for resp in resps:
            read_until(resp, b"data:live-event")
            elapsed = time.monotonic() - appended_at
            # Far below the 30 s after which the daemon would end the response.
            assert elapsed < 5.0, f"event took {elapsed:.1f}s: buffered by the proxy?"
            assert not resp.isclosed(), "the event only arrived when the response ended"
    finally:
        for conn in conns:
            conn.close()


def read_until(resp: http.client.HTTPResponse, marker: bytes, timeout: float = 5.0) -> bytes:
    """Read a streamed body until marker shows up (or fail after timeout)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf:
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout}s; got {buf!r}"
        part = resp.read1(65536)
        assert part, f"response ended before {marker!r}; got {buf!r}"
        buf += part
    return buf


def test_sharded_routes_each_path_to_one_daemon(tmp_path: Path) -> None:
    """With sharded.conf, everything for one stream path (create, appends,
    reads, long-poll) reaches the same daemon; streams spread over both."""
    daemons = [Origin(tmp_path / f"data{i}") for i in range(2)]
    ngx: Nginx | None = None
    try:
        for d in daemons:
            d.start()
        ngx = Nginx(tmp_path / "nginx", SHARDED_CONF, [d.port for d in daemons]).start()
        c = Client(ngx.port)
        paths = [f"/shard/stream-{i}" for i in range(16)]
        for p in paths:
            create(c, p, f"{p}:".encode())
            for k in range(3):
                append(c, p, f"{k}".encode())

        owners: dict[str, int] = {}
        for p in paths:
            r = c.request("GET", f"{p}?offset=-1")
            assert r.status == 200 and r.body == f"{p}:012".encode(), (p, r.status, r.body)
            present = []
            for d in daemons:
                direct = Client(d.port)
                try:
                    present.append(direct.request("HEAD", p).status == 200)
                finally:
                    direct.close()
            assert present.count(True) == 1, f"{p} exists on {present.count(True)} daemons"
            owners[p] = present.index(True)
        assert set(owners.values()) == {0, 1}, f"all streams on one daemon: {owners}"

        # A live read for a path is routed to its owner too.
        p = paths[0]
        tail = c.request("HEAD", p).header("stream-next-offset")
        box: list[Reply] = []
        poller = threading.Thread(
            target=lambda: box.append(one_request(ngx.port, "GET", f"{p}?offset={tail}&live=long-poll&cursor=1"))
        )
        poller.start()
        time.sleep(0.5)
        append(c, p, b"!")
        poller.join(10)
        assert box and box[0].status == 200 and box[0].body == b"!"
        c.close()
    finally:
        if ngx is not None:
            ngx.stop()
        for d in daemons:
            d.server.kill()


def test_recreated_stream_is_not_served_from_the_old_cache(proxy: Client, origin: Origin) -> None:
    """A reader of a new stream, following the daemon's own offsets, must get
    the new stream's bytes, not a cached chunk of a deleted one at that path."""
    old_tail = create(proxy, "/s/reborn", b"abc")
    append(proxy, "/s/reborn", b"OLD")
    r = proxy.request("GET", f"/s/reborn?offset={old_tail}")
    assert r.status == 200 and r.body == b"OLD" and cache_status(r) == "MISS"

    assert proxy.request("DELETE", "/s/reborn").status == 204
    new_tail = create(proxy, "/s/reborn", b"xyz")
    append(proxy, "/s/reborn", b"NEW")
    r = proxy.request("GET", f"/s/reborn?offset={new_tail}")
    assert r.status == 200
    assert r.body == b"NEW", f"got {r.body!r} ({cache_status(r)}) at offset {new_tail}, old stream's was {old_tail}"

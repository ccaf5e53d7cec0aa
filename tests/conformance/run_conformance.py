#!/usr/bin/env python3
"""Run the Durable Streams server conformance suite against a freshly started server.

Starts the server command on a free 127.0.0.1 port with a temporary data
directory, waits until the port accepts TCP connections, runs
``npx vitest run`` in this directory with ``DS_BASE_URL`` pointing at the
server, then stops the server (SIGTERM, SIGKILL after 10 s) and exits with
vitest's exit code.

By default only the in-scope tests run: the ``Fork - *`` describe blocks and
``Reserved subscription APIs`` are excluded (250 of 338 tests in
@durable-streams/server-conformance-tests 0.3.6).

Examples::

    python tests/conformance/run_conformance.py
    python tests/conformance/run_conformance.py --filter 'SSE Mode'
    python tests/conformance/run_conformance.py \\
        --server-cmd 'node ref_server.mjs {port}'            # reference, in memory
    python tests/conformance/run_conformance.py -- --reporter=verbose

Placeholders in ``--server-cmd``: {python} (this interpreter), {port},
{datadir}, {here} (this directory), {root} (repository root). The command is
split with shlex *before* substitution, so paths with spaces are safe. It runs
with this directory as its working directory. Requires ``npm ci`` here first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOST = "127.0.0.1"

DEFAULT_SERVER_CMD = (
    "{python} -m durable_streamsd serve --data-dir {datadir} --host 127.0.0.1 --port {port}"
)

# vitest -t matches a regex against the full test name: the describe names
# and the test name joined by single spaces (the file name is not included).
# All excluded blocks are top-level describes, so anchor at the start.
OUT_OF_SCOPE_PATTERN = r"^(?!(?:Fork - |Reserved subscription APIs ))"

STARTUP_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 60


def build_name_pattern(run_all: bool, user_filter: str | None) -> str | None:
    """Combine the scope exclusion and an optional user regex into one -t pattern."""
    if run_all:
        return user_filter
    if user_filter is None:
        return OUT_OF_SCOPE_PATTERN
    return f"{OUT_OF_SCOPE_PATTERN}(?=.*(?:{user_filter}))"


def free_port() -> int:
    """Return an ephemeral TCP port on HOST that is currently unused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def render_command(template: str, values: dict[str, str]) -> list[str]:
    """Split the command template shell-style, then fill placeholders per token."""
    try:
        return [token.format(**values) for token in shlex.split(template)]
    except KeyError as exc:
        raise SystemExit(f"run_conformance: unknown placeholder {exc} in --server-cmd") from exc


def wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """Poll until the port accepts a TCP connection; False on timeout or server exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL it after STOP_GRACE_S."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        print("run_conformance: server ignored SIGTERM, sending SIGKILL", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def print_log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> None:
    """Print the last lines of the server log to stderr."""
    try:
        text = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return
    print(f"--- last {lines} lines of server log ({log_path}) ---", file=sys.stderr)
    for line in text[-lines:]:
        print(line, file=sys.stderr)
    print("--- end of server log ---", file=sys.stderr)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the Durable Streams conformance suite against a server.",
        epilog="Arguments after '--' are passed to vitest unchanged.",
    )
    parser.add_argument(
        "--server-cmd",
        default=DEFAULT_SERVER_CMD,
        help="server command template; placeholders {python} {port} {datadir} {here} {root} "
        "(default: %(default)r)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="run every test, including 'Fork - *' and 'Reserved subscription APIs'",
    )
    parser.add_argument(
        "--filter",
        metavar="REGEX",
        help="only run tests whose full name (describe names + test name) matches REGEX",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port for the server (default: a free ephemeral port)"
    )
    parser.add_argument(
        "--server-log",
        type=Path,
        help="write server stdout/stderr here (default: a temp file, tail shown on failure)",
    )
    parser.add_argument(
        "--keep-data", action="store_true", help="do not delete the temporary data dir"
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=STARTUP_TIMEOUT_S,
        help="seconds to wait for the server port (default: %(default)s)",
    )
    parser.add_argument("vitest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.vitest_args and args.vitest_args[0] == "--":
        args.vitest_args = args.vitest_args[1:]
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if not (HERE / "node_modules" / "@durable-streams" / "server-conformance-tests").is_dir():
        print(f"run_conformance: run 'npm ci' in {HERE} first", file=sys.stderr)
        return 2

    port = args.port or free_port()
    tmp_root = Path(tempfile.mkdtemp(prefix="ds-conformance-"))
    data_dir = tmp_root / "data"
    data_dir.mkdir()
    log_path: Path = args.server_log or (tmp_root / "server.log")
    values = {
        "python": sys.executable,
        "port": str(port),
        "datadir": str(data_dir),
        "here": str(HERE),
        "root": str(ROOT),
    }
    server_cmd = render_command(args.server_cmd, values)

    server_env = os.environ.copy()
    src_dir = ROOT / "src"
    if src_dir.is_dir():  # let `-m durable_streamsd` work without an install
        parts = [str(src_dir), server_env.get("PYTHONPATH", "")]
        server_env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)

    pattern = build_name_pattern(args.all, args.filter)
    vitest_cmd = ["npx", "--no", "vitest", "run"]
    if pattern is not None:
        vitest_cmd += ["-t", pattern]
    vitest_cmd += args.vitest_args

    print(f"run_conformance: server: {shlex.join(server_cmd)}", flush=True)
    kept = "" if args.server_log or args.keep_data else " (removed at exit)"
    print(f"run_conformance: server log: {log_path}{kept}", flush=True)
    start = time.monotonic()
    exit_code = 1
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(
            server_cmd,
            cwd=HERE,
            env=server_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: we can signal all of it
        )
        try:
            if not wait_for_port(server, port, args.startup_timeout):
                status = server.poll()
                reason = (
                    f"exited with status {status}"
                    if status is not None
                    else f"did not accept connections within {args.startup_timeout:g}s"
                )
                print(f"run_conformance: server {reason}", file=sys.stderr)
                exit_code = 2
                return exit_code  # the finally clause stops the server and shows its log

            base_url = f"http://{HOST}:{port}"
            print(
                f"run_conformance: server up at {base_url} after {time.monotonic() - start:.1f}s",
                flush=True,
            )
            print(f"run_conformance: DS_BASE_URL={base_url} {shlex.join(vitest_cmd)}", flush=True)
            vitest_env = os.environ.copy()
            vitest_env["DS_BASE_URL"] = base_url
            exit_code = subprocess.call(vitest_cmd, cwd=HERE, env=vitest_env)

            if server.poll() is not None:
                print(
                    f"run_conformance: WARNING: server exited during the run "
                    f"(status {server.returncode})",
                    file=sys.stderr,
                )
                exit_code = exit_code or 1
        except KeyboardInterrupt:
            exit_code = 130
        finally:
            stop_server(server)
            log_file.flush()
            if exit_code != 0:
                print_log_tail(log_path)
            if args.keep_data:
                print(f"run_conformance: kept {tmp_root}", file=sys.stderr)
            else:
                shutil.rmtree(tmp_root, ignore_errors=True)

    elapsed = time.monotonic() - start
    print(f"run_conformance: vitest exit code {exit_code}, total {elapsed:.1f}s", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

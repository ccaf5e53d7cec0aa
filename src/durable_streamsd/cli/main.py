"""click commands: ``serve`` runs the daemon; the rest are a small client."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..engine import FSYNC_MODES
from . import client


def _env(name: str) -> str:
    return f"DS_{name}"


def _segment_bytes(ctx: click.Context, param: click.Parameter, value: int) -> int:
    from ..engine.segments import valid_segment_bytes

    if not valid_segment_bytes(value):
        raise click.BadParameter("must be a multiple of 4096, at least 4096")
    return value


@click.group()
@click.version_option(__version__, prog_name="durable-streamsd")
def main() -> None:
    """durable-streamsd: a Durable Streams protocol server."""


@main.command()
@click.option(
    "--data-dir",
    envvar=_env("DATA_DIR"),
    required=True,
    type=click.Path(file_okay=False),
    help="Where streams are stored.",
)
@click.option("--host", envvar=_env("HOST"), default="127.0.0.1", show_default=True)
@click.option("--port", envvar=_env("PORT"), default=4437, show_default=True, type=int)
@click.option(
    "--fsync",
    envvar=_env("FSYNC"),
    default="always",
    show_default=True,
    type=click.Choice(FSYNC_MODES),
    help="always: acknowledge after the log is on disk; interval: sync on a timer; never: leave it to the OS.",
)
@click.option(
    "--fsync-interval",
    envvar=_env("FSYNC_INTERVAL"),
    default=0.05,
    show_default=True,
    type=float,
    help="Seconds between syncs with --fsync=interval.",
)
@click.option(
    "--long-poll-timeout",
    envvar=_env("LONG_POLL_TIMEOUT"),
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds a long-poll waits before 204.",
)
@click.option(
    "--sse-reconnect-interval",
    envvar=_env("SSE_RECONNECT_INTERVAL"),
    default=60.0,
    show_default=True,
    type=float,
    help="Seconds after which an SSE response is ended so clients reconnect (and CDNs can collapse).",
)
@click.option(
    "--max-append-bytes",
    envvar=_env("MAX_APPEND_BYTES"),
    default=64 * 1024 * 1024,
    show_default=True,
    type=int,
    help="Largest request body (413 above).",
)
@click.option(
    "--max-read-bytes",
    envvar=_env("MAX_READ_BYTES"),
    default=1024 * 1024,
    show_default=True,
    type=int,
    help="Largest chunk one read returns.",
)
@click.option(
    "--max-header-bytes",
    envvar=_env("MAX_HEADER_BYTES"),
    default=16 * 1024,
    show_default=True,
    type=int,
    help="Largest request head (431 above).",
)
@click.option(
    "--max-open-segments",
    envvar=_env("MAX_OPEN_SEGMENTS"),
    default=4096,
    show_default=True,
    type=int,
    help="Segment maps (and descriptors) kept open.",
)
@click.option(
    "--checkpoint-interval",
    envvar=_env("CHECKPOINT_INTERVAL"),
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds between catalog checkpoints.",
)
@click.option(
    "--header-timeout",
    envvar=_env("HEADER_TIMEOUT"),
    default=10.0,
    show_default=True,
    type=float,
    help="Seconds allowed to send request headers.",
)
@click.option(
    "--body-timeout",
    envvar=_env("BODY_TIMEOUT"),
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds a request body may stall.",
)
@click.option(
    "--idle-timeout",
    envvar=_env("IDLE_TIMEOUT"),
    default=75.0,
    show_default=True,
    type=float,
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--shutdown-grace",
    envvar=_env("SHUTDOWN_GRACE"),
    default=10.0,
    show_default=True,
    type=float,
    help="Seconds to finish requests on SIGTERM.",
)
@click.option(
    "--metrics-port",
    envvar=_env("METRICS_PORT"),
    default=0,
    show_default=True,
    type=int,
    help="Serve Prometheus metrics on this port (0: off).",
)
@click.option(
    "--wal-file-bytes",
    envvar=_env("WAL_FILE_BYTES"),
    default=16 * 1024 * 1024,
    show_default=True,
    type=int,
    help="Size of each preallocated log file (0: grow log files instead).",
)
@click.option(
    "--direct-io/--no-direct-io",
    envvar=_env("DIRECT_IO"),
    default=True,
    show_default=True,
    help="With --fsync=always, write the log with O_DIRECT through Linux AIO where the kernel and file system allow "
    "(otherwise, or with --no-direct-io, through a sync thread).",
)
@click.option(
    "--segment-bytes",
    envvar=_env("SEGMENT_BYTES"),
    default=64 * 1024 * 1024,
    show_default=True,
    type=int,
    callback=_segment_bytes,
    help="Segment file size for a new data dir (a multiple of 4096); an existing one keeps its own.",
)
@click.option(
    "--auth-token-file",
    envvar=_env("AUTH_TOKEN_FILE"),
    type=click.Path(dir_okay=False, exists=True),
    help="Require bearer tokens: lines of '<token> read|write|all /path/prefix'.",
)
@click.option(
    "--log-level",
    envvar=_env("LOG_LEVEL"),
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-format",
    envvar=_env("LOG_FORMAT"),
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "console", "json"]),
)
def serve(**options: object) -> None:
    """Run the server."""
    from ..server.config import Config
    from ..server.daemon import run

    run(Config(**options))  # type: ignore[arg-type]


@main.command()
@click.option("--data-dir", envvar=_env("DATA_DIR"), required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--repair", is_flag=True, help="Apply the explicit repairs (each one says what it drops).")
def check(data_dir: str, repair: bool) -> None:
    """Verify a data directory (the server must not be running on it).

    Checks the catalog, every log record and every stored unit's checksum.
    With --repair: a damaged catalog is rebuilt from the previous one and
    the log; a log with a corrupt record in the middle is cut there.
    """
    from ..engine.check import check as run_check

    report = run_check(data_dir, repair)
    for note in report.notes:
        click.echo(f"ok: {note}")
    for fixed in report.repaired:
        click.echo(f"repaired: {fixed}")
    for problem in report.problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    sys.exit(0 if report.healthy else 1)


main.add_command(client.create)
main.add_command(client.append)
main.add_command(client.read)
main.add_command(client.tail)
main.add_command(client.head)
main.add_command(client.delete)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

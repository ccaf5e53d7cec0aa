"""Summarise py-spy collapsed stacks (``--format raw``, as ``--py-spy``
writes them): where the server's samples go, by function, self and
inclusive, and by thread root. Faster to read in a terminal or a report
than a flame graph.

    python -m bench.profile_summary bench/results/pyspy-<...>.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LOCATION = re.compile(r" \((.*?):\d+\)$")


def _name(frame: str) -> str:
    """'func (path/file.py:123)' -> 'file.py:func' (line numbers merged)."""
    m = _LOCATION.search(frame)
    if m is None:
        return frame
    return f"{m.group(1).rsplit('/', 1)[-1]}:{frame[: m.start()]}"


def summarise(path: Path, top: int) -> str:
    selfc: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_name(f) for f in stack.split(";")]
        selfc[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return f"{path}: no samples"
    out = [f"{path.name}: {total} samples (on-CPU only; py-spy drops idle samples)", "", "self:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in selfc.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    for f in args.files:
        print(summarise(f, args.top))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

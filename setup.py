"""Build: the request path compiled to C with mypyc.

The HTTP layer, the protocol handlers and the engine are plain, fully typed
Python; mypyc turns them into C extension modules. Measured with callgrind
(`bench.micro`, instructions per request): a 100-byte append went from
96,700 to 42,700 instructions, a JSON append from 132,900 to 54,700.

`DS_PURE_PYTHON=1` builds without compiling (the same code, interpreted);
the CLI, the daemon's wiring and observability stay interpreted always:
they run once or rarely, and click and structlog are untyped at the edges.
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED = [
    "src/durable_streamsd/http",
    "src/durable_streamsd/protocol",
    "src/durable_streamsd/engine",
]


def _ext_modules() -> list[object]:
    if os.environ.get("DS_PURE_PYTHON"):
        return []
    from mypyc.build import mypycify

    return list(mypycify(COMPILED, opt_level="3"))


setup(ext_modules=_ext_modules())

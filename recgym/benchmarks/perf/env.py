"""Env throughput of the batched rec env vs SyncVectorEnv vs a Python loop.

The measurement itself is `recgym.benchmarks.env_throughput` (its own command-line flags); this module is
the one place the CLI and the ``throughput`` suite call it from.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Sequence


def env_throughput(args: Sequence[str] = ()) -> str:
    """Run the env throughput benchmark with command-line ``args`` (e.g. ``["--num-envs", "1,64"]``) and
    return the table it prints."""
    from recgym.benchmarks import env_throughput as bench

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            bench.main(list(args))
    except SystemExit:  # its argparse exits on --help or a bad flag: show what it printed
        sys.stdout.write(buf.getvalue())
        raise
    return buf.getvalue()

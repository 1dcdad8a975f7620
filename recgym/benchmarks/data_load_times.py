"""Cold vs cached load time of every dataset whose raw files are present.

``python -m recgym.benchmarks.data_load_times [--data-dir DIR] [--datasets coat yahoo ...]``

Cold = parse the raw files, validate, complete the ground truth and write the parsed cache, in an empty
temporary ``RECGYM_CACHE_DIR`` (also with the in-process checksum memo cleared). Cached = the same call again
with the in-process memo cleared, i.e. what a new process pays once the cache exists. The user's own cache
is never touched.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence

FILE_DATASETS = ("coat", "yahoo", "ml1m", "ml1m_noisy", "kuairand", "kuairec")


def measure(name: str, data_dir: str | None = None) -> dict[str, object]:
    """Time one dataset: returns ``{"dataset", "cold_s", "cached_s", "summary"}`` or ``{"dataset", "error"}``."""
    from recgym.data import DataNotFoundError, load_dataset
    from recgym.data import cache as cache_mod

    old = os.environ.get("RECGYM_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="recgym-loadtime-") as tmp:
        os.environ["RECGYM_CACHE_DIR"] = tmp
        try:
            cache_mod._MEMO.clear()
            t0 = time.perf_counter()
            try:
                ds = load_dataset(name, data_dir=data_dir)
            except DataNotFoundError as e:
                return {"dataset": name, "error": str(e).split(";")[0]}
            cold = time.perf_counter() - t0
            cache_mod._MEMO.clear()
            t0 = time.perf_counter()
            ds = load_dataset(name, data_dir=data_dir)
            cached = time.perf_counter() - t0
            return {"dataset": name, "cold_s": cold, "cached_s": cached, "summary": ds.summary()}
        finally:
            if old is None:
                os.environ.pop("RECGYM_CACHE_DIR", None)
            else:
                os.environ["RECGYM_CACHE_DIR"] = old


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """Plain-text table of `measure` results."""
    head = f"{'dataset':<11} {'cold (s)':>9} {'cached (s)':>11} {'users x items':>15} {'train':>9} {'test':>8} {'gt users':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['dataset']:<11} {'-':>9} {'-':>11}  not available: {r['error']}")
            continue
        s = r["summary"]
        assert isinstance(s, dict)
        size = f"{s['n_users']} x {s['n_items']}"
        lines.append(
            f"{r['dataset']:<11} {r['cold_s']:>9.2f} {r['cached_s']:>11.3f} {size:>15} {s['train_rows']:>9} "
            f"{s['test_rows']:>8} {s['n_gt_users']:>9}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="data root (default: RECGYM_DATA_DIR)")
    ap.add_argument("--datasets", nargs="*", default=list(FILE_DATASETS), choices=FILE_DATASETS)
    args = ap.parse_args(argv)
    rows = [measure(n, args.data_dir) for n in args.datasets]
    print(format_table(rows))


if __name__ == "__main__":
    main()

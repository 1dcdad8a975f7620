"""Cold vs cached load time of every dataset whose raw files are present.

Cold = parse the raw files, validate, complete the ground truth and write the parsed cache, in an empty
temporary ``RECGYM_CACHE_DIR`` (with the in-process checksum memo cleared). Cached = the same call again with
the in-process memo cleared, i.e. what a new process pays once the cache exists. The user's own cache is
never touched.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

FILE_DATASETS = ("coat", "yahoo", "ml1m", "ml1m_noisy", "kuairand", "kuairec")


def measure(name: str, data_dir: str | None = None) -> dict[str, Any]:
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


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table of `measure` results."""
    head = f"{'dataset':<11} {'cold (s)':>9} {'cached (s)':>11} {'users x items':>15} {'train':>9} {'test':>8} {'gt users':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['dataset']:<11} {'-':>9} {'-':>11}  not available: {r['error']}")
            continue
        s = r["summary"]
        size = f"{s['n_users']} x {s['n_items']}"
        lines.append(
            f"{r['dataset']:<11} {r['cold_s']:>9.2f} {r['cached_s']:>11.3f} {size:>15} {s['train_rows']:>9} "
            f"{s['test_rows']:>8} {s['n_gt_users']:>9}"
        )
    return "\n".join(lines)


def data_load_times(datasets: Sequence[str] = FILE_DATASETS, data_dir: str | None = None) -> list[dict[str, Any]]:
    """`measure` of each dataset, as flat table rows (a missing dataset's row says why)."""
    unknown = sorted(set(datasets) - set(FILE_DATASETS))
    if unknown:
        raise ValueError(f"data_load_times: unknown dataset(s) {unknown}; valid: {list(FILE_DATASETS)}")
    rows = []
    for r in (measure(n, data_dir) for n in datasets):
        if "error" in r:
            rows.append({"dataset": r["dataset"], "error": r["error"]})
            continue
        s = r["summary"]
        rows.append({"dataset": r["dataset"], "cold_s": r["cold_s"], "cached_s": r["cached_s"],
                     "users": s["n_users"], "items": s["n_items"], "train_rows": s["train_rows"],
                     "test_rows": s["test_rows"], "gt_users": s["n_gt_users"]})
    return rows

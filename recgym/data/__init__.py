"""Dataset layer: raw files -> `LoggedDataset` (numpy/pandas, cached). No torch is imported here."""

from __future__ import annotations

import os
from collections.abc import Callable

from recgym.data.base import LoggedDataset
from recgym.data.paths import DataNotFoundError, cache_dir, data_root, dataset_dir

DATASETS: tuple[str, ...] = ("coat", "yahoo", "kuairand", "kuairec", "ml1m", "ml1m_noisy", "synthetic")


def _loader(name: str) -> Callable[..., LoggedDataset]:
    # Imported on demand so `import recgym.data` stays cheap.
    if name == "coat":
        from recgym.data.coat import load_coat

        return load_coat
    if name == "yahoo":
        from recgym.data.yahoo import load_yahoo

        return load_yahoo
    if name == "kuairand":
        from recgym.data.kuairand import load_kuairand

        return load_kuairand
    if name == "kuairec":
        from recgym.data.kuairec import load_kuairec

        return load_kuairec
    if name in ("ml1m", "ml1m_noisy"):
        from recgym.data.ml1m import load_ml1m

        return lambda data_dir=None, **kw: load_ml1m(
            data_dir=data_dir, variant="noisy" if name == "ml1m_noisy" else "clean", **kw
        )
    if name == "synthetic":
        from recgym.data.synthetic import load_synthetic

        return load_synthetic
    raise ValueError(f"unknown dataset {name!r}; valid names: {list(DATASETS)}")


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, **kwargs: object) -> LoggedDataset:
    """Load a dataset by name (see `DATASETS`); extra kwargs go to the loader (e.g. synthetic sizes)."""
    key = name.lower().replace("-", "").replace("_", "") if name.lower() != "ml1m_noisy" else "ml1m_noisy"
    aliases = {"ml1mnoisy": "ml1m_noisy", "yahoor3": "yahoo", "kuairandpure": "kuairand", "movielens1m": "ml1m"}
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {list(DATASETS)}")
    return _loader(key)(data_dir=data_dir, **kwargs)


__all__ = [
    "DATASETS",
    "DataNotFoundError",
    "LoggedDataset",
    "cache_dir",
    "data_root",
    "dataset_dir",
    "load_dataset",
]

"""Dataset layer: raw files -> `LoggedDataset` (numpy/pandas, cached). No torch is imported here.

The datasets are listed in `recgym.data.registry` (`dataset_info`, `register_dataset`); importing this package
loads only the registry and the path helpers: loaders, numpy and pandas are imported when a dataset is loaded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from recgym.data.paths import DataNotFoundError, cache_dir, data_root, dataset_dir
from recgym.data.registry import (
    DatasetInfo,
    dataset_info,
    dataset_names,
    register_dataset,
    registered_datasets,
)

if TYPE_CHECKING:
    from recgym.data.base import LoggedDataset


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> LoggedDataset:
    """Load a registered dataset by name, alias or env tag (see `DATASETS`); extra kwargs go to the loader
    (e.g. synthetic sizes). ValueError listing the valid names for an unknown one."""
    return dataset_info(name).load(data_dir=data_dir, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "DATASETS":  # computed on access: datasets registered later are included
        return dataset_names()
    if name == "LoggedDataset":
        from recgym.data.base import LoggedDataset

        return LoggedDataset
    raise AttributeError(f"module 'recgym.data' has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "DataNotFoundError",
    "DatasetInfo",
    "LoggedDataset",
    "cache_dir",
    "data_root",
    "dataset_dir",
    "dataset_info",
    "load_dataset",
    "register_dataset",
    "registered_datasets",
]

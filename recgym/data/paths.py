"""Where datasets and caches live.

Data folder: ``$RECGYM_DATA_DIR`` if set, else ``<user cache>/datasets``. Cache folder (parsed datasets,
fitted world models, pre-trained checkpoints): ``$RECGYM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/recgym``
or ``~/.cache/recgym``. Raw data folders are treated as read-only: nothing is ever written next to them.
"""

from __future__ import annotations

import os
from pathlib import Path

# Sub-folder of the data dir holding each dataset, matching the official archive names.
DATASET_FOLDERS: dict[str, str] = {
    "coat": "coat",
    "yahoo": "yahoo_r3",
    "kuairand": "kuairand_pure",
    "kuairec": "kuairec",
    "ml1m": "ml-1m",
    "ml1m_noisy": "ml-1m",
}


class DataNotFoundError(FileNotFoundError):
    """A dataset file is missing; the message names the file, the folder searched and how to get it."""


def cache_dir() -> Path:
    """The user cache folder (created on demand)."""
    env = os.environ.get("RECGYM_CACHE_DIR")
    if env:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "recgym"
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds one sub-folder per dataset."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("RECGYM_DATA_DIR")
    if env:
        return Path(env)
    return cache_dir() / "datasets"


def dataset_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of one dataset (it may not exist yet)."""
    if name not in DATASET_FOLDERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASET_FOLDERS)}")
    return data_root(data_dir) / DATASET_FOLDERS[name]


def require_file(path: Path, dataset: str, hint: str = "") -> Path:
    """Return ``path`` if it exists, else raise `DataNotFoundError` naming the file and how to get it."""
    if path.is_file():
        return path
    how = hint or f"run `recgym data download {dataset}` or set RECGYM_DATA_DIR to a folder that holds it"
    raise DataNotFoundError(
        f"{dataset}: missing file {path.name!r} (searched {path.parent}); {how}"
    )

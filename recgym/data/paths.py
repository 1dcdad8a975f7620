"""Where datasets and caches live.

Data folder: ``$RECGYM_DATA_DIR`` if set, else ``<user cache>/datasets``. Cache folder (parsed datasets,
fitted world models, pre-trained checkpoints): ``$RECGYM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/recgym``
or ``~/.cache/recgym``. Raw data folders are treated as read-only: nothing is ever written next to them.
"""

from __future__ import annotations

import os
from pathlib import Path

from recgym.data.registry import dataset_info


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
    """The folder of one dataset (its registered ``folder`` under the data root; it may not exist yet)."""
    info = dataset_info(name)
    if info.folder is None:
        raise ValueError(f"dataset {info.name!r} is generated and has no data folder")
    return data_root(data_dir) / info.folder


def require_file(path: Path, dataset: str, hint: str = "") -> Path:
    """Return ``path`` if it exists, else raise `DataNotFoundError` naming the file and how to get it."""
    if path.is_file():
        return path
    how = hint or f"run `recgym data download {dataset}` or set RECGYM_DATA_DIR to a folder that holds it"
    raise DataNotFoundError(
        f"{dataset}: missing file {path.name!r} (searched {path.parent}); {how}"
    )

"""The one load-or-fit step behind every cached model in recgym (world models and DiffRec).

A cached model lives in one file whose name carries everything it depends on (dataset fingerprint, config hash,
seed). `cached_fit` loads it when it exists; a file that cannot be read or that its loader refuses (another
dataset, another config, truncated, corrupt) is reported with a warning and refitted, never trusted; a fresh fit
is saved before it is returned (the savers write atomically, so a crash never leaves a half-written file).
`recgym.worldmodels.fit_or_load` and `recgym.recommenders.fit_or_load_diffrec` are this step with the path,
fit and load of their model family.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def cached_fit(path: Path, fit: Callable[[], T], load: Callable[[Path], T], save: Callable[[T, Path], None], *,
               refit: bool = False, what: str = "model") -> T:
    """``load(path)`` if ``path`` is a usable cache file (and not ``refit``), else ``fit()`` then ``save``.

    ``load`` must raise when the file does not match what was asked for; ``what`` names the model in the
    warning about an unusable file.
    """
    if path.is_file() and not refit:
        try:
            return load(path)
        except Exception as err:  # corrupt / foreign cache: rebuild, do not trust
            warnings.warn(f"ignoring unusable {what} cache {path}: {err}; refitting", stacklevel=3)
    model = fit()
    save(model, path)
    return model

"""The one load-or-fit step behind every cached model in recgym (world models and DiffRec).

A cached model lives in one file whose name carries everything it depends on (dataset fingerprint, config hash,
seed), plus a ``<file>.sha256`` content digest written right after it (`recgym.data.cache.write_digest`).
`cached_fit` loads the file only when its digest matches, so a damaged file (truncated, or garbled bytes in the
middle of a same-size file) is never used; a file whose digest is missing or wrong, or that its loader refuses
(another dataset, another config), is reported with a warning naming it and refitted. A fresh fit is saved
(atomically) and its digest written before it is returned; a crash between the two leaves a file without a
digest, which the next call refits.
`recgym.worldmodels.fit_or_load` and `recgym.recommenders.fit_or_load_diffrec` are this step with the path,
fit and load of their model family.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from recgym.data.cache import check_digest, write_digest

T = TypeVar("T")


def cached_fit(path: Path, fit: Callable[[], T], load: Callable[[Path], T], save: Callable[[T, Path], None], *,
               refit: bool = False, what: str = "model") -> T:
    """``load(path)`` if ``path`` is a usable cache file (and not ``refit``), else ``fit()`` then ``save``.

    Usable: its ``.sha256`` digest matches and ``load`` accepts it. ``load`` must raise when the file does not
    match what was asked for; ``what`` names the model in the warning about an unusable file.
    """
    path = Path(path)
    if path.is_file() and not refit:
        try:
            check_digest(path)
            return load(path)
        except Exception as err:  # corrupt / foreign cache: rebuild, do not trust
            where = "" if str(path) in str(err) else f" {path}"  # digest errors name the file themselves
            warnings.warn(f"ignoring unusable {what} cache{where}: {err}; refitting", stacklevel=3)
    model = fit()
    save(model, path)
    write_digest(path)
    return model

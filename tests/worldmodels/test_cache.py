"""`cached_fit`, the one load-or-fit step behind every cached model."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgym.worldmodels.cache import cached_fit


class _Store:
    """A model that is an int, saved as text; counts fits."""

    def __init__(self) -> None:
        self.fits = 0

    def fit(self) -> int:
        self.fits += 1
        return 41 + self.fits

    @staticmethod
    def load(path: Path) -> int:
        return int(path.read_text())  # ValueError on a corrupt file

    @staticmethod
    def save(model: int, path: Path) -> None:
        path.write_text(str(model))


def test_fits_once_then_loads_refits_on_request_and_rebuilds_corrupt_files(tmp_path: Path) -> None:
    store, path = _Store(), tmp_path / "m.txt"
    assert cached_fit(path, store.fit, store.load, store.save) == 42 and store.fits == 1
    assert cached_fit(path, store.fit, store.load, store.save) == 42 and store.fits == 1  # loaded
    assert cached_fit(path, store.fit, store.load, store.save, refit=True) == 43 and store.fits == 2
    assert path.read_text() == "43"
    path.write_text("not a number")
    with pytest.warns(UserWarning, match=r"unusable toy cache .*m\.txt: invalid literal"):
        assert cached_fit(path, store.fit, store.load, store.save, what="toy") == 44
    assert path.read_text() == "44" and store.fits == 3

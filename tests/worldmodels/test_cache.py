"""`cached_fit`, the one load-or-fit step behind every cached model."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgym.data.cache import write_digest
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
    assert (tmp_path / "m.txt.sha256").read_text().split()[1] == "m.txt"  # the digest is written with the file
    assert cached_fit(path, store.fit, store.load, store.save) == 42 and store.fits == 1  # loaded
    assert cached_fit(path, store.fit, store.load, store.save, refit=True) == 43 and store.fits == 2
    assert path.read_text() == "43"
    # the same size, other content: only the digest can tell (the loader would happily read 44)
    path.write_text("44")
    with pytest.warns(UserWarning, match=r"unusable toy cache: .*m\.txt: sha256 .* does not match .* recorded in "
                                         r"m\.txt\.sha256"):
        assert cached_fit(path, store.fit, store.load, store.save, what="toy") == 44
    assert path.read_text() == "44" and store.fits == 3
    # a file the loader refuses (digest fine) is refitted too, the loader's error named
    path.write_text("not a number")
    write_digest(path)
    with pytest.warns(UserWarning, match=r"unusable toy cache .*m\.txt: invalid literal"):
        assert cached_fit(path, store.fit, store.load, store.save, what="toy") == 45
    # a cache file without its digest (an interrupted write, an older version) is refitted, not trusted
    (tmp_path / "m.txt.sha256").unlink()
    with pytest.warns(UserWarning, match=r"no readable content digest m\.txt\.sha256"):
        assert cached_fit(path, store.fit, store.load, store.save, what="toy") == 46

"""Shared test helpers.

Real-data tests call `require_data(path)`: it skips with a clear reason when the file is missing, unless
RECGYM_REQUIRE_DATA=1 (CI), where a missing file is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests never touch the user's cache unless RECGYM_CACHE_DIR is set explicitly (CI sets one in the clone).
    if not os.environ.get("RECGYM_CACHE_DIR"):
        os.environ["RECGYM_CACHE_DIR"] = str(tmp_path_factory.mktemp("recgym_cache"))


def data_dir() -> Path | None:
    env = os.environ.get("RECGYM_DATA_DIR")
    return Path(env) if env else None


def require_data(*relpaths: str) -> Path:
    """Return the data root if every ``relpath`` under it exists; skip (or fail in CI) otherwise."""
    root = data_dir()
    missing = [p for p in relpaths if root is None or not (root / p).exists()]
    if missing:
        where = "RECGYM_DATA_DIR is unset" if root is None else f"not under RECGYM_DATA_DIR={root}"
        msg = f"real data needed: {missing} ({where})"
        if os.environ.get("RECGYM_REQUIRE_DATA") == "1":
            pytest.fail(msg + " and RECGYM_REQUIRE_DATA=1")
        pytest.skip(msg)
    assert root is not None
    return root


# Files the shared CI data folder does not carry (too large for its snapshot; see shared/datasets/README.md).
# Their loaders are tested on fixtures in the official format; real-file tests skip even in CI.
NOT_IN_CI_DATA = (
    "kuairand_pure/log_standard_4_08_to_4_21_pure.csv",
    "kuairand_pure/log_random_4_22_to_5_08_pure.csv",
    "kuairec/small_matrix.csv",
    "kuairec/big_matrix.csv",
    "ml-1m/raw/ratings.dat",
)


def optional_data(*relpaths: str) -> Path:
    """Like `require_data`, but for files known to be absent from the CI data folder: always skip if missing."""
    unknown = [p for p in relpaths if p not in NOT_IN_CI_DATA]
    if unknown:
        raise ValueError(f"optional_data is only for files listed in NOT_IN_CI_DATA, got {unknown}")
    root = data_dir()
    missing = [p for p in relpaths if root is None or not (root / p).exists()]
    if missing:
        pytest.skip(f"real data not distributed with the CI data folder: {missing} (covered by fixture tests)")
    assert root is not None
    return root

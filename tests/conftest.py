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

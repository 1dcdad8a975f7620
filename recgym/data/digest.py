"""Atomic file writes and content digests: the helpers every recgym cache and checkpoint uses.

- `atomic_write` / `atomic_write_bytes`: create a file through a temp file in the same folder and `os.replace`,
  so a reader never sees a half-written file.
- `sha256_file`: sha256 of a file's bytes (not memoised: cache files must be checked on every read; raw data
  files use the memoised `recgym.data.cache.file_sha256`).
- `write_digest` / `check_digest`: a ``<file>.sha256`` next to any cached file (``sha256sum -c`` format), for the
  world-model and DiffRec caches (`recgym.worldmodels.cache.cached_fit`); a mismatch raises `CorruptCacheError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None]) -> None:
    """Create ``path`` by calling ``write(f)`` on a binary temp file in the same folder, then `os.replace`.

    The folder is created if needed; on any error the temp file is removed and ``path`` is left as it was, so a
    reader never sees a half-written file. The one atomic writer of the package (caches, checkpoints, reports).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (not memoised: for cache files, which must be checked on every read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class CorruptCacheError(Exception):
    """A cache entry failed its consistency checks."""


def digest_path(path: str | os.PathLike[str]) -> Path:
    """The ``<file>.sha256`` that `write_digest` puts next to ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_digest(path: str | os.PathLike[str]) -> Path:
    """Write ``<path>.sha256`` (``<hex>  <name>``, the ``sha256sum`` format) for a file just written."""
    path = Path(path)
    out = digest_path(path)
    atomic_write_bytes(out, f"{sha256_file(path)}  {path.name}\n".encode())
    return out


def check_digest(path: str | os.PathLike[str]) -> None:
    """Raise `CorruptCacheError` naming the file unless ``<path>.sha256`` exists and matches its content."""
    path = Path(path)
    side = digest_path(path)
    try:
        recorded = side.read_text().split()[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        raise CorruptCacheError(f"{path}: no readable content digest {side.name} (written before digests "
                                "existed, or the write was interrupted)") from None
    found = sha256_file(path)
    if found != recorded:
        raise CorruptCacheError(f"{path}: sha256 {found[:12]}... does not match the {recorded[:12]}... recorded "
                                f"in {side.name} when it was written (the file is damaged)")

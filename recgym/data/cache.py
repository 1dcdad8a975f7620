"""Raw-file fingerprints, the parsed-dataset cache and checksum verification.

- `file_sha256`: sha256 of a raw file, memoised (in memory and in ``cache_dir()/fingerprints.json``) by
  absolute path, size and mtime, so a cached load does not re-hash multi-GB logs.
- `cached_dataset`: returns the parsed `LoggedDataset` from ``cache_dir()/parsed/<name>-<fingerprint>.npz``
  (+ ``.json`` for sizes, names and meta; arrays over 32 MB, e.g. KuaiRand's 0.8 GB ground truth, go to
  ``<name>-<fingerprint>.<array>.npy``, loaded as a copy-on-write memory map), or builds and stores it. The fingerprint covers every raw file's
  sha256 and size, the loader's parser version and its config, so a changed raw file or option yields a new
  entry. Writes are atomic (temp file + `os.replace`; the JSON is written last). The JSON records the sha256
  of the npz and of every ``.npy``, the array shapes and a sha256 of its own content, all checked on every
  load, so a truncated, half-written or garbled entry (even one of the same size) is detected; it is deleted
  and rebuilt with a warning naming the file, never trusted. When a raw file changed since the last build it
  is named in a warning; when parsing then fails and the file's checksum differs from the official release's,
  the error says so.
- Damaged raw files: a raw file whose sha256 differs from the official release's is named in a warning on
  every load; when the dataset parsed from it also has other counts than the published ones (users, items,
  rows per split: the loader's ``published`` counts), loading is an error giving the counts expected and
  found (``RECGYM_ALLOW_MODIFIED_DATA=1`` turns that error into the warning, for deliberately cut files).
- `write_digest` / `check_digest`, `atomic_write`, `sha256_file`, `CorruptCacheError`: defined in
  `recgym.data.digest` (sidecar ``<file>.sha256`` digests and atomic writes), importable from here too.
- `verify`: per-file ``OK`` / ``MISMATCH`` / ``MISSING`` (or ``UNCHECKED``: present, no reference checksum)
  against ``<data_dir>/SHA256SUMS``, falling back, file by file, to the official checksums of the dataset
  registry (`recgym.data.registry.DatasetInfo.checksums`) for files it does not list.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recgym.data.base import LoggedDataset
from recgym.data.digest import (  # noqa: F401  (re-exported: moved there, imported from here)
    CorruptCacheError,
    atomic_write,
    atomic_write_bytes,
    check_digest,
    digest_path,
    sha256_file,
    write_digest,
)
from recgym.data.paths import cache_dir, data_root
from recgym.data.registry import dataset_info, known_checksums, official_sha256

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the npz/json layout changes (2: sha256 of every file and of the JSON)

_MEMO: dict[tuple[str, int, int], str] = {}


def _memo_path() -> Path:
    return cache_dir() / "fingerprints.json"


def _load_disk_memo() -> dict[str, list[Any]]:
    try:
        data = json.loads(_memo_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, memoised by (absolute path, size, mtime_ns) in memory and on disk."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key in _MEMO:
        return _MEMO[key]
    disk = _load_disk_memo()
    hit = disk.get(str(p))
    if isinstance(hit, list) and len(hit) == 3 and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        _MEMO[key] = str(hit[2])
        return _MEMO[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    _MEMO[key] = digest
    disk = _load_disk_memo()  # re-read: another process may have added entries meanwhile
    disk[str(p)] = [st.st_size, st.st_mtime_ns, digest]
    with contextlib.suppress(OSError):
        atomic_write_bytes(_memo_path(), json.dumps(disk, indent=0, sort_keys=True).encode())
    return digest


def fingerprint(files: Mapping[str, Path], config: Mapping[str, Any] | None = None) -> tuple[str, dict[str, str]]:
    """A 16-hex key over the files' (role, size, sha256) and the config; also returns the per-file sha256."""
    shas = {role: file_sha256(p) for role, p in sorted(files.items())}
    payload = {
        "format": CACHE_FORMAT,
        "files": {role: [Path(files[role]).stat().st_size, sha] for role, sha in shas.items()},
        "config": _jsonable(dict(config or {})),
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return key, shas


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------------------------- npz cache

_FRAMES = ("train", "test", "valid", "side_train")
_ARRAYS = ("ground_truth", "item_categories", "item_features", "user_features", "distance_source",
           "side_item_categories")


def _header_digest(header: Mapping[str, Any]) -> str:
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_parsed(ds: LoggedDataset, stem: Path) -> None:
    """Store ``ds`` as ``<stem>.npz`` + ``<stem>.json`` atomically (JSON last: it marks a complete entry).

    The JSON records the sha256 of the npz and of every separate ``.npy``, and of its own content.
    """
    arrays: dict[str, np.ndarray] = {}
    frames: dict[str, list[str] | None] = {}
    for fname in _FRAMES:
        df = getattr(ds, fname)
        if df is None:
            frames[fname] = None
            continue
        frames[fname] = [str(c) for c in df.columns]
        for c in df.columns:
            arrays[f"{fname}__{c}"] = df[c].to_numpy()
    for aname in _ARRAYS:
        a = getattr(ds, aname)
        if a is not None:
            arrays[aname] = np.ascontiguousarray(a)
    for k, a in arrays.items():
        if a.dtype == object:
            raise TypeError(f"cannot cache {ds.name}: array {k!r} has dtype object")
    stem.parent.mkdir(parents=True, exist_ok=True)
    big = {k: a for k, a in arrays.items() if a.nbytes >= BIG_ARRAY_BYTES}
    small = {k: a for k, a in arrays.items() if k not in big}
    npz = stem.with_suffix(".npz")
    atomic_write(npz, lambda f: np.savez(f, **small))
    big_info: dict[str, dict[str, Any]] = {}
    for k, a in big.items():
        path = _big_path(stem, k)
        atomic_write(path, lambda f, a=a: np.save(f, a, allow_pickle=False))
        big_info[k] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    header = {
        "format": CACHE_FORMAT,
        "name": ds.name,
        "n_users": int(ds.n_users),
        "n_items": int(ds.n_items),
        "category_names": list(ds.category_names),
        "reward_kind": ds.reward_kind,
        "positive_threshold": float(ds.positive_threshold),
        "quit_rule": ds.quit_rule,
        "frames": frames,
        "arrays": {k: [list(a.shape), a.dtype.str] for k, a in arrays.items()},
        "npz_size": npz.stat().st_size,
        "npz_sha256": sha256_file(npz),
        "big_arrays": big_info,
        "meta": _jsonable(ds.meta),
    }
    header["header_sha256"] = _header_digest(header)
    atomic_write_bytes(stem.with_suffix(".json"), json.dumps(header, indent=1).encode())


BIG_ARRAY_BYTES = 32 << 20  # arrays this large get their own .npy (fast memory-mapped read) instead of the npz


def _big_path(stem: Path, key: str) -> Path:
    return stem.parent / f"{stem.name}.{key}.npy"


def load_parsed(stem: Path) -> LoggedDataset:
    """Read an entry written by `save_parsed`; raise `CorruptCacheError` (or FileNotFoundError) if unusable.

    Every file of the entry is checked against the sha256 the JSON records, and the JSON against its own.
    """
    jpath, npz = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if not jpath.is_file():
        raise FileNotFoundError(jpath)
    try:
        header = json.loads(jpath.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CorruptCacheError(f"{jpath}: unreadable JSON ({e})") from e
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
        raise CorruptCacheError(f"{jpath}: unknown cache format")
    if header.get("header_sha256") != _header_digest(header):
        raise CorruptCacheError(f"{jpath}: content does not match its recorded sha256 (the file is damaged)")
    if not npz.is_file():
        raise CorruptCacheError(f"{npz} is missing")
    if npz.stat().st_size != header.get("npz_size"):
        raise CorruptCacheError(f"{npz} has {npz.stat().st_size} bytes, expected {header.get('npz_size')}")
    if sha256_file(npz) != header.get("npz_sha256"):
        raise CorruptCacheError(f"{npz}: sha256 does not match the one recorded when it was written (damaged)")
    arrays: dict[str, np.ndarray] = {}
    try:
        expected = header["arrays"]
        big = header.get("big_arrays", {})
        with np.load(npz, allow_pickle=False) as z:
            if sorted(z.files) != sorted(k for k in expected if k not in big):
                raise CorruptCacheError(f"{npz}: members {sorted(z.files)} do not match the JSON")
            for k in z.files:
                arrays[k] = z[k]  # reading a whole member checks its zip CRC
        for k, info in big.items():
            path = _big_path(stem, k)
            if not path.is_file() or path.stat().st_size != info["size"]:
                raise CorruptCacheError(f"{path} is missing or has the wrong size")
            if sha256_file(path) != info["sha256"]:
                raise CorruptCacheError(f"{path}: sha256 does not match the one recorded when it was written "
                                        "(damaged)")
            # copy-on-write map: no up-front copy of a 0.8 GB matrix, pages come from the OS page cache,
            # and the array is still writable for callers (writes never reach the file)
            arrays[k] = np.load(path, allow_pickle=False, mmap_mode="c").view(np.ndarray)
        for k, (shape, dtype) in expected.items():
            a = arrays[k]
            if list(a.shape) != list(shape) or a.dtype.str != dtype:
                raise CorruptCacheError(f"{k} is {a.dtype.str}{a.shape}, expected {dtype}{shape}")
    except CorruptCacheError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, TypeError, AttributeError) as e:
        raise CorruptCacheError(f"{npz}: {type(e).__name__}: {e}") from e
    frames: dict[str, pd.DataFrame | None] = {}
    for fname in _FRAMES:
        cols = header["frames"].get(fname)  # entries written before side logs existed lack "side_train"
        frames[fname] = None if cols is None else pd.DataFrame({c: arrays[f"{fname}__{c}"] for c in cols})
    try:
        return LoggedDataset(
            name=header["name"],
            n_users=int(header["n_users"]),
            n_items=int(header["n_items"]),
            train=frames["train"],
            test=frames["test"],
            valid=frames["valid"],
            ground_truth=arrays.get("ground_truth"),
            item_categories=arrays["item_categories"],
            category_names=list(header["category_names"]),
            item_features=arrays.get("item_features"),
            user_features=arrays.get("user_features"),
            distance_source=arrays.get("distance_source"),
            side_train=frames["side_train"],
            side_item_categories=arrays.get("side_item_categories"),
            reward_kind=header["reward_kind"],
            positive_threshold=float(header["positive_threshold"]),
            quit_rule=header["quit_rule"],
            meta=header.get("meta", {}),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise CorruptCacheError(f"{jpath}: inconsistent entry ({e})") from e


def _remove_entry(stem: Path) -> None:
    for p in [stem.with_suffix(".json"), stem.with_suffix(".npz"), *stem.parent.glob(f"{stem.name}.*.npy")]:
        with contextlib.suppress(OSError):
            p.unlink()


def parsed_dir() -> Path:
    """Folder of parsed-dataset cache entries."""
    return cache_dir() / "parsed"


ALLOW_MODIFIED_ENV = "RECGYM_ALLOW_MODIFIED_DATA"


def dataset_counts(ds: LoggedDataset) -> dict[str, int]:
    """The counts a loader's ``published`` values are compared with: users, items, rows per split (side logs
    included), GT users."""
    out = {"n_users": int(ds.n_users), "n_items": int(ds.n_items), "train_rows": len(ds.train),
           "test_rows": len(ds.test)}
    if ds.valid is not None:
        out["valid_rows"] = len(ds.valid)
    if ds.side_train is not None:
        out["side_train_rows"] = len(ds.side_train)
    if ds.ground_truth is not None:
        out["gt_users"] = int(ds.ground_truth.shape[0])
    return out


class DamagedDataError(ValueError):
    """A raw file differs from the official release and the data parsed from it has other counts."""


def modified_files(files: Mapping[str, Path], data_root_dir: Path | None) -> list[str]:
    """Raw files whose sha256 differs from the official release's (relative paths; memoised hashing)."""
    out = []
    for _, p in sorted(files.items()):
        rel = _relpath(Path(p), data_root_dir)
        official = official_sha256(rel)
        if official is not None and file_sha256(p) != official:
            out.append(rel)
    return out


def check_published(name: str, modified: list[str], found: Mapping[str, int], published: Mapping[str, int] | None,
                    *, warn: bool = True, stacklevel: int = 3) -> None:
    """Judge raw files that differ from the official release (``modified``; see the module docstring).

    Counts ``found`` that differ from ``published``: `DamagedDataError` giving the counts expected and found
    (a warning under ``RECGYM_ALLOW_MODIFIED_DATA=1``). Matching counts: a warning naming the files (unless
    ``warn`` is False: a loader's early check, the full check follows). No modified file: nothing.
    """
    if not modified:
        return
    diff = {k: (v, found[k]) for k, v in (published or {}).items() if k in found and found[k] != v}
    files = ", ".join(modified)
    if diff:
        counts = "; ".join(f"{k}: expected {e:,}, found {f:,}" for k, (e, f) in diff.items())
        msg = (f"{name}: {files} differ(s) from the official release (sha256 mismatch) and the parsed data does "
               f"not have the published counts ({counts}); the file is damaged, cut or modified: re-download it "
               f"or run `recgym data verify {name}`")
        if os.environ.get(ALLOW_MODIFIED_ENV) != "1":
            raise DamagedDataError(msg + f" (set {ALLOW_MODIFIED_ENV}=1 to load a deliberately modified file)")
        if warn:
            warnings.warn(msg + f"; loading it anyway ({ALLOW_MODIFIED_ENV}=1)", stacklevel=stacklevel)
        return
    if warn:
        counts = (", although the parsed counts match the published ones" if published
                  else " (recgym has no published counts to check this loader's data against)")
        warnings.warn(f"{name}: {files} differ(s) from the official release (sha256 mismatch){counts}; results "
                      f"may not be comparable to published numbers (`recgym data verify {name}`)",
                      stacklevel=stacklevel)


def cached_dataset(
    name: str,
    files: Mapping[str, Path],
    build: Callable[[], LoggedDataset],
    *,
    config: Mapping[str, Any] | None = None,
    use_cache: bool = True,
    data_root_dir: Path | None = None,
    published: Mapping[str, int] | None = None,
) -> LoggedDataset:
    """Return the parsed dataset for these raw ``files`` (role -> path), building and caching it on a miss.

    ``config`` (loader options and parser version) is part of the key. Adds ``meta["source_files"]``
    (role -> file name, size, sha256) and ``meta["fingerprint"]``. With ``use_cache=False`` nothing is read
    or written. ``published``: the official release's counts (keys of `dataset_counts`), checked when a raw
    file's sha256 differs from the official one (`check_published`: an error, or a warning if they match).
    """
    key, shas = fingerprint(files, config)
    stem = parsed_dir() / f"{name}-{key}"
    index_path = parsed_dir() / "last_parsed.json"
    modified = modified_files(files, data_root_dir)
    if use_cache:
        try:
            ds = load_parsed(stem)
            log.debug("%s: loaded parsed cache %s", name, stem)
            check_published(name, modified, dataset_counts(ds), published)
            return ds
        except FileNotFoundError:
            pass
        except CorruptCacheError as e:
            warnings.warn(f"{name}: parsed cache entry is corrupt ({e}); rebuilding it", stacklevel=2)
            _remove_entry(stem)
        _warn_changed(name, index_path, files, shas)
    try:
        ds = build()
    except DamagedDataError:
        raise
    except ValueError as e:
        raise _annotate_checksum(e, files, shas, data_root_dir) from e
    ds.meta.setdefault("source_files", {})
    for role, p in sorted(files.items()):
        rel = _relpath(Path(p), data_root_dir)
        ds.meta["source_files"][role] = {
            "file": rel,
            "size": Path(p).stat().st_size,
            "sha256": shas[role],
            "official_sha256": official_sha256(rel),
        }
    ds.meta["fingerprint"] = key
    check_published(name, modified, dataset_counts(ds), published)
    if use_cache:
        try:
            save_parsed(ds, stem)
            _record_parsed(index_path, files, shas)
        except OSError as e:  # a read-only cache must not break loading
            warnings.warn(f"{name}: could not write the parsed cache under {parsed_dir()} ({e})", stacklevel=2)
    return ds


def _relpath(p: Path, root: Path | None) -> str:
    if root is not None:
        with contextlib.suppress(ValueError):
            return p.resolve().relative_to(root.resolve()).as_posix()
    return p.name


def _read_index(index_path: Path) -> dict[str, str]:
    try:
        data = json.loads(index_path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _record_parsed(index_path: Path, files: Mapping[str, Path], shas: Mapping[str, str]) -> None:
    """Remember the sha256 each raw file (by absolute path) had when it was last parsed."""
    index = _read_index(index_path)
    for role, p in files.items():
        index[str(Path(p).resolve())] = shas[role]
    atomic_write_bytes(index_path, json.dumps(index, indent=0, sort_keys=True).encode())


def _warn_changed(name: str, index_path: Path, files: Mapping[str, Path], shas: Mapping[str, str]) -> None:
    """Warn, naming the file, when a raw file parsed before has different content now."""
    last = _read_index(index_path)
    for role, p in sorted(files.items()):
        old = last.get(str(Path(p).resolve()))
        if old is not None and old != shas[role]:
            warnings.warn(
                f"{name}: raw file {p} changed since it was last parsed "
                f"(sha256 {old[:12]}... -> {shas[role][:12]}...); re-parsing it",
                stacklevel=3,
            )


def _annotate_checksum(
    err: ValueError, files: Mapping[str, Path], shas: Mapping[str, str], root: Path | None
) -> ValueError:
    bad = [
        str(files[r])
        for r in shas
        if official_sha256(_relpath(Path(files[r]), root)) not in (None, shas[r])
    ]
    if not bad:
        return err
    return ValueError(
        f"{err}\n(checksum differs from the official release for: {', '.join(bad)}; the file may be corrupt "
        f"or modified: re-download it or run `recgym data verify`)"
    )


# ----------------------------------------------------------------------------------------------- verify


def _read_sha256sums(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            continue
        digest, rel = parts
        rel = rel.lstrip("*")
        if rel.startswith("./"):
            rel = rel[2:]
        out[rel] = digest.lower()
    return out


def verify(name: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Check a dataset's files: relative path -> ``OK`` / ``MISMATCH`` / ``MISSING`` / ``UNCHECKED``.

    Reference checksums: ``<data_dir>/SHA256SUMS`` where it lists a file (lines ``<sha256>  ./<relpath>``),
    else the registry's official checksum. Files listed there under the dataset's ``checksum_prefixes`` plus the
    files its loader needs (``DatasetInfo.files``) are checked; ``UNCHECKED`` means present but without a
    reference checksum (e.g. the KuaiRand logs, whose checksums we could not obtain).
    """
    info = dataset_info(name)
    if info.folder is None:
        raise ValueError(f"dataset {info.name!r} is generated and has no files to verify")
    root = data_root(data_dir)
    sums_file = root / "SHA256SUMS"
    # SHA256SUMS wins where it lists a file; the official checksums fill in what it lacks
    reference = {**known_checksums(), **(_read_sha256sums(sums_file) if sums_file.is_file() else {})}
    prefixes = tuple(info.checksum_prefixes or ())
    wanted = {r for r in reference if r.startswith(prefixes)} | set(info.files)
    out: dict[str, str] = {}
    for rel in sorted(wanted):
        p = root / rel
        if not p.is_file():
            alt = _find_in_subdirs(info.search_subdirs, root, rel)
            if alt is None:
                out[rel] = "MISSING"
                continue
            p = alt
        ref = reference.get(rel)
        if ref is None:
            out[rel] = "UNCHECKED"
        else:
            out[rel] = "OK" if file_sha256(p) == ref else "MISMATCH"
    return out


def _find_in_subdirs(subdirs: tuple[str, ...], root: Path, rel: str) -> Path | None:
    folder, _, fname = rel.partition("/")
    for sub in subdirs:
        cand = root / folder / sub / fname if sub else root / folder / fname
        if cand.is_file():
            return cand
    return None


# ----------------------------------------------------------------------------------------------- locating files

def locate(name: str, filename: str, data_dir: str | os.PathLike[str] | None = None, *, folder: str = "") -> Path:
    """Find a raw file of dataset ``name`` (searching its registered ``search_subdirs``) or raise.

    Raises `DataNotFoundError` naming the file, every folder searched and how to get the data.
    """
    from recgym.data.paths import DataNotFoundError, dataset_dir

    info = dataset_info(name)
    base = dataset_dir(name, data_dir) / folder if folder else dataset_dir(name, data_dir)
    searched = []
    for sub in info.search_subdirs:
        d = base / sub if sub else base
        searched.append(str(d))
        if (d / filename).is_file():
            return d / filename
    where = f"pass data_dir= / set RECGYM_DATA_DIR to a folder that holds {info.folder}/"
    if info.access_hint:
        how = info.access_hint.format(folder=base)
    elif info.downloadable_as is not None:
        how = f"run `recgym data download {info.downloadable_as}` (or {where})"
    else:
        how = where
    raise DataNotFoundError(
        f"{name}: missing file {filename!r} (searched {', '.join(searched)}); {how}"
    )

"""Parsed-dataset cache: round trip, corrupt entries rebuilt, changed raw files detected; verify(); fingerprints."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgym.data import cache
from recgym.data.base import LoggedDataset
from recgym.data.coat import load_coat
from tests.conftest import require_data

COAT = ("coat/train.ascii", "coat/rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii")


@pytest.fixture()
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(d))
    return d


def _tiny(name: str = "tiny") -> LoggedDataset:
    return LoggedDataset(
        name=name,
        n_users=3,
        n_items=4,
        train=pd.DataFrame(
            {"user": np.array([0, 1, 2], np.int32), "item": np.array([3, 0, 1], np.int32),
             "reward": np.array([1.0, 0.5, 2.0], np.float32), "time": np.array([10, 20, 30], np.int64)}
        ),  # fmt: skip
        test=pd.DataFrame({"user": np.array([0], np.int32), "item": np.array([2], np.int32), "reward": np.ones(1, np.float32)}),
        ground_truth=np.arange(12, dtype=np.float32).reshape(3, 4),
        item_categories=np.eye(4, 2, dtype=bool),
        category_names=["a", "b"],
        reward_kind="rating",
        positive_threshold=1.5,
        quit_rule="distance",
        user_features=np.ones((3, 2), np.float32),
        meta={"k": [1, 2], "x": np.float64(0.5)},
    )


def _raw(tmp_path: Path) -> dict[str, Path]:
    p = tmp_path / "raw.txt"
    p.write_text("hello\n")
    return {"raw": p}


def test_round_trip_preserves_everything(cache_root: Path, tmp_path: Path) -> None:
    calls = []

    def build() -> LoggedDataset:
        calls.append(1)
        return _tiny()

    a = cache.cached_dataset("tiny", _raw(tmp_path), build, config={"v": 1})
    b = cache.cached_dataset("tiny", _raw(tmp_path), build, config={"v": 1})
    assert len(calls) == 1  # second call read the cache
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.test, b.test)
    assert b.valid is None and b.item_features is None
    np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
    np.testing.assert_array_equal(b.item_categories, np.eye(4, 2, dtype=bool))
    assert b.train["time"].dtype == np.int64 and b.user_features.dtype == np.float32
    assert b.category_names == ["a", "b"] and b.positive_threshold == 1.5
    assert b.meta["k"] == [1, 2] and b.meta["x"] == 0.5
    assert b.meta["source_files"]["raw"]["sha256"] == cache.file_sha256(tmp_path / "raw.txt")
    entries = sorted(p.name for p in (cache_root / "parsed").iterdir())
    key = a.meta["fingerprint"]
    assert f"tiny-{key}.npz" in entries and f"tiny-{key}.json" in entries
    assert not [e for e in entries if e.endswith(".tmp")]
    # another config -> another entry
    cache.cached_dataset("tiny", _raw(tmp_path), build, config={"v": 2})
    assert len(calls) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "json", "missing_npz", "shape", "big_flip", "big_missing"])
def test_corrupt_entry_is_rebuilt(
    cache_root: Path, tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if damage.startswith("big"):  # the 48-byte ground truth goes to its own .npy
        monkeypatch.setattr(cache, "BIG_ARRAY_BYTES", 40)
    calls = []

    def build() -> LoggedDataset:
        calls.append(1)
        return _tiny()

    ds = cache.cached_dataset("tiny", _raw(tmp_path), build)
    stem = cache_root / "parsed" / f"tiny-{ds.meta['fingerprint']}"
    npz, js = stem.with_suffix(".npz"), stem.with_suffix(".json")
    big = stem.parent / f"{stem.name}.ground_truth.npy"
    assert big.is_file() == damage.startswith("big")
    data = bytearray(npz.read_bytes())
    if damage == "big_flip":
        b = bytearray(big.read_bytes())
        b[-3] ^= 0x01
        big.write_bytes(bytes(b))
    elif damage == "big_missing":
        big.unlink()
    elif damage == "truncate":
        npz.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":  # same size, one byte of the ground-truth payload changed: zip CRC catches it
        i = data.find(np.arange(12, dtype=np.float32).tobytes())
        assert i > 0
        data[i + 5] ^= 0xFF
        npz.write_bytes(bytes(data))
    elif damage == "json":
        js.write_text("{not json")
    elif damage == "missing_npz":
        npz.unlink()
    else:
        h = json.loads(js.read_text())
        h["arrays"]["ground_truth"][0] = [4, 3]
        js.write_text(json.dumps(h))
    with pytest.warns(UserWarning, match="parsed cache entry is corrupt"):
        again = cache.cached_dataset("tiny", _raw(tmp_path), build)
    assert len(calls) == 2
    np.testing.assert_array_equal(again.ground_truth, np.arange(12, dtype=np.float32).reshape(3, 4))
    # the rebuilt entry is good again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.cached_dataset("tiny", _raw(tmp_path), build)
    assert len(calls) == 2


def test_changed_raw_file_is_named_and_reparsed(cache_root: Path, tmp_path: Path) -> None:
    files = _raw(tmp_path)
    seen = []

    def build() -> LoggedDataset:
        seen.append(files["raw"].read_text())
        return _tiny()

    first = cache.cached_dataset("tiny", files, build)
    files["raw"].write_text("changed content\n")
    with pytest.warns(UserWarning, match=r"raw file .*raw\.txt changed since it was last parsed"):
        second = cache.cached_dataset("tiny", files, build)
    assert seen == ["hello\n", "changed content\n"]
    assert first.meta["fingerprint"] != second.meta["fingerprint"]


def test_fingerprint_memo_and_change_detection(cache_root: Path, tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    import hashlib

    assert cache.file_sha256(p) == hashlib.sha256(b"abc").hexdigest()
    memo = json.loads((cache_root / "fingerprints.json").read_text())
    assert memo[str(p.resolve())][2] == hashlib.sha256(b"abc").hexdigest()
    p.write_bytes(b"abcd")  # size changes -> re-hashed
    assert cache.file_sha256(p) == hashlib.sha256(b"abcd").hexdigest()


def test_build_error_mentions_checksum_mismatch(cache_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "coat").mkdir(parents=True)
    f = root / "coat" / "train.ascii"
    f.write_text("1 2 3\n")

    def build() -> LoggedDataset:
        raise ValueError(f"malformed dataset file {f}, line 1: boom")

    with pytest.raises(ValueError, match=r"boom\n\(checksum differs from the official release for: .*train\.ascii"):
        cache.cached_dataset("coat", {"train": f}, build, data_root_dir=root)


def test_coat_real_cache_round_trip(cache_root: Path) -> None:
    root = require_data(*COAT)
    a = load_coat(root)
    assert list((cache_root / "parsed").glob("coat-*.npz"))
    b = load_coat(root)
    pd.testing.assert_frame_equal(a.train, b.train)
    np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
    assert a.meta == b.meta and a.category_names == b.category_names
    c = load_coat(root, use_cache=False)
    np.testing.assert_array_equal(a.item_categories, c.item_categories)


def test_verify_ok_mismatch_missing(tmp_path: Path) -> None:
    real = require_data(*COAT)
    root = tmp_path / "data"
    shutil.copytree(real / "coat", root / "coat")
    for p in (root / "coat").rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    res = cache.verify("coat", root)  # no SHA256SUMS here: built-in checksums
    assert res["coat/train.ascii"] == "OK" and set(res.values()) == {"OK"}
    assert len(res) == 9  # coat.zip's 8 files + the pseudo-ground-truth matrix
    (root / "coat" / "train.ascii").write_text("0\n")
    (root / "coat" / "test.ascii").unlink()
    res = cache.verify("coat", root)
    assert res["coat/train.ascii"] == "MISMATCH" and res["coat/test.ascii"] == "MISSING"
    assert res["coat/propensities.ascii"] == "OK"
    # with the shared data's SHA256SUMS
    shared = cache.verify("yahoo", real)  # the shared data has a SHA256SUMS file: it is the reference
    assert shared["yahoo_r3/ydata-ymusic-rating-study-v1_0-train.txt"] == "OK" and set(shared.values()) == {"OK"}
    kr = cache.verify("kuairand", tmp_path / "empty")
    assert kr["kuairand_pure/log_random_4_22_to_5_08_pure.csv"] == "MISSING"


def test_verify_unchecked_and_unknown(tmp_path: Path) -> None:
    d = tmp_path / "kuairec"
    d.mkdir()
    (d / "small_matrix.csv").write_text("x\n")
    res = cache.verify("kuairec", tmp_path)
    assert res == {
        "kuairec/big_matrix.csv": "MISSING",
        "kuairec/item_categories.csv": "MISSING",
        "kuairec/small_matrix.csv": "UNCHECKED",
    }
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        cache.verify("nope", tmp_path)


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    from recgym.data.cache import atomic_write, atomic_write_bytes

    target = tmp_path / "sub" / "out.bin"
    atomic_write_bytes(target, b"old")  # creates the folder
    assert target.read_bytes() == b"old"

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]  # no temp file left behind
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"


def _garble_middle(path: Path, n: int = 200) -> None:
    """Overwrite ``n`` bytes in the middle of a file with other bytes; the size stays the same."""
    data = bytearray(path.read_bytes())
    mid = max(0, len(data) // 2 - n // 2)
    for i in range(mid, min(len(data), mid + n)):
        data[i] ^= 0x5A
    size = path.stat().st_size
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size


@pytest.mark.parametrize("target", ["npz", "big_npy", "json_value"])
def test_same_size_garbled_entry_is_named_and_rebuilt(
    cache_root: Path, tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "BIG_ARRAY_BYTES", 40)  # the 48-byte ground truth goes to its own .npy
    calls = []

    def build() -> LoggedDataset:
        calls.append(1)
        return _tiny()

    ds = cache.cached_dataset("tiny", _raw(tmp_path), build)
    stem = cache_root / "parsed" / f"tiny-{ds.meta['fingerprint']}"
    if target == "npz":
        victim = stem.with_suffix(".npz")
        _garble_middle(victim)
    elif target == "big_npy":
        victim = stem.parent / f"{stem.name}.ground_truth.npy"
        data = bytearray(victim.read_bytes())
        data[-20] ^= 0x01  # one value of the matrix: the .npy still loads, only the digest tells
        victim.write_bytes(bytes(data))
    else:  # valid JSON, same size, another value: only the JSON's own digest tells
        victim = stem.with_suffix(".json")
        text = victim.read_text()
        assert '"n_users": 3' in text
        victim.write_text(text.replace('"n_users": 3', '"n_users": 9'))
    with pytest.warns(UserWarning, match=rf"parsed cache entry is corrupt \(.*{victim.name}.*sha256"):
        again = cache.cached_dataset("tiny", _raw(tmp_path), build)
    assert len(calls) == 2 and again.n_users == 3
    np.testing.assert_array_equal(again.ground_truth, np.arange(12, dtype=np.float32).reshape(3, 4))


def test_sidecar_digest_detects_same_size_damage(tmp_path: Path) -> None:
    f = tmp_path / "model.pt"
    f.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(cache.CorruptCacheError, match=r"model\.pt: no readable content digest model\.pt\.sha256"):
        cache.check_digest(f)
    side = cache.write_digest(f)
    assert side.read_text().split() == [cache.sha256_file(f), "model.pt"]  # `sha256sum -c` format
    cache.check_digest(f)
    _garble_middle(f)
    with pytest.raises(cache.CorruptCacheError, match=r"model\.pt: sha256 .* does not match .* model\.pt\.sha256"):
        cache.check_digest(f)


YAHOO = ("yahoo_r3/ydata-ymusic-rating-study-v1_0-train.txt", "yahoo_r3/ydata-ymusic-rating-study-v1_0-test.txt")


def _yahoo_copy(real: Path, root: Path, train_lines: list[str]) -> None:
    d = root / "yahoo_r3"
    d.mkdir(parents=True)
    shutil.copyfile(real / YAHOO[1], d / Path(YAHOO[1]).name)
    (d / Path(YAHOO[0]).name).write_text("\n".join(train_lines) + "\n")


def test_damaged_yahoo_is_an_error_with_expected_and_found_counts(
    cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recgym.data.yahoo import load_yahoo

    real = require_data(*YAHOO)
    lines = (real / YAHOO[0]).read_text().splitlines()
    # cut at a line boundary: every line parses, only the counts tell
    _yahoo_copy(real, tmp_path / "cut", lines[:150_000])
    with pytest.raises(cache.DamagedDataError, match=r"train\.txt differ\(s\) from the official release .*"
                       r"n_users: expected 15,400, found 6,588; train_rows: expected 311,704, found 150,000"):
        load_yahoo(tmp_path / "cut")
    # one item id out of the published catalogue: 4,000 phantom items
    u, _, r = lines[7].split("\t")
    _yahoo_copy(real, tmp_path / "item", lines[:7] + [f"{u}\t5000\t{r}"] + lines[8:])
    with pytest.raises(cache.DamagedDataError, match=r"n_items: expected 1,000, found 5,000"):
        load_yahoo(tmp_path / "item", use_cache=False)
    # a deliberately cut file can still be loaded, with a visible warning (checked on the judge itself: a full
    # Yahoo build fits two MFs)
    monkeypatch.setenv(cache.ALLOW_MODIFIED_ENV, "1")
    with pytest.warns(UserWarning, match=r"n_users: expected 2, found 1.*loading it anyway"):
        cache.check_published("yahoo", ["yahoo_r3/x.txt"], {"n_users": 1}, {"n_users": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.check_published("yahoo", ["yahoo_r3/x.txt"], {"n_users": 1}, {"n_users": 2}, warn=False)
        cache.check_published("yahoo", [], {"n_users": 1}, {"n_users": 2})  # official files: nothing to say


def test_duplicated_coat_row_is_a_visible_warning(cache_root: Path, tmp_path: Path) -> None:
    real = require_data(*COAT, "coat/test.ascii")
    shutil.copytree(real / "coat", tmp_path / "coat")
    for p in (tmp_path / "coat").rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    f = tmp_path / "coat" / "train.ascii"
    rows = f.read_text().splitlines()
    rows[5] = rows[4]  # user 5's ratings replaced by a copy of user 4's: same shape, same counts
    f.write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"coat/train\.ascii differ\(s\) from the official release .*counts match"):
        ds = load_coat(tmp_path)
    assert ds.meta["source_files"]["train"]["sha256"] != ds.meta["source_files"]["train"]["official_sha256"]
    with pytest.warns(UserWarning, match=r"coat/train\.ascii differ"):  # and again on a cached load
        load_coat(tmp_path)
    with warnings.catch_warnings():  # the untouched release loads without a word
        warnings.simplefilter("error")
        load_coat(real)


def test_verify_falls_back_to_builtin_checksums_per_file(tmp_path: Path) -> None:
    real = require_data(*COAT)
    root = tmp_path / "data"
    shutil.copytree(real / "coat", root / "coat")
    # a SHA256SUMS that lists another dataset only: coat's files are checked against the built-in checksums
    (root / "SHA256SUMS").write_text("0" * 64 + "  ./yahoo_r3/ydata-ymusic-rating-study-v1_0-train.txt\n")
    res = cache.verify("coat", root)
    assert res["coat/train.ascii"] == "OK" and "UNCHECKED" not in res.values()
    (root / "coat" / "train.ascii").chmod(0o644)
    (root / "coat" / "train.ascii").write_text("0\n")
    assert cache.verify("coat", root)["coat/train.ascii"] == "MISMATCH"

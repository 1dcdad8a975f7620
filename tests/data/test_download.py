"""`recgym.data.download` against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from recgym.data.download import (
    SOURCES,
    DownloadError,
    LicenceRequiredError,
    download,
    verify_folder,
)


class _Server:
    """A bounded threaded HTTP server with Range support; ``cut_at[path]`` closes the connection at that byte."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_at: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                stop = min(len(body), outer.cut_at.get(self.path, len(body)))
                self.wfile.write(body[start:stop])
                if stop < len(body):
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def ranges(self, path: str) -> list[str | None]:
        return [r for p, r in self.requests if p == path]


@pytest.fixture()
def server() -> Iterator[_Server]:
    srv = _Server()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(timeout=5)


def _matrix(rng: np.random.Generator, rows: int, cols: int, density: float) -> bytes:
    m = rng.integers(1, 6, size=(rows, cols)) * (rng.random((rows, cols)) < density)
    return ("\n".join(" ".join(str(v) for v in row) for row in m) + "\n").encode()


def _coat_zip(seed: int = 0) -> bytes:
    """An archive in the layout of the official coat.zip (top folder ``coat/``), with random content."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("coat/train.ascii", _matrix(rng, 290, 300, 0.08))
        zf.writestr("coat/test.ascii", _matrix(rng, 290, 300, 0.05))
        props = rng.random((290, 300))
        zf.writestr("coat/propensities.ascii", "\n".join(" ".join(f"{v:.6f}" for v in r) for r in props) + "\n")
        zf.writestr("coat/README.txt", "coat test archive\n")
        zf.writestr("coat/user_item_features/user_features.ascii", _matrix(rng, 290, 14, 0.3))
        zf.writestr("coat/user_item_features/item_features.ascii", _matrix(rng, 300, 33, 0.3))
        zf.writestr("__MACOSX/coat/._train.ascii", b"junk")
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # each test gets its own downloads cache, outside the data root the test inspects
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture()
def coat_files() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    return {"/coat.zip": _coat_zip(), "/pseudo_gt.ascii": _matrix(rng, 290, 300, 1.0)}


def _coat_source(base: str, gt: bytes, archive_checksum: tuple[str, str] | None = None):
    src = SOURCES["coat"]
    extra = dataclasses.replace(src.extras[0], url=f"{base}/pseudo_gt.ascii",
                                checksum=("sha256", hashlib.sha256(gt).hexdigest()))
    return {"coat": dataclasses.replace(src, url=f"{base}/coat.zip", extras=(extra,), checksum=archive_checksum)}


def test_download_unpacks_verified_layout(server: _Server, coat_files: dict[str, bytes], data: Path) -> None:
    server.files.update(coat_files)
    sources = _coat_source(server.base, coat_files["/pseudo_gt.ascii"],
                           ("md5", hashlib.md5(coat_files["/coat.zip"]).hexdigest()))
    out = download("coat", data_dir=data, progress=False, sources=sources)
    assert out == data / "coat"
    with zipfile.ZipFile(io.BytesIO(coat_files["/coat.zip"])) as zf:
        assert (out / "train.ascii").read_bytes() == zf.read("coat/train.ascii")
        assert (out / "user_item_features" / "item_features.ascii").read_bytes() == zf.read(
            "coat/user_item_features/item_features.ascii")
    assert (out / "rl4rec_BetsyHJ" / "coat_pseudoGT_ratingM.ascii").read_bytes() == coat_files["/pseudo_gt.ascii"]
    assert not (out / "__MACOSX").exists()
    # only the dataset folder is left in the data root (no staging folders), and the archive cache is cleaned
    assert [p.name for p in data.iterdir()] == ["coat"]
    assert verify_folder("coat", data, sources=sources) == out
    # a complete folder is not fetched again
    n = len(server.requests)
    download("coat", data_dir=data, progress=False, sources=sources)
    assert len(server.requests) == n


def test_resume_from_partial_file_sends_range(server: _Server, coat_files: dict[str, bytes], data: Path) -> None:
    from recgym.data.paths import cache_dir

    server.files.update(coat_files)
    body = coat_files["/coat.zip"]
    part = cache_dir() / "downloads" / "coat.zip.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    half = len(body) // 2
    part.write_bytes(body[:half])
    sources = _coat_source(server.base, coat_files["/pseudo_gt.ascii"], ("sha256", hashlib.sha256(body).hexdigest()))
    out = download("coat", data_dir=data, progress=False, sources=sources)
    assert server.ranges("/coat.zip") == [f"bytes={half}-"]
    assert (out / "test.ascii").is_file()
    assert not part.exists()


def test_checksum_mismatch_writes_no_target(server: _Server, coat_files: dict[str, bytes], data: Path) -> None:
    server.files.update(coat_files)
    sources = _coat_source(server.base, coat_files["/pseudo_gt.ascii"], ("md5", "0" * 32))
    with pytest.raises(DownloadError, match="md5 checksum mismatch"):
        download("coat", data_dir=data, progress=False, sources=sources)
    assert not (data / "coat").exists()
    assert not data.exists() or list(data.iterdir()) == []
    from recgym.data.paths import cache_dir

    assert not (cache_dir() / "downloads" / "coat.zip.part").exists()  # a corrupt file is never resumed


def test_interrupted_connection_leaves_only_part(server: _Server, coat_files: dict[str, bytes],
                                                 data: Path) -> None:
    from recgym.data.paths import cache_dir

    server.files.update(coat_files)
    body = coat_files["/coat.zip"]
    server.cut_at["/coat.zip"] = len(body) // 3
    sources = _coat_source(server.base, coat_files["/pseudo_gt.ascii"], ("md5", hashlib.md5(body).hexdigest()))
    with pytest.raises(DownloadError, match="kept"):
        download("coat", data_dir=data, progress=False, sources=sources, retries=2)
    assert not (data / "coat").exists()
    part = cache_dir() / "downloads" / "coat.zip.part"
    assert part.read_bytes() == body[: len(body) // 3]
    # the second attempt resumed from the partial file
    assert server.ranges("/coat.zip") == [None, f"bytes={len(body) // 3}-"]
    # once the host serves the whole file again, the next call resumes and completes
    del server.cut_at["/coat.zip"]
    out = download("coat", data_dir=data, progress=False, sources=sources)
    assert (out / "train.ascii").is_file() and not part.exists()


def test_bad_content_without_checksum_writes_no_target(server: _Server, data: Path) -> None:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # train.ascii has 289 rows: a truncated archive
        zf.writestr("coat/train.ascii", _matrix(rng, 289, 300, 0.1))
    gt = _matrix(rng, 290, 300, 1.0)
    server.files.update({"/coat.zip": buf.getvalue(), "/pseudo_gt.ascii": gt})
    with pytest.raises(DownloadError, match="train.ascii has 289 non-empty lines, expected 290"):
        download("coat", data_dir=data, progress=False, sources=_coat_source(server.base, gt))
    assert list(data.iterdir()) == []


def test_existing_folder_keeps_other_files(server: _Server, coat_files: dict[str, bytes], data: Path) -> None:
    keep = data / "coat" / "reference_dorl" / "feature_domination.json"
    keep.parent.mkdir(parents=True)
    keep.write_text("{}")
    server.files.update(coat_files)
    out = download("coat", data_dir=data, progress=False,
                   sources=_coat_source(server.base, coat_files["/pseudo_gt.ascii"]))
    assert keep.read_text() == "{}" and (out / "propensities.ascii").is_file()


def test_yahoo_needs_licence(data: Path) -> None:
    with pytest.raises(LicenceRequiredError) as err:
        download("yahoo", data_dir=data)
    msg = str(err.value)
    assert "https://webscope.sandbox.yahoo.com/" in msg
    assert "R3 - Yahoo! Music ratings for User Selected and Randomly Selected songs" in msg
    assert str(data / "yahoo_r3") in msg
    assert "ydata-ymusic-rating-study-v1_0-train.txt" in msg and "ydata-ymusic-rating-study-v1_0-test.txt" in msg


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid names: \\['coat', 'kuairand', 'kuairec', 'ml1m'\\]"):
        download("netflix")


def test_source_table_is_official_and_consistent() -> None:
    assert SOURCES["coat"].url == "https://www.cs.cornell.edu/~schnabts/mnar/coat.zip"
    assert SOURCES["ml1m"].url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert SOURCES["kuairand"].url.startswith("https://zenodo.org/records/10439422/")
    assert SOURCES["kuairec"].url.startswith("https://zenodo.org/records/18164998/")
    for src in SOURCES.values():
        assert src.checks and (src.checksum is None or len(src.checksum[1]) in (32, 64))


def test_shared_coat_folder_passes_content_checks() -> None:
    from tests.conftest import require_data

    root = require_data("coat/train.ascii", "coat/rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii")
    assert verify_folder("coat", root) == root / "coat"


def test_tar_gz_layout_kuairand(server: _Server, data: Path) -> None:
    import tarfile

    from recgym.data.catalog import _KUAIRAND_LOG_HEADER
    from recgym.data.download import MemberCheck

    rows = "\n".join(f"{u},{u % 7},20220422,1200,1650600000000,{u % 2},0,0,0,0,0,1,5000,10000,0,0,0,1,1"
                     for u in range(50))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in ("log_random_4_22_to_5_08_pure.csv", "log_standard_4_08_to_4_21_pure.csv"):
            payload = (_KUAIRAND_LOG_HEADER + "\n" + rows + "\n").encode()
            info = tarfile.TarInfo(f"KuaiRand-Pure/data/{name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
        info = tarfile.TarInfo("KuaiRand-Pure/load_data_pure.py")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"x=1"))
    body = buf.getvalue()
    server.files["/KuaiRand-Pure.tar.gz"] = body
    checks = (MemberCheck("log_random_4_22_to_5_08_pure.csv", header=_KUAIRAND_LOG_HEADER, n_lines=51),
              MemberCheck("log_standard_4_08_to_4_21_pure.csv", header=_KUAIRAND_LOG_HEADER))
    src = dataclasses.replace(SOURCES["kuairand"], url=f"{server.base}/KuaiRand-Pure.tar.gz", checks=checks,
                              checksum=("md5", hashlib.md5(body).hexdigest()))
    out = download("kuairand-pure", data_dir=data, progress=False, sources={"kuairand": src})
    assert out == data / "kuairand_pure"
    assert sorted(p.name for p in out.iterdir()) == ["log_random_4_22_to_5_08_pure.csv",
                                                    "log_standard_4_08_to_4_21_pure.csv"]


def _yahoo_logs(data: Path) -> Path:
    folder = data / "yahoo_r3"
    folder.mkdir(parents=True)
    for name in ("ydata-ymusic-rating-study-v1_0-train.txt", "ydata-ymusic-rating-study-v1_0-test.txt"):
        (folder / name).write_text("1\t1\t5\n")
    return folder


def _yahoo_source(base: str, path: str):
    from recgym.data.download import YAHOO_PSEUDO_GT, MemberCheck

    # the real checks want 1,000 numbers per line and >= 5,400 lines; the fixture is 8 x 20
    checks = (MemberCheck("yahoo_pseudoGT_ratingM.ascii", n_fields=20, min_lines=6),)
    return {"yahoo": dataclasses.replace(YAHOO_PSEUDO_GT, url=f"{base}{path}", checks=checks)}


def test_yahoo_pseudo_gt_needs_the_licensed_logs_first(server: _Server, data: Path) -> None:
    with pytest.raises(LicenceRequiredError) as err:
        download("yahoo", data_dir=data, accept_licence=True, sources=_yahoo_source(server.base, "/x.zip"))
    msg = str(err.value)
    assert "ydata-ymusic-rating-study-v1_0-train.txt" in msg and "yahoo_pseudoGT_ratingM.ascii" in msg
    assert server.requests == []  # nothing fetched before the licensed files are there
    with pytest.raises(LicenceRequiredError, match="--accept-licence"):
        download("yahoo", data_dir=data)


def test_yahoo_pseudo_gt_taken_from_rl4rec_archive(server: _Server, data: Path) -> None:
    folder = _yahoo_logs(data)
    rng = np.random.default_rng(3)
    gt = _matrix(rng, 8, 20, 1.0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data/yahoo_pseudoGT_ratingM.ascii", gt)
        zf.writestr("data/ydata-ymusic-rating-study-v1_0-train.txt", b"not the webscope file")
        zf.writestr("__MACOSX/data/._yahoo_pseudoGT_ratingM.ascii", b"junk")
    server.files["/rl4rec.zip"] = buf.getvalue()
    out = download("yahoo", data_dir=data, accept_licence=True, progress=False,
                   sources=_yahoo_source(server.base, "/rl4rec.zip"))
    assert out == folder
    assert (folder / "yahoo_pseudoGT_ratingM.ascii").read_bytes() == gt
    assert (folder / "ydata-ymusic-rating-study-v1_0-train.txt").read_text() == "1\t1\t5\n"  # untouched
    assert sorted(p.name for p in folder.iterdir()) == [
        "yahoo_pseudoGT_ratingM.ascii", "ydata-ymusic-rating-study-v1_0-test.txt",
        "ydata-ymusic-rating-study-v1_0-train.txt"]
    n = len(server.requests)
    download("yahoo", data_dir=data, accept_licence=True, sources=_yahoo_source(server.base, "/rl4rec.zip"))
    assert len(server.requests) == n  # already there and valid: not fetched again


def test_yahoo_pseudo_gt_bad_content_writes_nothing(server: _Server, data: Path) -> None:
    folder = _yahoo_logs(data)
    server.files["/gt.ascii"] = _matrix(np.random.default_rng(4), 8, 19, 1.0)  # served directly, 19 columns
    with pytest.raises(DownloadError, match=r"yahoo_pseudoGT_ratingM\.ascii line 1 has 19 fields, expected 20"):
        download("yahoo", data_dir=data, accept_licence=True, progress=False,
                 sources=_yahoo_source(server.base, "/gt.ascii"))
    assert not (folder / "yahoo_pseudoGT_ratingM.ascii").exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        "ydata-ymusic-rating-study-v1_0-test.txt", "ydata-ymusic-rating-study-v1_0-train.txt"]
    server.files["/gt.ascii"] = _matrix(np.random.default_rng(4), 5, 20, 1.0)  # too few rows
    with pytest.raises(DownloadError, match=r"has 5 non-empty lines, expected at least 6"):
        download("yahoo", data_dir=data, accept_licence=True, progress=False,
                 sources=_yahoo_source(server.base, "/gt.ascii"))
    server.files["/gt.ascii"] = _matrix(np.random.default_rng(4), 8, 20, 1.0)
    download("yahoo", data_dir=data, accept_licence=True, progress=False, sources=_yahoo_source(server.base, "/gt.ascii"))
    assert (folder / "yahoo_pseudoGT_ratingM.ascii").read_bytes() == server.files["/gt.ascii"]


def test_yahoo_pseudo_gt_source_is_rl4rec_link() -> None:
    from recgym.data.download import YAHOO_PSEUDO_GT

    # the link in RL4Rec's README (https://github.com/BetsyHJ/RL4Rec), as a direct download
    assert YAHOO_PSEUDO_GT.url == "https://surfdrive.surf.nl/files/index.php/s/U8bh3zzzaDdlR5u/download"
    (check,) = YAHOO_PSEUDO_GT.checks
    assert (check.path, check.n_fields, check.min_lines) == ("yahoo_pseudoGT_ratingM.ascii", 1000, 5400)

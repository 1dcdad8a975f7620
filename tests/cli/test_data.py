"""`recgym data list|info|download|verify` through typer's CliRunner."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recgym.cli import app
from recgym.data.synthetic import load_synthetic, optimal_return, random_return
from tests.conftest import require_data

runner = CliRunner()
NAMES = ("coat", "yahoo", "kuairand", "kuairec", "ml1m", "ml1m_noisy", "ml1m_easyrl4rec", "synthetic")


def _flat(text: str) -> str:
    # Rich wraps and boxes long lines; compare without whitespace or box-drawing characters.
    return "".join(ch for ch in text if not ch.isspace() and ch not in "│╭╮╰╯─")


def test_root_help_lists_data_group():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0, res.output
    assert "data" in res.output


def test_list_reports_presence(tmp_path: Path):
    res = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for name in NAMES:
        assert name in res.output
    assert "built-in" in res.output and "present" not in res.output
    # Make coat look present and kuairand partial.
    for rel in ("coat/train.ascii", "coat/test.ascii", "coat/rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii",
                "kuairand_pure/video_features_basic_pure.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    res = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)])
    rows = {line.split("│")[1].strip(): line for line in res.output.splitlines() if line.count("│") >= 3}
    assert "present" in rows["coat"] and "partial" in rows["kuairand"] and "missing" in rows["kuairec"]


def test_info_synthetic_prints_known_returns():
    res = runner.invoke(app, ["data", "info", "synthetic", "--n-users", "60", "--n-items", "80", "--seed", "2"])
    assert res.exit_code == 0, res.output
    ds = load_synthetic(n_users=60, n_items=80, seed=2)
    out = res.output
    assert "train_rows" in out and str(len(ds.train)) in out
    gt = ds.ground_truth
    opt_nx, opt_fb = optimal_return(gt, 30, True).mean, optimal_return(gt, 30, False).mean
    rnd_nx, rnd_fb = random_return(gt, 30, True).mean, random_return(gt, 30, False).mean
    opt_row = next(line for line in out.splitlines() if "optimal" in line)
    rnd_row = next(line for line in out.splitlines() if "random" in line and "│" in line)
    assert f"{opt_nx:.3f}" in opt_row and f"{opt_fb:.3f}" in opt_row
    assert f"{rnd_nx:.3f}" in rnd_row and f"{rnd_fb:.3f}" in rnd_row
    assert opt_nx > rnd_nx


def test_info_default_synthetic_via_module_entry_point():
    # `python -m recgym.cli`, the module behind the console script, run the way a user would.
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "recgym.cli", "data", "info", "synthetic"],
        cwd=repo, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert proc.returncode == 0, proc.stderr
    gt = load_synthetic().ground_truth
    flat = _flat(proc.stdout)
    assert "max_turn=30" in flat
    assert f"{optimal_return(gt, 30, True).mean:.3f}" in flat and f"{random_return(gt, 30, True).mean:.3f}" in flat


@pytest.mark.parametrize("command", ["info", "verify", "download"])
def test_bad_name_lists_valid_names(command: str):
    res = runner.invoke(app, ["data", command, "nope"])
    assert res.exit_code == 2
    flat = _flat(res.output)
    assert "unknowndataset'nope'" in flat
    assert "validnames:" + ",".join(NAMES) in flat


def test_info_missing_files_names_them(tmp_path: Path):
    res = runner.invoke(app, ["data", "info", "coat", "--data-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert "error:" in res.output and "coat" in res.output and ".ascii" in res.output


def test_download_calls_downloader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import recgym.data.download as dl

    calls = []

    def fake(name, data_dir=None, force=False, **kw):
        calls.append((name, data_dir, force))
        return Path(data_dir) / "coat"

    monkeypatch.setattr(dl, "download", fake)
    res = runner.invoke(app, ["data", "download", "coat", "--data-dir", str(tmp_path), "--force"])
    assert res.exit_code == 0, res.output
    assert calls == [("coat", tmp_path, True)]
    assert "ready" in res.output


def test_download_yahoo_explains_licence(tmp_path: Path):
    res = runner.invoke(app, ["data", "download", "yahoo", "--data-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert "webscope" in res.output.lower() and str(tmp_path / "yahoo_r3") in _flat(res.output)


def test_verify_detects_mismatch_and_missing(tmp_path: Path):
    good, bad = b"1 2 3\n", b"tampered\n"
    (tmp_path / "coat").mkdir()
    (tmp_path / "coat" / "train.ascii").write_bytes(good)
    (tmp_path / "coat" / "test.ascii").write_bytes(bad)
    sums = [
        f"{hashlib.sha256(good).hexdigest()}  ./coat/train.ascii",
        f"{hashlib.sha256(good).hexdigest()}  ./coat/test.ascii",
        f"{hashlib.sha256(good).hexdigest()}  ./coat/propensities.ascii",
    ]
    (tmp_path / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    res = runner.invoke(app, ["data", "verify", "coat", "--data-dir", str(tmp_path)])
    assert res.exit_code == 1
    rows = {line.split("│")[1].strip(): line for line in res.output.splitlines() if line.count("│") >= 2}
    assert "OK" in rows["coat/train.ascii"]
    assert "MISMATCH" in rows["coat/test.ascii"]
    assert "MISSING" in rows["coat/propensities.ascii"]


def test_verify_real_coat():
    root = require_data("SHA256SUMS", "coat/train.ascii")
    res = runner.invoke(app, ["data", "verify", "coat", "--data-dir", str(root)])
    assert res.exit_code == 0, res.output
    assert "MISMATCH" not in res.output and "coat/train.ascii" in res.output


def test_verify_synthetic_has_nothing_to_check():
    res = runner.invoke(app, ["data", "verify", "synthetic"])
    assert res.exit_code == 0 and "nothing to verify" in res.output

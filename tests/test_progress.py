"""recgym.progress: bars on a terminal, a few whole lines in a log, nothing when disabled."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import recgym.progress as rp
from recgym.progress import LineProgress, note, progress_bar, progress_mode


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_mode_follows_the_stream_and_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("RECGYM_PROGRESS", raising=False)
    assert progress_mode(_Stream(tty=True)) == "bar"
    assert progress_mode(_Stream(tty=False)) == "lines"
    monkeypatch.setenv("RECGYM_PROGRESS", "off")
    assert progress_mode(_Stream(tty=True)) == "off"
    monkeypatch.setenv("RECGYM_PROGRESS", "LINES")
    assert progress_mode(_Stream(tty=True)) == "lines"
    monkeypatch.setenv("RECGYM_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="RECGYM_PROGRESS='fancy'"):
        progress_mode(_Stream(tty=True))
    monkeypatch.delenv("RECGYM_PROGRESS")
    monkeypatch.setenv("RECGYM_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ValueError, match="RECGYM_PROGRESS_INTERVAL"):
        progress_bar(total=3, file=_Stream(tty=False))


def test_lines_are_rate_limited_and_the_final_state_is_written(monkeypatch) -> None:
    monkeypatch.delenv("RECGYM_PROGRESS", raising=False)
    clock = [1000.0]
    monkeypatch.setattr(rp.time, "monotonic", lambda: clock[0])
    out = _Stream(tty=False)
    bar = progress_bar(total=1000, desc="train", file=out, interval=10.0)
    assert isinstance(bar, LineProgress)
    for i in range(1000):  # 100 simulated seconds, a postfix refresh every step
        clock[0] += 0.1
        bar.set_postfix_str(f"loss {i}")
        bar.update(1)
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    assert 10 <= len(lines) <= 12  # the first state, one per 10 s, the final state
    assert lines[0].startswith("train:   0% 0/1000") and "1000/1000" in lines[-1] and "loss 999" in lines[-1]


def test_terminal_gets_a_tqdm_bar_and_disabled_writes_nothing(monkeypatch) -> None:
    monkeypatch.delenv("RECGYM_PROGRESS", raising=False)
    tty = _Stream(tty=True)
    bar = progress_bar(total=5, desc="x", file=tty)
    assert not isinstance(bar, LineProgress) and not bar.disable
    bar.update(5)
    bar.close()
    assert "\r" in tty.getvalue()  # redrawn in place
    quiet = _Stream(tty=False)
    bar = progress_bar(range(3), desc="x", file=quiet, enabled=False)
    assert list(bar) == [0, 1, 2] and quiet.getvalue() == ""


def test_note_uses_logging_when_configured_else_stderr(caplog, capsys) -> None:
    with caplog.at_level(logging.INFO, logger="recgym"):
        note("hello log")
    assert [r.getMessage() for r in caplog.records] == ["hello log"]
    lonely = logging.getLogger("recgym-test-no-handlers")
    lonely.propagate = False
    note("hello stderr", logger=lonely.name)
    assert capsys.readouterr().err == "hello stderr\n"


def test_a_training_run_writes_few_lines_when_stderr_is_not_a_terminal(tmp_path, monkeypatch, capsys) -> None:
    from recgym.data import load_dataset
    from recgym.recommenders import DiffRecConfig, train_diffrec
    from recgym.recommenders.ranking import make_splits

    monkeypatch.delenv("RECGYM_PROGRESS", raising=False)
    monkeypatch.setenv("RECGYM_PROGRESS_INTERVAL", "0.5")
    splits = make_splits(load_dataset("synthetic"), 0.1, 0)
    cfg = DiffRecConfig(hidden=(16,), steps=3, batch_size=250, max_epochs=20, eval_every=1, patience=20)
    capsys.readouterr()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.monotonic()
        train_diffrec(splits, cfg, progress=True)
        elapsed = time.monotonic() - t0
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and lines[0].startswith("DiffRec synthetic:   0% 0/20")
    assert "20/20" in lines[-1] and "epoch 20" in lines[-1]
    # the first and final states + at most one line per 0.5 s (a bar redrawn every epoch would write 21)
    assert len(lines) <= 2 + elapsed / 0.5, err


@pytest.mark.slow
def test_a_training_run_writes_few_lines_to_a_log_file(tmp_path: Path) -> None:
    """A real (short) DiffRec run with stderr/stdout sent to a file: at most a line per interval, plus notes."""
    script = (
        "import torch; torch.set_num_threads(1)\n"
        "from recgym.data import load_dataset\n"
        "from recgym.recommenders import DiffRecConfig, fit_or_load_diffrec\n"
        "cfg = DiffRecConfig(hidden=(16,), steps=3, batch_size=100, max_epochs=20, eval_every=1, patience=20)\n"
        "fit_or_load_diffrec(load_dataset('synthetic'), cfg, progress=True)\n"
    )
    log = tmp_path / "run.log"
    env = {**os.environ, "RECGYM_CACHE_DIR": str(tmp_path / "cache"), "RECGYM_PROGRESS_INTERVAL": "2",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("RECGYM_PROGRESS", None)
    t0 = time.monotonic()
    with log.open("w") as f:
        subprocess.run([sys.executable, "-c", script], stdout=f, stderr=subprocess.STDOUT, env=env, check=True,
                       timeout=300)
    elapsed = time.monotonic() - t0
    text = log.read_text()
    lines = text.splitlines()
    assert "\r" not in text
    # two notes (start, done) + the first and final bar states + at most one line per 2 s (a bar redrawn
    # per epoch would write 20)
    assert len(lines) <= 4 + elapsed / 2, text
    assert "pre-training DiffRec for synthetic" in lines[0] and "pre-trained in" in lines[-1]

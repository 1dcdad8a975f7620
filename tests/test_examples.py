"""The scripts in examples/ run end to end (with tiny flags) and print what they claim.

Each script exposes ``main(argv) -> results``; it is loaded from its file (examples/ is not a package) and
called in-process so torch is imported once. ``examples/custom_agent.py`` is covered by
tests/agents/test_rec_agents.py.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"recgym_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_make_env_example(capsys) -> None:
    res = load("make_env").main(["--num-envs", "8", "--episodes", "16"])
    out = capsys.readouterr().out
    # roler preset on synthetic data: nobody quits, every episode lasts max_turn = 30 (NX_0, no repeats)
    assert res["Length"] == 30.0 and res["n_episodes"] == 16 and res["mode"] == "NX_0"
    assert 0 < res["R_avg"] and res["R_cumu"] == pytest.approx(30 * res["R_avg"])
    assert "one random episode" in out and "interactive env: reward preset r3s, world model mf" in out


def test_train_sb3_example(capsys) -> None:
    res = load("train_sb3").main(["--steps", "300", "--num-envs", "4", "--episodes", "8"])
    out = capsys.readouterr().out
    assert set(res) == {"sac", "random"}
    for r in res.values():  # a repeated item would have raised in NX_0: the SAC policy honours the mask
        assert r["mode"] == "NX_0" and r["Length"] == 30.0 and math.isfinite(r["R_cumu"])
    assert "sac     R_cumu=" in out and "random  R_cumu=" in out


def test_denoise_env_example(capsys) -> None:
    res = load("denoise_env").main(["--num-envs", "8"])
    out = capsys.readouterr().out
    # the frozen model acting gives DiffRec's own x_0 in every action mode, hence the same reward
    assert res["latent"] == res["residual"] == res["guidance"]
    assert 0.0 <= res["guidance_random"]["reward"] <= 20.0  # RACS counts hits in the top 20
    assert res["guidance_random"]["reward"] < res["latent"]["reward"]
    assert "guidance  action space Box(-1.0, 1.0, (32,)" in out


def test_finetune_refit_example(capsys) -> None:
    res = load("finetune_refit").main(["--iterations", "2", "--num-envs", "16", "--samples-per-user", "4",
                                       "--eval-users", "64"])
    out = capsys.readouterr().out
    assert 0.0 < res["before"] <= 20.0 and 0.0 < res["after"] <= 20.0  # RACS counts hits in the top 20
    assert "mean RACS over 64 users: pre-trained" in out and "test NDCG@20: pre-trained" in out
    t = res["test"]
    assert t["test_NDCG@20_diff_low"] <= t["test_NDCG@20_diff"] <= t["test_NDCG@20_diff_high"]

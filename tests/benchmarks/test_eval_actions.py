"""Test-time actions in suites and runs: the ``eval_actions`` agent-entry field, and what result.json records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recgym.benchmarks.backends import run_grid
from recgym.benchmarks.grid import expand
from recgym.benchmarks.suite import SuiteError, load_suite
from tests.benchmarks.helpers import ENV, flag_suite, write_suite


def test_suite_agent_entry_eval_actions(tmp_path: Path) -> None:
    path = write_suite(tmp_path / "s.toml", extra='\n[[agents]]\nname = "tiny_random"\nlabel = "eps"\n'
                                                  'eval_actions = "epsilon:0.05"\n')
    specs = expand(load_suite(path))
    by_label = {sp.agent_label: sp for sp in specs}
    assert by_label["eps"].agent_config == {"eval_actions": "epsilon:0.05"}
    assert "eval_actions" not in by_label["tiny_random"].agent_config  # default: the config's greedy
    text = path.read_text()
    for bad, msg in (('eval_actions = "best"', "eval_actions='best'"),
                     ('eval_actions = "sample"\nconfig = { eval_actions = "greedy" }', "disagree")):
        p = tmp_path / "bad.toml"
        p.write_text(text.replace('eval_actions = "epsilon:0.05"', bad))
        with pytest.raises(SuiteError, match=msg) as err:
            load_suite(p)
        line = next(i for i, ln in enumerate(p.read_text().splitlines(), 1) if ln.startswith("eval_actions"))
        assert str(err.value).startswith(f"{p}:{line}: ")


def test_result_json_records_actions_protocol_provenance_and_optimum(tmp_path: Path) -> None:
    s = flag_suite(seeds=[0], protocol="dorl", agent_config={"eval_actions": "epsilon:1"})
    (res,) = run_grid(s, tmp_path, progress=False, tensorboard=False)
    assert res.status == "done", res.error
    result = json.loads((tmp_path / "t" / ENV / "tiny_random" / "seed0" / "result.json").read_text())
    assert result["eval_actions"] == "epsilon:1"
    proto = result["env_protocol"]
    assert proto["name"] == "dorl" and proto["mode"] == "NX_0" and proto["quitting"] is False
    assert proto["ground_truth"] == {"source": "exact (generated)", "comparable_to_published": False,
                                     "note": "synthetic data: no published numbers exist"}
    # nobody quits on the synthetic presets: the exact optimum is known, and above any policy's return
    assert result["optimum"] > result["final"]["R_cumu"] > 0
    # an agent without a stochastic policy cannot be evaluated with sampled actions: the run fails, saying why
    (bad,) = run_grid(flag_suite(seeds=[0], name="u", agent_config={"eval_actions": "sample"}), tmp_path,
                      progress=False, tensorboard=False)
    assert bad.status == "failed" and "needs a stochastic policy" in bad.error

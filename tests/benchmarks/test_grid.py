"""The grid: expansion order, restrictions, budgets, and the RunSpec contract that resume depends on."""

from __future__ import annotations

from pathlib import Path

from recgym.benchmarks.grid import RunSpec, expand
from recgym.benchmarks.suite import load_suite
from tests.benchmarks.helpers import flag_suite, write_suite

# A finished run is skipped only if its stored spec equals the new one: these fields (and their order in
# config.json) are what runs made by earlier versions hold. Changing them makes every finished run a conflict.
SPEC_FIELDS = ["suite", "env_name", "env_id", "eval_env_id", "agent", "agent_label", "seed", "train_budget",
               "eval_episodes", "eval_every", "num_envs", "device", "protocol", "env_kwargs", "eval_env_kwargs",
               "agent_config", "published_dataset", "published_method", "imports"]


def test_runspec_fields_and_folder_are_stable() -> None:
    spec = expand(flag_suite(seeds=[2], protocol="dorl"))[0]
    d = spec.to_dict()
    assert list(d) == SPEC_FIELDS
    assert spec.relpath() == Path("t") / "GroundTruthRec-Synthetic-v0" / "tiny_random" / "seed2"
    assert RunSpec.from_dict(d) == spec and d["imports"] == []
    assert spec.make_kwargs(False)["protocol"] == "dorl"


def test_expand_is_env_major_and_honours_restrictions_and_budgets(tmp_path: Path) -> None:
    extra = ('\n[[envs]]\nname = "syn2"\nid = "GroundTruthRec-Synthetic-v0"\n'
             '\n[[agents]]\nname = "tiny_random"\nlabel = "only2"\nenvs = ["syn2"]\ntrain_budget = 0\n'
             'eval_every = 4\n')
    s = load_suite(write_suite(tmp_path / "s.toml", seeds="[0, 1]", extra=extra))
    got = [(r.env_name, r.agent_label, r.seed, r.train_budget, r.eval_every) for r in expand(s)]
    assert got == [("syn", "tiny_random", 0, 16, 0), ("syn", "tiny_random", 1, 16, 0),
                   ("syn2", "tiny_random", 0, 16, 0), ("syn2", "tiny_random", 1, 16, 0),
                   ("syn2", "only2", 0, 0, 4), ("syn2", "only2", 1, 0, 4)]
    syn2 = next(r for r in expand(s) if r.env_name == "syn2")
    assert syn2.env_kwargs == {} and syn2.imports == ("tests.benchmarks._agents",)


def test_env_entries_with_missing_data_are_left_out(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RECGYM_DATA_DIR", str(tmp_path))
    extra = '\n[[envs]]\nname = "needs"\nid = "GroundTruthRec-Synthetic-v0"\nrequires = ["nowhere/file.csv"]\n'
    s = load_suite(write_suite(tmp_path / "s.toml", seeds="[0]", extra=extra))
    assert s.missing_data() == {"needs": ["nowhere/file.csv"]}
    assert [r.env_name for r in expand(s)] == ["syn"]

"""Suite files: parsing, validation errors that name the line, probes and the report table, shipped suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgym.benchmarks.grid import expand
from recgym.benchmarks.suite import (
    SUITES_DIR,
    Column,
    SuiteError,
    load_suite,
    load_suite_record,
    parse_column,
    save_suite_record,
)
from tests.benchmarks.helpers import ENV, write_suite


def _line_of(body: str, needle: str) -> int:
    return next(i for i, ln in enumerate(body.splitlines(), start=1) if needle in ln)


def test_suite_validation_names_the_line(tmp_path: Path) -> None:
    good = write_suite(tmp_path / "good.toml")
    text = good.read_text()
    cases = {
        "agent": (text.replace('name = "tiny_random"', 'name = "no_such_agent"'), "unknown agent 'no_such_agent'",
                  "no_such_agent"),
        "env": (text.replace(f'id = "{ENV}"', 'id = "GroundTruthRec-Nowhere-v0"'), "unknown env id", "Nowhere"),
        "field": (text.replace("eval_episodes = 8", "eval_episodes = 8\nevall_every = 3"),
                  "unknown field 'evall_every'", "evall_every"),
        "protocol": (text.replace('name = "syn"', 'name = "syn"\nprotocol = "bogus"'), "unknown protocol 'bogus'",
                     "bogus"),
        "budget": (text.replace("train_budget = 16", "train_budget = -1"), "train_budget must be an integer >= 1",
                   "train_budget = -1"),
        "probe": (text + '\n[[probes]]\nname = "p"\nprobe = "no_such_probe"\n', "unknown probe 'no_such_probe'",
                  "no_such_probe"),
        "probe_args": (text + '\n[[probes]]\nprobe = "data_load"\nargs = { datasetz = ["coat"] }\n',
                       "probe 'data_load': bad args", "datasetz"),
        "layout": (text + '\n[report]\nlayout = "fancy"\n', "unknown report layout 'fancy'", "fancy"),
        "column": (text + '\n[report]\nlayout = "agents"\ncolumns = ["R_cumu:best"]\n',
                   "report column 'R_cumu:best'", "R_cumu:best"),
        "ratio": (text + '\n[report]\nlayout = "agents"\ncolumns = ["R_cumu:final/oracle:optimal"]\n',
                  "names unknown agent label 'oracle'", "oracle:optimal"),
        # construction checks: every run's env kwargs and agent config, before anything runs
        "agent_field": (text.replace("config = { sleep_s", "config = { sleepp_s"),
                        "unknown config field(s) ['sleepp_s']", "sleepp_s"),
        "agent_type": (text.replace("sleep_s = 0.0", 'sleep_s = "abc"'), "sleep_s='abc' is not a float",
                       'sleep_s = "abc"'),
        "env_kwarg": (text.replace("kwargs = { dataset_kwargs", "kwargs = { max_trun = 3, dataset_kwargs"),
                      "unknown env kwarg(s) ['max_trun']", "max_trun"),
        "nan": (text.replace("kwargs = { dataset_kwargs", "kwargs = { leave_threshold = nan, dataset_kwargs"),
                "leave_threshold must be a number (not NaN", "leave_threshold"),
        "owned": (text.replace("kwargs = { dataset_kwargs", 'kwargs = { device = "cuda", dataset_kwargs'),
                  "['device'] are set by [suite]", 'device = "cuda"'),
        "preset": (text.replace(f'id = "{ENV}"', 'id = "InteractiveRec-Synthetic-v0"').replace(
            "kwargs = { dataset_kwargs", 'kwargs = { reward_preset = "bogus", dataset_kwargs'),
            "unknown InteractiveRec reward_preset 'bogus'", "bogus"),
        "device": (text.replace("num_envs = 8", 'num_envs = 8\ndevice = "gpu"'),
                   "device must be cpu, cuda, cuda:N or mps, got 'gpu'", 'device = "gpu"'),
    }
    for key, (body, message, needle) in cases.items():
        path = tmp_path / f"bad_{key}.toml"
        path.write_text(body)
        with pytest.raises(SuiteError) as err:
            load_suite(path)
        msg = str(err.value)
        assert message in msg, (key, msg)
        assert msg.startswith(f"{path}:{_line_of(body, needle)}: "), (key, msg)


def test_duplicates_and_unknown_names(tmp_path: Path) -> None:
    text = write_suite(tmp_path / "good.toml").read_text()
    (tmp_path / "dup.toml").write_text(text + '\n[[agents]]\nname = "tiny_random"\n')
    with pytest.raises(SuiteError, match="duplicate agent label 'tiny_random'"):
        load_suite(tmp_path / "dup.toml")
    (tmp_path / "clash.toml").write_text(text + '\n[[probes]]\nname = "syn"\nprobe = "data_load"\n')
    with pytest.raises(SuiteError, match="probe name 'syn' is already used"):
        load_suite(tmp_path / "clash.toml")
    with pytest.raises(SuiteError, match="shipped suites: .*quick"):
        load_suite("no_such_suite")


def test_agent_budget_zero_is_kept_and_report_and_probes_parse(tmp_path: Path) -> None:
    extra = ('\n[[agents]]\nname = "tiny_random"\nlabel = "static"\ntrain_budget = 0\n'
             '\n[[probes]]\nname = "load"\nprobe = "data_load"\nargs = { datasets = ["coat"] }\n'
             '\n[report]\nlayout = "agents"\ncolumns = ["R_cumu:final", "wall_s"]\nlong = true\n')
    s = load_suite(write_suite(tmp_path / "s.toml", seeds="[0]", extra=extra))
    assert [(r.agent_label, r.train_budget) for r in expand(s)] == [("tiny_random", 16), ("static", 0)]
    assert [(p.name, p.probe, p.args) for p in s.probes] == [("load", "data_load", {"datasets": ["coat"]})]
    assert s.report.layout == "agents" and s.report.long and s.report.columns == ["R_cumu:final", "wall_s"]
    save_suite_record(s, tmp_path / "runs")
    rec = load_suite_record(tmp_path / "runs" / "kr")
    assert rec["agents"] == ["tiny_random", "static"] and rec["envs"] == ["syn"] and rec["probes"] == ["load"]
    assert rec["report"]["columns"] == ["R_cumu:final", "wall_s"]
    assert load_suite_record(tmp_path) is None


def test_agent_seeds_override_the_suite_seeds(tmp_path: Path) -> None:
    extra = '\n[[agents]]\nname = "tiny_random"\nlabel = "more"\nseeds = 3\n'
    s = load_suite(write_suite(tmp_path / "s.toml", seeds="[0]", extra=extra))
    assert [(r.agent_label, r.seed) for r in expand(s)] == [("tiny_random", 0), ("more", 0), ("more", 1), ("more", 2)]
    assert s.n_runs() == 4
    bad = '\n[[agents]]\nname = "tiny_random"\nlabel = "bad"\nseeds = [1, 1]\n'
    with pytest.raises(SuiteError, match="seeds must be a count or a list of distinct non-negative integers"):
        load_suite(write_suite(tmp_path / "b.toml", seeds="[0]", extra=bad))


def test_probes_only_suite(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[suite]\nname = "p"\n\n[[probes]]\nprobe = "data_load"\n')
    s = load_suite(path)
    assert s.envs == [] and expand(s) == [] and s.probes[0].name == "data_load"
    path.write_text('[suite]\nname = "p"\nseeds = [0]\n\n[[probes]]\nprobe = "data_load"\n')
    with pytest.raises(SuiteError, match=f"{path}:3: field 'seeds' has no meaning in a probes-only suite"):
        load_suite(path)


def test_parse_column_grammar() -> None:
    assert parse_column("R_cumu:curve") == Column("R_cumu:curve", "metric", "R_cumu", "curve_mean")
    assert parse_column("R_cumu:final/gt_oracle:optimal") == Column(
        "R_cumu:final/gt_oracle:optimal", "ratio", "R_cumu", "final", "gt_oracle", "optimal")
    assert parse_column("Length:published") == Column("Length:published", "metric", "Length", "published_agg")
    assert parse_column("wall_s").kind == "wall_s"
    for bad in ("R_cumu", "R_cumu:best", "R_cumu:final/gt_oracle", ":final"):
        with pytest.raises(ValueError, match="report column"):
            parse_column(bad)


@pytest.mark.parametrize("name", sorted(p.stem for p in SUITES_DIR.glob("*.toml")))
def test_shipped_suites_validate(name: str) -> None:
    suite = load_suite(name)
    specs = expand(suite)
    assert len({s.relpath() for s in specs}) == len(specs)
    envs_run = {s.env_name for s in specs}
    assert envs_run | set(suite.missing_data()) >= {e.name for e in suite.envs}
    assert specs or suite.probes or suite.missing_data()

"""Shared pieces of the benchmark tests: a tiny synthetic env and suites of the tiny agents."""

from __future__ import annotations

import textwrap
from pathlib import Path

import tests.benchmarks._agents  # noqa: F401  (registers the tiny agents)
from recgym.benchmarks.suite import Suite, suite_from_flags

ENV = "GroundTruthRec-Synthetic-v0"
SMALL = {"dataset_kwargs": {"n_users": 60, "n_items": 80, "seed": 3}}


def flag_suite(**kw) -> Suite:
    """A flags suite over the tiny synthetic env (tiny_random, seeds 0 and 1, 64 steps on 8 envs)."""
    args = dict(envs=[ENV], agents=["tiny_random"], seeds=[0, 1], train_budget=64, eval_episodes=8, num_envs=8,
                env_kwargs=SMALL, name="t")
    args.update(kw)
    return suite_from_flags(args.pop("envs"), args.pop("agents"), args.pop("seeds"), args.pop("train_budget"), **args)


def is_locked(run_dir: Path) -> bool:
    """Whether some process holds the run folder's lock now."""
    from recgym.benchmarks.run import acquire_lock

    probe = acquire_lock(run_dir)
    if probe is None:
        return True
    probe.release()
    return False


def write_suite(path: Path, agents: str = "tiny_random", sleep: float = 0.0, seeds: str = "[0, 1, 2, 3]",
                extra: str = "") -> Path:
    """A TOML suite ``kr`` of one tiny agent on the tiny synthetic env."""
    path.write_text(textwrap.dedent(f"""\
        [suite]
        name = "kr"
        seeds = {seeds}
        train_budget = 16
        eval_episodes = 8
        num_envs = 8
        imports = ["tests.benchmarks._agents"]

        [[envs]]
        name = "syn"
        id = "{ENV}"
        kwargs = {{ dataset_kwargs = {{ n_users = 60, n_items = 80, seed = 3 }} }}

        [[agents]]
        name = "{agents}"
        config = {{ sleep_s = {sleep} }}
        """) + extra)
    return path

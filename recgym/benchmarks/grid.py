"""The grid of a suite: one `RunSpec` per (env entry, agent entry, seed), and its folder under ``runs/``.

A spec is everything one run needs and is written to the run's ``config.json``; a finished run is skipped when
the grid is run again only if its stored spec equals the new one (the fields below are that contract: adding
or renaming one would make every finished run a "conflict", so keep them stable).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recgym.benchmarks.suite import AgentEntry, Suite


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs; written to ``config.json``. Two specs with the same `relpath` are one run."""

    suite: str
    env_name: str  # folder name of the env entry (e.g. "coat-dorl")
    env_id: str  # the suite's env: the evaluation env (and the training env unless the agent derives its own)
    eval_env_id: str | None  # a separate evaluation env (then env_id is the env the agent trains in)
    agent: str  # registered agent name
    agent_label: str  # folder name of the agent entry (an agent may appear with several configs)
    seed: int
    train_budget: int  # in the agent's budget unit (its config class's ``budget_unit``)
    eval_episodes: int
    eval_every: int  # budget units between the agent's evaluations (0: once, at the end)
    num_envs: int = 16
    device: str = "cpu"
    protocol: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent_config: dict[str, Any] = field(default_factory=dict)
    published_dataset: str | None = None
    published_method: str | None = None
    imports: tuple[str, ...] = ()

    def relpath(self) -> Path:
        return Path(self.suite) / self.env_name / self.agent_label / f"seed{self.seed}"

    def label(self) -> str:
        return f"{self.env_name}/{self.agent_label}/seed{self.seed}"

    def make_kwargs(self, evaluation: bool) -> dict[str, Any]:
        """Constructor kwargs of the (evaluation) env: the entry's kwargs plus the protocol."""
        kw = dict(self.eval_env_kwargs if evaluation else self.env_kwargs)
        if self.protocol is not None:
            kw.setdefault("protocol", self.protocol)
        return kw

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["imports"] = list(self.imports)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        d = dict(d)
        d["imports"] = tuple(d.get("imports", ()))
        return cls(**d)


def agent_config(agent: AgentEntry) -> dict[str, Any]:
    """The config overrides of an agent entry: its ``config`` table plus its ``eval_actions`` (when given)."""
    out = dict(agent.config)
    if agent.eval_actions is not None:
        out["eval_actions"] = agent.eval_actions
    return out


def expand(suite: Suite) -> list[RunSpec]:
    """The grid as run specs, env-major then agent then seed (env entries with missing data left out)."""
    skip = suite.missing_data()
    return [
        RunSpec(suite=suite.name, env_name=env.name, env_id=env.id, eval_env_id=env.eval_id, agent=agent.name,
                agent_label=agent.label, seed=int(seed),
                train_budget=int(suite.train_budget if agent.train_budget is None else agent.train_budget),
                eval_episodes=int(suite.eval_episodes),
                eval_every=int(suite.eval_every if agent.eval_every is None else agent.eval_every),
                num_envs=int(suite.num_envs), device=suite.device, protocol=env.protocol,
                env_kwargs=dict(env.kwargs), eval_env_kwargs=dict(env.eval_kwargs or env.kwargs),
                agent_config=agent_config(agent), published_dataset=env.published, published_method=agent.published,
                imports=tuple(suite.imports))
        for env, agent in suite.pairs() if env.name not in skip
        for seed in suite.seeds_of(agent)
    ]

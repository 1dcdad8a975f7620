"""Evaluation references that read the ground truth: never a method, only a level to compare methods with.

Importing this module registers the agent ``gt_oracle`` (a suite lists the module under ``[suite] imports``;
it is not among the built-in agents, so no training path can pick it up by accident). ``gt_oracle`` serves each
user the allowed item with the highest ground-truth value (under NX_0 with nobody quitting: the user's top
items in order), learns nothing, and evaluates once in the evaluation env. Its history also carries
``optimal``: the env's exact optimum (mean top-``max_turn`` sum over the evaluation users,
`recgym.envs.rec.GroundTruthRecEnv.optimal_return`) when the protocol never lets a user quit, else NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from recgym.agents.base import AgentConfig, register_agent
from recgym.agents.common import evaluate_agent, load_checkpoint, save_checkpoint
from recgym.envs.derive import base_env


@dataclass
class OracleConfig(AgentConfig):
    """The oracle has nothing to tune: the run-level fields only."""


class GroundTruthOracle:
    """Best allowed item per user by the evaluation env's ground truth (an evaluation reference)."""

    name = "gt_oracle"

    def __init__(self, env: Any, config: OracleConfig) -> None:
        self.cfg = config
        self.history: list[dict[str, float]] = []
        self._gt: torch.Tensor | None = None
        self._use(env)

    def _use(self, env: Any) -> None:
        inner = base_env(env)
        if not hasattr(inner, "gt"):
            raise TypeError(f"gt_oracle: needs a GroundTruthRec env (with a ground-truth matrix), got "
                            f"{type(inner).__name__}")
        self._env = inner
        self._gt = inner.gt

    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        scores = self._gt[torch.as_tensor(obs["user"], device=self._gt.device).long()].float()
        mask = None if info is None else info.get("action_mask")
        if mask is not None:
            scores = scores.masked_fill(~torch.as_tensor(mask, device=scores.device).bool(), float("-inf"))
        return scores.argmax(1)

    def learn(self, env: Any, budget: int = 0, logger: Any = None, eval_env: Any = None) -> None:
        """One evaluation in the evaluation env (nothing is learned; ``budget`` is ignored)."""
        target = env if eval_env is None else eval_env
        self._use(target)
        metrics = evaluate_agent(self, target, self.cfg.eval_episodes, self.cfg.seed)
        quits = bool(self._env.protocol.get("quitting", True))
        metrics["optimal"] = float("nan") if quits else float(self._env.optimal_return().float().mean())
        if logger is not None:
            for k, v in metrics.items():
                logger.log_scalar(f"eval/{k}", v, 0)
        self.history.append({"step": 0, **metrics})

    def save(self, path: str) -> None:
        save_checkpoint(path, {"agent": self.name, "config": self.cfg}, env=self._env)

    def load(self, path: str) -> None:
        load_checkpoint(path, self.name, env=self._env)


def make_gt_oracle(env: Any, config: OracleConfig) -> GroundTruthOracle:
    return GroundTruthOracle(env, config)


register_agent("gt_oracle", OracleConfig, make_gt_oracle, overwrite=True)

"""How an agent picks its actions when it is evaluated: ``greedy``, ``sample`` or ``epsilon``.

The published numbers were measured with different test-time actions: DORL's A2C samples from its policy
(tianshou's A2C in DORL-codes), EasyRL4Rec's DQN is evaluated epsilon-greedily with epsilon 0.01 (the
``policy.set_eps(args.eps)`` of its ``run_DQN.py``), and recgym evaluates greedily by default. The choice is an evaluation
setting, written as a string:

- ``"greedy"`` (default): the agent's own evaluation action (``act`` with ``agent.training = False``);
- ``"sample"``: a draw from the agent's policy distribution, ``softmax(agent.policy_logits(obs, info))`` (only
  agents with a stochastic policy over items have ``policy_logits``; the others raise);
- ``"epsilon"`` or ``"epsilon:<eps>"``: the greedy action, replaced with probability ``eps`` (default 0.01) by
  an item drawn uniformly from the allowed ones (``info["action_mask"]``), as tianshou's DQN exploration does.

The random draws of ``sample`` and ``epsilon`` come from a generator seeded with the evaluation's seed, so an
evaluation is reproducible and does not consume the agent's training random stream. Kept free of torch so
that agent configs (`recgym.agents.base.AgentConfig.eval_actions`) can check the value at construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_EPSILON", "EVAL_ACTION_KINDS", "EvalActions", "parse_eval_actions"]

EVAL_ACTION_KINDS: tuple[str, ...] = ("greedy", "sample", "epsilon")
DEFAULT_EPSILON = 0.01  # EasyRL4Rec's test epsilon of its DQN


@dataclass(frozen=True)
class EvalActions:
    """A parsed evaluation-action setting: ``kind`` in `EVAL_ACTION_KINDS`, ``epsilon`` for ``kind="epsilon"``."""

    kind: str = "greedy"
    epsilon: float = 0.0

    @property
    def label(self) -> str:
        """The canonical string: ``greedy``, ``sample`` or ``epsilon:<eps>`` (what results record)."""
        return f"epsilon:{self.epsilon:g}" if self.kind == "epsilon" else self.kind


def parse_eval_actions(value: Any, what: str = "eval_actions") -> EvalActions:
    """``value`` (a string as in the module docstring, an `EvalActions` or None for greedy) as `EvalActions`.

    ValueError naming ``what`` and the accepted forms otherwise.
    """
    if value is None:
        return EvalActions()
    if isinstance(value, EvalActions):
        return value
    forms = '"greedy", "sample", "epsilon" or "epsilon:<eps>" with 0 <= eps <= 1'
    if not isinstance(value, str):
        raise ValueError(f"{what}={value!r}: expected {forms}")
    kind, sep, arg = value.strip().partition(":")
    if kind not in EVAL_ACTION_KINDS or (sep and kind != "epsilon"):
        raise ValueError(f"{what}={value!r}: expected {forms}")
    if kind != "epsilon":
        return EvalActions(kind)
    if not sep:
        return EvalActions("epsilon", DEFAULT_EPSILON)
    try:
        eps = float(arg)
    except ValueError:
        raise ValueError(f"{what}={value!r}: epsilon {arg!r} is not a number; expected {forms}") from None
    if not (math.isfinite(eps) and 0.0 <= eps <= 1.0):
        raise ValueError(f"{what}={value!r}: epsilon must be in [0, 1]; expected {forms}")
    return EvalActions("epsilon", eps)

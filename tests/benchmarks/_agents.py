"""Tiny agents for the runner tests, registered on import (also inside subprocesses and Ray workers).

``tiny_random``: uniform over allowed items from a seeded generator; ``learn`` really steps the env for
``budget`` transitions (batched), logs ``train/reward``, optionally sleeps (to make a run last) and, with
``history_every > 0``, evaluates itself every that many steps into ``history`` (else the runner evaluates).
Each ``learn`` call appends "<seed> <pid>" to the file named by $RECGYM_TEST_COUNTER (to count runs) and
records the envs it was given in ``seen``; with ``die_once_dir`` set, its first ``learn`` per seed kills its own
process (SIGKILL), as a worker lost to the OOM killer or a node failure. ``tiny_crash``: raises in ``learn``. ``tiny_world``: tiny_random
registered with a training-env spec (InteractiveRec, a KNN world model), like a world-model method.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recgym.agents.base import AgentConfig, register_agent
from recgym.envs.derive import TrainEnvSpec


@dataclass
class TinyConfig(AgentConfig):
    sleep_s: float = 0.0
    history_every: int = 0
    eval_episodes: int = 20
    die_once_dir: str = ""  # a folder: the first learn() of each seed SIGKILLs its own process (a dying worker)


class TinyRandom:
    name = "tiny_random"

    def __init__(self, env: Any, cfg: TinyConfig) -> None:
        self.cfg = cfg
        self.n_items = int(env.single_action_space.n)
        self.device = torch.device(getattr(env.unwrapped, "device", "cpu"))
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.steps = 0
        self.history: list[dict[str, float]] = []
        self.seen: dict[str, Any] = {}

    def act(self, obs: Any, info: dict[str, Any] | None = None) -> torch.Tensor:
        b = obs["step"].shape[0]
        mask = None if info is None else info.get("action_mask")
        probs = torch.ones(b, self.n_items, device=self.device) if mask is None else torch.as_tensor(mask).float()
        probs = torch.where(probs.sum(1, keepdim=True) > 0, probs, torch.ones_like(probs))
        return torch.multinomial(probs, 1, generator=self.gen).squeeze(-1)

    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        self.seen = {"env": env, "eval_env": eval_env, "config": self.cfg}
        counter = os.environ.get("RECGYM_TEST_COUNTER")
        if counter:
            with open(counter, "a") as f:
                f.write(f"{self.cfg.seed} {os.getpid()}\n")
        if self.cfg.die_once_dir:
            marker = Path(self.cfg.die_once_dir) / f"died-seed{self.cfg.seed}"
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                if logger is not None:
                    logger.log_scalar("train/before_death", 1.0, 0)
                os.kill(os.getpid(), signal.SIGKILL)
        if self.cfg.sleep_s:
            time.sleep(self.cfg.sleep_s)
        obs, info = env.reset(seed=self.cfg.seed)
        n = env.num_envs
        done_steps = 0
        while done_steps < budget:
            obs, reward, term, trunc, info = env.step(self.act(obs, info))
            done_steps += n
            self.steps += n
            if logger is not None:
                logger.log_scalar("train/reward", float(torch.as_tensor(reward).float().mean()), self.steps)
            if self.cfg.history_every and self.steps % self.cfg.history_every == 0:
                from recgym.envs import evaluate

                m = evaluate(self, env, n_episodes=self.cfg.eval_episodes, seed=123)
                self.history.append({"step": self.steps, "R_cumu": m["R_cumu"], "R_avg": m["R_avg"],
                                     "Length": m["Length"]})
                if logger is not None:
                    for k in ("R_cumu", "R_avg", "Length"):
                        logger.log_scalar(f"eval/{k}", m[k], self.steps)
                obs, info = env.reset()

    def save(self, path: str) -> None:
        torch.save({"agent": self.name, "steps": self.steps, "gen": self.gen.get_state()}, path)

    def load(self, path: str) -> None:
        state = torch.load(path, weights_only=True)
        self.steps = int(state["steps"])
        self.gen.set_state(state["gen"])


class TinyCrash(TinyRandom):
    name = "tiny_crash"

    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        if logger is not None:
            logger.log_scalar("train/started", 1.0, 0)
        raise RuntimeError("tiny_crash: deliberate failure in learn")


LAST: dict[str, Any] = {}  # the last agent each factory built (the tests read what it was given)


def _keep(agent: Any) -> Any:
    LAST[agent.name] = agent
    return agent


register_agent("tiny_random", TinyConfig, lambda env, cfg: _keep(TinyRandom(env, cfg)), overwrite=True)
register_agent("tiny_crash", TinyConfig, lambda env, cfg: TinyCrash(env, cfg), overwrite=True)
register_agent("tiny_world", TinyConfig, lambda env, cfg: _keep(TinyRandom(env, cfg)), overwrite=True,
               train_env=TrainEnvSpec("InteractiveRec", {"world_model": "knn"}))

"""SB3 SAC / TD3 steering a frozen DiffRec chain on ``DiffusionDenoise-*`` envs (``guidance`` or ``residual``).

`recgym.agents.sb3_agents` builds ``sb3_sac`` / ``sb3_td3`` for the item-id rec envs; for a DiffusionDenoise env
its factory hands over to `make_denoise_sb3` here, so ``make_agent("sb3_sac", denoise_env)`` works too.

- Actions: the env's own Box action in ``guidance`` mode (``a`` in [-1, 1]^G, ``x_{t-1} = mu(x_t, t) + scale *
  a @ V_G``, V_G the top-G right singular vectors of the training matrix) or ``residual`` mode (``a`` in [-1,
  1]^n_items; the replay buffer then stores n_items floats per action: keep ``buffer_size`` small). ``latent``
  mode is refused (an unbounded n_items-dim action is not an SB3 problem).
- Observation features (`DenoiseFeaturizer`): ``[x_t @ V_G^T, history @ V_G^T, t / T]`` (2G + 1 floats), the
  state projected on the same item-factor directions, instead of the 2 n_items + 1 raw floats.
- Reward: the env's terminal reward (RACS by default), 0 before the last of the T steps; ``budget`` counts env
  transitions (SB3 ``total_timesteps``; one vector step of the env is ``num_envs`` of them).
- Evaluation (`evaluate`): DiffRec protocol (`recgym.recommenders.ranking.evaluate_scores`): each user's full
  training row is the input, the chain runs T steps with the actor's deterministic action at every step, and the
  final x_0 ranks the items (train masked on valid; train + valid on test). At the end of `learn` the
  validation numbers (all users) go into ``history``; with ``test_at_end`` also the test numbers paired user by
  user against the frozen chain (`recgym.agents.denoise.common.paired_report`), as the chain fine-tuners do.

SB3 runs its own (numpy) loop: these agents do host round-trips by design, unlike recgym's own agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recgym.agents.base import AgentConfig
from recgym.agents.common import open_zip_checkpoint, save_zip_checkpoint


@dataclass
class DenoiseSB3Config(AgentConfig):
    """SAC / TD3 settings for the denoising chain (``budget`` counts env transitions)."""

    lr: float = 3e-4
    gamma: float = 0.99
    net_arch: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    buffer_size: int = 50_000
    learning_starts: int = 1_000
    train_freq: int = 1
    gradient_steps: int = 1
    action_noise: float = 0.1  # td3 exploration noise std (in action units)
    guidance_dim: int | None = None  # featurizer directions; default: the env's guidance_dim
    test_at_end: bool = False  # after learn: test metrics paired against the pre-trained chain, into history
    tensorboard_log: str | None = None
    device: str | None = None


class DenoiseFeaturizer:
    """``[x_t @ V^T, history @ V^T, t / T]`` as float32 [B, 2G + 1], on the env's device."""

    def __init__(self, basis: Tensor, steps: int) -> None:
        self.basis = basis
        self.steps = float(steps)

    def __call__(self, obs: Any) -> Tensor:
        x = obs["x_t"].float()
        h = obs["history"].float()
        t = obs["t"].float().reshape(-1, 1) / self.steps
        return torch.cat([x @ self.basis.T, h @ self.basis.T, t], dim=1)


class DenoiseSB3Agent:
    """An SB3 SAC / TD3 model acting in a DiffusionDenoise env's guidance / residual action space."""

    def __init__(self, env: Any, config: DenoiseSB3Config, name: str) -> None:
        from recgym.envs.sb3 import to_sb3

        inner = getattr(env, "unwrapped", env)
        if not hasattr(inner, "terminal_reward") or not hasattr(inner, "action_mode"):
            raise TypeError(f"{name}: needs a batched DiffusionDenoise env, got {type(inner).__name__}")
        if inner.action_mode not in ("guidance", "residual"):
            raise ValueError(f"{name}: the DiffusionDenoise env must use action_mode 'guidance' or 'residual' "
                             f"(got {inner.action_mode!r}); make it with action_mode='guidance'")
        if name not in ("sb3_sac", "sb3_td3"):
            raise ValueError(f"{name}: only sb3_sac and sb3_td3 support DiffusionDenoise envs")
        self.name, self.config, self.env = name, config, inner
        self.device = torch.device(inner.device)
        g = int(config.guidance_dim or inner.guidance_dim)
        self.basis = inner.resources.guidance(g)
        self.featurizer = DenoiseFeaturizer(self.basis, inner.T)
        self.vec_env = to_sb3(env, self.featurizer)
        self.vec_env.seed(int(config.seed))
        self.model = self._build()
        self.history: list[dict[str, Any]] = []
        self.training = True

    def _build(self) -> Any:
        from stable_baselines3 import SAC, TD3
        from stable_baselines3.common.noise import NormalActionNoise

        c = self.config
        kw: dict[str, Any] = dict(learning_rate=c.lr, gamma=c.gamma, batch_size=c.batch_size,
                                  buffer_size=c.buffer_size, learning_starts=c.learning_starts,
                                  train_freq=c.train_freq, gradient_steps=c.gradient_steps, seed=int(c.seed),
                                  policy_kwargs={"net_arch": list(c.net_arch)}, tensorboard_log=c.tensorboard_log,
                                  device=c.device or self.device, verbose=0)
        if self.name == "sb3_td3":
            dim = int(self.vec_env.action_space.shape[0])
            kw["action_noise"] = NormalActionNoise(np.zeros(dim), c.action_noise * np.ones(dim))
            return TD3("MlpPolicy", self.vec_env, **kw)
        return SAC("MlpPolicy", self.vec_env, **kw)

    # -- acting -----------------------------------------------------------------------------------

    def _actions(self, obs: Any) -> Tensor:
        feats = self.featurizer(obs).to(self.model.device)
        with torch.no_grad():
            a = self.model.policy._predict(feats, deterministic=True)
        return a.to(self.device, torch.float32).clamp(-1.0, 1.0)

    def act(self, obs: Any, info: dict[str, Any] | None = None) -> Tensor:
        """Deterministic actor action for a batched (Dict) observation of the env."""
        obs = {k: torch.as_tensor(v, device=self.device) for k, v in obs.items()}
        return self._actions(obs)

    @torch.no_grad()
    def scores(self, history: Tensor) -> Tensor:
        """Run the steered chain from the clean rows ``history`` and return the final scores x_0."""
        env = self.env
        x = history.to(self.device, torch.float32)
        for t in range(env.T, 0, -1):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=self.device)
            a = self._actions({"x_t": x, "t": tt, "history": history})
            mu = env.posterior_mean(x, tt)
            delta = a @ self.basis if env.action_mode == "guidance" else a
            x = mu + env.action_scale * delta
        return x

    def evaluate(self, which: tuple[str, ...] = ("valid", "test")) -> dict[str, dict[str, float]]:
        """DiffRec-protocol Recall/NDCG@10/20 of the steered chain."""
        from recgym.recommenders.ranking import evaluate_scores

        return evaluate_scores(lambda x, u: self.scores(x), self.env.splits, (10, 20), self.device,
                               self.env.model.config.eval_batch_size, which)

    # -- learning ---------------------------------------------------------------------------------

    def learn(self, env: Any = None, budget: int = 10_000, logger: Any = None, eval_env: Any = None) -> None:
        """``budget`` env transitions of SB3 training; logs ``train/episode_reward`` per finished batch.

        ``eval_env`` is accepted for the `Agent` protocol and not used (evaluation ranks the env's splits).
        """
        from stable_baselines3.common.callbacks import BaseCallback

        class _Log(BaseCallback):
            def _on_step(inner) -> bool:  # noqa: N805
                dones = inner.locals.get("dones")
                if logger is not None and dones is not None and np.any(dones):
                    r = np.asarray(inner.locals["rewards"])[np.asarray(dones)]
                    logger.log_scalar("train/episode_reward", float(r.mean()), int(inner.num_timesteps))
                return True

        self.model.learn(total_timesteps=int(budget), callback=_Log(), progress_bar=False,
                         reset_num_timesteps=False)
        record: dict[str, Any] = {"step": int(self.model.num_timesteps)}
        record.update({k: float(v) for k, v in self.evaluate(("valid",))["valid"].items()})
        if self.config.test_at_end:
            from recgym.agents.denoise.common import paired_report
            from recgym.recommenders.ranking import evaluate_scores_per_user

            def per_user(fn: Any) -> dict[str, Any]:
                return evaluate_scores_per_user(fn, self.env.splits, (10, 20), self.device,
                                                self.env.model.config.eval_batch_size, ("test",))["test"]

            record.update(paired_report(per_user(lambda x, u: self.scores(x)),
                                        per_user(lambda x, u: self.env.model.predict(x)), "test"))
        self.history.append(record)

    # -- persistence ------------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """SB3 zip with a content digest and the env's identity, written atomically."""
        save_zip_checkpoint(path, self.model.save, self.name, env=self.env)

    def load(self, path: str) -> None:
        from stable_baselines3 import SAC, TD3

        cls = TD3 if self.name == "sb3_td3" else SAC
        self.model = cls.load(open_zip_checkpoint(path, self.name, env=self.env), env=self.vec_env,
                              device=self.model.device)


def is_denoise_env(env: Any) -> bool:
    """True for a (possibly wrapped) batched DiffusionDenoise env."""
    inner = getattr(env, "unwrapped", env)
    return hasattr(inner, "terminal_reward") and hasattr(inner, "action_mode") and hasattr(inner, "model")


def make_denoise_sb3(name: str, env: Any, **config: Any) -> DenoiseSB3Agent:
    """``sb3_sac`` / ``sb3_td3`` for a DiffusionDenoise env (called from `recgym.agents.sb3_agents`)."""
    from recgym.agents.base import build_config

    return DenoiseSB3Agent(env, build_config(DenoiseSB3Config, config, name), name)

"""Stable-Baselines3 agents through `recgym.envs.to_sb3`: ``sb3_ppo``, ``sb3_sac``, ``sb3_td3``.

- ``sb3_ppo``: SB3 PPO on the discrete item-id action space. PPO cannot mask, so its training env is made with
  ``invalid_action="terminate"`` (a repeated item in NX modes ends the episode with reward 0: the policy
  learns not to repeat); ``act`` applies ``info["action_mask"]`` to the policy's logits and takes the best
  allowed item.
- ``sb3_sac`` / ``sb3_td3``: SB3 SAC / TD3 on a ``Box(-1, 1, (k,))`` action through
  `recgym.envs.ContinuousItemActionWrapper`: EasyRL4Rec's mapping (`recgym.envs.item_actions`: clip to
  [-1, 1], dot product with L2-normalised item embeddings, best allowed item, ``remap_eps`` random item), the
  rule and, by default, the embeddings of recgym's own continuous agents (`recgym.agents.dac4rec`).

Item embeddings ``e`` (action space of SAC/TD3 and the observation featurizer of all three), learned from the
training logs only (`recgym.envs.item_actions.log_item_embeddings`, ``action_emb``): ``"deepfm"`` (the DeepFM
user model's item embeddings; the default of ``sb3_sac`` / ``sb3_td3``) or ``"train_svd"`` (the top-``k`` SVD
of the training-log matrix; the default of ``sb3_ppo``). Observation: `recgym.envs.sb3.RecObsFeaturizer`
(mean embedding of the last W items, their normalised rewards, step / max_turn).

Training env: the env passed to ``learn``; with ``reward_preset`` set (one of
`recgym.envs.interactive.REWARD_PRESETS`), an ``InteractiveRec-<D>-v0`` with that reward preset (``num_envs``
parallel envs) derived from the given env when that is not already an InteractiveRec env: the SB3 counterpart
of the world-model methods of `recgym.agents.a2c`. ``sb3_sac`` / ``sb3_td3`` default to ``mbpo`` (EasyRL4Rec's
DeepFM user model, as `recgym.agents.continuous`), so given a ``GroundTruthRec`` env they train with the user
model and evaluate in the ground truth; ``sb3_ppo`` defaults to the given env. Evaluation every ``eval_every`` env steps in ``eval_env``,
else in the matching GroundTruthRec env (an SB3 callback), logged as ``eval/<metric>``; SB3's own TensorBoard
logging goes to ``tensorboard_log`` when set. ``budget`` counts env steps (SB3 ``total_timesteps``).
Save/load: SB3's zip format (written atomically).

On a ``DiffusionDenoise-*`` env (guidance / residual actions), ``sb3_sac`` / ``sb3_td3`` hand over to
`recgym.agents.denoise.sb3` with the fields both settings share; ``gamma``, ``net_arch``, ``buffer_size`` and
``action_noise`` default (None) to each env kind's own values, and the rec-env-only fields (``reward_preset``,
``num_envs``, ``k``, ``n_steps``) are refused there, as ``guidance_dim`` is on a rec env.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recgym.agents.base import AgentConfig, register_agent
from recgym.agents.common import (
    EvalRecorder,
    action_mask,
    check_choice,
    evaluation_env_for,
    log_scalars,
    masked_logits,
    open_zip_checkpoint,
    rec_env_spec,
    require_dataset,
    save_zip_checkpoint,
    to_device_obs,
)
from recgym.envs.derive import env_family, matching_env
from recgym.envs.interactive import REWARD_PRESETS
from recgym.envs.item_actions import EMBEDDING_SOURCES, log_item_embeddings, map_actions_to_items

# Defaults of the fields whose value depends on the env kind (None in SB3Config): rec envs / DiffusionDenoise.
REC_DEFAULTS: dict[str, Any] = {"gamma": 0.9, "net_arch": (64, 64), "buffer_size": 100_000, "action_noise": None}
_REC_ONLY = ("reward_preset", "num_envs", "k", "n_steps", "action_emb", "remap_eps")


@dataclass
class SB3Config(AgentConfig):
    eval_every: int = 10_000  # env steps between evaluations (0 = only at the end)
    reward_preset: str | None = None  # train in InteractiveRec with this reward preset (None: the given env)
    num_envs: int = 16  # parallel envs of the InteractiveRec training env derived for reward_preset
    k: int = 16  # item-embedding size of action_emb="train_svd" (SAC/TD3 action size, featurizer size)
    action_emb: str = "train_svd"  # item embeddings from the logs: "deepfm" or "train_svd" (item_actions)
    remap_eps: float = 0.0  # sac / td3: probability of a random allowed item (EasyRL4Rec's remap_eps)
    lr: float = 3e-4
    gamma: float | None = None  # None: 0.9 on rec envs, 0.99 on DiffusionDenoise envs
    net_arch: tuple[int, ...] | None = None  # None: (64, 64) on rec envs, (256, 256) on DiffusionDenoise envs
    n_steps: int = 32  # ppo: steps per env per rollout
    batch_size: int = 256
    buffer_size: int | None = None  # sac / td3; None: 100,000 on rec envs, 50,000 on DiffusionDenoise envs
    learning_starts: int = 1_000  # sac / td3
    train_freq: int = 1  # sac / td3
    gradient_steps: int = 1  # sac / td3
    action_noise: float | None = None  # td3 Gaussian exploration std; None: none on rec envs, 0.1 on DiffusionDenoise
    guidance_dim: int | None = None  # DiffusionDenoise envs only: featurizer directions (None: the env's)
    test_at_end: bool = False  # DiffusionDenoise envs only: test paired against the frozen chain after learn
    device: str | None = None  # SB3 model device (None: the env's)
    tensorboard_log: str | None = None


def _rec_value(cfg: SB3Config, name: str) -> Any:
    value = getattr(cfg, name)
    return REC_DEFAULTS[name] if value is None else value


class SB3Agent:
    """An SB3 model plus the recgym plumbing (featurizer, masks, evaluation)."""

    def __init__(self, env: Any, cfg: SB3Config, name: str) -> None:
        self.name, self.cfg = name, cfg
        if cfg.reward_preset is not None:
            check_choice(name, "reward_preset", cfg.reward_preset, REWARD_PRESETS)
        if cfg.guidance_dim is not None:
            raise ValueError(f"{name}: guidance_dim applies to DiffusionDenoise envs only")
        check_choice(name, "action_emb", cfg.action_emb, EMBEDDING_SOURCES)
        if not 0.0 <= cfg.remap_eps <= 1.0:
            raise ValueError(f"{name}: remap_eps must be in [0, 1], got {cfg.remap_eps}")
        self.spec = spec = rec_env_spec(env, name)  # the discrete item-id env these agents act in
        self.device = spec.device
        from recgym.envs.sb3 import RecObsFeaturizer

        ds = require_dataset(spec, name)
        self.item_emb = log_item_embeddings(ds, cfg.action_emb, cfg.k, seed=0, progress=cfg.progress).to(self.device)
        self.map_gen = torch.Generator(device=self.device)
        self.map_gen.manual_seed(cfg.seed + 61)
        self.featurizer = RecObsFeaturizer(env.unwrapped if hasattr(env, "unwrapped") else env, self.item_emb)
        self.continuous = name in ("sb3_sac", "sb3_td3")
        self.history: list[dict[str, float]] = []
        self.env_steps = 0
        self._template = env
        # Build the model on a copy of the env (spaces and env count); learn() swaps in the training env,
        # which has the same spaces and number of envs (SB3's set_env requires it).
        self.derives = cfg.reward_preset is not None and env_family(env) != "InteractiveRec"
        self.n_train_envs = int(cfg.num_envs) if self.derives else int(env.num_envs)
        self.model = self._make_model(self._vec(matching_env(env, "GroundTruthRec",
                                                                  num_envs=self.n_train_envs)))

    # -- envs ------------------------------------------------------------------------------------------
    def _vec(self, env: Any) -> Any:
        from recgym.envs.sb3 import ContinuousItemActionWrapper, to_sb3

        if self.continuous:
            env = ContinuousItemActionWrapper(env, item_embeddings=self.item_emb, remap_eps=self.cfg.remap_eps,
                                              seed=self.cfg.seed)
        return to_sb3(env, featurizer=self.featurizer)

    def _train_env(self, env: Any) -> Any:
        cfg = self.cfg
        extra = {} if self.continuous else {"invalid_action": "terminate"}
        if cfg.reward_preset is not None and env_family(env) != "InteractiveRec":
            return matching_env(env, "InteractiveRec", num_envs=cfg.num_envs, reward_preset=cfg.reward_preset,
                                progress=cfg.progress, **extra)
        given = (getattr(getattr(env, "spec", None), "kwargs", None) or {}).get("reward_preset")
        if cfg.reward_preset is not None and given is not None and given != cfg.reward_preset:
            raise ValueError(f"{self.name}: learn() got an InteractiveRec env with reward_preset={given!r}, this "
                             f"agent trains with reward_preset={cfg.reward_preset!r}")
        if not self.continuous and getattr(env.unwrapped, "invalid_action", "terminate") != "terminate":
            return matching_env(env, env_family(env) or "GroundTruthRec", num_envs=env.num_envs, **extra)
        return env

    def _make_model(self, vec: Any) -> Any:
        from stable_baselines3 import PPO, SAC, TD3
        from stable_baselines3.common.noise import NormalActionNoise

        cfg = self.cfg
        arch = list(_rec_value(cfg, "net_arch"))
        common = dict(learning_rate=cfg.lr, gamma=_rec_value(cfg, "gamma"), seed=cfg.seed,
                      device=cfg.device or self.device, verbose=0, tensorboard_log=cfg.tensorboard_log,
                      policy_kwargs={"net_arch": arch})
        if self.name == "sb3_ppo":
            return PPO("MlpPolicy", vec, n_steps=cfg.n_steps, batch_size=cfg.batch_size, **common)
        extra: dict[str, Any] = {}
        noise = _rec_value(cfg, "action_noise")
        if self.name == "sb3_td3" and noise is not None:
            dim = int(vec.action_space.shape[0])
            extra["action_noise"] = NormalActionNoise(np.zeros(dim), noise * np.ones(dim))
        cls = SAC if self.name == "sb3_sac" else TD3
        return cls("MlpPolicy", vec, buffer_size=_rec_value(cfg, "buffer_size"), batch_size=cfg.batch_size,
                   learning_starts=cfg.learning_starts, train_freq=cfg.train_freq, gradient_steps=cfg.gradient_steps,
                   **common, **extra)

    # -- acting ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> torch.Tensor:
        obs = to_device_obs(obs, self.device)
        feats = self.featurizer(obs).float()
        mask = action_mask(info, feats.shape[0], self.spec.n_items, self.device)
        policy = self.model.policy
        x = feats.to(policy.device)
        if self.continuous:
            a = policy._predict(x, deterministic=True) if self.name == "sb3_sac" else policy.actor(x)
            return map_actions_to_items(a.to(self.device).float(), self.item_emb, mask, self.cfg.remap_eps,
                                        self.map_gen)
        else:
            scores = policy.get_distribution(x).distribution.logits.to(self.device)
        return masked_logits(scores, mask).argmax(-1)

    # -- learning --------------------------------------------------------------------------------------
    def learn(self, env: Any, budget: int, logger: Any = None, eval_env: Any = None) -> None:
        """``budget`` env steps of SB3 learning with periodic evaluation in the GroundTruthRec env."""
        from stable_baselines3.common.callbacks import BaseCallback

        cfg = self.cfg
        train = self._train_env(env)
        if int(train.num_envs) != self.n_train_envs:
            raise ValueError(f"{self.name}: the training env has {train.num_envs} envs, the agent was built for "
                             f"{self.n_train_envs} (the env given to make_agent, or num_envs)")
        target = evaluation_env_for(env, eval_env, cfg.eval_episodes)
        if target is train:  # never evaluate inside the env SB3 is stepping
            target = matching_env(env, "GroundTruthRec", num_envs=min(cfg.eval_episodes, 100) or 1)
        recorder = EvalRecorder(self, cfg.eval_episodes, cfg.seed)
        agent = self

        class _Eval(BaseCallback):
            def __init__(self) -> None:
                super().__init__()
                self.next = cfg.eval_every if cfg.eval_every > 0 else None

            def _on_step(self) -> bool:
                if self.next is not None and self.num_timesteps >= self.next:
                    recorder(target, agent.env_steps + self.num_timesteps, logger)
                    self.next += cfg.eval_every
                return True

            def _on_rollout_end(self) -> None:
                vals = {k: v for k, v in self.model.logger.name_to_value.items() if isinstance(v, (int, float))}
                log_scalars(logger, vals, agent.env_steps + self.num_timesteps, prefix="sb3/")

        self.model.set_env(self._vec(train))
        self.model.learn(total_timesteps=int(budget), callback=_Eval(), progress_bar=False,
                         reset_num_timesteps=self.env_steps == 0, tb_log_name=self.name)
        self.env_steps += int(budget)
        recorder(target, self.env_steps, logger)

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        save_zip_checkpoint(path, self.model.save, self.name, env=self.spec)

    def load(self, path: str) -> None:
        from stable_baselines3 import PPO, SAC, TD3

        cls = {"sb3_ppo": PPO, "sb3_sac": SAC, "sb3_td3": TD3}[self.name]
        env = self.model.get_env()
        self.model = cls.load(open_zip_checkpoint(path, self.name, env=self.spec), env=env, device=self.device)


def _denoise_agent(name: str, env: Any, cfg: SB3Config) -> Any:
    """``sb3_sac`` / ``sb3_td3`` on a DiffusionDenoise env: the shared fields handed to `recgym.agents.denoise.sb3`."""
    import dataclasses

    from recgym.agents.base import agent_spec
    from recgym.agents.denoise.sb3 import make_denoise_sb3

    defaults = agent_spec(name).default_config()
    changed = [f for f in _REC_ONLY if getattr(cfg, f) != getattr(defaults, f)]
    if changed:
        raise ValueError(f"{name}: {changed} apply to rec envs only, not to a DiffusionDenoise env")
    shared = ("seed", "lr", "gamma", "net_arch", "batch_size", "buffer_size", "learning_starts", "train_freq",
              "gradient_steps", "action_noise", "guidance_dim", "tensorboard_log", "progress", "device",
              "test_at_end")
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in shared}
    return make_denoise_sb3(name, env, **{k: v for k, v in values.items() if v is not None})


def _factory(name: str):
    def factory(env: Any, config: SB3Config) -> Any:
        from recgym.agents.denoise.sb3 import is_denoise_env

        if is_denoise_env(env):
            return _denoise_agent(name, env, config)
        return SB3Agent(env, config, name)

    factory.__doc__ = f"Stable-Baselines3 {name[4:].upper()} through recgym.envs.to_sb3."
    return factory


# sb3_sac / sb3_td3: EasyRL4Rec's setting, as recgym's own continuous agents (DeepFM user model, its embeddings)
_CONTINUOUS_DEFAULTS = {"reward_preset": "mbpo", "action_emb": "deepfm", "remap_eps": 0.001}
register_agent("sb3_ppo", SB3Config, _factory("sb3_ppo"))
for _name in ("sb3_sac", "sb3_td3"):
    register_agent(_name, SB3Config, _factory(_name), defaults=_CONTINUOUS_DEFAULTS)

__all__ = ["SB3Agent", "SB3Config"]

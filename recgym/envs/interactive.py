"""`InteractiveRecEnv`: the training env of model-based offline RL (DORL / MOPO / MBPO / ROLeR / R3S).

Papers: DORL, "Alleviating Matthew Effect of Offline Reinforcement Learning in Interactive Recommendation"
(arXiv:2307.04571); ROLeR (arXiv:2407.13163); R3S, "Reward Balancing Revisited: Enhancing Offline
Reinforcement Learning for Recommender Systems" (arXiv:2506.22112).

Same users, actions, quit rule, modes and protocols as `GroundTruthRecEnv` (it is a `RecEnv`: the
dynamics are not duplicated), but the reward comes from a world model fitted on the *training logs* only,
with shaping. For the action ``a`` at step ``k`` (0-based, the k-th item of the episode) of user ``u``::

    raw = mean[u, a] - lambda_u * unc[u, a]
          + lambda_ent * w_loc(k) * E_loc + lambda_int * w_glob(k) * E_glob
    r   = max(0, raw - MIN_R)

* ``mean``, ``unc``: the world model's predicted reward and uncertainty matrices (computed once, on the
  device; `recgym.worldmodels.fit_or_load` fits the model on first use and caches it).
* ``E_loc`` (DORL's entropy penalty, local): for each window ``w`` in ``entropy_window`` (default (1, 2)),
  the normalised entropy ``H(next item | the sorted last w items) / log2(#distinct next items)`` read from a
  table built from the training logs (each user's logs in time order; sets followed by a single distinct next
  item have entropy 1); the last ``w`` items include ``a`` itself. A set never seen in the logs, or an
  episode shorter than ``w``, counts 1. ``E_loc`` is the sum over windows (as in DORL's code).
* ``E_glob`` (R3S's interactive penalty, global): the same table and rule, but the ``w`` items are taken at
  ``w`` distinct positions drawn uniformly at random from the whole trajectory so far (positions ``0..k``,
  ``a`` included) instead of the contiguous last ``w``. Draws come from the env's counter-based per-env
  stream, so they are reproducible and batched == single.
* Decay (R3S): ``f(k) = alpha * exp(-beta * k)`` (alpha 0.5, beta 1.0). **Our combination** (the paper
  leaves it open): ``w_loc(k) = f(k)`` and ``w_glob(k) = 1 - f(k)``, a convex split that moves weight from
  the local term early in the episode to the global term as the episode grows; ``lambda_ent`` and
  ``lambda_int`` scale the two terms. ``alpha=1, beta=0`` gives ``w_loc = 1``, ``w_glob = 0``: DORL.
* ``MIN_R`` (DORL's shift) = ``min(mean - lambda_u * unc) + lambda_ent * min_k w_loc(k) * E_min
  + lambda_int * min_k w_glob(k) * E_min`` over the episode's steps, with ``E_min`` the smallest possible
  entropy sum, so ``raw - MIN_R >= 0`` and the clip at 0 (DORL's ``clip0``) is a safeguard.

Reward presets (``reward_preset=``; every weight can be overridden by its kwarg):

======== ============= ============================================= ======================================
preset   world model   weights                                       source
======== ============= ============================================= ======================================
r3s      diffusion     lambda_u, lambda_ent, lambda_int = lambda_ent, R3S: alpha 0.5, beta 1.0 (paper);
                       alpha 0.5, beta 1.0                           lambda_u: ours (paper gives none)
dorl     deepfm        lambda_u (= lambda_var), lambda_ent           per dataset, below
mopo     deepfm        lambda_u (MOPO's lambda_var), lambda_ent = 0  DORL's MOPO; per dataset, below
mbpo     deepfm        lambda_u = 0, lambda_ent = 0                  DORL's MBPO
roler    knn (train)   lambda_u, lambda_ent                          ROLeR: kNN-shaped reward + distance
======== ============= ============================================= ======================================

Per-dataset (lambda_var, lambda_ent), published: KuaiRec DORL (0.05, 5), MOPO lambda_var 0.05 and KuaiRand
(0.01, 0.05), MOPO 0.01 (DORL paper); Coat DORL (0.005, 1), MOPO 0.02 and Yahoo DORL (0.01, 1), MOPO 0.01 (the
run commands of ROLeR's public code; R3S says it adopts ROLeR's offline-RL set-up). Synthetic and ML-1M have
none and use Yahoo's. ``lambda_ent`` of r3s and roler is the dataset's DORL value (R3S: ``lambda_int =
lambda_ent``). R3S's uncertainty is a standard deviation in reward units, so its lambda_u is 0.1 (ours; no
published value). ROLeR's distance uncertainty is in reward units too (distance x reward std); we use lambda_u
0.1. (Why datasets without a published value borrow Yahoo's instead of DORL's code default lambda_ent 5: see
"History of design measurements" in docs/RESULTS.md.)

World model: ``world_model=`` a kind (default: the preset's) or a fitted model object (anything with
``predict() -> (mean, unc)``); ``world_model_config=`` its config (default: the class defaults, lighter ones on
Yahoo / KuaiRand from `recgym.worldmodels.DATASET_DEFAULTS`); ``world_model_seed=``.

The protocol (N, M, mode, max_turn; see `recgym.envs.protocol`) is ``protocol=`` (default
``"roler"`` for the roler reward preset, else ``"dorl"``); the quit rule is the real one (ground-truth
distances / categories), as in DORL's simulated training envs. The effective shaping is ``env.shaping`` (a
frozen `Shaping`); ``info["shaping"]`` at reset is its plain dict plus the protocol name and ``min_r``; every
effective value is also in ``env.spec.kwargs``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from recgym.data.base import LoggedDataset
from recgym.envs.core import SingleEnvAdapter, resolve_device
from recgym.envs.protocol import dataset_key
from recgym.envs.rec import RecEnv, RecState, _load

__all__ = [
    "REWARD_PRESETS",
    "EntropyTable",
    "InteractiveRecEnv",
    "Shaping",
    "decay_weights",
    "make_interactive_single",
    "make_interactive_vec",
    "resolve_shaping",
]

# Published (lambda_var, lambda_ent) per dataset and preset. KuaiRec / KuaiRand: the DORL paper (arXiv:2307.04571);
# Coat / Yahoo: the run commands of ROLeR's public code (whose offline-RL set-up R3S says it adopts), which set
# MOPO's lambda_var apart from DORL's. Datasets without a published setting (Synthetic, ML-1M: ratings on a
# 0..5 scale like Coat and Yahoo) use Yahoo's values.
_PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "kuairec": {"dorl": (0.05, 5.0), "mopo": (0.05, 0.0)},
    "kuairand": {"dorl": (0.01, 0.05), "mopo": (0.01, 0.0)},
    "coat": {"dorl": (0.005, 1.0), "mopo": (0.02, 0.0)},
    "yahoo": {"dorl": (0.01, 1.0), "mopo": (0.01, 0.0)},
}
_SOURCES = {"kuairec": "DORL paper (arXiv:2307.04571)", "kuairand": "DORL paper (arXiv:2307.04571)",
            "coat": "ROLeR code's Coat commands", "yahoo": "ROLeR code's Yahoo commands"}
_DEFAULT_DATASET = "yahoo"  # rating-scale data without a published setting borrow Yahoo's values
_R3S_LAMBDA_U = 0.1
_ROLER_LAMBDA_U = 0.1

REWARD_PRESETS = ("r3s", "dorl", "mopo", "mbpo", "roler")


@dataclass(frozen=True)
class Shaping:
    """The effective reward shaping of one InteractiveRec env (see the module docstring for each weight).

    ``world_model`` is the world-model kind (or the class / ``kind`` of a fitted model passed in); ``source``
    says where the weights come from.
    """

    reward_preset: str
    world_model: str
    lambda_u: float
    lambda_ent: float
    lambda_int: float
    alpha: float
    beta: float
    entropy_window: tuple[int, ...]
    source: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for ``info["shaping"]`` and results JSON)."""
        return dataclasses.asdict(self)


def resolve_shaping(reward_preset: str, dataset_name: str, **overrides: Any) -> Shaping:
    """Effective shaping of a reward preset for a dataset, with explicit (non-None) overrides of its fields."""
    key = str(reward_preset).lower()
    if key not in REWARD_PRESETS:
        raise ValueError(f"unknown InteractiveRec reward_preset {reward_preset!r}; valid reward presets: "
                         f"{list(REWARD_PRESETS)}")
    fields = {f.name for f in dataclasses.fields(Shaping)} - {"reward_preset", "source"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown shaping field(s) {unknown}; valid fields: {sorted(fields)}")
    ds = dataset_key(dataset_name)
    table = _PUBLISHED.get(ds, _PUBLISHED[_DEFAULT_DATASET])
    source = _SOURCES[ds] if ds in _PUBLISHED else f"no published value; {_SOURCES[_DEFAULT_DATASET]} (Yahoo's)"
    lam_var, lam_ent = table["dorl"]
    base: dict[str, Any] = {"reward_preset": key, "entropy_window": (1, 2), "alpha": 1.0, "beta": 0.0,
                            "lambda_int": 0.0, "world_model": "deepfm", "source": source}
    if key == "r3s":
        base.update(world_model="diffusion", lambda_u=_R3S_LAMBDA_U, lambda_ent=lam_ent, lambda_int=lam_ent,
                    alpha=0.5, beta=1.0, source=f"R3S decay (paper); lambda_ent: {source}, lambda_u ours")
    elif key == "dorl":
        base.update(lambda_u=lam_var, lambda_ent=lam_ent)
    elif key == "mopo":
        base.update(lambda_u=table["mopo"][0], lambda_ent=0.0)
    elif key == "mbpo":
        base.update(lambda_u=0.0, lambda_ent=0.0)
    elif key == "roler":
        base.update(world_model="knn", lambda_u=_ROLER_LAMBDA_U, lambda_ent=lam_ent,
                    source=f"ROLeR kNN shaping; lambda_ent: {source}, lambda_u ours")
    for k, v in overrides.items():
        if v is not None:
            base[k] = v
    for name in ("lambda_u", "lambda_ent", "lambda_int", "alpha", "beta"):
        val = float(base[name])
        if not math.isfinite(val) or val < 0:
            raise ValueError(f"{name} must be a finite number >= 0 (it weights a penalty), got {base[name]!r}")
        base[name] = val
    if base["alpha"] > 1:
        raise ValueError(f"alpha must be in [0, 1] (w_loc = alpha*exp(-beta*k), w_glob = 1 - w_loc), got {base['alpha']}")
    win = tuple(int(w) for w in base["entropy_window"])
    if any(w < 1 for w in win) or len(set(win)) != len(win):
        raise ValueError(f"entropy_window must be distinct ints >= 1, got {base['entropy_window']!r}")
    base["entropy_window"] = win
    return Shaping(**base)


def decay_weights(k: torch.Tensor, alpha: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_loc, w_glob) at steps ``k``: ``f(k) = alpha * exp(-beta * k)`` and ``1 - f(k)``."""
    f = alpha * torch.exp(-beta * k.to(torch.float32))
    return f, 1.0 - f


class EntropyTable:
    """DORL's normalised next-item entropy of sorted item sets, as sorted int64 keys + values per window.

    Built from the training logs: each user's interactions in time order (``time`` column when present,
    else file order); for every position ``p >= w`` the set ``sorted(items[p-w:p])`` is followed by
    ``items[p]``. The entropy of the next-item distribution of a set, ``-sum p log2 p / log2(n_distinct)``,
    is 1 when at most one distinct item followed it. Lookups of unseen sets return 1.
    """

    def __init__(self, windows: tuple[int, ...], n_items: int, keys: dict[int, torch.Tensor],
                 values: dict[int, torch.Tensor]) -> None:
        self.windows = tuple(windows)
        self.n_items = int(n_items)
        self.keys = keys
        self.values = values

    @staticmethod
    def _encode(sorted_items: np.ndarray | torch.Tensor, n_items: int) -> Any:
        key = sorted_items[..., 0] * 0
        for j in range(sorted_items.shape[-1]):
            key = key * n_items + sorted_items[..., j]
        return key

    @classmethod
    def from_logs(cls, dataset: LoggedDataset, windows: tuple[int, ...], device: torch.device | str = "cpu"
                  ) -> EntropyTable:
        """Count (set, next item) pairs in the training logs and turn them into normalised entropies."""
        n = int(dataset.n_items)
        for w in windows:
            if w * math.log2(max(n, 2)) > 62:
                raise ValueError(f"entropy window {w} is too long for {n} items (keys overflow int64)")
        tr = dataset.train
        order = ["user", "time"] if "time" in tr.columns else ["user"]
        df = tr.sort_values(order, kind="stable")
        users = df["user"].to_numpy(np.int64)
        items = df["item"].to_numpy(np.int64)
        keys: dict[int, torch.Tensor] = {}
        vals: dict[int, torch.Tensor] = {}
        for w in windows:
            if len(items) <= w:
                keys[w] = torch.zeros(0, dtype=torch.int64, device=device)
                vals[w] = torch.zeros(0, dtype=torch.float32, device=device)
                continue
            # windows items[p-w:p] and next items[p], same user throughout
            idx = np.arange(w, len(items))
            hist = np.stack([items[idx - w + j] for j in range(w)], 1)
            same = np.ones(len(idx), dtype=bool)
            for j in range(w):
                same &= users[idx - w + j] == users[idx]
            hist, nxt = np.sort(hist[same], axis=1), items[idx[same]]
            if len(nxt) == 0:
                keys[w] = torch.zeros(0, dtype=torch.int64, device=device)
                vals[w] = torch.zeros(0, dtype=torch.float32, device=device)
                continue
            hk = cls._encode(hist, n)
            pairs, counts = np.unique(np.stack([hk, nxt], 1), axis=0, return_counts=True)
            set_keys, start, n_distinct = np.unique(pairs[:, 0], return_index=True, return_counts=True)
            tot = np.add.reduceat(counts, start).astype(np.float64)
            p = counts / np.repeat(tot, n_distinct)
            h = np.add.reduceat(-p * np.log2(p), start)
            ent = np.where(n_distinct > 1, h / np.log2(np.maximum(n_distinct, 2)), 1.0)
            keys[w] = torch.as_tensor(set_keys, dtype=torch.int64, device=device)
            vals[w] = torch.as_tensor(ent, dtype=torch.float32, device=device)
        return cls(windows, n, keys, vals)

    def lookup(self, w: int, item_sets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Entropies of ``item_sets`` (int64 [..., w], any order; sorted here); 1 for unseen or invalid sets."""
        s = torch.sort(item_sets, dim=-1).values
        key = self._encode(s.clamp_min(0), self.n_items)
        keys, vals = self.keys[w], self.values[w]
        out = torch.ones(key.shape, dtype=torch.float32, device=key.device)
        if keys.numel():
            pos = torch.searchsorted(keys, key).clamp_max(keys.numel() - 1)
            found = keys[pos] == key
            out = torch.where(found, vals[pos], out)
        if valid is not None:
            out = torch.where(valid, out, torch.ones_like(out))
        return out

    def min_sum(self) -> float:
        """Smallest possible sum over windows (unseen sets count 1)."""
        return float(sum(min(1.0, float(self.values[w].min())) if self.values[w].numel() else 1.0
                         for w in self.windows))


class InteractiveRecEnv(RecEnv):
    """`RecEnv` with a world-model reward and DORL / R3S shaping (see the module docstring)."""

    def __init__(
        self,
        dataset: LoggedDataset | str = "synthetic",
        num_envs: int = 1,
        *,
        reward_preset: str = "r3s",
        protocol: str | None = None,
        world_model: Any = None,
        world_model_config: dict[str, Any] | None = None,
        world_model_seed: int = 0,
        lambda_u: float | None = None,
        lambda_ent: float | None = None,
        lambda_int: float | None = None,
        alpha: float | None = None,
        beta: float | None = None,
        entropy_window: tuple[int, ...] | list[int] | None = None,
        progress: bool = True,
        data_dir: Any = None,
        dataset_kwargs: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> None:
        ds = _load(dataset, data_dir, dataset_kwargs)
        wm_kind = world_model if isinstance(world_model, str) else None
        shaping = resolve_shaping(
            reward_preset, ds.name, lambda_u=lambda_u, lambda_ent=lambda_ent, lambda_int=lambda_int, alpha=alpha,
            beta=beta, entropy_window=None if entropy_window is None else tuple(entropy_window),
            world_model=wm_kind,
        )
        dev = resolve_device(device)
        if world_model is None or isinstance(world_model, str):
            from recgym.worldmodels import default_config, fit_or_load

            if world_model_config is None:
                world_model_config = default_config(shaping.world_model, ds.name)
            model = fit_or_load(shaping.world_model, ds, config=world_model_config, device=str(dev),
                                progress=progress, seed=world_model_seed)
        else:
            model = world_model
            shaping = dataclasses.replace(shaping, world_model=str(getattr(model, "kind", type(model).__name__)))
        mean, unc = model.predict()
        if tuple(mean.shape) != (ds.n_users, ds.n_items) or tuple(unc.shape) != tuple(mean.shape):
            raise ValueError(f"world model predicts {tuple(mean.shape)} / {tuple(unc.shape)}, expected "
                             f"({ds.n_users}, {ds.n_items}) for dataset {ds.name!r}")
        if ds.n_gt_users > ds.n_users:
            raise ValueError(f"{ds.name}: {ds.n_gt_users} evaluation users but the world model covers only "
                             f"n_users={ds.n_users}")
        if not bool(torch.isfinite(mean).all()) or not bool(torch.isfinite(unc).all()):
            raise FloatingPointError(f"world model for {ds.name!r} predicted NaN/inf; refit it")
        if protocol is None:
            protocol = "roler" if shaping.reward_preset == "roler" else "dorl"
        ctor = {"dataset": ds, "num_envs": num_envs, "reward_preset": reward_preset, "protocol": protocol, "world_model": model,
                "lambda_u": lambda_u, "lambda_ent": lambda_ent, "lambda_int": lambda_int, "alpha": alpha,
                "beta": beta, "entropy_window": entropy_window, "progress": progress, "device": device, **kwargs}
        self.shaping = shaping
        self.table = EntropyTable.from_logs(ds, shaping.entropy_window, dev)
        base = (mean.to(dev, torch.float32) - shaping.lambda_u * unc.to(dev, torch.float32))
        # bounds of the decayed terms over the episode's steps
        max_turn_guess = int(kwargs.get("max_turn") or 30)
        ks = torch.arange(max(max_turn_guess, 30), device=dev)
        w_loc, w_glob = decay_weights(ks, shaping.alpha, shaping.beta)
        e_min, e_max = self.table.min_sum(), float(len(shaping.entropy_window))
        la, li = shaping.lambda_ent, shaping.lambda_int
        self.min_r = float(base.min()) + la * float(w_loc.min()) * e_min + li * float(w_glob.min()) * e_min
        max_r = float(base.max()) + la * float(w_loc.max()) * e_max + li * float(w_glob.max()) * e_max - self.min_r
        self._base_flat = base.reshape(-1).contiguous()
        super().__init__(ds, num_envs, device=dev, protocol=protocol, reward_range=(0.0, max_r * (1 + 1e-5) + 1e-6),
                         **kwargs)
        self.world_model = model
        self._traj_len = max(self.max_turn, 1)
        self.traj = torch.full((self.num_envs, self._traj_len), -1, dtype=torch.int64, device=self.device)
        self._ctor_kwargs = ctor

    def make_sibling(self, num_envs: int, **overrides: Any) -> InteractiveRecEnv:
        """Same env (same fitted world model, same item distances) with another ``num_envs``."""
        if self._item_dist is not None:
            overrides.setdefault("item_distances", self._item_dist)
        return super().make_sibling(num_envs, **overrides)  # type: ignore[return-value]

    # -- reward source ---------------------------------------------------------------------------------------
    def _reset_envs(self, mask: torch.Tensor) -> None:
        super()._reset_envs(mask)
        if self.traj.shape[1] < self.max_turn:
            self.traj = torch.full((self.num_envs, self.max_turn), -1, dtype=torch.int64, device=self.device)
        self.traj = torch.where(mask[:, None], -1, self.traj)

    def local_entropy(self, traj: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """DORL's E_loc for trajectories ``traj`` [B, T] whose current item is at position ``k`` [B]."""
        out = torch.zeros(traj.shape[0], dtype=torch.float32, device=traj.device)
        for w in self.table.windows:
            pos = k[:, None] - (w - 1) + torch.arange(w, device=traj.device)[None, :]  # [B, w]
            valid = (pos >= 0).all(1)
            items = traj.gather(1, pos.clamp_min(0))
            out = out + self.table.lookup(w, items, valid)
        return out

    def global_entropy(self, traj: torch.Tensor, k: torch.Tensor, purpose: int = 7001) -> torch.Tensor:
        """R3S's E_glob: the table entropy of ``w`` items at random distinct positions in ``0..k``."""
        t = traj.shape[1]
        counter = (self.step_count[None, :] * t + torch.arange(t, device=traj.device)[:, None])  # [T, B]
        bits = self.per_env_bits(purpose, counter).T  # [B, T] random 32-bit keys per position
        pos_ok = torch.arange(t, device=traj.device)[None, :] <= k[:, None]
        keyed = torch.where(pos_ok, bits, torch.full_like(bits, 1 << 40))
        order = torch.argsort(keyed, dim=1)  # random permutation of positions 0..k first
        out = torch.zeros(traj.shape[0], dtype=torch.float32, device=traj.device)
        for w in self.table.windows:
            pos = order[:, :w]
            valid = (k + 1) >= w
            items = traj.gather(1, pos)
            out = out + self.table.lookup(w, items, valid)
        return out

    def _rewards(self, users: torch.Tensor, items: torch.Tensor, state: RecState) -> torch.Tensor:
        k = state.step.clamp_max(self.traj.shape[1] - 1)
        act = state.active
        traj = self.traj.scatter(1, k[:, None], items[:, None])
        self.traj = torch.where(act[:, None], traj, self.traj)
        sh = self.shaping
        r = self._base_flat[users * self.n_items + items]
        w_loc, w_glob = decay_weights(k, sh.alpha, sh.beta)
        if sh.lambda_ent > 0:
            r = r + sh.lambda_ent * w_loc * self.local_entropy(self.traj, k)
        if sh.lambda_int > 0:
            r = r + sh.lambda_int * w_glob * self.global_entropy(self.traj, k)
        return (r - self.min_r).clamp_min(0.0)

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def effective_kwargs(self) -> dict[str, Any]:
        out = super().effective_kwargs()
        sh = self.shaping
        out.update({"reward_preset": sh.reward_preset, "world_model": sh.world_model, "lambda_u": sh.lambda_u,
                    "lambda_ent": sh.lambda_ent, "lambda_int": sh.lambda_int, "alpha": sh.alpha, "beta": sh.beta,
                    "entropy_window": tuple(sh.entropy_window)})
        return out

    def _reset_info(self) -> dict[str, Any]:
        info = super()._reset_info()
        # plain values: the shaping, plus the protocol name and the shift MIN_R this env computed
        info["shaping"] = {**self.shaping.as_dict(), "protocol": self.protocol["name"], "min_r": self.min_r}
        return info


def make_interactive_vec(num_envs: int = 1, **kwargs: Any) -> InteractiveRecEnv:
    """``vector_entry_point`` of ``InteractiveRec-*-v0``: the batched torch env."""
    kwargs.pop("max_episode_steps", None)
    return InteractiveRecEnv(num_envs=num_envs, **kwargs)


def make_interactive_single(**kwargs: Any) -> SingleEnvAdapter:
    """``entry_point`` of ``InteractiveRec-*-v0``: a numpy single env over a num_envs=1 `InteractiveRecEnv`."""
    kwargs.pop("num_envs", None)
    kwargs["autoreset_mode"] = AutoresetMode.DISABLED
    return SingleEnvAdapter(InteractiveRecEnv(num_envs=1, **kwargs))

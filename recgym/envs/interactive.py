"""`InteractiveRecEnv`: the training env of model-based offline RL (DORL / MOPO / MBPO / ROLeR / R3S).

Papers: DORL, "Alleviating Matthew Effect of Offline Reinforcement Learning in Interactive Recommendation"
(arXiv:2307.04571); ROLeR (arXiv:2407.13163); R3S, "Reward Balancing Revisited: Enhancing Offline
Reinforcement Learning for Recommender Systems" (arXiv:2506.22112).

Same users, actions, quit rule, modes and protocols as `GroundTruthRecEnv` (it is a `RecEnv`: the
dynamics are not duplicated), but the reward comes from a world model fitted on the *training logs* only,
with shaping. For the action ``a`` at step ``k`` (0-based, the k-th item of the episode) of user ``u``::

    raw = mean[u, a] - lambda_u * unc[u, a]
          + lambda_ent * w_loc(k) * E_loc + lambda_int * w_glob(k) * E_glob
    r   = max(0, raw - shift(k))

* ``mean``, ``unc``: the world model's predicted reward and uncertainty matrices (computed once, on the
  device; `recgym.worldmodels.fit_or_load` fits the model on first use and caches it).
* ``E_loc`` (DORL's entropy penalty, local): for each window ``w`` in ``entropy_window`` (default (1, 2)),
  the normalised entropy ``H(next item | the sorted last w items) / log2(#distinct next items)`` read from a
  table built from the training logs (each user's logs in time order; sets followed by a single distinct next
  item have entropy 1); the last ``w`` items include ``a`` itself. A set never seen in the logs, or an
  episode shorter than ``w``, counts 1. ``E_loc`` is the sum over windows (as in DORL's code), at most
  ``E_max = len(entropy_window)``.
* ``E_glob`` (R3S's interactive penalty, global): the same table and rule, but the ``w`` items are taken at
  ``w`` distinct positions drawn uniformly at random from the whole trajectory so far (positions ``0..k``,
  ``a`` included) instead of the contiguous last ``w``. Draws come from the env's counter-based per-env
  stream, so they are reproducible and batched == single.
* Decay (R3S): ``f(k) = alpha * exp(-beta * k)`` (alpha 0.5, beta 1.0). **Our combination** (the paper
  leaves it open): ``w_loc(k) = f(k)`` and ``w_glob(k) = 1 - f(k)``, a convex split that moves weight from
  the local term early in the episode to the global term as the episode grows; ``lambda_ent`` and
  ``lambda_int`` scale the two terms. ``alpha=1, beta=0`` gives ``w_loc = 1``, ``w_glob = 0``: DORL.
* ``shift`` (``shift=``):

  - ``"dorl"``: DORL's constant ``MIN_R = min(mean) - lambda_u * max(unc) + lambda_ent * min_k w_loc(k) *
    E_min + lambda_int * min_k w_glob(k) * E_min`` (DORL-codes ``simulated_env.py``; ``E_min`` = the sum over
    windows of the smallest table entropy), so ``raw - MIN_R >= 0`` and the clip at 0 (DORL's ``clip0``) is a
    safeguard. With DORL's weights (``alpha=1, beta=0, lambda_int=0``) this is exactly DORL's shift.
  - ``"cellwise"``: ``min(mean - lambda_u * unc) + ...`` (the minimum over cells of the penalised mean; the
    rule recgym used for every preset before DORL's was followed; kept for ``roler``).
  - ``"penalty"``: ``shift(k) = -lambda_u * U_log + (lambda_ent * w_loc(k) + lambda_int * w_glob(k)) * E_max``
    with ``U_log`` the mean uncertainty over the logged pairs (``env.u_ref``), i.e. ``r = mean - lambda_u * (unc
    - U_log) - lambda_ent * w_loc * (E_max - E_loc) - lambda_int * w_glob * (E_max - E_glob)``, clipped at 0:
    the entropy terms are penalties that are 0 in a maximally diverse trajectory and the uncertainty penalty
    counts the uncertainty beyond what the model has on the data it was fitted on (a logged pair pays nothing
    on average), so the training reward stays on the rating scale of the world model's mean. The A2C state tracker
    normalises the rewards it observes with the *evaluation* env's range, so this keeps its "last reward"
    feature on the same scale in training and at evaluation (with ``"dorl"`` the constant ``-MIN_R`` moves every
    training reward up by ``lambda_ent * E_min - min(mean) + lambda_u * max(unc)``). Default of ``r3s``.

Reward presets (``reward_preset=``; every weight can be overridden by its kwarg):

======== ============= ============================================= ======================================
preset   world model   weights                                       source
======== ============= ============================================= ======================================
r3s      diffusion     lambda_u 1 (below), lambda_ent,               R3S: alpha 0.5, beta 1.0 (paper);
                       lambda_int = lambda_ent, alpha 0.5, beta 1.0  lambda_u and shift: ours
                       shift "penalty"
dorl     deepfm        lambda_u (= lambda_var), lambda_ent,          per dataset, below
                       shift "dorl"
mopo     deepfm        lambda_u (MOPO's lambda_var), lambda_ent = 0  DORL's MOPO; per dataset, below
mbpo     deepfm        lambda_u = 0, lambda_ent = 0                  DORL's MBPO
roler    knn (train)   lambda_u, lambda_ent, shift "cellwise"        ROLeR: kNN-shaped reward + distance
======== ============= ============================================= ======================================

Per-dataset (lambda_var, lambda_ent), published: KuaiRec DORL (0.05, 5), MOPO lambda_var 0.05 and KuaiRand
(0.01, 0.05), MOPO 0.01 (DORL paper); Coat DORL (0.005, 1), MOPO 0.02 and Yahoo DORL (0.01, 1), MOPO 0.01 (the
run commands of ROLeR's public code; R3S says it adopts ROLeR's offline-RL set-up). Synthetic and ML-1M have
none and use Yahoo's. ``lambda_ent`` of r3s and roler is the dataset's DORL value (R3S: ``lambda_int =
lambda_ent``). ROLeR's distance uncertainty is in reward units (distance x reward std); we use lambda_u 0.1.
(Why datasets without a published value borrow Yahoo's instead of DORL's code default lambda_ent 5: see
"History of design measurements" in docs/RESULTS.md.)

R3S's lambda_u (the paper gives no value) is 1: its uncertainty is the standard deviation of the diffusion
world model's samples, in reward units, so ``mean - unc`` is a one-sigma lower bound (MOPO's penalty with an
error estimate in reward units). Calibrated on the unbiased test ratings (mean absolute error / mean
uncertainty, a model-selection use of the test split) the scale is 0.99 on Coat and 0.90 on Yahoo. ``lambda_u="gap"``
applies the **gap rule** (`gap_rule_lambda_u`) instead, computed from the fitted world model and the training
logs only: ``(mean over logged pairs of mean - mean over unlogged pairs of mean) / (mean over unlogged pairs of
unc - mean over logged pairs of unc)``, the scale at which the extra penalty an unlogged pair pays on average
equals the reward advantage the model gives the logged (self-selected) pairs; 0 when either gap is not
positive, at most `LAMBDA_U_MAX`. It is not the default: the diffusion model's uncertainty is nearly as large
on logged as on unlogged pairs, so the rule gives 2.3 on Coat and 10 (the cap) on Yahoo, where ``mean - lambda_u
unc`` ranks the unbiased test ratings clearly worse than the mean does (docs/RESULTS.md, "R3S"). ``lambda_u="dorl"`` takes the dataset's DORL
lambda_var (the weight of DORL's max-variance uncertainty; R3S's "without diffusion" ablation uses it with
``world_model="deepfm"``). ``env.shaping.lambda_u_rule`` says which applied.

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
    "gap_rule_lambda_u",
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
_R3S_LAMBDA_U = 1.0  # the uncertainty is a standard deviation in reward units: a one-sigma lower bound
_ROLER_LAMBDA_U = 0.1
LAMBDA_U_MAX = 10.0  # cap of the gap rule (a near-zero uncertainty gap would otherwise give any scale)

REWARD_PRESETS = ("r3s", "dorl", "mopo", "mbpo", "roler")
SHIFTS = ("dorl", "cellwise", "penalty")
LAMBDA_U_RULES = ("fixed", "gap", "dorl")


@dataclass(frozen=True)
class Shaping:
    """The effective reward shaping of one InteractiveRec env (see the module docstring for each weight).

    ``world_model`` is the world-model kind (or the class / ``kind`` of a fitted model passed in); ``source``
    says where the weights come from; ``shift`` is the reward shift and ``lambda_u_rule`` says whether
    ``lambda_u`` was given as a number (``"fixed"``) or by a rule (``"dorl"``: the dataset's DORL lambda_var;
    ``"gap"``: computed by the env from its fitted world model).
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
    shift: str = "dorl"
    lambda_u_rule: str = "fixed"

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for ``info["shaping"]`` and results JSON)."""
        return dataclasses.asdict(self)


def resolve_shaping(reward_preset: str, dataset_name: str, **overrides: Any) -> Shaping:
    """Effective shaping of a reward preset for a dataset, with explicit (non-None) overrides of its fields."""
    key = str(reward_preset).lower()
    if key not in REWARD_PRESETS:
        raise ValueError(f"unknown InteractiveRec reward_preset {reward_preset!r}; valid reward presets: "
                         f"{list(REWARD_PRESETS)}")
    fields = {f.name for f in dataclasses.fields(Shaping)} - {"reward_preset", "source", "lambda_u_rule"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown shaping field(s) {unknown}; valid fields: {sorted(fields)}")
    ds = dataset_key(dataset_name)
    table = _PUBLISHED.get(ds, _PUBLISHED[_DEFAULT_DATASET])
    source = _SOURCES[ds] if ds in _PUBLISHED else f"no published value; {_SOURCES[_DEFAULT_DATASET]} (Yahoo's)"
    lam_var, lam_ent = table["dorl"]
    base: dict[str, Any] = {"reward_preset": key, "entropy_window": (1, 2), "alpha": 1.0, "beta": 0.0,
                            "lambda_int": 0.0, "world_model": "deepfm", "source": source, "shift": "dorl",
                            "lambda_u_rule": "fixed"}
    if key == "r3s":
        base.update(world_model="diffusion", lambda_u=_R3S_LAMBDA_U, lambda_ent=lam_ent,
                    lambda_int=lam_ent, alpha=0.5, beta=1.0, shift="penalty",
                    source=f"R3S decay (paper); lambda_ent: {source}; lambda_u (one-sigma bound) and penalty shift: "
                           "ours")
    elif key == "dorl":
        base.update(lambda_u=lam_var, lambda_ent=lam_ent)
    elif key == "mopo":
        base.update(lambda_u=table["mopo"][0], lambda_ent=0.0)
    elif key == "mbpo":
        base.update(lambda_u=0.0, lambda_ent=0.0)
    elif key == "roler":
        base.update(world_model="knn", lambda_u=_ROLER_LAMBDA_U, lambda_ent=lam_ent, shift="cellwise",
                    source=f"ROLeR kNN shaping; lambda_ent: {source}, lambda_u ours")
    for k, v in overrides.items():
        if v is not None:
            base[k] = v
    if isinstance(base["lambda_u"], str):
        if base["lambda_u"] not in LAMBDA_U_RULES[1:]:
            raise ValueError(f"lambda_u must be a number >= 0 or one of {list(LAMBDA_U_RULES[1:])} (a rule: 'gap' "
                             f"from the fitted world model, 'dorl' the dataset's DORL lambda_var), got "
                             f"{base['lambda_u']!r}")
        base["lambda_u_rule"] = base["lambda_u"]
        base["lambda_u"] = lam_var if base["lambda_u"] == "dorl" else 0.0  # gap: a placeholder the env replaces
    else:
        base["lambda_u_rule"] = "fixed"
    if base["shift"] not in SHIFTS:
        raise ValueError(f"shift={base['shift']!r}; valid shifts: {list(SHIFTS)}")
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


def logged_unlogged_means(x: torch.Tensor, users: np.ndarray | torch.Tensor,
                          items: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """(mean of ``x`` over the logged pairs ``(users, items)``, mean over all other pairs); duplicates count once."""
    n_users, n_items = x.shape
    u = torch.as_tensor(np.array(users, dtype=np.int64), device=x.device)
    i = torch.as_tensor(np.array(items, dtype=np.int64), device=x.device)
    if u.numel() == 0:
        raise ValueError("logged / unlogged means need logged pairs; the training logs are empty")
    flat = torch.unique(u * n_items + i)
    n_log, n_all = flat.numel(), n_users * n_items
    if n_log >= n_all:
        raise ValueError("logged / unlogged means need unlogged pairs; every (user, item) pair is logged")
    v = x.reshape(-1).double()
    s_log = float(v[flat].sum())
    return s_log / n_log, (float(v.sum()) - s_log) / (n_all - n_log)


def gap_rule_lambda_u(mean: torch.Tensor, unc: torch.Tensor, users: np.ndarray | torch.Tensor,
                      items: np.ndarray | torch.Tensor) -> float:
    """R3S's lambda_u by the gap rule (see the module docstring) from the fitted ``mean`` / ``unc`` matrices and
    the logged pairs ``(users, items)`` (duplicates count once).

    ``(mean_logged - mean_unlogged) / (unc_unlogged - unc_logged)`` over pair averages, 0 when either gap is
    not positive, at most `LAMBDA_U_MAX`.
    """
    m_log, m_unl = logged_unlogged_means(mean, users, items)
    s_log, s_unl = logged_unlogged_means(unc, users, items)
    gap_r, gap_u = m_log - m_unl, s_unl - s_log
    if gap_r <= 0 or gap_u <= 0:
        return 0.0
    return float(min(gap_r / gap_u, LAMBDA_U_MAX))


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

    u_ref = 0.0  # the "penalty" shift's reference uncertainty (mean over the logged pairs)

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
        lambda_u: float | str | None = None,
        lambda_ent: float | None = None,
        lambda_int: float | None = None,
        alpha: float | None = None,
        beta: float | None = None,
        entropy_window: tuple[int, ...] | list[int] | None = None,
        shift: str | None = None,
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
            world_model=wm_kind, shift=shift,
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
                "beta": beta, "entropy_window": entropy_window, "shift": shift, "progress": progress,
                "device": device, **kwargs}
        mean, unc = mean.to(dev, torch.float32), unc.to(dev, torch.float32)
        logged = (ds.train["user"].to_numpy(np.int64), ds.train["item"].to_numpy(np.int64))
        if shaping.lambda_u_rule == "gap":
            shaping = dataclasses.replace(shaping, lambda_u=gap_rule_lambda_u(mean, unc, *logged))
        self.shaping = shaping
        self.table = EntropyTable.from_logs(ds, shaping.entropy_window, dev)
        base = mean - shaping.lambda_u * unc
        # bounds of the decayed terms over the episode's steps
        max_turn_guess = int(kwargs.get("max_turn") or 30)
        ks = torch.arange(max(max_turn_guess, 30), device=dev)
        w_loc, w_glob = decay_weights(ks, shaping.alpha, shaping.beta)
        e_min, e_max = self.table.min_sum(), float(len(shaping.entropy_window))
        self._e_max = e_max
        la, li = shaping.lambda_ent, shaping.lambda_int
        ent_lo = la * float(w_loc.min()) * e_min + li * float(w_glob.min()) * e_min
        ent_hi = la * float(w_loc.max()) * e_max + li * float(w_glob.max()) * e_max
        if shaping.shift == "dorl":  # DORL-codes simulated_env.py: MIN_R / MAX_R
            self.min_r = float(mean.min()) - shaping.lambda_u * float(unc.max()) + ent_lo
            max_r = float(mean.max()) - shaping.lambda_u * float(unc.min()) + ent_hi - self.min_r
        elif shaping.shift == "cellwise":
            self.min_r = float(base.min()) + ent_lo
            max_r = float(base.max()) + ent_hi - self.min_r
        else:  # penalty: the uncertainty from its logged-pair average, the entropies from E_max (per step)
            self.u_ref = logged_unlogged_means(unc, *logged)[0]
            self.min_r = -shaping.lambda_u * self.u_ref
            max_r = max(float(base.max()) - self.min_r, 0.0)
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
        if sh.shift == "penalty":
            return (r - self.min_r - (sh.lambda_ent * w_loc + sh.lambda_int * w_glob) * self._e_max).clamp_min(0.0)
        return (r - self.min_r).clamp_min(0.0)

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def effective_kwargs(self) -> dict[str, Any]:
        out = super().effective_kwargs()
        sh = self.shaping
        out.update({"reward_preset": sh.reward_preset, "world_model": sh.world_model, "lambda_u": sh.lambda_u,
                    "lambda_ent": sh.lambda_ent, "lambda_int": sh.lambda_int, "alpha": sh.alpha, "beta": sh.beta,
                    "entropy_window": tuple(sh.entropy_window), "shift": sh.shift})
        return out

    def _reset_info(self) -> dict[str, Any]:
        info = super()._reset_info()
        # plain values: the shaping, plus the protocol name and the constant part of the shift (MIN_R)
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

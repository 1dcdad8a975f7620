"""Model-quality measurements that are not (env, agent, seed) runs: world models, the Yahoo completion, DiffRec.

Plain functions returning table rows, called by ``recgym worldmodel quality`` / ``recgym pretrain diffrec`` and,
through `recgym.benchmarks.probes`, by the ``worldmodels`` and ``refit`` suites.

- `worldmodel_quality`: fit each world model on each dataset and score it on the unbiased test data
  (`recgym.worldmodels.report.quality`), with the fit time; fresh fits unless ``cache`` (then `fit_or_load`).
  On Synthetic the diffusion model's row adds its uncertainty on logged, unlogged and rarely-logged-item
  unlogged pairs and its rank correlation with the true absolute error (R3S's claim: uncertainty grows away
  from the logged data). ``greedy`` adds the ground-truth return of serving each evaluation user the top 30
  items of the model's mean (and of ``mean - uncertainty``) without repeats, and reference rows (optimum,
  popularity ranking, random): what a policy exploiting the world model perfectly would reach (NX_0, nobody
  quits).
- `shaping_scale`: the InteractiveRec reward of each reward preset next to the ground-truth reward, under one
  uniformly random no-repeat policy: mean rewards, the A2C state tracker's "last reward" feature (rewards
  min-max normalised with the evaluation env's range, as the tracker does) in training and at evaluation, the
  shift ``min_r`` and the resolved lambda_u, and the mean / std of the local and global entropy terms.
- `yahoo_completion`: held-out error of the completed Yahoo! R3 ground truth and of simpler fillers.
- `diffrec_table`: DiffRec pre-trained (or loaded from the cache) next to EASE and MostPop, DiffRec protocol.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def synthetic_uncertainty(model: Any, dataset: Any) -> dict[str, float]:
    """Mean uncertainty on logged / unlogged / rare-item unlogged pairs, and its correlation with |error|."""
    import torch
    from scipy import stats

    mean, unc = model.predict()
    logged = torch.as_tensor(dataset.train_matrix(binary=True)).bool().to(unc.device)
    pop = logged.sum(0)
    rare = pop <= torch.quantile(pop.float(), 0.1)
    gt = torch.as_tensor(dataset.ground_truth).to(unc.device)
    err = (mean - gt).abs()
    return {
        "unc_logged": float(unc[logged].mean()),
        "unc_unlogged": float(unc[~logged].mean()),
        "unc_unlogged_rare_items": float(unc[:, rare][~logged[:, rare]].mean()),
        "unc_abs_err_spearman_all_pairs": float(stats.spearmanr(unc.flatten().cpu(), err.flatten().cpu())[0]),
        "abs_err_logged": float(err[logged].mean()),
        "abs_err_unlogged": float(err[~logged].mean()),
    }


def greedy_returns(model: Any, dataset: Any, k: int = 30) -> dict[str, float]:
    """Ground-truth return of the top-``k`` items by the model's mean (and mean - uncertainty), per user."""
    import numpy as np

    gt = np.asarray(dataset.ground_truth, dtype=np.float64)
    mean, unc = (x.detach().cpu().numpy()[: gt.shape[0]] for x in model.predict())

    def ret(score: Any) -> float:
        idx = np.argsort(-score, axis=1, kind="stable")[:, :k]
        return float(np.take_along_axis(gt, idx, 1).sum(1).mean())

    return {"greedy_mean": ret(mean), "greedy_mean_minus_unc": ret(mean - unc)}


def reference_returns(dataset: Any, k: int = 30) -> dict[str, float]:
    """Optimal, popularity (most-logged items, same list for everyone) and random returns, NX_0 with no quitting."""
    import numpy as np

    from recgym.data.synthetic import optimal_return, random_return

    gt = np.asarray(dataset.ground_truth, dtype=np.float64)
    counts = np.bincount(dataset.train["item"].to_numpy(), minlength=dataset.n_items)
    top = np.argsort(-counts, kind="stable")[:k]
    return {"optimal": optimal_return(gt, k).mean, "popularity": float(gt[:, top].sum(1).mean()),
            "random": random_return(gt, k).mean}


def parse_sets(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``KIND.FIELD=VALUE`` strings as ``{kind: {field: value}}`` (values parsed as Python literals if they parse)."""
    import ast

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        kind, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--set expects KIND.FIELD=VALUE (e.g. diffusion.unobserved_weight=0), got {item!r}")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out.setdefault(kind, {})[name] = value
    return out


def worldmodel_quality(data: Sequence[str] = ("coat", "yahoo", "synthetic"),
                       kinds: Sequence[str] = ("mf", "knn", "diffusion", "deepfm"), device: str = "cpu",
                       seed: int = 0, cache: bool = False, greedy: bool = False,
                       overrides: dict[str, dict[str, Any]] | None = None, progress: bool = False,
                       log: Any = None) -> list[dict[str, Any]]:
    """One quality row per (dataset, world-model kind); see the module docstring. ``overrides`` maps a kind
    to config fields replacing its per-dataset defaults; ``log`` (e.g. ``print``) reports each row as it comes."""
    from recgym.data import load_dataset
    from recgym.worldmodels import default_config, fit_or_load, world_model_class
    from recgym.worldmodels.report import quality

    overrides = overrides or {}
    rows: list[dict[str, Any]] = []
    for name in data:
        ds = load_dataset(name)
        for kind in kinds:
            cfg = default_config(kind, ds.name)
            if kind in overrides:
                cfg = {**(cfg or {}), **overrides[kind]}
            t0 = time.perf_counter()
            if cache:
                model = fit_or_load(kind, ds, cfg, device=device, seed=seed)
            else:
                model = world_model_class(kind)(cfg, device=device, seed=seed).fit(ds, progress=progress)
            row: dict[str, Any] = {"data": name, "kind": kind, **quality(model, ds),
                                   "fit_s": time.perf_counter() - t0, "config": str(cfg or "default")}
            if greedy:
                row.update(greedy_returns(model, ds))
            if ds.name.lower() == "synthetic" and kind == "diffusion":
                row.update(synthetic_uncertainty(model, ds))
            rows.append(row)
            if log is not None:
                log(f"[{name}] {kind}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                                      if isinstance(v, float)))
            del model
        if greedy:  # what the greedy columns compare with
            rows += [{"data": name, "kind": f"({ref})", "greedy_mean": v} for ref, v in reference_returns(ds).items()]
    return rows


def _random_rollout(env: Any, seed: int, entropies: bool) -> tuple[Any, list[Any], list[Any]]:
    """Rewards ``[steps, B]`` (NaN after an env ended) of a uniformly random no-repeat policy, and the per-step
    local / global entropy terms of an InteractiveRec env (empty lists otherwise)."""
    import torch

    from recgym.agents.common import action_mask

    inner = env.unwrapped
    gen = torch.Generator().manual_seed(seed)
    _, info = env.reset(seed=seed)
    n, b = int(env.single_action_space.n), int(env.num_envs)
    alive = torch.ones(b, dtype=torch.bool)
    rewards, e_loc, e_glob = [], [], []
    for k in range(int(inner.max_turn)):
        mask = action_mask(info, b, n, torch.device("cpu")).cpu()
        scores = torch.where(mask, torch.rand((b, n), generator=gen), torch.full((b, n), -1.0))
        _, r, term, trunc, info = env.step(scores.argmax(1).to(inner.device))
        rewards.append(torch.where(alive, torch.as_tensor(r).float().cpu(), torch.tensor(float("nan"))))
        if entropies:
            kk = torch.full((b,), k, dtype=torch.long, device=inner.device)
            e_loc.append(torch.where(alive, inner.local_entropy(inner.traj, kk).cpu(), torch.tensor(float("nan"))))
            e_glob.append(torch.where(alive, inner.global_entropy(inner.traj, kk).cpu(), torch.tensor(float("nan"))))
        alive &= ~(torch.as_tensor(term).cpu() | torch.as_tensor(trunc).cpu())
        if not bool(alive.any()):
            break
    return torch.stack(rewards), e_loc, e_glob


def shaping_scale(data: Sequence[str] = ("coat",), presets: Sequence[str] = ("r3s", "dorl", "mopo", "mbpo", "roler"),
                  episodes: int = 200, protocol: str = "roler", seed: int = 0,
                  env_kwargs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per (dataset, reward preset): see the module docstring. ``env_kwargs`` go to both envs (e.g.
    ``dataset_kwargs``) and ``world_model_config`` to the InteractiveRec ones."""
    import gymnasium as gym
    import torch

    import recgym  # noqa: F401  (registers the env ids)
    from recgym.agents.common import rec_env_spec
    from recgym.data.registry import dataset_info

    env_kwargs = dict(env_kwargs or {})
    wm_config = env_kwargs.pop("world_model_config", None)
    rows: list[dict[str, Any]] = []

    def stat(xs: list[Any]) -> tuple[float, float]:
        v = torch.stack(xs)
        v = v[~torch.isnan(v)]
        return float(v.mean()), float(v.std())

    for name in data:
        tag = dataset_info(name).env_tag
        ev = gym.make_vec(f"GroundTruthRec-{tag}-v0", num_envs=episodes, protocol=protocol, **env_kwargs)
        lo, hi = rec_env_spec(ev, "shaping_scale").reward_range
        r_ev = _random_rollout(ev, seed, False)[0]
        scale = (lo, hi - lo)
        for preset in presets:
            tr = gym.make_vec(f"InteractiveRec-{tag}-v0", num_envs=episodes, protocol=protocol, reward_preset=preset,
                              progress=False, world_model_config=wm_config, **env_kwargs)
            r_tr, e_loc, e_glob = _random_rollout(tr, seed, True)
            sh = tr.unwrapped.shaping
            (el_m, el_s), (eg_m, eg_s) = stat(e_loc), stat(e_glob)
            rows.append({"data": name, "preset": preset, "world_model": sh.world_model, "shift": sh.shift,
                         "lambda_u": sh.lambda_u, "lambda_ent": sh.lambda_ent, "lambda_int": sh.lambda_int,
                         "min_r": tr.unwrapped.min_r, "train_reward": float(torch.nanmean(r_tr)),
                         "eval_reward": float(torch.nanmean(r_ev)),
                         "train_feature": float(torch.nanmean((r_tr - scale[0]) / scale[1])),
                         "eval_feature": float(torch.nanmean((r_ev - scale[0]) / scale[1])), "E_loc_mean": el_m, "E_loc_std": el_s, "E_glob_mean": eg_m,
                         "E_glob_std": eg_s, "E_min": tr.unwrapped.table.min_sum(),
                         "E_max": float(len(sh.entropy_window))})
    return rows


def yahoo_completion(seeds: Sequence[int] = (0, 1), data_dir: str | None = None) -> list[dict[str, Any]]:
    """Held-out RMSE / MAE of the Yahoo! R3 ground-truth completion and its baselines, one row per (filler, seed)
    (`recgym.data.yahoo.ground_truth_heldout_error`)."""
    from recgym.data.yahoo import ground_truth_heldout_error

    rows = []
    for seed in seeds:
        res = ground_truth_heldout_error(data_dir, seed=int(seed))
        for key in sorted(k[5:] for k in res if k.startswith("rmse_")):
            rows.append({"filler": key, "seed": int(seed), "rmse": res[f"rmse_{key}"], "mae": res[f"mae_{key}"],
                         "n_heldout": res["n_heldout"]})
    return rows


def diffrec_table(data: str = "ml1m", device: str = "cpu", config: dict[str, Any] | None = None,
                  force: bool = False, baselines: bool = True, data_dir: str | None = None,
                  progress: bool = True) -> list[dict[str, Any]]:
    """DiffRec (pre-trained, cached) and, with ``baselines``, EASE (lambda tuned on valid) and MostPop: one row
    per model with valid / test Recall and NDCG @10 / @20 and the training seconds (DiffRec: also the seconds
    spent evaluating for model selection, ``eval_s``, and the whole pre-training, ``wall_s``)."""
    from recgym import recommenders as dr
    from recgym.data import load_dataset

    ds = load_dataset(data, data_dir=data_dir)
    cfg = dr.DiffRecConfig.from_dict({**dr.default_config(ds.name).to_dict(), **(config or {})})
    _, metrics = dr.pretrain(data, cfg, device, progress=progress, data_dir=data_dir, force=force)
    models: dict[str, dict[str, Any]] = {"DiffRec": metrics}
    if baselines:
        models.update(dr.baselines(dr.make_splits(ds, cfg.valid_fraction, cfg.split_seed), device=device))
    rows = []
    for model, m in models.items():
        row: dict[str, Any] = {"model": model}
        for split in ("valid", "test"):
            for k in ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20"):
                row[f"{split} {k}"] = float(m[split][k])
        row["train_s"] = m.get("train_seconds")
        if model == "DiffRec":
            row["eval_s"] = m.get("eval_seconds")
            row["wall_s"] = m.get("wall_seconds")
        row["cached"] = bool(m.get("cached", False))
        if "lambda" in m:
            row["lambda"] = m["lambda"]
        if model == "DiffRec":
            row.update({k: m.get(k) for k in ("best_epoch", "epochs_run", "seconds_per_epoch", "checkpoint")})
        rows.append(row)
    return rows

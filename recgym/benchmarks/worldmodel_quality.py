"""World-model quality benchmark: fit each world model on Coat, Yahoo and Synthetic; print quality and fit times.

``python -m recgym.benchmarks.worldmodel_quality [--data coat,yahoo,synthetic] [--kinds deepfm,diffusion,mf,knn]``

Quality is measured on each dataset's unbiased test data (`recgym.worldmodels.report.quality`). Models are fitted
fresh (not read from the cache) so the fit times are real; ``--cache`` uses `fit_or_load` instead. Yahoo
(15,400 users x 1,000 items, 311k logged ratings) uses lighter settings so it stays feasible on 2 CPU cores
(`recgym.worldmodels.DATASET_DEFAULTS`); the table says which config ran. On Synthetic the script also prints the diffusion world
model's uncertainty on logged pairs, unlogged pairs and unlogged pairs of rarely-logged items (R3S's claim:
uncertainty grows away from the logged data) and its correlation with the true absolute error over all pairs.

``--greedy`` adds, per model, the ground-truth R_cumu of serving each evaluation user the top 30 items of the
model's mean (and of ``mean - 1 * uncertainty``) without repeats, next to the popularity ranking and the
optimum: what a policy that exploits the world model perfectly would reach (NX_0, nobody quits). ``--set
diffusion.unobserved_weight=0`` overrides one config field of one kind (repeatable).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch


def synthetic_uncertainty(model: Any, dataset: Any) -> dict[str, float]:
    """Mean uncertainty on logged / unlogged / rare-item unlogged pairs, and its correlation with |error|."""
    from scipy import stats

    _, unc = model.predict()
    mean = model.predict()[0]
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


def _parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    import ast

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        kind, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise ValueError(f"--set expects KIND.FIELD=VALUE (e.g. diffusion.unobserved_weight=0), got {item!r}")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out.setdefault(kind, {})[field] = value
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from recgym.data import load_dataset
    from recgym.worldmodels import default_config, fit_or_load, world_model_class
    from recgym.worldmodels.report import format_table, quality

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="coat,yahoo,synthetic")
    ap.add_argument("--kinds", default="mf,knn,diffusion,deepfm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", action="store_true", help="use fit_or_load (cached) instead of fresh fits")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--greedy", action="store_true", help="also print the greedy top-30 ground-truth returns")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KIND.FIELD=VALUE")
    args = ap.parse_args(argv)
    sets = _parse_sets(args.sets)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    for data in [d.strip() for d in args.data.split(",") if d.strip()]:
        t0 = time.perf_counter()
        ds = load_dataset(data)
        print(f"[{data}] loaded in {time.perf_counter() - t0:.1f}s: {ds.summary()}", flush=True)
        if args.greedy:
            refs = {k: round(v, 2) for k, v in reference_returns(ds).items()}
            extra[f"{data}_reference_returns"] = refs
            print(f"[{data}] reference returns (top 30, NX_0, no quitting): {refs}", flush=True)
        for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
            cfg = default_config(kind, ds.name)
            if kind in sets:
                cfg = {**(cfg or {}), **sets[kind]}
            t0 = time.perf_counter()
            if args.cache:
                model = fit_or_load(kind, ds, cfg, device=args.device, seed=args.seed)
            else:
                model = world_model_class(kind)(cfg, device=args.device, seed=args.seed).fit(ds, progress=True)
            secs = time.perf_counter() - t0
            q = quality(model, ds)
            q.update(data=data, kind=kind, fit_s=secs, config=cfg or "default")
            if args.greedy:
                q.update({k: round(v, 2) for k, v in greedy_returns(model, ds).items()})
                print(f"[{data}] {kind} greedy: greedy_mean {q['greedy_mean']}, "
                      f"greedy_mean_minus_unc {q['greedy_mean_minus_unc']}", flush=True)
            rows.append(q)
            print(format_table([q]).splitlines()[-1], f" config={cfg or 'default'}", flush=True)
            if data == "synthetic" and kind == "diffusion":
                extra["synthetic_diffusion_uncertainty"] = synthetic_uncertainty(model, ds)
                print("synthetic diffusion uncertainty:", json.dumps(extra["synthetic_diffusion_uncertainty"]))
            del model
    print()
    print(format_table(rows))
    for k, v in extra.items():
        print(k, json.dumps(v, indent=1))
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({"rows": rows, **extra}, indent=1, default=str))
    return rows


if __name__ == "__main__":
    main()

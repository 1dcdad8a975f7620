"""World-model quality benchmark: fit each world model on Coat, Yahoo and Synthetic; print quality and fit times.

``python -m recgym.benchmarks.worldmodel_quality [--data coat,yahoo,synthetic] [--kinds deepfm,diffusion,mf,knn]``

Quality is measured on each dataset's unbiased test data (`recgym.worldmodels.report.quality`). Models are fitted
fresh (not read from the cache) so the fit times are real; ``--cache`` uses `fit_or_load` instead. Yahoo
(15,400 users x 1,000 items, 311k logged ratings) uses lighter settings so it stays feasible on 2 CPU cores
(`recgym.worldmodels.DATASET_DEFAULTS`); the table says which config ran. On Synthetic the script also prints the diffusion world
model's uncertainty on logged pairs, unlogged pairs and unlogged pairs of rarely-logged items (R3S's claim:
uncertainty grows away from the logged data) and its correlation with the true absolute error over all pairs.
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
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    for data in [d.strip() for d in args.data.split(",") if d.strip()]:
        t0 = time.perf_counter()
        ds = load_dataset(data)
        print(f"[{data}] loaded in {time.perf_counter() - t0:.1f}s: {ds.summary()}", flush=True)
        for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
            cfg = default_config(kind, ds.name)
            t0 = time.perf_counter()
            if args.cache:
                model = fit_or_load(kind, ds, cfg, device=args.device, seed=args.seed)
            else:
                model = world_model_class(kind)(cfg, device=args.device, seed=args.seed).fit(ds, progress=True)
            secs = time.perf_counter() - t0
            q = quality(model, ds)
            q.update(data=data, kind=kind, fit_s=secs, config=cfg or "default")
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

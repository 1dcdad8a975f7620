"""First use of a DiffusionDenoise env: cold ``gym.make`` time and DiffRec pre-training time and quality.

`pretrain_cost` runs, for each device and model-selection rule, ``gym.make("DiffusionDenoise-<Data>-v0")`` in a
fresh child process on an empty cache (so the call loads the data and pre-trains DiffRec, as it does on a new
machine) and reports the seconds of the ``gym.make`` call (wall and CPU: with one thread the CPU seconds are
close to the wall time the call would take on an idle machine), the pre-training wall time split into training
and evaluation (model selection), the epochs, and the chosen model's test Recall@20 / NDCG@20, with the
1-minute load average before and after the run (other processes on the machine slow it down).

On ML-1M clean each row also carries the reference of the original DiffRec code (github.com/YiyanXu/DiffRec,
``main.py`` with its published ``ml-1m_clean`` configuration) measured on a machine of the same kind
(2 CPU cores): `ORIGINAL_DIFFREC_ML1M`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The original DiffRec code on ML-1M clean, same machine kind: wall time including its validation / test
#: evaluations every 5 epochs, and its selected model's test metrics.
ORIGINAL_DIFFREC_ML1M = {"wall_s": 350.0, "test Recall@20": 0.1697, "test NDCG@20": 0.1094}

_CHILD = """
import json, sys, time
import torch
threads, env_id, device, config, progress, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], \\
    json.loads(sys.argv[4]), sys.argv[5] == "1", sys.argv[6]
if threads > 0:
    torch.set_num_threads(threads)
import gymnasium as gym
import recgym  # noqa: F401  (registers the env ids)
t0, c0 = time.perf_counter(), time.process_time()
env = gym.make(env_id, device=device, config=config or None, progress=progress)
make_s, make_cpu_s = time.perf_counter() - t0, time.process_time() - c0
model = env.unwrapped.batched.model
meta = dict(model.meta)
json.dump({"gym_make_s": make_s, "gym_make_cpu_s": make_cpu_s, "threads": torch.get_num_threads(), "eval_every": model.config.eval_every,
           "meta": meta}, open(out, "w"), default=str)
"""


def _devices(devices: str) -> list[str]:
    import torch

    if devices == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [d.strip() for d in devices.split(",") if d.strip()]


def _env_id(data: str) -> str:
    from recgym.data.registry import find_dataset

    info = find_dataset(data)
    return f"DiffusionDenoise-{info.env_tag}-v0"


def cold_make(data: str = "ml1m", device: str = "cpu", selection: str | None = None, threads: int = 0,
              data_dir: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
              progress: bool = True, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """One cold ``gym.make`` of ``data``'s DiffusionDenoise env in a child process (see the module docstring).

    ``config`` overrides fields of the dataset's default DiffRec config and ``selection`` its rule (None: as
    configured); ``cache_dir`` must be empty or absent (default: a new temporary folder, removed
    afterwards); ``threads`` 0 keeps torch's default (all cores).
    """
    env_id = _env_id(data)
    config = dict(config or {}) | ({} if selection is None else {"selection": selection})
    with tempfile.TemporaryDirectory(prefix="recgym-perf-") as tmp:
        cache = Path(cache_dir) if cache_dir is not None else Path(tmp) / "cache"
        if cache.exists() and any(cache.iterdir()):
            raise ValueError(f"cache_dir={str(cache)!r} is not empty: a cold gym.make needs an empty cache")
        out = Path(tmp) / "result.json"
        env = {**os.environ, "RECGYM_CACHE_DIR": str(cache)}
        if data_dir is not None:
            env["RECGYM_DATA_DIR"] = str(data_dir)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", _CHILD, str(threads), env_id, device, json.dumps(config),
                        "1" if progress else "0", str(out)], env=env, check=True)
        process_s = time.perf_counter() - t0
        load1 = os.getloadavg()[0]
        res = json.loads(out.read_text())
    meta = res["meta"]
    test = meta["metrics"]["test"]
    return {
        "run": f"recgym {(meta.get('selection') or {}).get('rule')}, eval every {res['eval_every']}",
        "device": device, "threads": res["threads"] if device == "cpu" else None,
        "gym_make_s": res["gym_make_s"], "gym_make_cpu_s": res["gym_make_cpu_s"], "process_s": process_s,
        "pretrain_s": meta.get("wall_seconds"), "train_s": meta.get("train_seconds"),
        "eval_s": meta.get("eval_seconds"), "epochs": meta.get("epochs_run"), "best_epoch": meta.get("best_epoch"),
        "test R@20": test["Recall@20"], "test N@20": test["NDCG@20"], "load": f"{load0:.1f} -> {load1:.1f}",
    }


def pretrain_cost(data: str = "ml1m", devices: str = "auto", selections: Sequence[str | None] = (None,),
                  threads: int = 0, data_dir: str | None = None, progress: bool = True,
                  config: dict[str, Any] | None = None, cache_dir: str | None = None) -> list[dict[str, Any]]:
    """`cold_make` for every device (``auto``: cpu, and cuda when present) and selection rule (None: the
    default one), each with the DiffRec ``config`` overrides; on ML-1M clean a last row gives the original
    DiffRec code's reference."""
    rows = [cold_make(data, d, s, threads, data_dir, cache_dir, progress=progress, config=config)
            for d in _devices(devices) for s in selections]
    if _env_id(data) == "DiffusionDenoise-ML1M-v0":
        ref = ORIGINAL_DIFFREC_ML1M
        rows.append({"run": "original DiffRec code (reference)", "device": "cpu", "threads": 2,
                     "pretrain_s": ref["wall_s"], "test R@20": ref["test Recall@20"],
                     "test N@20": ref["test NDCG@20"]})
    return rows

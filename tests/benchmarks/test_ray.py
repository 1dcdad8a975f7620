"""`--backend ray`: a tiny grid on a local Ray (skipped when Ray is not installed: it is the optional `ray` extra)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tests.benchmarks._agents  # noqa: F401
from recgym.benchmarks.runner import run_grid, suite_from_flags

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'recgym[ray]'); not installed here")

ENV = "GroundTruthRec-Synthetic-v0"


@pytest.fixture()
def local_ray():
    from recgym.benchmarks.ray_backend import local_runtime_env

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, runtime_env=local_runtime_env())
    try:
        yield
    finally:
        ray.shutdown()


def test_tiny_grid_on_local_ray(tmp_path: Path, local_ray: None) -> None:
    from recgym.benchmarks.ray_backend import run_grid_ray

    s = suite_from_flags([ENV], ["tiny_random", "tiny_crash"], [0, 1], 16, eval_episodes=8, num_envs=8,
                         env_kwargs={"dataset_kwargs": {"n_users": 60, "n_items": 80, "seed": 3}}, name="ray",
                         imports=["tests.benchmarks._agents"])
    specs = s.runs()
    res = run_grid_ray(specs, tmp_path, progress=False, tensorboard=False)
    assert [r.status for r in res] == ["done", "done", "failed", "failed"]
    assert ray.is_initialized()  # the backend leaves a Ray it did not start running
    for seed in (0, 1):
        run = tmp_path / "ray" / ENV / "tiny_random" / f"seed{seed}"
        assert (run / "DONE").is_file() and (run / "checkpoint").is_file()
        spec = json.loads((run / "config.json").read_text())["spec"]
        assert spec["seed"] == seed
    assert "deliberate failure" in (tmp_path / "ray" / ENV / "tiny_crash" / "seed0" / "error.txt").read_text()
    # same numbers as the local backend (the runs are deterministic), and a rerun skips everything
    local = run_grid(specs[:1], tmp_path / "local", progress=False, tensorboard=False)[0]
    assert res[0].final == pytest.approx(local.final)
    again = run_grid_ray(specs, tmp_path, progress=False)
    assert [r.status for r in again] == ["skipped", "skipped", "failed", "failed"]

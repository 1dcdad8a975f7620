"""One benchmark run: build the envs and the agent, train, evaluate, and write the run folder.

Each run writes, under ``<root>/<suite>/<env>/<agent>/seed<k>/``:

- ``config.json``   the resolved run spec (env ids and kwargs incl. protocol, agent config, seed, budget and its
  unit, versions);
- ``metrics.jsonl`` one JSON object per line ``{"tag", "value", "step", "time"}`` (append + flush + fsync per
  line; `read_metrics` ignores a torn last line): the agent's own scalars and ``eval/<metric>`` per evaluation;
- ``tb/``           TensorBoard events of the same scalars;
- ``checkpoint``    the agent's final `save` (written to a temp name, then `os.replace`);
- ``result.json``   final and curve-average evaluation metrics, wall time, budget and budget unit;
- ``DONE``          written last, atomically. A run with ``DONE`` is skipped when the grid is run again.

A run that raises writes ``error.txt`` (the traceback) and the grid goes on; it is run again on the next call.
A ``.lock`` file (pid + host, created with O_EXCL) keeps two processes from writing the same folder; a lock
left by a dead process on this host is taken over.

Envs: the suite's env is the evaluation env. An agent registered with a training-env spec (a world-model
method: `recgym.agents.base.AgentSpec.train_env`) trains in `recgym.envs.derive.training_env` of it; any
other agent trains in the suite's env itself. (An env entry with ``eval_id`` names both envs explicitly.)
Training is one call, ``agent.learn(train_env, train_budget, logger, eval_env=eval_env)``; agents evaluate
themselves every ``eval_every`` budget units and keep the curve in ``agent.history``. An agent without a
history is evaluated once at the end with `recgym.agents.common.evaluate_agent`. Curve average = mean over
the history's evaluations; final = the last one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recgym.benchmarks.grid import RunSpec
from recgym.benchmarks.probes import PROBE_FILE, call_probe
from recgym.benchmarks.suite import Suite, import_plugins
from recgym.data.cache import atomic_write_bytes

RUNS_DIR = Path("runs")
# Evaluation metrics the report knows about, in display order.
EVAL_METRICS: tuple[str, ...] = ("R_cumu", "R_avg", "Length", "CV", "CV_turn", "MCD")
# Run-level settings the runner gives every agent whose config class declares the field.
RUN_FIELDS: tuple[str, ...] = ("seed", "eval_every", "eval_episodes", "progress")


def write_text(path: Path, text: str) -> None:
    """``text`` to ``path`` atomically (`recgym.data.cache.atomic_write`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------------------- metrics files


def read_metrics(path: Path | str) -> list[dict[str, Any]]:
    """Parse a metrics JSON-lines file; a torn last line (no newline, unparsable) is ignored.

    A corrupt line anywhere else raises ValueError naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else a line whose write was cut short
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}:{i + 1}: corrupt metrics line ({exc})") from exc
        out.append(rec)
    if tail.strip():
        try:
            rec = json.loads(tail)
        except (json.JSONDecodeError, UnicodeDecodeError):
            rec = None
        if isinstance(rec, dict) and {"tag", "value", "step"} <= set(rec):
            out.append(rec)  # complete record, only its newline was lost
    return out


class RunLogger:
    """`log_scalar(tag, value, step)` to both TensorBoard (``tb/``) and ``metrics.jsonl`` (fsync per line)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._tb = None
        self.on_step: Callable[[int], None] | None = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def log_scalar(self, tag: str, value: float, step: int) -> None:
        """Record one scalar (NaN/inf are written as null in JSON)."""
        v = float(value)
        rec = {"tag": str(tag), "value": v if math.isfinite(v) else None, "step": int(step), "time": time.time()}
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self._tb is not None:
            self._tb.add_scalar(str(tag), v, int(step))
        if self.on_step is not None:
            self.on_step(int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
        if not self._fh.closed:
            self._fh.close()


# --------------------------------------------------------------------------------------------------- locks


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(run_dir: Path) -> Path | None:
    """Create ``run_dir/.lock`` exclusively; None if a live process holds it (a dead local holder's is taken)."""
    lock = run_dir / ".lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"]):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            if not holder:  # half-written lock (creator died between open and write): stale after 60 s
                try:
                    if time.time() - lock.stat().st_mtime > 60:
                        lock.unlink(missing_ok=True)
                        continue
                except FileNotFoundError:
                    continue
            return None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
            f.flush()
            os.fsync(f.fileno())
        return lock
    return None


# ------------------------------------------------------------------------------------------ building a run


@dataclass
class RunResult:
    spec: RunSpec
    status: str  # "done", "skipped" (already DONE), "failed", "locked", "conflict" (DONE with another config)
    run_dir: Path
    wall_s: float = 0.0
    error: str | None = None
    final: dict[str, float] = field(default_factory=dict)


_RUN_FILES = ("metrics.jsonl", "result.json", "error.txt", "config.json", "checkpoint")


def _clear_attempt(run_dir: Path) -> None:
    """Remove what an unfinished earlier attempt left, so the rerun starts clean."""
    import shutil

    for name in _RUN_FILES:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tb", ignore_errors=True)
    for p in [*run_dir.glob(".*.tmp"), *run_dir.glob(".checkpoint*")]:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_env(env_id: str, num_envs: int, device: str, kwargs: dict[str, Any]) -> Any:
    """The batched env: ``gymnasium.make_vec(env_id, num_envs=N, device=..., **kwargs)``."""
    import gymnasium as gym

    import recgym  # noqa: F401  (registers the env ids)

    return gym.make_vec(env_id, num_envs=num_envs, device=device, **kwargs)


def run_fields(spec: RunSpec) -> dict[str, Any]:
    """The run-level config values (`RUN_FIELDS`) of ``spec``."""
    return {"seed": spec.seed, "eval_every": spec.eval_every, "eval_episodes": spec.eval_episodes, "progress": False}


def agent_config(spec: RunSpec, agent: Any) -> dict[str, Any]:
    """The config overrides of a run: the suite's config, plus each `RUN_FIELDS` value the agent's config
    class declares (a value the suite sets itself wins). ``agent`` is its `recgym.agents.base.AgentSpec`."""
    declared = {f.name for f in dataclasses.fields(agent.config_cls)}
    return {**{k: v for k, v in run_fields(spec).items() if k in declared}, **spec.agent_config}


def build_agent(spec: RunSpec, env: Any) -> Any:
    """``make_agent(spec.agent, env, **agent_config(spec, ...))``: the suite's config plus the run's seed,
    eval_every, eval_episodes and progress=False for the fields the agent's config class declares."""
    from recgym.agents.base import agent_spec, make_agent

    return make_agent(spec.agent, env, **agent_config(spec, agent_spec(spec.agent)))


def build_envs(spec: RunSpec, train_env_spec: Any) -> tuple[Any, Any]:
    """``(train_env, eval_env)`` of a run (see the module docstring); the same object when the agent trains in
    the suite's env."""
    from recgym.envs.derive import training_env

    if spec.eval_env_id is not None:
        train = make_env(spec.env_id, spec.num_envs, spec.device, spec.make_kwargs(False))
        return train, make_env(spec.eval_env_id, spec.num_envs, spec.device, spec.make_kwargs(True))
    evaluation = make_env(spec.env_id, spec.num_envs, spec.device, spec.make_kwargs(False))
    return training_env(evaluation, train_env_spec, spec.num_envs), evaluation


def flatten_metrics(result: Any) -> dict[str, float]:
    """The top-level numbers of an evaluation record (nested tables such as the env's protocol are skipped)."""
    out: dict[str, float] = {}
    for k, v in dict(result).items():
        if hasattr(v, "numel") and v.numel() == 1:
            v = v.item()
        if isinstance(v, bool) or isinstance(v, dict):
            continue
        if isinstance(v, (int, float)) or type(v).__module__ == "numpy":
            try:
                out[str(k)] = float(v)
            except (TypeError, ValueError):
                pass
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("recgym", "torch", "gymnasium", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _save_checkpoint(agent: Any, run_dir: Path) -> Path:
    import shutil

    final = run_dir / "checkpoint"
    tmp = run_dir / f".checkpoint.{os.getpid()}.tmp"
    agent.save(str(tmp))
    if not tmp.exists():
        raise RuntimeError(f"agent.save({str(tmp)!r}) wrote nothing")
    if final.is_dir():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


# ------------------------------------------------------------------------------------------------ one run


def _train_and_evaluate(spec: RunSpec, logger: RunLogger, opened: list[Any]) -> tuple[Any, list[dict[str, float]]]:
    """Build the envs and the agent, ``learn``, and return the agent and its evaluation curve."""
    from recgym.agents.base import agent_spec
    from recgym.agents.common import evaluate_agent

    registered = agent_spec(spec.agent)
    seed_everything(spec.seed)
    train_env, eval_env = build_envs(spec, registered.train_env)
    opened += [eval_env] + ([train_env] if train_env is not eval_env else [])
    train_env.reset(seed=spec.seed)
    agent = build_agent(spec, train_env)
    agent.learn(train_env, spec.train_budget, logger, eval_env=eval_env)
    curve = [{"step": int(h.get("step", h.get("iteration", i))),
              **flatten_metrics({k: v for k, v in h.items() if k not in ("step", "iteration")})}
             for i, h in enumerate(getattr(agent, "history", None) or []) if isinstance(h, dict)]
    if not curve:  # the agent keeps no evaluation history: evaluate it once, here
        metrics = evaluate_agent(agent, eval_env, spec.eval_episodes, seed=10_000 + spec.seed)
        for k, v in metrics.items():
            logger.log_scalar(f"eval/{k}", v, spec.train_budget)
        curve = [{"step": spec.train_budget, **metrics}]
    return agent, curve


def budget_unit(agent: str) -> str:
    """The budget unit of a registered agent ("?" when it is not registered in this process)."""
    from recgym.agents.base import agent_spec

    try:
        return agent_spec(agent).budget_unit
    except ValueError:
        return "?"


def execute_run(spec: RunSpec, root: Path | str = RUNS_DIR, *,
                on_progress: Callable[[int, int], None] | None = None, tensorboard: bool = True) -> RunResult:
    """Run one spec under ``root`` (skipped if DONE, refused if locked); never raises for a failing agent/env."""
    run_dir = Path(root) / spec.relpath()
    if (run_dir / "DONE").exists():
        return finished_run(spec, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(run_dir)
    if lock is None:
        return RunResult(spec, "locked", run_dir, error=f"{run_dir / '.lock'} is held by another live process")
    t0 = time.time()
    opened: list[Any] = []
    logger = None
    try:
        if (run_dir / "DONE").exists():  # finished by another process between our check and the lock
            return finished_run(spec, run_dir)
        _clear_attempt(run_dir)
        try:
            import_plugins(spec.imports)
            unit = budget_unit(spec.agent)
            config = {"spec": spec.to_dict(), "env_kwargs_resolved": spec.make_kwargs(False),
                      "eval_env_kwargs_resolved": spec.make_kwargs(True), "budget_unit": unit,
                      "versions": _versions(), "host": socket.gethostname(),
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            write_text(run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
            logger = RunLogger(run_dir, tensorboard=tensorboard)
            if on_progress is not None:
                on_progress(0, spec.train_budget)
                logger.on_step = lambda step: on_progress(min(step, spec.train_budget), spec.train_budget)
            agent, curve = _train_and_evaluate(spec, logger, opened)
            _save_checkpoint(agent, run_dir)
            final = {k: float(v) for k, v in curve[-1].items() if k != "step"}
            keys = sorted({k for c in curve for k in c if k != "step"})
            curve_mean = {k: sum(float(c[k]) for c in curve if k in c) / sum(1 for c in curve if k in c)
                          for k in keys}
            # EasyRL4Rec's aggregation: the mean over the last 25% of the evaluations (at least one)
            tail = curve[len(curve) - max(1, len(curve) // 4):]
            last25 = {k: sum(float(c[k]) for c in tail if k in c) / sum(1 for c in tail if k in c)
                      for k in keys if any(k in c for c in tail)}
            wall = time.time() - t0
            result = {"final": final, "curve_mean": curve_mean, "last25_mean": last25, "n_evals": len(curve),
                      "curve": curve,
                      "train_budget": spec.train_budget, "budget_unit": unit, "wall_s": wall,
                      "protocol": spec.protocol}
            logger.close()
            write_text(run_dir / "result.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
            write_text(run_dir / "DONE", json.dumps({"finished": time.time(), "wall_s": wall}) + "\n")
            return RunResult(spec, "done", run_dir, wall_s=wall, final=final)
        except Exception:  # noqa: BLE001 - a crashed run is recorded and the grid goes on
            tb = traceback.format_exc()
            write_text(run_dir / "error.txt", tb)
            return RunResult(spec, "failed", run_dir, wall_s=time.time() - t0, error=tb.strip().splitlines()[-1])
    finally:
        if logger is not None:
            logger.close()
        for e in opened:
            try:
                e.close()
            except Exception:  # noqa: BLE001
                pass
        lock.unlink(missing_ok=True)


def finished_run(spec: RunSpec, run_dir: Path) -> RunResult:
    """A DONE run: "skipped" if it was run with this spec, "conflict" (left untouched) if its config differs."""
    try:
        old = json.loads((run_dir / "config.json").read_text()).get("spec", {})
    except (OSError, json.JSONDecodeError):
        old = None
    new = json.loads(json.dumps(spec.to_dict(), default=str))
    if old is not None and old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return RunResult(spec, "conflict", run_dir, error=(
            f"{run_dir} holds a finished run with a different config (fields {diff}); delete the folder or use "
            "another suite name"))
    try:
        final = json.loads((run_dir / "result.json").read_text()).get("final", {})
    except (OSError, json.JSONDecodeError):
        final = {}
    return RunResult(spec, "skipped", run_dir, final=final)


def summarize(results: Sequence[Any]) -> dict[str, int]:
    """Counts per status."""
    out: dict[str, int] = {}
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out


# ------------------------------------------------------------------------------------------------ probes


@dataclass
class ProbeResult:
    name: str
    status: str  # "done", "skipped", "failed", "locked", "conflict", "missing-data"
    run_dir: Path
    wall_s: float = 0.0
    error: str | None = None


def run_probes(suite: Suite, root: Path | str = RUNS_DIR, *, progress: bool = True) -> list[ProbeResult]:
    """Run the suite's ``[[probes]]`` into ``<root>/<suite>/<name>/`` (see the module docstring)."""
    missing = suite.missing_data()
    out: list[ProbeResult] = []
    for p in suite.probes:
        run_dir = Path(root) / suite.name / p.name
        if p.name in missing:
            out.append(ProbeResult(p.name, "missing-data", run_dir, error=f"missing data files {missing[p.name]}"))
            continue
        if (run_dir / "DONE").exists():
            out.append(finished_probe(p.name, p.probe, p.args, run_dir))
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(run_dir)
        if lock is None:
            out.append(ProbeResult(p.name, "locked", run_dir, error="held by another process"))
            continue
        try:
            for name in ("output.txt", "error.txt", PROBE_FILE):
                (run_dir / name).unlink(missing_ok=True)
            if progress:
                print(f"[{suite.name}] probe {p.name}: {p.probe}({p.args})", flush=True)
            t0 = time.time()
            try:
                rows, text = call_probe(p.probe, p.args)
            except Exception:  # noqa: BLE001 - recorded; the other probes still run
                tb = traceback.format_exc()
                write_text(run_dir / "error.txt", tb)
                out.append(ProbeResult(p.name, "failed", run_dir, time.time() - t0, tb.strip().splitlines()[-1]))
                continue
            wall = time.time() - t0
            write_text(run_dir / "output.txt", text)
            record = {"probe": p.probe, "args": p.args, "rows": rows, "text": text, "wall_s": wall,
                      "versions": _versions()}
            write_text(run_dir / PROBE_FILE, json.dumps(record, indent=1, default=str) + "\n")
            write_text(run_dir / "DONE", json.dumps({"finished": time.time(), "wall_s": wall}) + "\n")
            if progress and text:
                print(text, flush=True)
            out.append(ProbeResult(p.name, "done", run_dir, wall))
        finally:
            lock.unlink(missing_ok=True)
    return out


def finished_probe(name: str, probe: str, args: dict[str, Any], run_dir: Path) -> ProbeResult:
    try:
        old = json.loads((run_dir / PROBE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        old = {}
    if old and (old.get("probe") != probe or old.get("args") != json.loads(json.dumps(args, default=str))):
        return ProbeResult(name, "conflict", run_dir, error=(
            f"{run_dir} holds a finished probe with other settings; delete the folder or use another suite name"))
    return ProbeResult(name, "skipped", run_dir)



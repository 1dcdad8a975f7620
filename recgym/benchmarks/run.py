"""One benchmark run: build the envs and the agent, train, evaluate, and write the run folder.

Each run writes, under ``<root>/<suite>/<env>/<agent>/seed<k>/``:

- ``config.json``   the resolved run spec (env ids and kwargs incl. protocol, agent config, seed, budget and its
  unit, versions);
- ``metrics.jsonl`` one JSON object per line ``{"tag", "value", "step", "time"}`` (append + flush + fsync per
  line; `read_metrics` ignores a torn last line): the agent's own scalars and ``eval/<metric>`` per evaluation;
- ``tb/``           TensorBoard events of the same scalars;
- ``checkpoint``    the agent's final `save` (written to a temp name, then `os.replace`);
- ``result.json``   final and curve-average evaluation metrics, the curve (one entry per evaluation), wall
  time, budget and budget unit, and how the run was evaluated (`evaluation_record`: ``eval_actions``, the
  evaluation env's protocol with the ground truth's provenance, ``env_protocol``, and its ``optimum``);
- ``DONE``          written last, atomically. A run with ``DONE`` is skipped when the grid is run again.

A run that raises writes ``error.txt`` (the traceback) and the grid goes on; it is run again on the next call.
An OS lock on the folder's ``.lock`` file (`RunLock`, `filelock`) keeps two processes from writing the same
folder; the kernel releases it when its process dies, so a killed run never leaves a lock behind on this
machine (`recgym bench --force-unlock` removes one that a shared file system keeps).

Envs: the suite's env is the evaluation env. An agent registered with a training-env spec (a world-model
method: `recgym.agents.base.AgentSpec.train_env`) trains in `recgym.envs.derive.training_env` of it; any
other agent trains in the suite's env itself. (An env entry with ``eval_id`` names both envs explicitly.)
Training is one call, ``agent.learn(train_env, train_budget, logger, eval_env=eval_env)``; agents evaluate
themselves every ``eval_every`` budget units and keep the curve in ``agent.history``. An agent without a
history is evaluated once at the end with `recgym.agents.common.evaluate_agent`. Curve average = mean over
the history's evaluations; final = the last one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import socket
import sys
import time
import traceback
import warnings
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


def read_metrics(path: Path | str, *, on_corrupt: str = "raise") -> list[dict[str, Any]]:
    """Parse a metrics JSON-lines file; a torn last line (no newline, unparsable) is ignored.

    A corrupt line anywhere else raises ValueError naming the file and line (``on_corrupt="raise"``), or is
    skipped with a warning naming them (``on_corrupt="warn"``, what `recgym report` uses).
    """
    if on_corrupt not in ("raise", "warn"):
        raise ValueError(f"on_corrupt={on_corrupt!r}, expected 'raise' or 'warn'")
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
            if not isinstance(rec, dict) or not {"tag", "value", "step"} <= set(rec):
                raise ValueError("not a {tag, value, step} record")
        except (ValueError, UnicodeDecodeError) as exc:
            msg = f"{path}:{i + 1}: corrupt metrics line ({exc})"
            if on_corrupt == "raise":
                raise ValueError(msg) from exc
            warnings.warn(msg + "; skipped", stacklevel=2)
            continue
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


LOCK_NAME = ".lock"


class RunLock:
    """An OS-level lock on ``<run_dir>/.lock`` (`filelock.FileLock`: ``flock`` on POSIX).

    The kernel drops the lock when the holding process exits, however it exits (crash, SIGKILL, reboot), so a
    lock can never outlive its process on this machine; a reused pid or a changed host name cannot keep it
    held. The lock file itself stays (an empty-or-info file is harmless; deleting it while held would let a
    second process lock a new file). It holds the holder's pid, host and start time, for messages only.
    """

    def __init__(self, run_dir: Path) -> None:
        from filelock import FileLock

        self.path = Path(run_dir) / LOCK_NAME
        self._lock = FileLock(str(self.path))

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process (or another RunLock here) holds it."""
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        with contextlib.suppress(OSError):
            self.path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}))
        return True

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.write_text("")
        self._lock.release()

    def holder(self) -> str:
        """Who holds the lock, as far as its file says (for messages)."""
        try:
            info = json.loads(self.path.read_text() or "{}")
            return f"pid {info['pid']} on {info['host']} since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['time']))}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"


def acquire_lock(run_dir: Path) -> RunLock | None:
    """Lock ``run_dir`` for this process (`RunLock`); None when it is locked by a live process."""
    lock = RunLock(run_dir)
    return lock if lock.acquire() else None


def locked_message(run_dir: Path) -> str:
    """The error of a run or probe skipped because its folder is locked."""
    return (f"{Path(run_dir) / LOCK_NAME} is held by {RunLock(run_dir).holder()} (an OS lock: it is released when "
            "that process exits); if no process uses this folder any more (e.g. a lock kept by a shared file "
            "system), rerun with `recgym bench --force-unlock`")


def force_unlock(run_dirs: Sequence[Path]) -> list[Path]:
    """Delete the lock files of ``run_dirs`` that are locked now (`recgym bench --force-unlock`); return them.

    A lock that nobody holds is left alone; a held one is removed, so the next run takes a fresh lock file.
    The old holder, if it still runs, is not stopped: use this only when it is gone (another container, a
    shared volume whose file system keeps locks).
    """
    removed = []
    for d in run_dirs:
        path = Path(d) / LOCK_NAME
        if not path.exists():
            continue
        probe = acquire_lock(Path(d))
        if probe is not None:
            probe.release()
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        removed.append(path)
    return removed


# ------------------------------------------------------------------------------------------ building a run


@dataclass
class RunResult:
    spec: RunSpec
    status: str  # "done", "skipped" (already DONE), "failed", "locked", "conflict" (DONE with another config)
    run_dir: Path
    wall_s: float = 0.0
    error: str | None = None
    final: dict[str, float] = field(default_factory=dict)


_RUN_FILES = ("DONE", "metrics.jsonl", "result.json", "error.txt", "config.json", "checkpoint")


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


def evaluation_record(agent: Any, eval_env: Any) -> dict[str, Any]:
    """How a run was evaluated, for ``result.json``: the agent's test-time actions (``eval_actions``,
    `recgym.agents.eval_actions`), the evaluation env's effective protocol (``env_protocol``: mode, N, M,
    max_turn and, for ground-truth envs, the ground truth's provenance ``ground_truth`` = ``{source,
    comparable_to_published, note}``) and its exact optimum (``optimum``: mean best return over the evaluation
    users when nobody can quit, else None)."""
    from recgym.agents.common import agent_eval_actions
    from recgym.envs.derive import base_env

    inner = base_env(eval_env)
    protocol = getattr(inner, "protocol", None)
    protocol = json.loads(json.dumps(protocol, default=str)) if isinstance(protocol, dict) else None
    optimum = None
    if protocol is not None and protocol.get("quitting") is False and callable(getattr(inner, "optimal_return", None)):
        optimum = float(inner.optimal_return().double().mean())
    return {"eval_actions": agent_eval_actions(agent).label, "env_protocol": protocol, "optimum": optimum}


def _train_and_evaluate(spec: RunSpec, logger: RunLogger, opened: list[Any]
                        ) -> tuple[Any, list[dict[str, float]], dict[str, Any]]:
    """Build the envs and the agent, ``learn``, and return the agent, its evaluation curve and
    `evaluation_record`."""
    from recgym.agents.base import agent_spec
    from recgym.agents.common import evaluate_agent
    from recgym.envs.evaluation import derive_seed

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
        metrics = evaluate_agent(agent, eval_env, spec.eval_episodes, seed=derive_seed(spec.seed, "final-evaluation"))
        for k, v in metrics.items():
            logger.log_scalar(f"eval/{k}", v, spec.train_budget)
        curve = [{"step": spec.train_budget, **metrics}]
    return agent, curve, evaluation_record(agent, eval_env)


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
        done = finished_run(spec, run_dir)
        if done is not None:
            return done
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(run_dir)
    if lock is None:
        return RunResult(spec, "locked", run_dir, error=locked_message(run_dir))
    t0 = time.time()
    opened: list[Any] = []
    logger = None
    try:
        if (run_dir / "DONE").exists():  # finished by another process between our check and the lock?
            done = finished_run(spec, run_dir)
            if done is not None:
                return done
            warnings.warn(f"{run_dir}: marked DONE but {result_problem(run_dir)}; running it again", stacklevel=2)
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
            agent, curve, evaluation = _train_and_evaluate(spec, logger, opened)
            _save_checkpoint(agent, run_dir)
            final = {k: float(v) for k, v in curve[-1].items() if k != "step"}
            keys = sorted({k for c in curve for k in c if k != "step"})
            curve_mean = {k: sum(float(c[k]) for c in curve if k in c) / sum(1 for c in curve if k in c)
                          for k in keys}
            wall = time.time() - t0
            result = {"final": final, "curve_mean": curve_mean, "n_evals": len(curve), "curve": curve,
                      "train_budget": spec.train_budget, "budget_unit": unit, "wall_s": wall,
                      "protocol": spec.protocol, **evaluation}
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
        lock.release()


def result_problem(run_dir: Path) -> str | None:
    """Why the ``result.json`` of a run cannot be used (None when it can): unreadable, or no ``final`` table."""
    try:
        result = json.loads((Path(run_dir) / "result.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "result.json is missing"
    except (OSError, ValueError) as exc:
        return f"result.json is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(result, dict) or not isinstance(result.get("final"), dict):
        return "result.json holds no 'final' metrics"
    return None


def finished_run(spec: RunSpec, run_dir: Path) -> RunResult | None:
    """A DONE run: "skipped" if it was run with this spec, "conflict" (left untouched) if its config differs,
    None when it must run again (marked DONE, but its ``result.json`` is damaged: `result_problem`)."""
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
    if result_problem(run_dir) is not None:
        return None
    final = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))["final"]
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
            out.append(ProbeResult(p.name, "locked", run_dir, error=locked_message(run_dir)))
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
            lock.release()
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



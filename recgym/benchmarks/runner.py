"""The benchmark runner: a grid of (env, agent, seed) runs from a TOML suite or from flags.

Each run writes, under ``<root>/<suite>/<env>/<agent>/seed<k>/``:

- ``config.json``   the resolved run spec (env ids and kwargs incl. protocol, agent config, seed, budgets, versions);
- ``metrics.jsonl`` one JSON object per line ``{"tag", "value", "step", "time"}`` (append + flush + fsync per
  line; `read_metrics` ignores a torn last line), agents' own scalars and ``eval/<metric>`` at each evaluation;
- ``tb/``           TensorBoard events of the same scalars;
- ``checkpoint``    the agent's final `save` (written to a temp name, then `os.replace`);
- ``result.json``   final and curve-average evaluation metrics;
- ``DONE``          written last, atomically. A run with ``DONE`` is skipped when the grid is run again.

A run that raises writes ``error.txt`` (the traceback) and the grid goes on; it is run again on the next call.
A ``.lock`` file (pid + host, created with O_EXCL) keeps two processes from writing the same folder; a lock
left by a dead process on this host is taken over.

Training is one call, ``agent.learn(env, train_budget, logger[, eval_env=...])``; agents evaluate themselves
every ``eval_every`` (their config field, set from the suite) and keep the curve in ``agent.history``. An agent
without a history is evaluated once at the end with `recgym.envs.evaluate`. Curve average = mean over the
history's evaluations; final = the last one. ``train_budget`` is in the agent's own unit (env steps for A2C and
the bandits, gradient steps for offline agents, iterations for the denoise agents).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import re
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUITES_DIR = Path(__file__).resolve().parent / "suites"
RUNS_DIR = Path("runs")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

# Evaluation metrics the report knows about, in display order.
EVAL_METRICS: tuple[str, ...] = ("R_cumu", "R_avg", "Length", "CV", "CV_turn", "MCD")


class SuiteError(ValueError):
    """A suite file (or flag set) is invalid; the message names the file and line."""


# --------------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs; written to ``config.json``. Two specs with the same `relpath` are one run."""

    suite: str
    env_name: str  # folder name of the env entry (e.g. "coat-dorl")
    env_id: str  # the env given to make_agent / learn (normally the evaluation env GroundTruthRec-<D>-v0)
    eval_env_id: str | None  # a separate evaluation env passed as learn(..., eval_env=) (None: the agent decides)
    agent: str  # registered agent name
    agent_label: str  # folder name of the agent entry (an agent may appear with several configs)
    seed: int
    train_budget: int
    eval_episodes: int
    eval_every: int  # env steps between the agent's evaluations (0: once, at the end); sent to the agent config
    num_envs: int = 16
    device: str = "cpu"
    protocol: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent_config: dict[str, Any] = field(default_factory=dict)
    published_dataset: str | None = None
    published_method: str | None = None
    imports: tuple[str, ...] = ()

    def relpath(self) -> Path:
        return Path(self.suite) / self.env_name / self.agent_label / f"seed{self.seed}"

    def make_kwargs(self, evaluation: bool) -> dict[str, Any]:
        """Constructor kwargs of the (evaluation) env: the entry's kwargs plus the protocol."""
        kw = dict(self.eval_env_kwargs if evaluation else self.env_kwargs)
        if self.protocol is not None:
            kw.setdefault("protocol", self.protocol)
        return kw

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["imports"] = list(self.imports)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        d = dict(d)
        d["imports"] = tuple(d.get("imports", ()))
        return cls(**d)


@dataclass
class EnvEntry:
    name: str
    id: str
    eval_id: str | None = None
    protocol: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    eval_kwargs: dict[str, Any] = field(default_factory=dict)
    published: str | None = None  # dataset name in reference/published.csv
    requires: list[str] = field(default_factory=list)  # files under the data root; entry skipped if missing
    line: int = 0


@dataclass
class AgentEntry:
    name: str
    label: str
    config: dict[str, Any] = field(default_factory=dict)
    envs: list[str] | None = None  # restrict to these env entries
    train_budget: int | None = None
    eval_every: int | None = None
    published: str | None = None  # method name in reference/published.csv
    line: int = 0


@dataclass
class ScriptEntry:
    """A benchmark script run as ``python -m <module> <args>`` (e.g. the env throughput benchmark)."""

    name: str
    module: str
    args: list[str] = field(default_factory=list)
    timeout_s: float = 3600.0
    line: int = 0


@dataclass
class Suite:
    """A validated grid (env x agent x seed runs) and/or a list of benchmark scripts."""

    name: str
    envs: list[EnvEntry]
    agents: list[AgentEntry]
    seeds: list[int]
    train_budget: int
    eval_episodes: int = 100
    eval_every: int = 0
    num_envs: int = 16
    device: str = "cpu"
    description: str = ""
    imports: tuple[str, ...] = ()
    path: Path | None = None
    scripts: list[ScriptEntry] = field(default_factory=list)

    def missing_data(self) -> dict[str, list[str]]:
        """Env entries whose ``requires`` files are missing under the data root (they are not run)."""
        from recgym.data.paths import data_root

        root = data_root()
        out = {}
        for env in self.envs:
            missing = [r for r in env.requires if not (root / r).exists()]
            if missing:
                out[env.name] = missing
        return out

    def runs(self) -> list[RunSpec]:
        """The grid as run specs, env-major then agent then seed (entries with missing data left out)."""
        out: list[RunSpec] = []
        skip = self.missing_data()
        for env in self.envs:
            if env.name in skip:
                continue
            for agent in self.agents:
                if agent.envs is not None and env.name not in agent.envs:
                    continue
                for seed in self.seeds:
                    out.append(RunSpec(
                        suite=self.name, env_name=env.name, env_id=env.id, eval_env_id=env.eval_id,
                        agent=agent.name, agent_label=agent.label, seed=int(seed),
                        train_budget=int(agent.train_budget or self.train_budget),
                        eval_episodes=int(self.eval_episodes),
                        eval_every=int(self.eval_every if agent.eval_every is None else agent.eval_every),
                        num_envs=int(self.num_envs), device=self.device, protocol=env.protocol,
                        env_kwargs=dict(env.kwargs), eval_env_kwargs=dict(env.eval_kwargs or env.kwargs),
                        agent_config=dict(agent.config), published_dataset=env.published,
                        published_method=agent.published, imports=tuple(self.imports),
                    ))
        return out


# ------------------------------------------------------------------------------------------ suite parsing

_SUITE_FIELDS = {"name", "description", "seeds", "train_budget", "eval_episodes", "eval_every", "num_envs",
                 "device", "imports"}
_ENV_FIELDS = {"name", "id", "eval_id", "protocol", "kwargs", "eval_kwargs", "published", "requires"}
_AGENT_FIELDS = {"name", "label", "config", "envs", "train_budget", "eval_every", "published"}
_SCRIPT_FIELDS = {"name", "module", "args", "timeout_s"}


class _Lines:
    """Finds the line of a key in a TOML text (tomllib keeps no positions)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str) -> None:
        self.blocks: dict[tuple[str, int], dict[str, int]] = {}
        self.starts: dict[tuple[str, int], int] = {}
        counts: dict[str, int] = {}
        current = ("", 0)
        self.blocks[current] = {}
        self.starts[current] = 1
        for no, line in enumerate(text.splitlines(), start=1):
            m = self._HEADER.match(line)
            if m:
                name = m.group(2)
                if m.group(1) == "[[":
                    idx = counts.get(name, 0)
                    counts[name] = idx + 1
                else:
                    idx = 0
                current = (name, idx)
                self.blocks.setdefault(current, {})
                self.starts[current] = no
                continue
            k = self._KEY.match(line)
            if k:
                self.blocks[current].setdefault(k.group(1).strip('"'), no)

    def line(self, table: str, index: int = 0, key: str | None = None) -> int:
        block = (table, index)
        if key is not None and key in self.blocks.get(block, {}):
            return self.blocks[block][key]
        return self.starts.get(block, 1)


def _err(path: Path | str, line: int, msg: str) -> SuiteError:
    return SuiteError(f"{path}:{line}: {msg}")


def resolve_suite_path(suite: str | os.PathLike[str]) -> Path:
    """A shipped suite name (``quick``) or a path to a TOML file."""
    p = Path(suite)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise SuiteError(f"suite file {p} does not exist")
        return p
    shipped = SUITES_DIR / f"{suite}.toml"
    if shipped.is_file():
        return shipped
    names = sorted(q.stem for q in SUITES_DIR.glob("*.toml"))
    raise SuiteError(f"unknown suite {str(suite)!r}: not a file and not a shipped suite; shipped suites: {names}")


def _toml_load(text: str, path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as exc:
            raise SuiteError("reading suite files on Python 3.10 needs `tomli` (pip install tomli)") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML: {exc}") from exc


def load_suite(suite: str | os.PathLike[str], *, validate: bool = True) -> Suite:
    """Parse (and by default validate) a suite: a shipped name such as ``quick`` or a TOML path."""
    path = resolve_suite_path(suite)
    text = path.read_text(encoding="utf-8")
    data = _toml_load(text, path)
    lines = _Lines(text)

    unknown = sorted(set(data) - {"suite", "envs", "agents", "scripts"})
    if unknown:
        raise _err(path, lines.line(unknown[0]) if (unknown[0], 0) in lines.starts else lines.line("", 0, unknown[0]),
                   f"unknown top-level field(s) {unknown}; valid: ['agents', 'envs', 'scripts', 'suite']")
    scripts: list[ScriptEntry] = []
    raw_scripts = data.get("scripts", [])
    if not isinstance(raw_scripts, list):
        raise _err(path, lines.line("scripts"), "scripts must be an array of tables ([[scripts]])")
    for i, sc in enumerate(raw_scripts):
        for k in sc:
            if k not in _SCRIPT_FIELDS:
                raise _err(path, lines.line("scripts", i, k),
                           f"unknown field {k!r} in [[scripts]]; valid: {sorted(_SCRIPT_FIELDS)}")
        if not isinstance(sc.get("module"), str):
            raise _err(path, lines.line("scripts", i), "[[scripts]] entry needs `module` (run as python -m MODULE)")
        args = sc.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise _err(path, lines.line("scripts", i, "args"), "args must be a list of strings")
        sname = sc.get("name", sc["module"].rsplit(".", 1)[-1])
        if not _NAME_RE.match(str(sname)):
            raise _err(path, lines.line("scripts", i, "name"), f"script name {sname!r} must match {_NAME_RE.pattern}")
        timeout_s = sc.get("timeout_s", 3600)
        if not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
            raise _err(path, lines.line("scripts", i, "timeout_s"), "timeout_s must be a positive number")
        if importlib.util.find_spec(sc["module"]) is None:
            raise _err(path, lines.line("scripts", i, "module"), f"no module named {sc['module']!r}")
        scripts.append(ScriptEntry(name=str(sname), module=sc["module"], args=list(args), timeout_s=float(timeout_s),
                                   line=lines.line("scripts", i)))
    if scripts and "envs" not in data and "agents" not in data:
        head = data.get("suite", {})
        name = head.get("name", path.stem) if isinstance(head, dict) else path.stem
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _err(path, lines.line("suite", 0, "name"), f"suite name {name!r} must match {_NAME_RE.pattern}")
        for k in head if isinstance(head, dict) else {}:
            if k not in ("name", "description"):
                raise _err(path, lines.line("suite", 0, k), f"field {k!r} has no meaning in a scripts-only suite")
        return Suite(name=name, envs=[], agents=[], seeds=[], train_budget=0, path=path, scripts=scripts,
                     description=str(head.get("description", "")) if isinstance(head, dict) else "")
    head = data.get("suite", {})
    if not isinstance(head, dict):
        raise _err(path, lines.line("", 0, "suite"), "`suite` must be a table ([suite])")
    for k in head:
        if k not in _SUITE_FIELDS:
            raise _err(path, lines.line("suite", 0, k), f"unknown field {k!r} in [suite]; valid: {sorted(_SUITE_FIELDS)}")

    def need_int(table: str, idx: int, key: str, value: Any, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise _err(path, lines.line(table, idx, key), f"{key} must be an integer >= {minimum}, got {value!r}")
        return value

    name = head.get("name", path.stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _err(path, lines.line("suite", 0, "name"), f"suite name {name!r} must match {_NAME_RE.pattern}")
    seeds = head.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise _err(path, lines.line("suite", 0, "seeds"),
                   f"seeds must be a count or a list of distinct non-negative integers, got {seeds!r}")
    if "train_budget" not in head:
        raise _err(path, lines.line("suite", 0), "[suite] needs train_budget (env steps per run)")
    budget = need_int("suite", 0, "train_budget", head["train_budget"], 1)
    eval_episodes = need_int("suite", 0, "eval_episodes", head.get("eval_episodes", 100), 1)
    eval_every = need_int("suite", 0, "eval_every", head.get("eval_every", 0), 0)
    num_envs = need_int("suite", 0, "num_envs", head.get("num_envs", 16), 1)
    device = head.get("device", "cpu")
    if not isinstance(device, str) or not re.match(r"^(cpu|cuda(:\d+)?|mps)$", device):
        raise _err(path, lines.line("suite", 0, "device"), f"device must be cpu, cuda, cuda:N or mps, got {device!r}")
    imports = head.get("imports", [])
    if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
        raise _err(path, lines.line("suite", 0, "imports"), "imports must be a list of module names")

    envs: list[EnvEntry] = []
    raw_envs = data.get("envs", [])
    if not isinstance(raw_envs, list) or not raw_envs:
        raise _err(path, 1, "a suite needs at least one [[envs]] entry")
    for i, e in enumerate(raw_envs):
        for k in e:
            if k not in _ENV_FIELDS:
                raise _err(path, lines.line("envs", i, k), f"unknown field {k!r} in [[envs]]; valid: {sorted(_ENV_FIELDS)}")
        if "id" not in e:
            raise _err(path, lines.line("envs", i), "[[envs]] entry needs `id` (a registered env id)")
        for k in ("kwargs", "eval_kwargs"):
            if k in e and not isinstance(e[k], dict):
                raise _err(path, lines.line("envs", i, k), f"{k} must be a table")
        requires = e.get("requires", [])
        if not isinstance(requires, list) or not all(isinstance(x, str) for x in requires):
            raise _err(path, lines.line("envs", i, "requires"), "requires must be a list of paths under the data root")
        ename = e.get("name", e["id"])
        if not _NAME_RE.match(str(ename)):
            raise _err(path, lines.line("envs", i, "name"), f"env name {ename!r} must match {_NAME_RE.pattern}")
        envs.append(EnvEntry(name=str(ename), id=e["id"], eval_id=e.get("eval_id"), protocol=e.get("protocol"),
                             kwargs=dict(e.get("kwargs", {})), eval_kwargs=dict(e.get("eval_kwargs", {})),
                             published=e.get("published"), requires=list(requires), line=lines.line("envs", i)))
    agents: list[AgentEntry] = []
    raw_agents = data.get("agents", [])
    if not isinstance(raw_agents, list) or not raw_agents:
        raise _err(path, 1, "a suite needs at least one [[agents]] entry")
    for i, a in enumerate(raw_agents):
        for k in a:
            if k not in _AGENT_FIELDS:
                raise _err(path, lines.line("agents", i, k),
                           f"unknown field {k!r} in [[agents]]; valid: {sorted(_AGENT_FIELDS)}")
        if "name" not in a:
            raise _err(path, lines.line("agents", i), "[[agents]] entry needs `name` (a registered agent)")
        if "config" in a and not isinstance(a["config"], dict):
            raise _err(path, lines.line("agents", i, "config"), "config must be a table")
        label = a.get("label", a["name"])
        if not _NAME_RE.match(str(label)):
            raise _err(path, lines.line("agents", i, "label"), f"agent label {label!r} must match {_NAME_RE.pattern}")
        restrict = a.get("envs")
        if restrict is not None and (not isinstance(restrict, list) or not all(isinstance(x, str) for x in restrict)):
            raise _err(path, lines.line("agents", i, "envs"), "envs must be a list of env entry names")
        tb = a.get("train_budget")
        if tb is not None:
            need_int("agents", i, "train_budget", tb, 1)
        ee = a.get("eval_every")
        if ee is not None:
            need_int("agents", i, "eval_every", ee, 0)
        agents.append(AgentEntry(name=a["name"], label=str(label), config=dict(a.get("config", {})), envs=restrict,
                                 train_budget=tb, eval_every=ee, published=a.get("published"),
                                 line=lines.line("agents", i)))
    suite_obj = Suite(name=name, envs=envs, agents=agents, seeds=[int(s) for s in seeds], train_budget=budget,
                      eval_episodes=eval_episodes, eval_every=eval_every, num_envs=num_envs, device=device,
                      description=str(head.get("description", "")), imports=tuple(imports), path=path,
                      scripts=scripts)
    if validate:
        validate_suite(suite_obj, lines)
    return suite_obj


def _import_plugins(modules: Iterable[str]) -> None:
    for mod in modules:
        importlib.import_module(mod)


_PROTOCOL_MODULES = {
    "GroundTruthRec": "recgym.envs.rec",
    "InteractiveRec": "recgym.envs.interactive",
    "DiffusionDenoise": "recgym.envs.denoise",
}


def valid_protocols(env_id: str) -> tuple[str, ...] | None:
    """Protocols an env id accepts, from its family module's ``PROTOCOLS`` (None: not known, so not checked)."""
    family = env_id.split("-", 1)[0]
    mod_name = _PROTOCOL_MODULES.get(family)
    if mod_name is None:
        return None
    try:
        mod = importlib.import_module(mod_name)
    except ImportError:
        return None
    protocols = getattr(mod, "PROTOCOLS", None)
    return tuple(protocols) if protocols else None


def validate_suite(suite: Suite, lines: _Lines | None = None) -> None:
    """Check env ids, agents, protocols, restrictions and folder uniqueness before anything runs."""
    import gymnasium as gym

    import recgym  # noqa: F401
    from recgym.agents.base import registered_agents

    where = suite.path or Path("<flags>")

    def line(table: str, idx: int, key: str | None = None, default: int = 0) -> int:
        return lines.line(table, idx, key) if lines is not None else default

    try:
        _import_plugins(suite.imports)
    except ImportError as exc:
        raise _err(where, line("suite", 0, "imports"), f"cannot import plugin module: {exc}") from exc
    known_envs = set(gym.registry)
    agents = set(registered_agents())
    seen_envs: set[str] = set()
    for i, e in enumerate(suite.envs):
        for key, env_id in (("id", e.id), ("eval_id", e.eval_id)):
            if env_id is not None and env_id not in known_envs:
                close = sorted(k for k in known_envs if k.split("-")[0] == env_id.split("-")[0]) or sorted(
                    k for k in known_envs if k.startswith(("GroundTruthRec", "InteractiveRec", "DiffusionDenoise")))
                raise _err(where, line("envs", i, key, e.line), f"unknown env id {env_id!r}; registered: {close}")
        # (protocol, env id, key naming it): `protocol` applies to both envs unless kwargs/eval_kwargs set their own
        checks = []
        for env_id, kw, kw_key in ((e.id, e.kwargs, "kwargs"), (e.eval_id, e.eval_kwargs or e.kwargs, "eval_kwargs")):
            if env_id is None:
                continue
            if "protocol" in kw:
                checks.append((kw["protocol"], env_id, kw_key))
            elif e.protocol is not None:
                checks.append((e.protocol, env_id, "protocol"))
        for protocol, env_id, key in checks:
            ok = valid_protocols(env_id)
            if ok is not None and protocol not in ok:
                raise _err(where, line("envs", i, key, e.line),
                           f"unknown protocol {protocol!r} for {env_id}; valid protocols: {sorted(ok)}")
        if e.name in seen_envs:
            raise _err(where, line("envs", i, "name", e.line), f"duplicate env name {e.name!r} (run folders must be unique)")
        seen_envs.add(e.name)
    seen_labels: set[str] = set()
    for i, a in enumerate(suite.agents):
        if a.name not in agents:
            raise _err(where, line("agents", i, "name", a.line), f"unknown agent {a.name!r}; registered agents: {sorted(agents)}")
        if a.label in seen_labels:
            raise _err(where, line("agents", i, "label", a.line),
                       f"duplicate agent label {a.label!r}: give each [[agents]] entry of the same agent its own "
                       "`label` (run folders must be unique)")
        seen_labels.add(a.label)
        for r in a.envs or []:
            if r not in seen_envs:
                raise _err(where, line("agents", i, "envs", a.line), f"envs names unknown env entry {r!r}; entries: {sorted(seen_envs)}")
    specs = suite.runs()
    if not specs and not suite.missing_data():
        raise _err(where, 1, "the suite has no runs (every agent is restricted away from every env)")
    paths = [s.relpath() for s in specs]
    if len(set(paths)) != len(paths):  # cannot happen after the checks above; kept as the invariant
        raise _err(where, 1, "two runs would share a folder")


def suite_from_flags(envs: Sequence[str], agents: Sequence[str], seeds: Sequence[int] | int, train_budget: int, *,
                     name: str = "adhoc", eval_episodes: int = 100, eval_every: int = 0, num_envs: int = 16,
                     device: str = "cpu", protocol: str | None = None, eval_env: str | None = None,
                     env_kwargs: dict[str, Any] | None = None, agent_config: dict[str, Any] | None = None,
                     imports: Sequence[str] = (), validate: bool = True) -> Suite:
    """A suite from command-line flags: every env x every agent x every seed."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    env_entries = [EnvEntry(name=e, id=e, eval_id=eval_env, protocol=protocol, kwargs=dict(env_kwargs or {}))
                   for e in envs]
    agent_entries = [AgentEntry(name=a, label=a, config=dict(agent_config or {})) for a in agents]
    if not env_entries or not agent_entries:
        raise SuiteError("<flags>: give at least one --env and one --agent (or --suite)")
    if not _NAME_RE.match(name):
        raise SuiteError(f"<flags>: suite name {name!r} must match {_NAME_RE.pattern}")
    suite = Suite(name=name, envs=env_entries, agents=agent_entries, seeds=seed_list, train_budget=int(train_budget),
                  eval_episodes=int(eval_episodes), eval_every=int(eval_every), num_envs=int(num_envs),
                  device=device, imports=tuple(imports))
    if validate:
        validate_suite(suite)
    return suite


# ------------------------------------------------------------------------------------------- file helpers


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder, fsync, then `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


# -------------------------------------------------------------------------------------------- one run


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
    for p in run_dir.glob(".*.tmp"):
        p.unlink(missing_ok=True)
    for p in run_dir.glob(".checkpoint*"):
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

    import recgym  # noqa: F401

    return gym.make_vec(env_id, num_envs=num_envs, device=device, **kwargs)


def flatten_metrics(result: Any) -> dict[str, float]:
    """The top-level numbers of an evaluation result (dict, dataclass or object with ``metrics``)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    elif not isinstance(result, dict) and hasattr(result, "metrics"):
        result = result.metrics
    out: dict[str, float] = {}

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            if prefix:  # nested tables (e.g. the env's protocol) are not metrics
                return
            for k, v in obj.items():
                walk(str(k), v)
            return
        try:
            import torch

            if torch.is_tensor(obj) and obj.numel() == 1:
                obj = obj.item()
        except ImportError:  # pragma: no cover
            pass
        if isinstance(obj, bool):
            return
        if isinstance(obj, (int, float)) or type(obj).__module__ == "numpy":
            try:
                out[prefix] = float(obj)
            except (TypeError, ValueError):
                pass

    walk("", result)
    return out


def evaluate_policy(agent: Any, env: Any, n_episodes: int, seed: int) -> dict[str, float]:
    """Evaluate ``agent`` with `recgym.envs.evaluate` (greedy: ``agent.training`` off when it has one)."""
    from recgym.agents.common import greedy_mode
    from recgym.envs import evaluate

    with greedy_mode(agent):
        result = evaluate(agent, env, n_episodes=n_episodes, seed=seed)
    return flatten_metrics(result)


# Run-level settings the runner offers every agent (each only if the agent's config has that field).
_INJECTED = ("seed", "eval_every", "eval_episodes", "progress")
_UNKNOWN_FIELDS = re.compile(r"unknown config field\(s\) \[([^\]]*)\]")
_UNEXPECTED_KW = re.compile(r"unexpected keyword argument '([A-Za-z_][A-Za-z0-9_]*)'")


def build_agent(spec: RunSpec, env: Any) -> Any:
    """``make_agent(spec.agent, env, **config)`` with the run's seed, eval_every, eval_episodes and
    progress=False added to the suite's config where the agent's config dataclass has those fields
    (an agent rejecting one of them is retried without it; the suite's own fields are never dropped)."""
    from recgym.agents.base import make_agent

    injected = {"seed": spec.seed, "eval_every": spec.eval_every, "eval_episodes": spec.eval_episodes,
                "progress": False}
    injected = {k: v for k, v in injected.items() if k not in spec.agent_config}
    for _ in range(len(_INJECTED) + 1):
        try:
            return make_agent(spec.agent, env, **{**injected, **spec.agent_config})
        except (ValueError, TypeError) as exc:
            m = _UNKNOWN_FIELDS.search(str(exc))
            bad = {x.strip().strip("'\"") for x in m.group(1).split(",")} if m else set()
            kw = _UNEXPECTED_KW.search(str(exc))
            if kw:
                bad.add(kw.group(1))
            drop = bad & set(injected)
            if not drop or bad - set(injected):
                raise
            for k in drop:
                injected.pop(k)
    raise RuntimeError("unreachable")  # pragma: no cover


def _accepts(fn: Any, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


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


def execute_run(spec: RunSpec, root: Path | str = RUNS_DIR, *,
                on_progress: Callable[[int, int], None] | None = None, tensorboard: bool = True) -> RunResult:
    """Run one spec under ``root`` (skipped if DONE, refused if locked); never raises for a failing agent/env."""
    run_dir = Path(root) / spec.relpath()
    if (run_dir / "DONE").exists():
        return _finished(spec, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(run_dir)
    if lock is None:
        return RunResult(spec, "locked", run_dir, error=f"{run_dir / '.lock'} is held by another live process")
    t0 = time.time()
    env = eval_env = logger = None
    try:
        if (run_dir / "DONE").exists():  # finished by another process between our check and the lock
            return _finished(spec, run_dir)
        _clear_attempt(run_dir)
        config = {"spec": spec.to_dict(), "env_kwargs_resolved": spec.make_kwargs(False),
                  "eval_env_kwargs_resolved": spec.make_kwargs(True), "versions": _versions(),
                  "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
        try:
            _import_plugins(spec.imports)
            logger = RunLogger(run_dir, tensorboard=tensorboard)
            if on_progress is not None:
                on_progress(0, spec.train_budget)
                logger.on_step = lambda step: on_progress(min(step, spec.train_budget), spec.train_budget)
            seed_everything(spec.seed)
            env = make_env(spec.env_id, spec.num_envs, spec.device, spec.make_kwargs(False))
            if spec.eval_env_id is not None:
                eval_env = make_env(spec.eval_env_id, spec.num_envs, spec.device, spec.make_kwargs(True))
            env.reset(seed=spec.seed)
            agent = build_agent(spec, env)
            extra = {"eval_env": eval_env} if eval_env is not None and _accepts(agent.learn, "eval_env") else {}
            agent.learn(env, spec.train_budget, logger, **extra)
            curve = [{"step": int(h.get("step", h.get("iteration", i))),
                      **flatten_metrics({k: v for k, v in h.items() if k not in ("step", "iteration")})}
                     for i, h in enumerate(getattr(agent, "history", None) or []) if isinstance(h, dict)]
            if not curve:  # the agent keeps no evaluation history: evaluate it once, here
                metrics = evaluate_policy(agent, eval_env if eval_env is not None else env, spec.eval_episodes,
                                          seed=10_000 + spec.seed)
                for k, v in metrics.items():
                    logger.log_scalar(f"eval/{k}", v, spec.train_budget)
                curve = [{"step": spec.train_budget, **metrics}]
            _save_checkpoint(agent, run_dir)
            final = {k: float(v) for k, v in curve[-1].items() if k != "step"}
            keys = sorted({k for c in curve for k in c if k != "step"})
            curve_mean = {k: sum(float(c[k]) for c in curve if k in c) / sum(1 for c in curve if k in c)
                          for k in keys}
            wall = time.time() - t0
            result = {"final": final, "curve_mean": curve_mean, "n_evals": len(curve),
                      "curve": curve, "train_budget": spec.train_budget, "wall_s": wall, "protocol": spec.protocol}
            logger.close()
            atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
            atomic_write_text(run_dir / "DONE", json.dumps({"finished": time.time(), "wall_s": wall}) + "\n")
            return RunResult(spec, "done", run_dir, wall_s=wall, final=final)
        except Exception:  # noqa: BLE001 - a crashed run is recorded and the grid goes on
            tb = traceback.format_exc()
            atomic_write_text(run_dir / "error.txt", tb)
            return RunResult(spec, "failed", run_dir, wall_s=time.time() - t0, error=tb.strip().splitlines()[-1])
    finally:
        if logger is not None:
            logger.close()
        for e in (env, eval_env):
            if e is not None:
                try:
                    e.close()
                except Exception:  # noqa: BLE001
                    pass
        lock.unlink(missing_ok=True)


def _finished(spec: RunSpec, run_dir: Path) -> RunResult:
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
    return RunResult(spec, "skipped", run_dir, final=_read_final(run_dir))


def _read_final(run_dir: Path) -> dict[str, float]:
    try:
        return json.loads((run_dir / "result.json").read_text()).get("final", {})
    except (OSError, json.JSONDecodeError):
        return {}


# ------------------------------------------------------------------------------------------------ the grid


def run_grid(specs: Sequence[RunSpec] | Suite, root: Path | str = RUNS_DIR, *, backend: str = "local",
             progress: bool = True, ray_address: str | None = None, gpus_per_run: float = 0.0,
             cpus_per_run: float = 1.0, tensorboard: bool = True) -> list[RunResult]:
    """Run every spec (skipping finished ones) with the local or the Ray backend; return one result per spec."""
    if isinstance(specs, Suite):
        specs = specs.runs()
    specs = list(specs)
    rel = [s.relpath() for s in specs]
    if len(set(rel)) != len(rel):
        raise SuiteError("two runs of the grid would write the same folder")
    root = Path(root)
    if backend == "ray":
        from recgym.benchmarks.ray_backend import run_grid_ray

        return run_grid_ray(specs, root, address=ray_address, gpus_per_run=gpus_per_run,
                            cpus_per_run=cpus_per_run, progress=progress, tensorboard=tensorboard)
    if backend != "local":
        raise ValueError(f"unknown backend {backend!r}; valid: ['local', 'ray']")
    return _run_local(specs, root, progress=progress, tensorboard=tensorboard)


def grid_progress(enabled: bool):  # noqa: ANN201
    """A rich Progress for the grid (disabled: a no-op progress)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=False)


def _run_local(specs: list[RunSpec], root: Path, *, progress: bool, tensorboard: bool) -> list[RunResult]:
    from rich.markup import escape

    results: list[RunResult] = []
    with grid_progress(progress) as bar:
        grid = bar.add_task("grid", total=len(specs))
        for spec in specs:
            label = f"{spec.env_name}/{spec.agent_label}/seed{spec.seed}"
            task = bar.add_task(f"  {label}", total=spec.train_budget)

            def cb(done: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=done, total=total)

            res = execute_run(spec, root, on_progress=cb, tensorboard=tensorboard)
            bar.update(task, completed=spec.train_budget, description=f"  {label} [{res.status}]")
            bar.remove_task(task)
            if res.status == "failed":
                bar.console.print(f"[red]run {label} failed[/red]: {escape(str(res.error))} "
                                  f"(see {res.run_dir / 'error.txt'})")
            elif res.status in ("locked", "conflict"):
                bar.console.print(f"[yellow]run {label} skipped[/yellow]: {escape(str(res.error))}")
            bar.advance(grid)
            results.append(res)
    return results


@dataclass
class ScriptResult:
    name: str
    status: str  # "done", "skipped", "failed"
    run_dir: Path
    wall_s: float = 0.0
    error: str | None = None


def run_scripts(suite: Suite, root: Path | str = RUNS_DIR, *, progress: bool = True) -> list[ScriptResult]:
    """Run the suite's ``[[scripts]]`` (``python -m module args``) into ``<root>/<suite>/<name>/``:
    ``output.txt`` (stdout + stderr), ``command.json``, then ``DONE``; a failure writes ``error.txt``."""
    import subprocess

    out: list[ScriptResult] = []
    for sc in suite.scripts:
        run_dir = Path(root) / suite.name / sc.name
        if (run_dir / "DONE").exists():
            out.append(ScriptResult(sc.name, "skipped", run_dir))
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(run_dir)
        if lock is None:
            out.append(ScriptResult(sc.name, "locked", run_dir, error="held by another process"))
            continue
        try:
            for name in ("output.txt", "error.txt"):
                (run_dir / name).unlink(missing_ok=True)
            cmd = [sys.executable, "-m", sc.module, *sc.args]
            atomic_write_text(run_dir / "command.json", json.dumps({"command": cmd, "versions": _versions()}) + "\n")
            if progress:
                print(f"[{suite.name}] {' '.join(cmd[1:])}", flush=True)
            t0 = time.time()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=sc.timeout_s)
                text, rc = proc.stdout + proc.stderr, proc.returncode
            except subprocess.TimeoutExpired as exc:
                text, rc = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {sc.timeout_s} s", -1
            wall = time.time() - t0
            atomic_write_text(run_dir / "output.txt", text)
            if progress:
                print(text, flush=True)
            if rc != 0:
                atomic_write_text(run_dir / "error.txt", f"exit status {rc}\n{text[-4000:]}")
                out.append(ScriptResult(sc.name, "failed", run_dir, wall, f"exit status {rc}"))
                continue
            atomic_write_text(run_dir / "DONE", json.dumps({"finished": time.time(), "wall_s": wall}) + "\n")
            out.append(ScriptResult(sc.name, "done", run_dir, wall))
        finally:
            lock.unlink(missing_ok=True)
    return out


def summarize(results: Sequence[RunResult]) -> dict[str, int]:
    """Counts per status."""
    out: dict[str, int] = {}
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out

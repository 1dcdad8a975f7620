"""Benchmark suites: the TOML format, its parsing and its validation (format: ``suites/README.md``).

A suite is a grid of (env, agent, seed) runs (``[[envs]]`` x ``[[agents]]`` x ``seeds``), a list of
measurements that are not such runs (``[[probes]]``: throughput, data load times, world-model quality; see
`recgym.benchmarks.probes`), or both, plus an optional ``[report]`` table naming the layout `recgym report`
uses. Every error names the file and the line. Expanding the grid into run specs is `recgym.benchmarks.grid`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recgym.benchmarks.validate import (  # noqa: F401  (re-exported: moved there, imported from here)
    agent_config_problem,
    device_problem,
    device_unavailable,
    env_kwargs_problem,
    import_plugins,
    valid_protocols,
)

SUITES_DIR = Path(__file__).resolve().parent / "suites"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
SUITE_RECORD = "suite.json"  # written into runs/<suite>/ so `recgym report` knows the suite's layout

LAYOUTS = ("default", "agents")
AGGREGATIONS = {"curve": "curve_mean", "final": "final", "published": "published_agg"}
# Report columns that are not metrics: mean wall seconds per run, finished seeds, the budget and its unit.
PLAIN_COLUMNS = ("wall_s", "seeds", "budget")


class SuiteError(ValueError):
    """A suite file (or flag set) is invalid; the message names the file and line."""


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
    eval_actions: str | None = None  # test-time actions (recgym.agents.eval_actions); sets config.eval_actions
    seeds: list[int] | None = None  # this agent's seeds (default: the suite's)
    line: int = 0


@dataclass
class ProbeEntry:
    """One measurement: ``probe`` is a name in `recgym.benchmarks.probes.PROBES`, ``args`` its keyword args."""

    name: str
    probe: str
    args: dict[str, Any] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    line: int = 0


@dataclass(frozen=True)
class Column:
    """One column of the ``agents`` report layout (see `parse_column`)."""

    text: str
    kind: str  # "metric", "ratio" or one of PLAIN_COLUMNS
    metric: str | None = None
    aggregation: str | None = None  # "curve_mean" / "final"
    ref_label: str | None = None  # ratio: the agent row whose mean is the denominator
    ref_metric: str | None = None


def parse_column(text: str) -> Column:
    """``METRIC:curve|final|published`` (``published``: the protocol source's published aggregation of the run's
    curve, `recgym.benchmarks.report.aggregation`), ``METRIC:AGG/AGENT:METRIC`` (ours over another row's final
    mean), or a plain column (``wall_s``, ``seeds``, ``budget``); ValueError with the grammar otherwise."""
    if text in PLAIN_COLUMNS:
        return Column(text, text)
    num, _, den = text.partition("/")
    metric, _, agg = num.partition(":")
    if not metric or agg not in AGGREGATIONS:
        raise ValueError(f"report column {text!r}: expected METRIC:curve, METRIC:final, METRIC:published, "
                         f"METRIC:AGG/AGENT:METRIC or one of {list(PLAIN_COLUMNS)}")
    if not den:
        return Column(text, "metric", metric, AGGREGATIONS[agg])
    label, _, ref_metric = den.partition(":")
    if not label or not ref_metric:
        raise ValueError(f"report column {text!r}: the denominator must read AGENT:METRIC (e.g. gt_oracle:optimal)")
    return Column(text, "ratio", metric, AGGREGATIONS[agg], label, ref_metric)


@dataclass
class ReportConfig:
    """``[report]``: ``layout = "default"`` (one table per env, every metric) or ``"agents"`` (one table, an
    agent per row, ``columns`` for each env in ``envs``; ``long = true``: a row per (env, agent))."""

    layout: str = "default"
    columns: list[str] = field(default_factory=list)
    envs: list[str] | None = None
    long: bool = False
    title: str = ""

    def parsed_columns(self) -> list[Column]:
        return [parse_column(c) for c in self.columns]


@dataclass
class Suite:
    """A validated grid (env x agent x seed runs) and/or a list of probes, with its report layout."""

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
    probes: list[ProbeEntry] = field(default_factory=list)
    report: ReportConfig = field(default_factory=ReportConfig)

    def missing_data(self) -> dict[str, list[str]]:
        """Env and probe entries whose ``requires`` files are missing under the data root (they are not run)."""
        from recgym.data.paths import data_root

        root = data_root()
        out = {}
        for entry in [*self.envs, *self.probes]:
            missing = [r for r in entry.requires if not (root / r).exists()]
            if missing:
                out[entry.name] = missing
        return out

    def seeds_of(self, agent: AgentEntry) -> list[int]:
        """The seeds an agent entry runs (its own ``seeds``, else the suite's)."""
        return self.seeds if agent.seeds is None else agent.seeds

    def n_runs(self) -> int:
        """How many (env, agent, seed) runs the grid holds (env entries with missing data included)."""
        return sum(len(self.seeds_of(a)) for _, a in self.pairs())

    def pairs(self) -> list[tuple[EnvEntry, AgentEntry]]:
        """The (env entry, agent entry) pairs of the grid, env-major (agent restrictions applied)."""
        return [(e, a) for e in self.envs for a in self.agents if a.envs is None or e.name in a.envs]

    def record(self) -> dict[str, Any]:
        """What `recgym report` needs to know about the suite (written as ``runs/<suite>/suite.json``)."""
        return {"name": self.name, "description": self.description, "report": asdict(self.report),
                "envs": [e.name for e in self.envs], "agents": [a.label for a in self.agents],
                "probes": [p.name for p in self.probes]}


def save_suite_record(suite: Suite, root: Path | str) -> Path:
    """Write ``<root>/<suite>/suite.json`` (atomically)."""
    from recgym.data.cache import atomic_write_bytes

    path = Path(root) / suite.name / SUITE_RECORD
    atomic_write_bytes(path, (json.dumps(suite.record(), indent=2, sort_keys=True) + "\n").encode())
    return path


def load_suite_record(suite_dir: Path | str) -> dict[str, Any] | None:
    """The ``suite.json`` of a runs folder (None when absent: runs made before it existed use the default)."""
    path = Path(suite_dir) / SUITE_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


# ------------------------------------------------------------------------------------------ suite parsing

_SUITE_FIELDS = {"name", "description", "seeds", "train_budget", "eval_episodes", "eval_every", "num_envs",
                 "device", "imports"}
_ENV_FIELDS = {"name", "id", "eval_id", "protocol", "kwargs", "eval_kwargs", "published", "requires"}
_AGENT_FIELDS = {"name", "label", "config", "envs", "train_budget", "eval_every", "published", "eval_actions",
                 "seeds"}
_PROBE_FIELDS = {"name", "probe", "args", "requires"}
_REPORT_FIELDS = {"layout", "columns", "envs", "long", "title"}
_TOP_FIELDS = ("agents", "envs", "probes", "report", "suite")


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
    raise SuiteError(f"unknown suite {str(suite)!r}: not a file and not a shipped suite; shipped suites: "
                     f"{shipped_suites()}")


def shipped_suites() -> list[str]:
    """Names of the suites under ``recgym/benchmarks/suites/``."""
    return sorted(q.stem for q in SUITES_DIR.glob("*.toml"))


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


class _Parser:
    """Turns one suite file's TOML tables into entries, raising `SuiteError` at the offending line."""

    def __init__(self, path: Path, lines: _Lines) -> None:
        self.path, self.lines = path, lines

    def fail(self, table: str, idx: int, key: str | None, msg: str) -> SuiteError:
        return _err(self.path, self.lines.line(table, idx, key), msg)

    def check_fields(self, table: str, idx: int, raw: dict[str, Any], valid: set[str]) -> None:
        for k in raw:
            if k not in valid:
                header = f"[[{table}]]" if table in ("envs", "agents", "probes") else f"[{table}]"
                raise self.fail(table, idx, k, f"unknown field {k!r} in {header}; valid: {sorted(valid)}")

    def need_int(self, table: str, idx: int, key: str, value: Any, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(table, idx, key, f"{key} must be an integer >= {minimum}, got {value!r}")
        return value

    def name(self, table: str, idx: int, what: str, value: Any) -> str:
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise self.fail(table, idx, "label" if what == "agent label" else "name",
                            f"{what} {value!r} must match {NAME_RE.pattern}")
        return value

    def str_list(self, table: str, idx: int, key: str, value: Any, what: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise self.fail(table, idx, key, f"{key} must be a list of {what}")
        return list(value)

    def table(self, table: str, idx: int, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(table, idx, key, f"{key} must be a table")
        return dict(value)

    def entries(self, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
        raw = data.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
            raise self.fail(key, 0, None, f"{key} must be an array of tables ([[{key}]])")
        return raw

    def env(self, i: int, e: dict[str, Any]) -> EnvEntry:
        self.check_fields("envs", i, e, _ENV_FIELDS)
        if "id" not in e:
            raise self.fail("envs", i, None, "[[envs]] entry needs `id` (a registered env id)")
        kwargs = {k: self.table("envs", i, k, e[k]) for k in ("kwargs", "eval_kwargs") if k in e}
        return EnvEntry(name=self.name("envs", i, "env name", str(e.get("name", e["id"]))), id=e["id"],
                        eval_id=e.get("eval_id"), protocol=e.get("protocol"), kwargs=kwargs.get("kwargs", {}),
                        eval_kwargs=kwargs.get("eval_kwargs", {}), published=e.get("published"),
                        requires=self.str_list("envs", i, "requires", e.get("requires", []),
                                               "paths under the data root"),
                        line=self.lines.line("envs", i))

    def agent(self, i: int, a: dict[str, Any]) -> AgentEntry:
        self.check_fields("agents", i, a, _AGENT_FIELDS)
        if "name" not in a:
            raise self.fail("agents", i, None, "[[agents]] entry needs `name` (a registered agent)")
        restrict = a.get("envs")
        if restrict is not None:
            restrict = self.str_list("agents", i, "envs", restrict, "env entry names")
        tb, ee = a.get("train_budget"), a.get("eval_every")
        config = self.table("agents", i, "config", a.get("config", {}))
        actions = a.get("eval_actions")
        if actions is not None:
            from recgym.agents.eval_actions import parse_eval_actions

            try:
                parse_eval_actions(actions)
            except ValueError as exc:
                raise self.fail("agents", i, "eval_actions", str(exc)) from exc
            if "eval_actions" in config and config["eval_actions"] != actions:
                raise self.fail("agents", i, "eval_actions", f"eval_actions={actions!r} and config.eval_actions="
                                f"{config['eval_actions']!r} disagree; give one")
        seeds = None if "seeds" not in a else self.seeds("agents", i, a["seeds"])
        return AgentEntry(name=a["name"], label=self.name("agents", i, "agent label", str(a.get("label", a["name"]))),
                          config=config, envs=restrict,
                          train_budget=None if tb is None else self.need_int("agents", i, "train_budget", tb, 0),
                          eval_every=None if ee is None else self.need_int("agents", i, "eval_every", ee, 0),
                          published=a.get("published"), eval_actions=actions, seeds=seeds,
                          line=self.lines.line("agents", i))

    def seeds(self, table: str, i: int, value: Any) -> list[int]:
        """A seed count or a list of distinct non-negative integers, as a list."""
        seeds = list(range(value)) if isinstance(value, int) and not isinstance(value, bool) else value
        if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
            raise self.fail(table, i, "seeds",
                            f"seeds must be a count or a list of distinct non-negative integers, got {value!r}")
        return [int(s) for s in seeds]

    def probe(self, i: int, p: dict[str, Any]) -> ProbeEntry:
        self.check_fields("probes", i, p, _PROBE_FIELDS)
        if not isinstance(p.get("probe"), str):
            raise self.fail("probes", i, None, "[[probes]] entry needs `probe` (a name in recgym.benchmarks.probes)")
        return ProbeEntry(name=self.name("probes", i, "probe name", str(p.get("name", p["probe"]))),
                          probe=p["probe"], args=self.table("probes", i, "args", p.get("args", {})),
                          requires=self.str_list("probes", i, "requires", p.get("requires", []),
                                                 "paths under the data root"),
                          line=self.lines.line("probes", i))

    def report(self, raw: Any) -> ReportConfig:
        if not isinstance(raw, dict):
            raise self.fail("", 0, "report", "`report` must be a table ([report])")
        self.check_fields("report", 0, raw, _REPORT_FIELDS)
        layout = raw.get("layout", "default")
        if layout not in LAYOUTS:
            raise self.fail("report", 0, "layout", f"unknown report layout {layout!r}; valid: {list(LAYOUTS)}")
        columns = self.str_list("report", 0, "columns", raw.get("columns", []), "column names")
        for c in columns:
            try:
                parse_column(c)
            except ValueError as exc:
                raise self.fail("report", 0, "columns", str(exc)) from exc
        if layout == "agents" and not columns:
            raise self.fail("report", 0, "layout", 'layout = "agents" needs `columns` (e.g. ["R_cumu:final"])')
        envs = raw.get("envs")
        if not isinstance(raw.get("long", False), bool):
            raise self.fail("report", 0, "long", "long must be true or false")
        return ReportConfig(layout=layout, columns=columns, long=raw.get("long", False),
                            envs=None if envs is None else self.str_list("report", 0, "envs", envs, "env entry names"),
                            title=str(raw.get("title", "")))


def load_suite(suite: str | os.PathLike[str], *, validate: bool = True) -> Suite:
    """Parse (and by default validate) a suite: a shipped name such as ``quick`` or a TOML path."""
    path = resolve_suite_path(suite)
    text = path.read_text(encoding="utf-8")
    data = _toml_load(text, path)
    lines = _Lines(text)
    p = _Parser(path, lines)
    unknown = sorted(set(data) - set(_TOP_FIELDS))
    if unknown:
        table = unknown[0] if (unknown[0], 0) in lines.starts else ""
        raise _err(path, lines.line(table, 0, None if table else unknown[0]),
                   f"unknown top-level field(s) {unknown}; valid: {list(_TOP_FIELDS)}")
    head = data.get("suite", {})
    if not isinstance(head, dict):
        raise _err(path, lines.line("", 0, "suite"), "`suite` must be a table ([suite])")
    p.check_fields("suite", 0, head, _SUITE_FIELDS)
    name = p.name("suite", 0, "suite name", head.get("name", path.stem))
    imports = p.str_list("suite", 0, "imports", head.get("imports", []), "module names")
    probes = [p.probe(i, x) for i, x in enumerate(p.entries(data, "probes"))]
    report = p.report(data.get("report", {}))
    common = dict(name=name, description=str(head.get("description", "")), imports=tuple(imports), path=path,
                  probes=probes, report=report)
    if "envs" not in data and "agents" not in data:
        if not probes:
            raise _err(path, 1, "a suite needs [[envs]] and [[agents]] entries, or [[probes]]")
        for k in head:
            if k not in ("name", "description", "imports"):
                raise p.fail("suite", 0, k, f"field {k!r} has no meaning in a probes-only suite")
        suite_obj = Suite(envs=[], agents=[], seeds=[], train_budget=0, **common)
    else:
        seeds = p.seeds("suite", 0, head.get("seeds", [0]))
        if "train_budget" not in head:
            raise p.fail("suite", 0, None, "[suite] needs train_budget (in each agent's budget unit)")
        device = head.get("device", "cpu")
        if device_problem(device):
            raise p.fail("suite", 0, "device", device_problem(device))
        envs = [p.env(i, e) for i, e in enumerate(p.entries(data, "envs"))]
        agents = [p.agent(i, a) for i, a in enumerate(p.entries(data, "agents"))]
        if not envs:
            raise _err(path, 1, "a suite needs at least one [[envs]] entry")
        if not agents:
            raise _err(path, 1, "a suite needs at least one [[agents]] entry")
        suite_obj = Suite(
            envs=envs, agents=agents, seeds=[int(s) for s in seeds],
            train_budget=p.need_int("suite", 0, "train_budget", head["train_budget"], 1),
            eval_episodes=p.need_int("suite", 0, "eval_episodes", head.get("eval_episodes", 100), 1),
            eval_every=p.need_int("suite", 0, "eval_every", head.get("eval_every", 0), 0),
            num_envs=p.need_int("suite", 0, "num_envs", head.get("num_envs", 16), 1), device=device, **common)
    if validate:
        validate_suite(suite_obj, lines)
    return suite_obj


def validate_suite(suite: Suite, lines: _Lines | None = None) -> None:
    """Check env ids, agents, protocols, probes, restrictions, the report and folder uniqueness up front."""
    where = suite.path or Path("<flags>")

    def line(table: str, idx: int, key: str | None = None, default: int = 0) -> int:
        return lines.line(table, idx, key) if lines is not None else default

    try:
        import_plugins(suite.imports)
    except ImportError as exc:
        raise _err(where, line("suite", 0, "imports"), f"cannot import plugin module: {exc}") from exc
    if suite.envs or suite.agents:
        if device_problem(suite.device):
            raise _err(where, line("suite", 0, "device"), device_problem(suite.device))
        if not isinstance(suite.num_envs, int) or suite.num_envs < 1:
            raise _err(where, line("suite", 0, "num_envs"), f"num_envs must be an integer >= 1, got {suite.num_envs!r}")
    seen_envs = _validate_envs(suite, where, line) if suite.envs else set()
    seen_labels: set[str] = set()
    if suite.agents:
        from recgym.agents.base import registered_agents

        agents = set(registered_agents())
        for i, a in enumerate(suite.agents):
            if a.name not in agents:
                raise _err(where, line("agents", i, "name", a.line),
                           f"unknown agent {a.name!r}; registered agents: {sorted(agents)}")
            problem = agent_config_problem(a, suite)
            if problem:
                raise _err(where, line("agents", i, "config", a.line), problem)
            if a.label in seen_labels:
                raise _err(where, line("agents", i, "label", a.line),
                           f"duplicate agent label {a.label!r}: give each [[agents]] entry of the same agent its "
                           "own `label` (run folders must be unique)")
            seen_labels.add(a.label)
            for r in a.envs or []:
                if r not in seen_envs:
                    raise _err(where, line("agents", i, "envs", a.line),
                               f"envs names unknown env entry {r!r}; entries: {sorted(seen_envs)}")
    _validate_probes(suite, where, line, seen_envs | seen_labels)
    for r in suite.report.envs or []:
        if r not in seen_envs:
            raise _err(where, line("report", 0, "envs"), f"[report] envs names unknown env entry {r!r}; "
                       f"entries: {sorted(seen_envs)}")
    for c in suite.report.parsed_columns():
        if c.ref_label is not None and c.ref_label not in seen_labels:
            raise _err(where, line("report", 0, "columns"), f"report column {c.text!r} names unknown agent label "
                       f"{c.ref_label!r}; labels: {sorted(seen_labels)}")
    if suite.envs:
        pairs = [(e.name, a.label) for e, a in suite.pairs()]
        if not pairs:
            raise _err(where, 1, "the suite has no runs (every agent is restricted away from every env)")
        if len(set(pairs)) != len(pairs):  # cannot happen after the checks above; kept as the invariant
            raise _err(where, 1, "two runs would share a folder")


def _validate_envs(suite: Suite, where: Path, line: Any) -> set[str]:
    import gymnasium as gym

    import recgym  # noqa: F401  (registers the env ids)

    known_envs = set(gym.registry)
    seen: set[str] = set()
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
        for env_id, kw, kw_key in ((e.id, e.kwargs, "kwargs"), (e.eval_id, e.eval_kwargs or e.kwargs, "eval_kwargs")):
            if env_id is None:
                continue
            problem = env_kwargs_problem(env_id, {**({"protocol": e.protocol} if e.protocol else {}), **kw})
            if problem:
                raise _err(where, line("envs", i, kw_key, e.line), problem)
        if e.name in seen:
            raise _err(where, line("envs", i, "name", e.line), f"duplicate env name {e.name!r} (run folders must be unique)")
        seen.add(e.name)
    return seen


def _validate_probes(suite: Suite, where: Path, line: Any, taken: set[str]) -> None:
    import inspect

    from recgym.benchmarks.probes import PROBES

    names: set[str] = set()
    for i, p in enumerate(suite.probes):
        if p.probe not in PROBES:
            raise _err(where, line("probes", i, "probe", p.line),
                       f"unknown probe {p.probe!r}; probes: {sorted(PROBES)}")
        try:  # the probes are plain functions: their keyword arguments are the valid `args`
            inspect.signature(PROBES[p.probe]).bind(**p.args)
        except TypeError as exc:
            params = sorted(inspect.signature(PROBES[p.probe]).parameters)
            raise _err(where, line("probes", i, "args", p.line),
                       f"probe {p.probe!r}: bad args ({exc}); valid args: {params}") from exc
        if p.name in names or p.name in taken:
            raise _err(where, line("probes", i, "name", p.line),
                       f"probe name {p.name!r} is already used by another entry (run folders must be unique)")
        names.add(p.name)


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
    if not NAME_RE.match(name):
        raise SuiteError(f"<flags>: suite name {name!r} must match {NAME_RE.pattern}")
    suite = Suite(name=name, envs=env_entries, agents=agent_entries, seeds=seed_list, train_budget=int(train_budget),
                  eval_episodes=int(eval_episodes), eval_every=int(eval_every), num_envs=int(num_envs),
                  device=device, imports=tuple(imports))
    if validate:
        validate_suite(suite)
    return suite

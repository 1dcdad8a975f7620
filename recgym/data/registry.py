"""The dataset registry: every fact about a dataset that more than one module needs, in one `DatasetInfo`.

A `DatasetInfo` names the dataset (canonical name, aliases, the tag used in env ids), says where its files live
(folder under the data root, files the loader reads, official checksums, how to download or obtain them), how to
load it (a ``"module:function"`` string, imported only when the dataset is loaded, or a callable), what its
ground truth is, which quit rule its protocol uses, which env families get an id for it, and lighter model
configs for large sets. Everything else reads these entries: `recgym.data.load_dataset`, the paths, cache,
verify and download helpers, the env-id registration, the world-model and DiffRec defaults and the CLI.

Adding a dataset is one `register_dataset(DatasetInfo(...))` call plus its loader; `import recgym` installs a
listener so the env ids (e.g. ``GroundTruthRec-<env_tag>-v0``) are registered with gymnasium at that moment.
Per-dataset protocol and shaping values (quit window N, threshold M, reward-shaping lambdas) are env facts and
stay in `recgym.envs`, keyed by `protocol_key`.

This module imports neither numpy, pandas nor torch, so `import recgym` stays light.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recgym.data.base import LoggedDataset

__all__ = [
    "ENV_FAMILIES",
    "GROUND_TRUTH_KINDS",
    "QUIT_RULES",
    "DatasetInfo",
    "ExtraFile",
    "MemberCheck",
    "Source",
    "canonical_name",
    "dataset_info",
    "dataset_names",
    "find_dataset",
    "known_checksums",
    "model_defaults",
    "normalize_name",
    "official_sha256",
    "on_registry_change",
    "protocol_key",
    "register_dataset",
    "registered_datasets",
    "unregister_dataset",
]

# Env families a dataset can be registered for (ids ``<family>-<env_tag>-v0``; entry points in
# `recgym.envs.registration`).
ENV_FAMILIES: tuple[str, ...] = ("GroundTruthRec", "InteractiveRec", "DiffusionDenoise")
# How the complete user x item matrix of the evaluation env was obtained: ``shipped`` (released with the data or
# by a reference repository), ``observed`` (read off fully or densely observed interactions), ``completed``
# (estimated by recgym from unbiased logs), ``exact`` (generated), ``none`` (no ground truth).
GROUND_TRUTH_KINDS: tuple[str, ...] = ("shipped", "observed", "completed", "exact", "none")
QUIT_RULES: tuple[str, ...] = ("distance", "category")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TAG_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def normalize_name(name: str) -> str:
    """The lookup key of a dataset name, alias or env tag: lower case without ``-`` and ``_``."""
    return str(name).lower().replace("-", "").replace("_", "")


# ------------------------------------------------------------------------------------------ download specs


@dataclass(frozen=True)
class MemberCheck:
    """A file that must exist after unpacking (path relative to the dataset folder) and what it must look like."""

    path: str
    min_bytes: int = 1
    header: str | None = None  # exact first line (without the newline)
    n_lines: int | None = None  # exact number of non-empty lines
    n_fields: int | None = None  # whitespace-separated fields on every line (dense ascii matrices)
    min_lines: int | None = None  # at least this many non-empty lines


@dataclass(frozen=True)
class ExtraFile:
    """A single file fetched next to the archive's content (e.g. Coat's pseudo-ground-truth matrix)."""

    url: str
    dest: str  # path relative to the dataset folder
    checksum: tuple[str, str] | None = None  # (algorithm, hex digest)


@dataclass(frozen=True)
class Source:
    """Where a dataset's archive lives, how to check it, and how it maps onto ``<data_dir>/<folder>``.

    ``strip`` is the folder inside the archive whose content becomes ``<folder>/<subdir>``; ``checksum`` is the
    publisher's digest of the archive, or None when none is published (then the unpacked content is checked).
    Used by `recgym.data.download`.
    """

    name: str
    url: str
    archive: str  # file name in the downloads cache
    strip: str  # folder inside the archive to unpack (POSIX path, "" = archive root)
    checks: tuple[MemberCheck, ...]
    checksum: tuple[str, str] | None = None
    subdir: str = ""  # sub-folder of the dataset folder that receives the content ("" = the folder itself)
    size_bytes: int | None = None  # published archive size, for the progress bar only
    extras: tuple[ExtraFile, ...] = field(default_factory=tuple)
    homepage: str = ""

    @property
    def folder(self) -> str:
        """The registered data folder of dataset ``name``."""
        folder = dataset_info(self.name).folder
        if folder is None:
            raise ValueError(f"dataset {self.name!r} has no data folder, so it cannot be downloaded")
        return folder


# ------------------------------------------------------------------------------------------ DatasetInfo


def _frozen(m: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(m))


@dataclass(frozen=True)
class DatasetInfo:
    """Everything recgym knows about one dataset, apart from its parser and its protocol values.

    Attributes:
        name: canonical name (lower case, ``[a-z0-9_]``): `load_dataset` name, ``LoggedDataset.name``, the key of
            every per-dataset table (protocol presets, shaping values).
        env_tag: the dataset's part of env ids, e.g. ``"ML1MNoisy"`` in ``DiffusionDenoise-ML1MNoisy-v0``.
        loader: ``"module:function"`` (imported on first load, so the registry stays light) or a callable;
            called as ``loader(data_dir=..., **loader_kwargs, **kwargs)`` and returning a `LoggedDataset`.
        aliases: other accepted names (matched like the name: case, ``-`` and ``_`` are ignored).
        folder: sub-folder of the data root holding the files; None for generated datasets.
        files: files (relative to the data root) the loader reads by default; `recgym.data.cache.verify` checks them.
        presence_files: alternative complete sets of files whose presence means the dataset is installed
            (``recgym data list``); default: ``(files,)``.
        checksums: official sha256 of released files (path relative to the data root -> hex digest).
        checksum_prefixes: path prefixes that select this dataset's lines of a ``SHA256SUMS`` file; default
            ``(folder + "/",)``.
        search_subdirs: sub-folders of ``folder`` where official archives put the files (searched in order).
        ground_truth: one of `GROUND_TRUTH_KINDS`. quit_rule: one of `QUIT_RULES` (the loader's ``quit_rule``).
        env_families: the `ENV_FAMILIES` that get an id ``<family>-<env_tag>-v0``; GroundTruthRec needs a ground
            truth.
        variant_of: canonical name of the dataset this one is a variant of (same folder, same download, same
            protocol values), e.g. ``ml1m`` for ``ml1m_noisy``.
        loader_kwargs: fixed keyword arguments of the loader (e.g. ``{"variant": "noisy"}``).
        download: where `recgym data download` fetches the files from; None if not downloadable.
        access_hint: how to obtain files that cannot be downloaded (``{folder}`` is replaced by the target folder).
        origin, licence: shown by ``recgym data list``.
        model_defaults: model kind (``deepfm``, ``diffusion``, ``mf``, ``knn``, ``diffrec``) -> config overrides
            used when no config is given (lighter settings for large sets).
    """

    name: str
    env_tag: str
    loader: str | Callable[..., LoggedDataset]
    aliases: tuple[str, ...] = ()
    folder: str | None = None
    files: tuple[str, ...] = ()
    presence_files: tuple[tuple[str, ...], ...] | None = None
    checksums: Mapping[str, str] = field(default_factory=dict, hash=False)
    checksum_prefixes: tuple[str, ...] | None = None
    search_subdirs: tuple[str, ...] = ("",)
    ground_truth: str = "none"
    quit_rule: str = "distance"
    env_families: tuple[str, ...] = ("GroundTruthRec", "InteractiveRec")
    variant_of: str | None = None
    loader_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    download: Source | None = None
    access_hint: str = ""
    origin: str = ""
    licence: str = ""
    model_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        where = f"DatasetInfo(name={self.name!r})"
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"{where}: name must be lower case letters, digits and '_', starting with a letter")
        if not isinstance(self.env_tag, str) or not _TAG_RE.match(self.env_tag):
            raise ValueError(f"{where}: env_tag={self.env_tag!r} must be letters and digits (it goes into env ids)")
        if not (callable(self.loader) or (isinstance(self.loader, str) and re.match(r"^[\w.]+:\w+$", self.loader))):
            raise ValueError(f"{where}: loader={self.loader!r}, expected a callable or a 'module:function' string")
        if self.ground_truth not in GROUND_TRUTH_KINDS:
            raise ValueError(f"{where}: ground_truth={self.ground_truth!r}, expected one of {GROUND_TRUTH_KINDS}")
        if self.quit_rule not in QUIT_RULES:
            raise ValueError(f"{where}: quit_rule={self.quit_rule!r}, expected one of {QUIT_RULES}")
        unknown = [f for f in self.env_families if f not in ENV_FAMILIES]
        if unknown:
            raise ValueError(f"{where}: unknown env families {unknown}; valid: {list(ENV_FAMILIES)}")
        if "GroundTruthRec" in self.env_families and self.ground_truth == "none":
            raise ValueError(f"{where}: GroundTruthRec needs a ground truth, but ground_truth='none'")
        if self.download is not None and self.download.name != self.name:
            raise ValueError(f"{where}: download.name={self.download.name!r} differs from the dataset name")
        if (self.files or self.download is not None) and self.folder is None:
            raise ValueError(f"{where}: files or a download need a folder under the data root")
        for attr in ("aliases", "files", "search_subdirs", "env_families"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        object.__setattr__(self, "checksums", _frozen(self.checksums))
        object.__setattr__(self, "loader_kwargs", _frozen(self.loader_kwargs))
        object.__setattr__(self, "model_defaults",
                           MappingProxyType({k: _frozen(v) for k, v in self.model_defaults.items()}))
        if self.presence_files is None:
            object.__setattr__(self, "presence_files", (self.files,) if self.files else ())
        if self.checksum_prefixes is None:
            object.__setattr__(self, "checksum_prefixes", (self.folder + "/",) if self.folder else ())

    def resolve_loader(self) -> Callable[..., LoggedDataset]:
        """The loader function (imports its module when given as ``"module:function"``)."""
        if callable(self.loader):
            return self.loader
        module, _, attr = self.loader.partition(":")
        return getattr(importlib.import_module(module), attr)

    def load(self, data_dir: Any = None, **kwargs: Any) -> LoggedDataset:
        """Load the dataset; checks that the loader returned this dataset (name and quit rule)."""
        ds = self.resolve_loader()(data_dir=data_dir, **self.loader_kwargs, **kwargs)
        if getattr(ds, "name", None) != self.name or getattr(ds, "quit_rule", None) != self.quit_rule:
            raise ValueError(
                f"loader {self.loader!r} of dataset {self.name!r} returned a dataset named "
                f"{getattr(ds, 'name', None)!r} with quit_rule={getattr(ds, 'quit_rule', None)!r}; the registry "
                f"entry says name={self.name!r}, quit_rule={self.quit_rule!r}"
            )
        return ds

    @property
    def downloadable_as(self) -> str | None:
        """The name `recgym data download` takes for this dataset's files (its own or its base's), or None."""
        base = self if self.variant_of is None else find_dataset(self.variant_of)
        return None if base is None or base.download is None else base.name


# ------------------------------------------------------------------------------------------ the registry

_REGISTRY: dict[str, DatasetInfo] = {}  # canonical name -> info, in registration order
_INDEX: dict[str, str] = {}  # normalised name / alias / env tag -> canonical name
_LISTENERS: list[Callable[[DatasetInfo, bool], None]] = []


def on_registry_change(listener: Callable[[DatasetInfo, bool], None]) -> None:
    """Call ``listener(info, registered)`` after every (un)registration (``registered`` False on removal).

    `recgym.envs.registration` uses it to keep gymnasium's env ids in step with the registry.
    """
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def _keys(info: DatasetInfo) -> list[tuple[str, str]]:
    return [(normalize_name(s), s) for s in (info.name, info.env_tag, *info.aliases)]


def register_dataset(info: DatasetInfo, *, replace: bool = False) -> DatasetInfo:
    """Add ``info`` to the registry (and, once `recgym` is imported, its env ids to gymnasium); return it.

    Raises ValueError when the name, an alias or the env tag is already taken by another dataset, or when the
    name is registered and ``replace`` is False.
    """
    if not isinstance(info, DatasetInfo):
        raise TypeError(f"register_dataset expects a DatasetInfo, got {type(info).__name__}")
    if info.name in _REGISTRY and not replace:
        raise ValueError(f"dataset {info.name!r} is already registered (pass replace=True to replace it)")
    for key, given in _keys(info):
        owner = _INDEX.get(key)
        if owner is not None and owner != info.name:
            raise ValueError(f"dataset {info.name!r}: {given!r} already names dataset {owner!r}")
    if info.variant_of is not None and info.variant_of not in _REGISTRY:
        raise ValueError(f"dataset {info.name!r}: variant_of={info.variant_of!r} is not a registered dataset")
    previous = unregister_dataset(info.name) if info.name in _REGISTRY else None
    _REGISTRY[info.name] = info
    for key, _ in _keys(info):
        _INDEX[key] = info.name
    try:
        for listener in list(_LISTENERS):
            listener(info, True)
    except Exception:  # e.g. an env id taken by another env: leave the registry as it was
        unregister_dataset(info.name)
        if previous is not None:
            register_dataset(previous)
        raise
    return info


def unregister_dataset(name: str) -> DatasetInfo:
    """Remove a dataset (and its env ids) from the registry; return its entry. For tests and replacements."""
    info = dataset_info(name)
    del _REGISTRY[info.name]
    for key in [k for k, v in _INDEX.items() if v == info.name]:
        del _INDEX[key]
    for listener in list(_LISTENERS):
        listener(info, False)
    return info


def find_dataset(name: str) -> DatasetInfo | None:
    """The entry a name, alias or env tag refers to, or None."""
    canonical = _INDEX.get(normalize_name(name))
    return None if canonical is None else _REGISTRY[canonical]


def dataset_info(name: str) -> DatasetInfo:
    """The entry a name, alias or env tag refers to; ValueError listing the valid names otherwise."""
    info = find_dataset(name)
    if info is None:
        raise ValueError(f"unknown dataset {name!r}; valid names: {list(_REGISTRY)}")
    return info


def canonical_name(name: str) -> str:
    """The canonical name of a dataset given by name, alias or env tag (ValueError if unknown)."""
    return dataset_info(name).name


def registered_datasets() -> tuple[DatasetInfo, ...]:
    """Every registered entry, in registration order."""
    return tuple(_REGISTRY.values())


def dataset_names() -> tuple[str, ...]:
    """The canonical names, in registration order."""
    return tuple(_REGISTRY)


def protocol_key(name: str) -> str:
    """Key of the per-dataset protocol / shaping tables: the base dataset's canonical name (``ml1m_noisy`` ->
    ``ml1m``); for a name nobody registered (a hand-built `LoggedDataset`), `normalize_name` of it."""
    info = find_dataset(name)
    if info is None:
        return normalize_name(name)
    return info.variant_of or info.name


def model_defaults(name: str, kind: str) -> dict[str, Any]:
    """A copy of the dataset's default config overrides for model ``kind``; {} if none or the name is unknown."""
    info = find_dataset(name)
    return {} if info is None else dict(info.model_defaults.get(kind, {}))


def known_checksums() -> dict[str, str]:
    """Official sha256 of every registered dataset's released files (path relative to the data root)."""
    out: dict[str, str] = {}
    for info in _REGISTRY.values():
        out.update(info.checksums)
    return out


def official_sha256(relpath: str) -> str | None:
    """The official sha256 of a file given relative to the data root, or None if no dataset lists it."""
    for info in _REGISTRY.values():
        if relpath in info.checksums:
            return info.checksums[relpath]
    return None


from recgym.data import catalog  # noqa: E402,F401  (registers the built-in datasets)

"""Info values computed on first read: `Lazy` marks one, `InfoDict` (the type of every info recgym envs return)
resolves it when read, so an entry nobody reads (e.g. an [num_envs, n_items] action mask) costs nothing."""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, ValuesView
from typing import Any

__all__ = ["InfoDict", "Lazy"]


class Lazy:
    """An info value computed by ``fn()`` when it is first read (see `InfoDict`)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn


class InfoDict(dict):
    """The info dict of recgym envs: `Lazy` entries are computed on first read, then stored as plain values.

    Every way of reading a value resolves it: indexing, ``get``, ``items``, ``values``, ``pop``, ``copy``,
    ``==``, ``repr``, pickling and ``{**info}`` / ``dict(info)`` (a Python-level ``__iter__`` makes CPython copy
    through ``keys()`` and ``__getitem__`` instead of reading the raw entries).
    """

    def _resolve(self, key: Any) -> Any:
        v = dict.__getitem__(self, key)
        if isinstance(v, Lazy):
            v = v.fn()
            dict.__setitem__(self, key, v)
        return v

    def _resolve_all(self) -> None:
        for k in list(dict.keys(self)):
            self._resolve(k)

    def __getitem__(self, key: Any) -> Any:
        return self._resolve(key)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._resolve(key) if key in self else default

    def __iter__(self) -> Iterator[Any]:  # dict's, defined in Python so that copies go through __getitem__
        return dict.__iter__(self)

    def items(self) -> ItemsView[Any, Any]:
        self._resolve_all()
        return dict.items(self)

    def values(self) -> ValuesView[Any]:
        self._resolve_all()
        return dict.values(self)

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            v = self._resolve(key)
            dict.__delitem__(self, key)
            return v
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[Any, Any]:
        self._resolve_all()
        return dict.popitem(self)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self._resolve(key)
        dict.__setitem__(self, key, default)
        return default

    def copy(self) -> InfoDict:
        self._resolve_all()
        return InfoDict(self)

    def __or__(self, other: Any) -> InfoDict:
        out = self.copy()
        out.update(other)
        return out

    def __ror__(self, other: Any) -> InfoDict:
        out = InfoDict(other)
        out.update(self)
        return out

    def __eq__(self, other: object) -> bool:
        self._resolve_all()
        if isinstance(other, InfoDict):
            other._resolve_all()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._resolve_all()
        return f"InfoDict({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        self._resolve_all()
        return (InfoDict, (dict(self),))

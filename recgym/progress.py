"""Progress reporting that reads well on a terminal, in a notebook and in a log file.

`progress_bar` is the one way recgym shows progress (training loops, downloads, agents). Where it draws:

- a terminal (the stream is a TTY): an ordinary tqdm bar, redrawn in place;
- a Jupyter notebook: tqdm's notebook widget;
- anything else (a file, a pipe, a CI log): whole lines, at most one per ``RECGYM_PROGRESS_INTERVAL`` seconds
  (default 10) per bar, plus one final line when the bar closes, and never a carriage return. A tqdm bar
  there would write one line per refresh, i.e. thousands per training run.

``RECGYM_PROGRESS`` overrides the choice for every bar: ``bar`` (always redraw), ``lines`` (always lines),
``off`` (nothing). `note` tells the user what is happening in one line (through logging when the application
configured it, else on stderr) without breaking a bar that is being drawn.

This module imports nothing from recgym, so every layer (data, worldmodels, recommenders, agents) may use it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm as _std_tqdm

__all__ = ["DEFAULT_INTERVAL", "LineProgress", "note", "progress_bar", "progress_mode"]

DEFAULT_INTERVAL = 10.0
_MODES = ("auto", "bar", "lines", "off")
_LINE_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def _interval() -> float:
    raw = os.environ.get("RECGYM_PROGRESS_INTERVAL")
    if raw is None or raw == "":
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError as err:
        raise ValueError(f"RECGYM_PROGRESS_INTERVAL={raw!r}: expected a number of seconds") from err
    if value < 0:
        raise ValueError(f"RECGYM_PROGRESS_INTERVAL={raw!r}: expected a number of seconds >= 0")
    return value


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_mode(stream: IO[str] | None = None) -> str:
    """How a bar on ``stream`` (default stderr) is drawn: ``"bar"``, ``"notebook"``, ``"lines"`` or ``"off"``.

    ``RECGYM_PROGRESS`` (``auto``, ``bar``, ``lines``, ``off``) overrides the automatic choice.
    """
    forced = os.environ.get("RECGYM_PROGRESS", "auto").strip().lower() or "auto"
    if forced not in _MODES:
        raise ValueError(f"RECGYM_PROGRESS={forced!r}: expected one of {list(_MODES)}")
    if forced != "auto":
        return forced
    if _in_notebook():
        return "notebook"
    return "bar" if _isatty(stream if stream is not None else sys.stderr) else "lines"


class LineProgress(_std_tqdm):
    """A tqdm that writes whole lines: the first state, then at most one line per ``interval`` seconds, then
    the final state on `close` (whatever ``leave`` says). Every tqdm method works as usual."""

    def __init__(self, *args: Any, interval: float | None = None, **kwargs: Any) -> None:
        self._interval = _interval() if interval is None else float(interval)
        self._last_line_t: float | None = None
        self._last_line = ""
        kwargs.setdefault("mininterval", self._interval)
        total = kwargs.get("total")
        if total is None and args and hasattr(args[0], "__len__"):
            total = len(args[0])
        if total:  # no bar glyphs in a log: numbers only
            kwargs.setdefault("bar_format", _LINE_FORMAT)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Write the bar's state as one line, unless one was written less than ``interval`` seconds ago."""
        if msg == "":  # tqdm clearing the bar: nothing to clear in a log
            return False
        now = time.monotonic()
        if self._last_line_t is not None and now - self._last_line_t < self._interval:
            return False
        return self._write(self.__str__() if msg is None else msg, now)

    def _write(self, line: str, now: float) -> bool:
        line = line.replace("\r", "").rstrip()
        self.fp.write(line + "\n")
        self.fp.flush()
        self._last_line_t, self._last_line = now, line
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: lines already written stay."""

    def close(self) -> None:
        """Write the final state (if it differs from the last line written), then close."""
        if not getattr(self, "disable", True) and getattr(self, "_last_line_t", None) is not None:
            final = self.__str__().replace("\r", "").rstrip()
            if final != self._last_line:
                self._write(final, time.monotonic())
        self.leave = False  # tqdm's own close then only "clears" (a no-op here)
        super().close()


def progress_bar(iterable: Iterable[Any] | None = None, *, total: float | None = None, desc: str | None = None,
                 enabled: bool = True, unit: str = "it", leave: bool = False, file: IO[str] | None = None,
                 interval: float | None = None, **kwargs: Any) -> _std_tqdm:
    """A tqdm progress bar drawn the way `progress_mode` says (see the module docstring); disabled when
    ``enabled`` is False. ``interval``: seconds between lines in a log (default ``RECGYM_PROGRESS_INTERVAL``
    or 10). Extra keyword arguments go to tqdm (``unit_scale``, ``initial``, ...)."""
    mode = progress_mode(file) if enabled else "off"
    common: dict[str, Any] = {"total": total, "desc": desc, "unit": unit, "leave": leave, "file": file, **kwargs}
    if mode == "off":
        return _std_tqdm(iterable, disable=True, **common)
    if mode == "lines":
        return LineProgress(iterable, interval=_interval() if interval is None else interval, **common)
    if mode == "notebook":
        from tqdm.auto import tqdm as auto_tqdm

        return auto_tqdm(iterable, **common)
    common.setdefault("dynamic_ncols", True)
    return _std_tqdm(iterable, **common)


def note(message: str, logger: str = "recgym") -> None:
    """Tell the user what recgym is doing (one line, e.g. a first-use pre-training) without breaking a bar.

    When the application has configured logging (a handler on ``logger`` or the root logger) the message goes
    there at INFO level; otherwise it is printed to stderr, so it is seen without any logging setup.
    """
    log = logging.getLogger(logger)
    if log.hasHandlers():
        log.info(message)
    else:
        _std_tqdm.write(message, file=sys.stderr)

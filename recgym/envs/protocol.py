"""Evaluation protocols of the rec envs: the published quit-rule window N, threshold M, mode and episode length.

A protocol (``protocol=`` of ``GroundTruthRec-*`` and ``InteractiveRec-*``) fixes, per dataset, the quit rule's
window N (``num_leave_compute``) and threshold M (``leave_threshold``), which items form the window early in an
episode (``quit_window``, below), the mode (FB / NX_0 / NX_10) and ``max_turn``. `PROTOCOLS` holds the published values as typed `ProtocolDefaults`; `resolve_protocol` returns
the effective `Protocol` of one env (a named protocol for a dataset, overridden by explicit kwargs). Kept apart
from the env dynamics (`recgym.envs.rec`) so that a new protocol or dataset value is a table edit here.

Quit window (``quit_window``), at step t (t items recommended so far, the check runs from t >= 1):

* ``"published"``: the window of the original code, ``sequence_action[t - N : t]`` with Python slice semantics
  (DORL-codes ``environments/coat/env/Coat.py`` ``_determine_whether_to_leave``, the same line in its Yahoo.py,
  KuaiEnv.py and KuaiRand.py, and in EasyRL4Rec's envs). While t < N the slice start is negative and counts
  from the end, so the window is ``seq[max(0, 2t - N) : t]``: the last ``min(t, N - t)`` items (N = 10: sizes
  1, 2, 3, 4, 5, 4, 3, 2, 1 for t = 1..9), then the last N. Default of ``dorl``, ``dorl_code`` and
  ``easyrl4rec``, whose published numbers were measured with it.
* ``"last_n"``: the last ``min(t, N)`` items, the rule as the papers state it. Default of ``roler`` (N = 1, where
  both windows are the one previous item) and ``custom``.

Sources of the values:

* ``dorl``: the setting of the published tables of DORL ("Alleviating Matthew Effect of Offline Reinforcement
  Learning in Interactive Recommendation", arXiv:2307.04571) for KuaiRec / KuaiRand (N=4, M=0), and the
  defaults of DORL's public code for Coat (N=3, M=10) and Yahoo (N=3, M=120). ``dorl_code`` uses the code
  defaults everywhere (KuaiRec / KuaiRand N=10, M=0).
* ``roler``: ROLeR (arXiv:2407.13163): N=1, M=0, NX_0 on every dataset.
* ``easyrl4rec``: the defaults of EasyRL4Rec (arXiv:2402.15164), FB mode.
* ML-1M has no DORL / ROLeR value: those protocols fall back to N=1, M=0 (``source="fallback"``). EasyRL4Rec's
  ML-1M values (N=7, M=75) were set for its rating ground truth; on recgym's ML-1M ground truth (binary observed
  positives of the DiffRec split) nearly all item distances are below 75, so every episode ends after 2 steps
  (measured: Length 2.00 for random and oracle). Likewise M=120 on recgym's completed Yahoo ground truth
  (median item distance ~20). Kept as published; the env reports the share of item pairs closer than M
  (``close_pair_share``) and a ``note`` when it exceeds 90%.
* ``synthetic`` (all protocols): distance rule with M=0, so nobody quits and every episode lasts ``max_turn``;
  the optimal return is then known exactly (the sum of the user's top-``max_turn`` ground-truth values in NX
  modes, ``max_turn`` x the user's best value in FB).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DATASET_KEYS", "MODES", "PROTOCOLS", "QUIT_RULES", "QUIT_WINDOWS", "Protocol", "ProtocolDefaults",
           "dataset_key", "quit_window_size", "resolve_protocol"]

MODES = ("FB", "NX_0", "NX_10")
QUIT_RULES = ("distance", "category")
QUIT_WINDOWS = ("published", "last_n")
DATASET_KEYS = ("coat", "yahoo", "kuairand", "kuairec", "ml1m", "synthetic")
_FALLBACK = (1, 0.0)  # (N, M) for a dataset a protocol gives no value for


@dataclass(frozen=True)
class ProtocolDefaults:
    """One named protocol: its mode, its episode length, the published (N, M) per dataset key and its quit window."""

    mode: str
    max_turn: int
    values: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    quit_window: str = "last_n"


@dataclass(frozen=True)
class Protocol:
    """The effective protocol of one env: the named protocol's values for the dataset, after explicit overrides.

    ``source`` says where N and M come from: the protocol's name (published), ``"fallback"`` (the protocol has
    no value for this dataset: N=1, M=0) or ``"custom"``. ``quit_window`` is one of `QUIT_WINDOWS` (see the
    module docstring).
    """

    name: str
    dataset: str
    mode: str
    quit_rule: str
    num_leave_compute: int
    leave_threshold: float
    max_turn: int
    source: str
    quit_window: str = "last_n"

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for ``info["protocol"]``, env specs and results JSON)."""
        return dataclasses.asdict(self)


PROTOCOLS: dict[str, ProtocolDefaults] = {
    "dorl": ProtocolDefaults("NX_0", 30, {"coat": (3, 10.0), "yahoo": (3, 120.0), "kuairec": (4, 0.0),
                                          "kuairand": (4, 0.0), "synthetic": (1, 0.0)}, "published"),
    "dorl_code": ProtocolDefaults("NX_0", 30, {"coat": (3, 10.0), "yahoo": (3, 120.0), "kuairec": (10, 0.0),
                                               "kuairand": (10, 0.0), "synthetic": (1, 0.0)}, "published"),
    "roler": ProtocolDefaults("NX_0", 30, {k: (1, 0.0) for k in DATASET_KEYS}, "last_n"),
    "easyrl4rec": ProtocolDefaults("FB", 30, {"coat": (7, 6.0), "yahoo": (3, 120.0), "kuairec": (9, 1.0),
                                              "kuairand": (10, 0.0), "ml1m": (7, 75.0), "synthetic": (1, 0.0)},
                                   "published"),
    "custom": ProtocolDefaults("NX_0", 30, {}, "last_n"),
}


def _integer(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; ValueError naming ``name`` for a bool, a fraction or a non-number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def dataset_key(name: str) -> str:
    """The key of a dataset name in the protocol tables (``"Yahoo-R3"`` -> ``"yahoo"``, ``"ML-1M"`` -> ``"ml1m"``)."""
    # The registry's canonical name, of the base dataset for variants (ml1m_noisy -> ml1m).
    from recgym.data.registry import protocol_key

    return protocol_key(name)


def quit_window_size(t: int, n: int, quit_window: str) -> int:
    """How many of the last items form the quit window at step ``t`` (``t`` items recommended) with window N = ``n``.

    ``"last_n"``: ``min(t, n)``. ``"published"``: the length of the original ``seq[t - n : t]`` on a list of ``t``
    items, i.e. ``min(t, n - t)`` while ``t < n``, then ``n``.
    """
    if quit_window not in QUIT_WINDOWS:
        raise ValueError(f"quit_window={quit_window!r}, expected one of {list(QUIT_WINDOWS)}")
    if t < 0 or n < 0:
        raise ValueError(f"t and n must be >= 0, got t={t}, n={n}")
    if quit_window == "last_n" or t >= n:
        return min(t, n)
    return min(t, n - t)


def resolve_protocol(
    protocol: str | None,
    dataset_name: str,
    dataset_quit_rule: str,
    *,
    mode: str | None = None,
    max_turn: int | None = None,
    num_leave_compute: int | None = None,
    leave_threshold: float | None = None,
    quit_rule: str | None = None,
    quit_window: str | None = None,
) -> Protocol:
    """The effective protocol: the named protocol's defaults for the dataset, overridden by explicit kwargs.

    ``protocol=None`` is ``"custom"`` (N=1, M=0, NX_0, max_turn 30); ``dataset_quit_rule`` is the dataset's own
    rule (``distance`` or ``category``), used unless ``quit_rule`` is given; ``quit_window`` overrides the
    protocol's window (``"published"`` / ``"last_n"``).
    """
    name_key = "custom" if protocol is None else str(protocol).lower()
    if name_key not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid protocols: {sorted(PROTOCOLS)}")
    p = PROTOCOLS[name_key]
    key = dataset_key(dataset_name)
    if name_key == "custom":
        (n_def, m_def), source = _FALLBACK, "custom"
    elif key in p.values:
        (n_def, m_def), source = p.values[key], name_key
    else:
        (n_def, m_def), source = _FALLBACK, "fallback"
    mode_eff = p.mode if mode is None else str(mode).upper()
    if mode_eff not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes: {list(MODES)}")
    rule = dataset_quit_rule if quit_rule is None else quit_rule
    if rule not in QUIT_RULES:
        raise ValueError(f"quit_rule={rule!r}, expected 'distance' or 'category'")
    window = p.quit_window if quit_window is None else str(quit_window)
    if window not in QUIT_WINDOWS:
        raise ValueError(f"quit_window={quit_window!r}, expected one of {list(QUIT_WINDOWS)}")
    n = _integer("num_leave_compute", n_def if num_leave_compute is None else num_leave_compute, 0)
    mt = _integer("max_turn", p.max_turn if max_turn is None else max_turn, 1)
    m_raw = m_def if leave_threshold is None else leave_threshold
    try:
        m = float(m_raw)
    except (TypeError, ValueError):
        m = math.nan
    if isinstance(m_raw, bool) or math.isnan(m):
        raise ValueError(f"leave_threshold must be a number (not NaN: it would silently disable quitting), got {m_raw!r}")
    return Protocol(name=name_key, dataset=key, mode=mode_eff, quit_rule=rule, num_leave_compute=n,
                    leave_threshold=m, max_turn=mt, source=source, quit_window=window)

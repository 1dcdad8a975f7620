"""`BatchedEnv`: the base of every recgym env, a `gymnasium.vector.VectorEnv` batched over torch tensors.

What the base does, so that subclasses only write the dynamics:

* state lives in torch tensors on ``self.device``; ``step`` takes a tensor of actions and returns tensors
  (observations, float32 rewards, bool terminations / truncations, a dict of tensors as info);
* autoreset bookkeeping for the three gymnasium modes, chosen by ``autoreset_mode`` (``NEXT_STEP`` default,
  ``SAME_STEP``, ``DISABLED``; see https://farama.org/Vector-Autoreset-Mode):

  - ``NEXT_STEP``: an env whose episode ended at step t is reset at step t+1; its action at t+1 is ignored,
    its reward is 0 and its flags are False; the observation returned is the new episode's first one.
  - ``SAME_STEP``: ended envs are reset inside the same ``step``; the returned observation is the new
    episode's first one and ``info["final_obs"]`` (a batched observation of the same structure, valid where
    ``info["_final_obs"]`` is True) / ``info["final_info"]`` hold the last observation / info of the
    episodes that ended.
  - ``DISABLED``: nothing is reset automatically; ``reset(options={"reset_mask": mask})`` resets the envs
    in ``mask`` (bool [num_envs]); stepping an env whose episode has ended raises.

* seeding. ``reset(seed=s)`` seeds ``self.generator`` (a ``torch.Generator`` on the device, for batch-level
  randomness) with ``s`` and gives env ``i`` its own stream key ``s + i`` (the same convention as
  gymnasium's ``SyncVectorEnv``, which seeds sub-env ``i`` with ``s + i``). Per-episode randomness (e.g. which
  user an episode gets) comes from `BatchedEnv.per_env_randint`, a counter-based hash of (env key, episode
  index, purpose): it is vectorised, identical on every device, and independent of the batch size. Hence
  env ``i`` of a batched env reset with seed ``s`` replays exactly the episodes of a single env (num_envs=1)
  reset with seed ``s + i`` -- "batched == N independent single envs", checked by `check_vector_env`.
  ``reset()`` without a seed continues every env's stream (its next episode).

Subclasses implement four hooks, all batched and free of per-env Python loops:
``_reset_envs(mask)`` (start a new episode in the envs where ``mask`` is True, leave the others untouched),
``_step_envs(actions, active) -> (reward, terminated, truncated, info)`` (advance the envs where ``active``
is True; the returned reward must be 0 and the flags False where ``active`` is False; the state of inactive
envs may be left changed, since they are exactly the ended envs that the same ``step`` resets), ``_observe()`` and
``_validate_actions(actions, active)`` (convert the actions; whatever it returns is passed to ``_step_envs``);
optionally ``_step_info()`` (info entries returned by both ``reset`` and ``step``, e.g. an action mask),
``_reset_info()`` and ``effective_kwargs()`` (merged into ``env.spec.kwargs``). To be checkable by
`recgym.envs.check_vector_env` (batched == single), a subclass stores its constructor kwargs in
``self._ctor_kwargs`` so `BatchedEnv.make_sibling` can build a copy with another ``num_envs``.

Host syncs. Reading a device value back to Python (``bool(t)``, ``.item()``, ``.tolist()``) stalls a CUDA
stream, so ``step`` reads back at most once: data-dependent checks are registered with `BatchedEnv.defer_check`
(from ``_validate_actions``) and read back together before ``_step_envs`` runs (conversion errors -- shape,
dtype, device -- are raised first, without reading anything back; ``validate_actions = False`` turns the
checks off). A subclass whose ``_reset_envs`` is cheap and exact for an all-False mask sets
``reset_every_step = True``: the autoreset then runs every step on the mask of ended envs instead of after a
``bool(mask.any())`` read-back. Per-episode draws such a reset needs come from `BatchedEnv.episode_randint`
(a table of each env's next episodes: one gather per step instead of four 32-bit hashes). On cpu, where a
read-back costs no more than any other op, subclasses may take data-dependent shortcuts (``_readback_ok``).

Info values. ``_step_info`` / ``_step_envs`` may return `Lazy` values: an `InfoDict` (the type of every
returned info) computes such an entry when it is first read -- by indexing, ``get``, ``items``, ``**``
unpacking, copying -- and keeps the result, so an entry nobody reads (e.g. an [num_envs, n_items] action mask)
costs nothing (both in `recgym.envs.info`, re-exported here).

`SingleEnvAdapter` (`recgym.envs.single`, re-exported here) turns a ``num_envs=1`` batched env into a numpy
``gymnasium.Env`` (for ``gymnasium.make``, ``check_env`` and SB3) without duplicating any dynamics.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recgym.envs.info import InfoDict, Lazy  # re-exported: the info types of every env
from recgym.envs.single import SingleEnvAdapter, to_numpy_tree  # re-exported: the numpy single env

__all__ = [
    "AutoresetMode",
    "BatchedEnv",
    "InfoDict",
    "Lazy",
    "SingleEnvAdapter",
    "as_action_tensor",
    "check_action_range",
    "hash32",
    "resolve_device",
    "to_numpy_tree",
]

_M32 = 0xFFFFFFFF
_SEED_MOD = 1 << 62
_EPISODES_AHEAD = 32  # episodes per env in an `episode_randint` table


# ----------------------------------------------------------------------------------------------------------
# small utilities
# ----------------------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cuda"`` -> ``cuda:<current>`` so device comparisons are exact; ``None`` -> cpu. ValueError naming
    ``device`` for a string torch does not know or a CUDA device this machine does not have."""
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device (expected cpu, cuda, cuda:N or mps)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} requested but torch.cuda.is_available() is False (no CUDA "
                             "build or no GPU); use device='cpu'")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={str(device)!r} requested but only {torch.cuda.device_count()} CUDA device(s) "
                             "are visible")
    return dev


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (xorshift-multiply) on int64 tensors holding values in [0, 2**32).

    Multiplier constants are below 2**31, so no product overflows int64: results are exact and identical on
    every device.
    """
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _M32
    x = x ^ (x >> 16)
    return x


def _hash32_(x: torch.Tensor) -> torch.Tensor:
    """`hash32` in place on values already in [0, 2**32) (fewer temporaries: the episode tables' bulk fills)."""
    x ^= x >> 16
    x.mul_(0x7FEB352D).bitwise_and_(_M32)
    x ^= x >> 15
    x.mul_(0x5BD1E995).bitwise_and_(_M32)
    x ^= x >> 16
    return x


def stream_bits(
    seeds: torch.Tensor, episodes: torch.Tensor, purpose: int = 0, counter: torch.Tensor | None = None
) -> torch.Tensor:
    """32 random bits per element, a pure function of (env key, episode index, purpose, counter) (broadcasting)."""
    h = hash32(seeds)
    h = hash32(h ^ ((seeds >> 32) & _M32))
    h = hash32(h ^ (episodes & _M32))
    h = hash32(h ^ (int(purpose) & _M32))
    if counter is not None:
        h = hash32(h ^ (counter & _M32))
    return h


def _normalise_autoreset(mode: AutoresetMode | str) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    names = {m.name.lower(): m for m in AutoresetMode} | {m.value.lower(): m for m in AutoresetMode}
    key = str(mode).lower()
    if key not in names:
        raise ValueError(
            f"autoreset_mode={mode!r} is not valid; expected one of {[m.name for m in AutoresetMode]}"
        )
    return names[key]


def as_action_tensor(
    actions: Any,
    *,
    num_envs: int,
    device: torch.device,
    kind: str,
    tail_shape: Sequence[int] = (),
    name: str = "actions",
) -> torch.Tensor:
    """Check and convert a batch of actions; clear errors name the value and what was expected.

    ``kind`` is ``"int"`` (converted to int64) or ``"float"`` (converted to float32). Numpy arrays and lists
    are accepted and moved to ``device``; a torch tensor on another device is an error (no silent copy).
    """
    if isinstance(actions, torch.Tensor):
        if not _same_device(actions.device, device):
            raise ValueError(f"{name} are on device {actions.device}, expected the env's device {device}")
        t = actions
    else:
        arr = np.asarray(actions)
        if arr.dtype == object:
            raise TypeError(f"{name} must be a tensor or array of numbers, got {type(actions).__name__}")
        t = torch.as_tensor(arr, device=device)
    if kind == "int":
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise TypeError(f"{name} have dtype {t.dtype}, expected an integer dtype (item ids, e.g. torch.int64)")
        t = t.to(torch.int64)
    elif kind == "float":
        if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64)) or t.dtype.is_complex:
            raise TypeError(f"{name} have dtype {t.dtype}, expected a floating dtype (torch.float32)")
        t = t.to(torch.float32)
    else:  # pragma: no cover - programming error
        raise ValueError(f"kind must be 'int' or 'float', got {kind!r}")
    expected = (num_envs, *tuple(tail_shape))
    if tuple(t.shape) != expected:
        raise ValueError(f"{name} have shape {tuple(t.shape)}, expected {expected} (num_envs={num_envs})")
    return t


def check_action_range(
    actions: torch.Tensor,
    low: float | torch.Tensor,
    high: float | torch.Tensor,
    active: torch.Tensor | None = None,
    name: str = "actions",
    inclusive_high: bool = False,
) -> None:
    """Raise ValueError naming the first offending env, value and the valid range (one device sync)."""
    bad = actions < low
    bad = bad | (actions > high if inclusive_high else actions >= high)
    if bad.dim() > 1:
        bad = bad.flatten(1).any(1)
    if active is not None:
        bad = bad & active
    if bool(bad.any()):
        idx = int(torch.nonzero(bad)[0, 0])
        val = actions[idx].tolist()
        rng = f"[{low}, {high}]" if inclusive_high else f"[{low}, {high})"
        raise ValueError(f"{name}[{idx}] = {val} is out of range, expected values in {rng}")


def _check_high(high: int) -> None:
    if not 0 < high < 2**31:
        raise ValueError(f"high must be in (0, 2**31), got {high}")


@dataclasses.dataclass
class _EpisodeTable:
    base: torch.Tensor  # int64 [B]: episode index of each env's first column
    offset: torch.Tensor  # int64 [B]: flat position of env i's first column minus base[i]
    values: torch.Tensor  # int64 [B * _EPISODES_AHEAD], row-major
    version: int  # BatchedEnv._stream_version at the fill
    safe_until: int  # while BatchedEnv._resets <= this, no env has gone past its last column


# ----------------------------------------------------------------------------------------------------------
# the batched base class
# ----------------------------------------------------------------------------------------------------------
class BatchedEnv(VectorEnv):
    """A `VectorEnv` whose state is torch tensors on ``device``; see the module docstring for the contract."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    #: True when ``_reset_envs(mask)`` is cheap and exact for any mask: the autoreset then runs every step
    #: without reading the mask back (see the module docstring)
    reset_every_step: bool = False
    #: False skips the data-dependent checks of a step (subclasses: action ranges, repeats; here: stepping an
    #: ended env in DISABLED mode), and with them the step's one read-back
    validate_actions: bool = True

    def __init__(
        self,
        num_envs: int,
        single_observation_space: gym.Space,
        single_action_space: gym.Space,
        *,
        device: str | torch.device = "cpu",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.device = resolve_device(device)
        self.metadata = {**type(self).metadata, "autoreset_mode": _normalise_autoreset(autoreset_mode)}
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        self.action_space = batch_space(single_action_space, self.num_envs)
        self.generator = torch.Generator(device=self.device)
        # data-dependent shortcuts that read values back (sizes, maxima) are taken on cpu only, where a read-back
        # costs no more than any other op; on accelerators every step runs without one (checks aside)
        self._readback_ok = self.device.type == "cpu"
        self._stream_version = 0  # bumped whenever env_seeds / episode_ids are set (not just advanced)
        self._resets = 0  # _reset_masked calls so far (each advances an env's episode index by at most 1)
        self._episode_tables: dict[tuple[int, int], _EpisodeTable] = {}
        self._checks: list[tuple[torch.Tensor, Callable[[], Exception]]] = []
        self.env_seeds = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self.episode_ids = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self._done = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._arange = torch.arange(self.num_envs, dtype=torch.int64, device=self.device)
        self._has_reset = False
        self._seed: int | None = None
        self._spec: EnvSpec | None = None
        self._ctor_kwargs: dict[str, Any] | None = None

    def make_sibling(self, num_envs: int, **overrides: Any) -> BatchedEnv:
        """A new env of the same class and constructor kwargs with another ``num_envs`` (and overrides)."""
        if self._ctor_kwargs is None:
            raise NotImplementedError(
                f"{type(self).__name__} does not record its constructor kwargs (set self._ctor_kwargs in __init__)"
            )
        return type(self)(**{**self._ctor_kwargs, "num_envs": num_envs, **overrides})

    # -- spec: gymnasium assigns it after construction; we add the effective (resolved) kwargs --------------
    @property
    def spec(self) -> EnvSpec | None:  # type: ignore[override]
        return self._spec

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        if value is not None:
            value = copy.copy(value)
            value.kwargs = {**value.kwargs, **self.effective_kwargs()}
        self._spec = value

    def effective_kwargs(self) -> dict[str, Any]:
        """Resolved constructor values (e.g. a protocol's N, M) to record in ``env.spec.kwargs``."""
        return {}

    # -- autoreset mode ---------------------------------------------------------------------------------------
    @property
    def autoreset_mode(self) -> AutoresetMode:
        return self.metadata["autoreset_mode"]

    @autoreset_mode.setter
    def autoreset_mode(self, mode: AutoresetMode | str) -> None:
        self.metadata = {**self.metadata, "autoreset_mode": _normalise_autoreset(mode)}
        self._done = torch.zeros_like(self._done) if not self._has_reset else self._done

    @property
    def done(self) -> torch.Tensor:
        """bool [num_envs]: the envs whose episode ended at the last step (pending reset)."""
        return self._done

    # -- per-env counter-based randomness ----------------------------------------------------------------------
    @property
    def env_seeds(self) -> torch.Tensor:
        """int64 [num_envs]: each env's stream key (``seed + i``)."""
        return self._env_seeds

    @env_seeds.setter
    def env_seeds(self, value: torch.Tensor) -> None:
        self._env_seeds = value
        self._stream_version += 1

    @property
    def episode_ids(self) -> torch.Tensor:
        """int64 [num_envs]: each env's episode index in its stream (advanced by every reset of the env)."""
        return self._episode_ids

    @episode_ids.setter
    def episode_ids(self, value: torch.Tensor) -> None:
        self._episode_ids = value
        self._stream_version += 1

    def per_env_bits(self, purpose: int = 0, counter: torch.Tensor | None = None) -> torch.Tensor:
        """int64 [num_envs] of 32 random bits, a pure function of (env key, episode index, purpose, counter)."""
        return stream_bits(self._env_seeds, self._episode_ids, purpose, counter)

    def per_env_randint(self, high: int, purpose: int = 0, counter: torch.Tensor | None = None) -> torch.Tensor:
        """int64 [num_envs] uniform in ``[0, high)`` (``high`` < 2**31), per env / episode / purpose."""
        _check_high(high)
        return (self.per_env_bits(purpose, counter) * int(high)) >> 32

    def episode_randint(self, high: int, purpose: int = 0) -> torch.Tensor:
        """``per_env_randint(high, purpose)`` (same values), read from a table of each env's next episodes.

        One gather per call instead of four 32-bit hashes: the table holds the draws of episodes
        ``base .. base + 31`` of every env and is refilled when an env may have gone past its end. On cuda
        that is decided from the number of resets since the fill (no read-back: refilled every 32 resets); on
        cpu, where a read-back costs no more than any other op, from the episode indices themselves (refilled
        when some env has used its 32 draws).
        """
        _check_high(high)
        key = (int(high), int(purpose))
        tab = self._episode_tables.get(key)
        if tab is None or not self._table_covers(tab):
            e = _EPISODES_AHEAD
            base = self._episode_ids
            tab = _EpisodeTable(base, self._arange * e - base, self._episode_draws(base, e, high, purpose),
                                self._stream_version, self._resets + e - 1)
            self._episode_tables[key] = tab
        return torch.index_select(tab.values, 0, self._episode_ids + tab.offset)

    def _episode_draws(self, base: torch.Tensor, e: int, high: int, purpose: int) -> torch.Tensor:
        """Flat int64 [B * e]: ``per_env_randint(high, purpose)`` of episodes ``base .. base + e - 1`` of every env.

        The same function as `stream_bits`, computed in place in blocks of rows (fewer, cache-sized temporaries).
        """
        seeds = self._env_seeds
        h = hash32(seeds)
        h = hash32(h ^ ((seeds >> 32) & _M32))  # the episode-independent part, once per env
        out = torch.empty((self.num_envs, e), dtype=torch.int64, device=self.device)
        cols = torch.arange(e, dtype=torch.int64, device=self.device)
        step = max(1, (1 << 16) // e)  # rows per block: ~512 KB temporaries
        for s in range(0, self.num_envs, step):
            x = out[s : s + step]
            torch.add(base[s : s + step, None], cols, out=x)
            x &= _M32
            x ^= h[s : s + step, None]
            _hash32_(x)
            x ^= int(purpose) & _M32
            _hash32_(x)
            x.mul_(int(high))
            x >>= 32
        return out.view(-1)

    def _table_covers(self, tab: _EpisodeTable) -> bool:
        if tab.version != self._stream_version:
            return False
        if self._resets <= tab.safe_until:
            return True
        if not self._readback_ok:
            return False
        # each reset advances an env by at most one column: read the furthest env back, then skip the check
        # for as many resets as it has columns left
        left = _EPISODES_AHEAD - 1 - int((self._episode_ids - tab.base).max())
        if left < 0:
            return False
        tab.safe_until = self._resets + left
        return True

    # -- checks read back once per step ----------------------------------------------------------------------
    def defer_check(self, bad: torch.Tensor, error: Callable[[], Exception]) -> None:
        """Register a check of this ``step``: if ``bad`` ([num_envs], bool or integer) is True / nonzero anywhere,
        ``error()`` is raised.

        All checks of a step are read back together (one host sync) before ``_step_envs`` runs, in the order
        registered; ``error`` runs only then, so it may read values back to name the env and the value.
        """
        self._checks.append((bad, error))

    def _run_checks(self) -> None:
        checks, self._checks = self._checks, []
        if not checks:
            return
        bad = checks[0][0] if len(checks) == 1 else functools.reduce(operator.or_, (c[0].bool() for c in checks))
        if bool(bad.any()):  # the step's one read-back
            for b, error in checks:
                if bool(b.any()):
                    raise error()

    # -- hooks -----------------------------------------------------------------------------------------------
    def _reset_envs(self, mask: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _step_envs(
        self, actions: torch.Tensor, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _observe(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validate_actions(self, actions: Any, active: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _step_info(self) -> dict[str, Any]:
        return {}

    def _reset_info(self) -> dict[str, Any]:
        return {}

    # -- reset / step ----------------------------------------------------------------------------------------
    def _reset_masked(self, mask: torch.Tensor) -> None:
        self._reset_envs(mask)
        self._episode_ids = self._episode_ids + mask  # advancing keeps the episode tables valid
        self._resets += 1

    def _as_mask(self, mask: Any) -> torch.Tensor:
        if isinstance(mask, torch.Tensor):
            if not _same_device(mask.device, self.device):
                raise ValueError(f"reset_mask is on device {mask.device}, expected the env's device {self.device}")
            m = mask
        else:
            m = torch.as_tensor(np.asarray(mask), device=self.device)
        if m.dtype != torch.bool or tuple(m.shape) != (self.num_envs,):
            raise ValueError(
                f"reset_mask must be a bool tensor of shape ({self.num_envs},), got {m.dtype} {tuple(m.shape)}"
            )
        return m

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all envs (or those in ``options["reset_mask"]``); ``seed`` seeds env ``i`` with ``seed + i``."""
        options = dict(options or {})
        mask_opt = options.pop("reset_mask", None)
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        if seed is not None and not 0 <= int(seed) < _SEED_MOD:  # env keys are 62-bit: larger seeds would wrap
            raise ValueError(f"seed must be in [0, 2**62), got {seed} (it would wrap onto seed {int(seed) % _SEED_MOD})")
        if mask_opt is None:
            if seed is None and self._seed is None:
                seed = int(np.random.SeedSequence().entropy % _SEED_MOD)  # type: ignore[operator]
            if seed is not None:
                seed = int(seed) % _SEED_MOD
                self._seed = seed
                self.generator.manual_seed(seed)
                self.env_seeds = (seed + self._arange) % _SEED_MOD
                self.episode_ids = torch.zeros_like(self.episode_ids)
                self.action_space.seed(seed)
            mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        else:
            if not self._has_reset:
                raise RuntimeError("reset(options={'reset_mask': ...}) needs a full reset() first")
            mask = self._as_mask(mask_opt)
            if seed is not None:
                seed = int(seed) % _SEED_MOD
                self.env_seeds = torch.where(mask, (seed + self._arange) % _SEED_MOD, self.env_seeds)
                self.episode_ids = torch.where(mask, 0, self.episode_ids)
        self._reset_options(options)
        self._reset_masked(mask)
        self._done = self._done & ~mask
        self._has_reset = True
        info = InfoDict({**self._step_info(), **self._reset_info()})
        return self._observe(), info

    def _reset_options(self, options: dict[str, Any]) -> None:
        """Handle extra reset options (subclasses); unknown keys are an error."""
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; supported: ['reset_mask']")

    def _autoreset(self, mask: torch.Tensor) -> None:
        if self.reset_every_step or bool(mask.any()):
            self._reset_masked(mask)

    def step(self, actions: Any) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Advance every env one step; returns (obs, reward f32, terminated bool, truncated bool, info)."""
        if not self._has_reset:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset(); call env.reset(seed=...) first")
        mode = self.autoreset_mode
        self._checks = []
        if mode == AutoresetMode.NEXT_STEP:
            pending = self._done
            active = ~pending
        else:
            if mode == AutoresetMode.DISABLED and self.validate_actions:
                self.defer_check(self._done, self._ended_error)
            pending = None
            active = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        actions_t = self._validate_actions(actions, active)
        self._run_checks()
        reward, terminated, truncated, step_info = self._step_envs(actions_t, active)
        if mode == AutoresetMode.NEXT_STEP:
            assert pending is not None
            self._autoreset(pending)
            self._done = terminated | truncated
            info = InfoDict({**step_info, **self._step_info()})
            return self._observe(), reward, terminated, truncated, info
        done = terminated | truncated
        if mode == AutoresetMode.SAME_STEP:
            final_obs = self._observe()
            final_info = InfoDict({**step_info, **self._step_info()})
            self._autoreset(done)
            info = InfoDict({
                **step_info,
                **self._step_info(),
                "final_obs": final_obs,
                "_final_obs": done,
                "final_info": final_info,
                "_final_info": done,
            })
            self._done = torch.zeros_like(done)
            return self._observe(), reward, terminated, truncated, info
        self._done = done
        return self._observe(), reward, terminated, truncated, InfoDict({**step_info, **self._step_info()})

    def _ended_error(self) -> Exception:
        ended = torch.nonzero(self._done).flatten().tolist()
        return RuntimeError(
            f"envs {ended[:10]} have ended and autoreset_mode is DISABLED; reset them with "
            "env.reset(options={'reset_mask': env.done}) before stepping"
        )

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release beyond tensors (garbage-collected)."""

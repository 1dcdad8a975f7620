"""check_vector_env passes on correct envs in every mode and catches broken ones."""

from __future__ import annotations

import pytest
import torch

from recgym.envs.checker import check_vector_env
from recgym.envs.rec import GroundTruthRecEnv
from tests.envs.helpers import toy_dataset


@pytest.mark.parametrize(
    "kw",
    [
        {"protocol": "roler"},
        {"protocol": "custom", "num_leave_compute": 2, "leave_threshold": 1.5, "max_turn": 4, "mode": "NX_0"},
        {"protocol": "custom", "quit_rule": "category", "num_leave_compute": 2, "leave_threshold": 0,
         "max_turn": 4, "mode": "FB"},
        {"protocol": "easyrl4rec", "mode": "NX_10"},
    ],
)
def test_check_vector_env_passes_on_synthetic(synthetic, kw):
    env = GroundTruthRecEnv(synthetic, num_envs=5, **kw)
    check_vector_env(env, n_steps=25)
    # the env is left usable (needs a reset) and in its original autoreset mode
    assert env.autoreset_mode.name == "NEXT_STEP"
    env.reset(seed=1)


def test_check_vector_env_exercises_episode_ends():
    # distance rule that often fires on the toy data: the SAME_STEP / DISABLED branches really run
    env = GroundTruthRecEnv(toy_dataset(), num_envs=3, protocol="custom", num_leave_compute=2,
                            leave_threshold=1.5, max_turn=4, mode="NX_0")
    check_vector_env(env, n_steps=12)


class _BatchCoupled(GroundTruthRecEnv):
    """Broken: users drawn from the batch-level generator, so env i depends on the batch size."""

    def _reset_envs(self, mask):
        super()._reset_envs(mask)
        draw = torch.randint(0, int(self.users_pool.numel()), (self.num_envs,), generator=self.generator)
        self.user = torch.where(mask, self.users_pool[draw], self.user)


class _Nondeterministic(GroundTruthRecEnv):
    """Broken: rewards with unseeded noise."""

    def _rewards(self, users, items, state):
        return super()._rewards(users, items, state) * (1 - 0.1 * torch.rand(users.shape))


class _BadDtype(GroundTruthRecEnv):
    def _rewards(self, users, items, state):
        return super()._rewards(users, items, state)

    def step(self, actions):
        obs, r, te, tr, info = super().step(actions)
        return obs, r.double(), te, tr, info


@pytest.mark.parametrize(
    ("cls", "match"),
    [
        (_BatchCoupled, "single env"),
        (_Nondeterministic, "same seed and actions, different"),
        (_BadDtype, "reward: torch.float64"),
    ],
)
def test_check_vector_env_catches_broken_envs(synthetic, cls, match):
    env = cls(synthetic, num_envs=4, protocol="roler")
    with pytest.raises(AssertionError, match=match):
        check_vector_env(env, n_steps=5)

"""Typed protocol and shaping values: frozen dataclasses inside, plain dicts in info / specs / JSON."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import pytest

import recgym  # noqa: F401
from recgym.envs.interactive import Shaping, resolve_shaping
from recgym.envs.protocol import PROTOCOLS, Protocol, ProtocolDefaults, dataset_key, resolve_protocol

SMALL = {"dataset_kwargs": {"n_users": 40, "n_items": 60, "seed": 0}}


def test_protocol_is_frozen_and_its_dict_is_plain():
    p = resolve_protocol("dorl", "Yahoo-R3", "distance")
    assert p == Protocol(name="dorl", dataset="yahoo", mode="NX_0", quit_rule="distance", num_leave_compute=3,
                         leave_threshold=120.0, max_turn=30, source="dorl", quit_window="published")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_turn = 5  # type: ignore[misc]
    assert json.loads(json.dumps(p.as_dict())) == p.as_dict()
    assert all(isinstance(v, ProtocolDefaults) for v in PROTOCOLS.values())
    assert [dataset_key(n) for n in ("ML-1M", "KuaiRand-Pure", "yahoo_r3", "Coat")] == ["ml1m", "kuairand", "yahoo",
                                                                                      "coat"]
    assert resolve_protocol(None, "coat", "distance").source == "custom"


def test_env_protocol_and_info_are_plain_dicts_built_from_the_protocol():
    env = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=2, protocol="easyrl4rec", max_turn=7, **SMALL)
    _, info = env.reset(seed=0)
    expected = resolve_protocol("easyrl4rec", "synthetic", "distance", max_turn=7).as_dict()
    assert {k: info["protocol"][k] for k in expected} == expected
    assert info["protocol"]["quitting"] is False  # env-level facts are added to the plain dict
    assert json.loads(json.dumps(info["protocol"])) == info["protocol"]
    assert env.unwrapped.protocol == info["protocol"]


def test_shaping_is_frozen_rejects_unknown_fields_and_reaches_info_as_plain_values():
    sh = resolve_shaping("dorl", "coat", lambda_ent=0.5)
    assert isinstance(sh, Shaping) and (sh.lambda_u, sh.lambda_ent, sh.entropy_window) == (0.005, 0.5, (1, 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        sh.lambda_u = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"unknown shaping field\(s\) \['lambda_x'\]"):
        resolve_shaping("dorl", "coat", lambda_x=1.0)
    env = gym.make_vec("InteractiveRec-Synthetic-v0", num_envs=2, reward_preset="mbpo", world_model="mf",
                       progress=False, **SMALL)
    shaping = env.unwrapped.shaping
    assert isinstance(shaping, Shaping) and shaping.reward_preset == "mbpo" and shaping.world_model == "mf"
    _, info = env.reset(seed=0)
    assert info["shaping"] == {**shaping.as_dict(), "protocol": "dorl", "min_r": env.unwrapped.min_r}
    assert json.loads(json.dumps(info["shaping"])) == {**info["shaping"], "entropy_window": [1, 2]}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"leave_threshold": float("nan")}, r"leave_threshold must be a number \(not NaN: it would silently disable "
                                        r"quitting\), got nan"),
    ({"leave_threshold": "far"}, r"leave_threshold must be a number .*got 'far'"),
    ({"max_turn": 2.5}, r"max_turn must be an integer >= 1, got 2.5"),
    ({"max_turn": 0}, r"max_turn must be an integer >= 1, got 0"),
    ({"max_turn": True}, r"max_turn must be an integer >= 1, got True"),
    ({"num_leave_compute": 1.5}, r"num_leave_compute must be an integer >= 0, got 1.5"),
])
def test_protocol_values_are_checked_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve_protocol("dorl", "coat", "distance", **kwargs)
    with pytest.raises(ValueError, match=message):  # through the env constructor
        gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=2, **SMALL, **kwargs)
    import numpy as np

    assert resolve_protocol("dorl", "coat", "distance", max_turn=np.int64(5), leave_threshold=np.float32(2)).max_turn == 5

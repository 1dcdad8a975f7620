"""Agent checkpoints: a content digest checked on load (a damaged file is refused, naming it) and the env's
identity (catalogue size, users, dataset name and fingerprint) checked against the env it is loaded into."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch

import recgym  # noqa: F401
from recgym.agents import make_agent
from recgym.agents.common import content_digest, load_checkpoint, save_checkpoint
from tests.agents.test_rec_agents import REC_AGENTS, SMALL, agent_kwargs, small_env


def _garble_middle(path: Path, n: int = 200) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2 - n // 2
    data[mid:mid + n] = bytes(b ^ 0x5A for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def env():
    return small_env()


@pytest.fixture(scope="module")
def other_data():
    """The same sizes as ``env`` (40 users, 60 items), other data (another generator seed)."""
    return gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=8, protocol="roler",
                        dataset_kwargs={**SMALL, "seed": 7})


@pytest.mark.parametrize("name", REC_AGENTS)
def test_checkpoint_refuses_another_dataset_and_a_damaged_file(name, env, other_data, tmp_path):
    path = tmp_path / "ckpt"
    make_agent(name, env, seed=0, **agent_kwargs(name)).save(str(path))
    make_agent(name, env, seed=1, **agent_kwargs(name)).load(str(path))  # the same env: fine
    stranger = make_agent(name, other_data, seed=0, **agent_kwargs(name))
    with pytest.raises(ValueError, match=rf"{name}: checkpoint '{path}' was saved for an env with dataset "
                                         r"'synthetic', 60 items, 40 users, fingerprint (\w+), but this agent's env "
                                         r"has dataset 'synthetic', 60 items, 40 users, fingerprint (?!\1)\w+ "
                                         r"\(differs in \['fingerprint'\]\)"):
        stranger.load(str(path))
    _garble_middle(path)
    with pytest.raises(ValueError, match=rf"{name}: checkpoint '{path}' (is damaged|cannot read)|"
                                         rf"{name}: cannot read checkpoint '{path}'"):
        make_agent(name, env, seed=1, **agent_kwargs(name)).load(str(path))


@pytest.mark.parametrize("name", ["sb3_sac", "a2c", "popularity"])
def test_checkpoint_refuses_another_catalogue_size(name, tmp_path):
    # sb3_sac's action is an item embedding (the same shape for any catalogue): SB3 alone loaded it silently
    big = gym.make_vec("GroundTruthRec-Synthetic-v0", num_envs=8, protocol="roler",
                       dataset_kwargs={"n_users": 40, "n_items": 80})
    path = tmp_path / "ckpt"
    make_agent(name, big, seed=0, **agent_kwargs(name)).save(str(path))
    small = make_agent(name, small_env(), seed=0, **agent_kwargs(name))
    with pytest.raises(ValueError, match=r"80 items, 40 users.*60 items, 40 users.*differs in \[.*'n_items'"):
        small.load(str(path))


def test_digest_covers_every_value_and_old_checkpoints_are_refused(tmp_path):
    payload = {"agent": "x", "net": {"w": torch.arange(6.0).reshape(2, 3)}, "steps": 3}
    path = tmp_path / "c.pt"
    save_checkpoint(path, payload)
    assert load_checkpoint(path, "x")["steps"] == 3
    # one float changed inside the file, which still loads: refused
    raw = torch.load(path, weights_only=True)
    raw["net"]["w"][1, 2] = 5.5
    torch.save(raw, path)
    with pytest.raises(ValueError, match=rf"x: checkpoint '{path}' is damaged: its content does not match the sha256"):
        load_checkpoint(path, "x")
    torch.save(payload, path)  # no digest: written by an older version or by hand
    with pytest.raises(ValueError, match="has no content digest .* refusing to load it unverified"):
        load_checkpoint(path, "x")
    with pytest.raises(ValueError, match="saved by agent 'x', not 'y'"):
        save_checkpoint(path, payload)
        load_checkpoint(path, "y")
    a = content_digest({"a": torch.zeros(2), "b": [1, "s", None]})
    assert a == content_digest({"b": [1, "s", None], "a": torch.zeros(2)})  # key order does not matter
    assert a != content_digest({"a": torch.zeros(2, dtype=torch.float64), "b": [1, "s", None]})
    assert a != content_digest({"a": torch.zeros(2), "b": [1, "s", 0]})

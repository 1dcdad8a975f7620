"""Agents on one API (see `recgym.agents.base`). Importing this package registers the built-in agents."""

from recgym.agents.base import (
    Agent,
    AgentConfig,
    AgentSpec,
    agent_spec,
    build_config,
    make_agent,
    register_agent,
    registered_agents,
)

# Built-in rec-env agents (issue 6): each module registers its agents at import.
from recgym.agents import a2c, bandits, exp_rsft, offline, sb3_agents, static  # noqa: E402, F401  isort: skip
from recgym.agents import dac4rec  # noqa: E402, F401  isort: skip  (issue 7: DAC4Rec and its SAC/TD3 siblings)
from recgym.agents import denoise  # noqa: E402, F401  isort: skip  (DiffusionDenoise agents: refit, ddpo, rwft)

__all__ = ["Agent", "AgentConfig", "AgentSpec", "agent_spec", "build_config", "make_agent", "register_agent",
           "registered_agents"]

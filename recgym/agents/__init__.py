"""Agents on one API (see `recgym.agents.base`). Importing this package registers the built-in agents."""

from recgym.agents.base import Agent, build_config, make_agent, register_agent, registered_agents

__all__ = ["Agent", "build_config", "make_agent", "register_agent", "registered_agents"]

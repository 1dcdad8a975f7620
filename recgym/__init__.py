"""recgym: offline recommendation logs and diffusion recommenders as Gymnasium environments.

Importing recgym only registers env ids (by entry-point strings); no dataset is read and no model is built.
"""

from recgym.envs.registration import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__", "register_envs"]

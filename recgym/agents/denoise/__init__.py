"""Agents for the ``DiffusionDenoise-*`` envs: the chain fine-tuners and SB3 steering a frozen chain.

- `recgym.agents.denoise.refit` (``refit``, ``refit_lastep``), `.ddpo` (``ddpo``), `.rwft` (``rwft``): fine-tune a copy of the
  env's pre-trained DiffRec denoiser on its own sampled chains; they share `ChainFinetunerConfig` and the
  `ChainFinetuner` plumbing of `recgym.agents.denoise.common` and never import one another.
- `recgym.agents.denoise.sb3`: SB3 SAC / TD3 acting in the env's guidance / residual action space (reached
  through ``sb3_sac`` / ``sb3_td3``).

Importing this package registers ``refit``, ``refit_lastep``, ``ddpo`` and ``rwft``.
"""

from recgym.agents.denoise import ddpo, refit, rwft  # noqa: F401  (registration)
from recgym.agents.denoise.common import ChainFinetuner, ChainFinetunerConfig
from recgym.agents.denoise.ddpo import DDPO, DDPOConfig
from recgym.agents.denoise.refit import ReFiT, ReFiTConfig, ReFiTLastStep, ReFiTLastStepConfig
from recgym.agents.denoise.rwft import RWFT, RWFTConfig

__all__ = ["DDPO", "RWFT", "ChainFinetuner", "ChainFinetunerConfig", "DDPOConfig", "ReFiT", "ReFiTConfig",
           "ReFiTLastStep", "ReFiTLastStepConfig", "RWFTConfig"]

"""Small network pieces shared across layers (world models, recommenders, agents).

`recgym.nn.diffusion` holds the one noise schedule, the one sinusoidal timestep embedding and the MLP builder
that every diffusion model in recgym uses (DiffRec, the R3S diffusion world model, DAC4Rec's diffusion policy).
This package depends on torch and numpy only, so every layer may import it.
"""

from recgym.nn.diffusion import SCHEDULE_KINDS, NoiseSchedule, mlp, timestep_embedding

__all__ = ["SCHEDULE_KINDS", "NoiseSchedule", "mlp", "timestep_embedding"]

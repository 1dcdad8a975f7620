"""Recommenders trained on logged data and scored by a ranking protocol: DiffRec and its baselines.

They sit between the world models and the envs: the ``DiffusionDenoise-*`` envs (`recgym.envs.denoise`) wrap a
pre-trained DiffRec's reverse chain, and the chain fine-tuners (`recgym.agents.denoise`) train on them.

- `recgym.recommenders.diffrec`: the DiffRec model ("Diffusion Recommender Models", arXiv:2304.04971), its
  config and checkpoints;
- `recgym.recommenders.train`: its pre-training and checkpoint cache (`fit_or_load_diffrec`, `pretrain`);
- `recgym.recommenders.baselines`: MostPop and EASE;
- `recgym.recommenders.ranking`: the binary train / valid / test splits and the ranking protocol all of them
  are scored by.
"""

from recgym.recommenders.baselines import EASE, MostPop, baselines, tune_ease
from recgym.recommenders.diffrec import (
    SELECTION_RULES,
    CheckpointMismatchError,
    DiffRec,
    DiffRecConfig,
    DiffRecDenoiser,
    default_config,
    diffrec_schedule,
    evaluate_diffrec,
)
from recgym.recommenders.ranking import DiffRecSplits, evaluate_scores, make_splits
from recgym.recommenders.train import (
    TrainResult,
    checkpoint_path,
    estimate_pretrain_seconds,
    fit_or_load_diffrec,
    pretrain,
    selection_users,
    train_diffrec,
)

__all__ = [
    "EASE",
    "SELECTION_RULES",
    "CheckpointMismatchError",
    "DiffRec",
    "DiffRecConfig",
    "DiffRecDenoiser",
    "DiffRecSplits",
    "MostPop",
    "TrainResult",
    "baselines",
    "checkpoint_path",
    "default_config",
    "estimate_pretrain_seconds",
    "diffrec_schedule",
    "evaluate_diffrec",
    "evaluate_scores",
    "fit_or_load_diffrec",
    "make_splits",
    "pretrain",
    "selection_users",
    "train_diffrec",
    "tune_ease",
]

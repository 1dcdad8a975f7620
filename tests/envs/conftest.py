"""Shared fixtures for env tests."""

from __future__ import annotations

import pytest
import torch

from recgym.data import load_dataset
from recgym.data.base import LoggedDataset


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic() -> LoggedDataset:
    return load_dataset("synthetic")

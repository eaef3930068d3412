"""Shared pytest fixtures. Tests make their own small data; nothing is downloaded."""

import torch

torch.set_num_threads(1)  # tests use small tensors: one thread is fastest and fair on a shared 2-core machine

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_shared() -> Path | None:
    """The project's shared/ folder: $PDEFORGE_SHARED, ./shared in the checkout, or ../shared beside it."""
    candidates = [os.environ.get("PDEFORGE_SHARED"), REPO / "shared", REPO.parent / "shared"]
    for c in candidates:
        if c and (Path(c) / "reference").is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    found = find_shared()
    if found is None:
        raise FileNotFoundError(
            f"shared/ with reference data not found (looked at $PDEFORGE_SHARED, {REPO / 'shared'}, "
            f"{REPO.parent / 'shared'}); set PDEFORGE_SHARED to the folder that holds reference/"
        )
    return found

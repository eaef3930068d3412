"""Shared pytest fixtures. Tests make their own small data; nothing is downloaded."""

import torch

torch.set_num_threads(1)  # tests use small tensors: one thread is fastest and fair on a shared 2-core machine

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


REFERENCE = REPO / "tests" / "reference"  # files made by running original implementations, each set with its README


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``tests/reference/``: the reference outputs the compatibility tests compare against, kept in the repository."""
    return REFERENCE


class SimulatedCrash(Exception):
    """A crash right after a training state was written (raised by the `crash_after_checkpoint` fixture)."""


@pytest.fixture
def crash_after_checkpoint(monkeypatch):
    """``arm(module, *points)``: from then on ``module.save_state`` writes each training state, then raises
    `SimulatedCrash` (``arm.crash``) once for each point, a dict of state items such as ``{"step": 4}``, that the
    state matches. Returns the list of points not reached yet."""

    def arm(module, *points: dict) -> list[dict]:
        save, pending = module.save_state, list(points)

        def save_then_crash(path, state):
            save(path, state)
            hit = next((p for p in pending if all(state.get(k) == v for k, v in p.items())), None)
            if hit is not None:
                pending.remove(hit)
                raise SimulatedCrash(f"simulated crash after the checkpoint {hit} in {path}")

        monkeypatch.setattr(module, "save_state", save_then_crash)
        return pending

    arm.crash = SimulatedCrash
    return arm


@pytest.fixture
def refused_devices(monkeypatch):
    """With CUDA made unavailable: ``check(where, attempt, leaves)`` asserts that ``attempt(device)`` refuses each
    device that is not here with the one-line ``"<where>: device '<device>': <why>"`` and that the path ``leaves``
    does not exist afterwards (nothing half-written)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    why = {"gpu": "expected one of 'cpu', 'cuda', 'cuda:N', 'auto'",
           "cuda": r"expected 'cpu' or 'auto': CUDA is not available here \(torch.cuda.is_available\(\) is False\)",
           "cuda:0": "expected 'cpu' or 'auto': CUDA is not available",
           "cuda:1": "expected 'cpu' or 'auto': CUDA is not available"}

    def check(where: str, attempt, leaves: Path) -> None:
        for device, reason in why.items():
            with pytest.raises(ValueError, match=rf"^{where}: device '{device}': {reason}"):
                attempt(device)
            assert not leaves.exists(), (device, leaves)

    return check


def _devices_in(tree) -> set[str]:
    if isinstance(tree, torch.Tensor):
        return {tree.device.type}
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        return set().union(*(_devices_in(v) for v in tree))
    return set()


@pytest.fixture
def devices_in():
    """``devices_in(tree)``: the device types of the tensors in nested dicts, lists and tuples (a training state)."""
    return _devices_in

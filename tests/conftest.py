"""Shared pytest fixtures. Tests make their own small data; nothing is downloaded."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tests use small tensors: one thread is fastest and fair on a shared 2-core machine

REPO = Path(__file__).resolve().parents[1]


REFERENCE = REPO / "tests" / "reference"  # files made by running original implementations, each set with its README


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``tests/reference/``: the reference outputs the compatibility tests compare against, kept in the repository."""
    return REFERENCE


@pytest.fixture
def crash_after_checkpoint(monkeypatch):
    """``crash(train, nth=2)`` or ``crash(train, step=10)``: call ``train()`` with the run skeleton's checkpoint
    writer raising KeyboardInterrupt right after the ``nth`` checkpoint (or the one at optimiser step ``step``) is
    written, as a crash there would leave the run folder; returns the steps of the checkpoints written."""
    from pdeforge.training import RunFolder

    def crash(train, *, nth: int | None = None, step: int | None = None) -> list[int]:
        save, steps = RunFolder.save_checkpoint, []

        def save_then_crash(self, state):
            save(self, state)
            steps.append(state["counters"]["step"])
            if len(steps) == nth or steps[-1] == step:
                raise KeyboardInterrupt("simulated crash after a checkpoint")

        with monkeypatch.context() as patch:
            patch.setattr(RunFolder, "save_checkpoint", save_then_crash)
            with pytest.raises(KeyboardInterrupt):
                train()
        return steps

    return crash


@pytest.fixture
def refused_devices(monkeypatch):
    """With CUDA made unavailable: ``check(where, attempt, leaves)`` asserts that ``attempt(device)`` refuses each
    device that is not here with the one-line ``"<where>: device '<device>': <why>"`` and that the path ``leaves``
    does not exist afterwards (nothing half-written)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    why = {
        "gpu": "expected one of 'cpu', 'cuda', 'cuda:N', 'auto'",
        "cuda": r"expected 'cpu' or 'auto': CUDA is not available here \(torch.cuda.is_available\(\) is False\)",
        "cuda:0": "expected 'cpu' or 'auto': CUDA is not available",
        "cuda:1": "expected 'cpu' or 'auto': CUDA is not available",
    }

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


@pytest.fixture(scope="session")
def ks_root(tmp_path_factory) -> Path:
    """A small Kuramoto-Sivashinsky dataset root (10 trajectories, 64 points, 9 snapshots), made once per session
    for the generative family's tests."""
    from pdeforge.solvers.generate import PRESETS, generate, with_overrides

    root = tmp_path_factory.mktemp("ks") / "ks"
    generate(
        with_overrides(PRESETS["ks_1d"], n_snapshots=9, warmup=1.0),
        root,
        n_trajectories=10,
        resolution=64,
        progress=False,
    )
    return root


_KILLED_CHILD = textwrap.dedent(
    """
    import dataclasses, json, os, signal, sys
    from pdeforge.solvers.generate import PRESETS, generate, with_overrides

    root, name, overrides, options, kill_after = sys.argv[1:]
    base = with_overrides(PRESETS[name], **json.loads(overrides))
    calls = {"n": 0}

    class Killing(type(base)):
        def solve(self, indices, seed, resolution, device):
            if calls["n"] == int(kill_after):
                os.kill(os.getpid(), signal.SIGKILL)
            calls["n"] += 1
            return super().solve(indices, seed, resolution, device)

    preset = Killing(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    generate(preset, root, progress=False, **json.loads(options))
    print("done")
    """
)


@pytest.fixture
def generate_killed_then_resumed(tmp_path):
    """``run(name, overrides, kill_after, **options) -> (reference, resumed)``: ``pdeforge.solvers.generate.generate``
    of preset ``name`` (``with_overrides(PRESETS[name], **overrides)``, JSON values) with ``options``, once
    uninterrupted into ``reference`` and once in a child process SIGKILLed inside its solve number ``kill_after + 1``
    (checked: one ``.partial`` file left and no finished file of the split it was writing) and run again to the end
    into ``resumed`` (checked: it finishes, no ``.partial`` left). The caller compares the two roots' numbers."""
    from pdeforge.solvers.generate import PRESETS, generate, with_overrides

    def child(root: Path, name: str, overrides: dict, options: dict, kill_after: int) -> subprocess.CompletedProcess:
        argv = [str(root), name, json.dumps(overrides), json.dumps(options), str(kill_after)]
        return subprocess.run([sys.executable, "-c", _KILLED_CHILD, *argv], capture_output=True, text=True, timeout=300)

    def run(name: str, overrides: dict, kill_after: int, **options) -> tuple[Path, Path]:
        reference, resumed = tmp_path / "reference", tmp_path / "resumed"
        generate(with_overrides(PRESETS[name], **overrides), reference, progress=False, **options)
        r = child(resumed, name, overrides, options, kill_after)
        assert r.returncode == -9, r.stderr[-2000:]
        (partial,) = resumed.rglob("*.partial")  # killed inside a file: that file is not finished
        assert not list(partial.parent.glob("*.hdf5")), partial
        r = child(resumed, name, overrides, options, -1)
        assert r.returncode == 0 and "done" in r.stdout, r.stderr[-2000:]
        assert not list(resumed.rglob("*.partial"))
        return reference, resumed

    return run

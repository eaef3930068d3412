"""The wheel holds one top-level package, `pdeforge` (never a top-level `datasets` that would clobber HF's)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_has_only_the_pdeforge_package(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = tmp_path.glob("pdeforge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"pdeforge"}, top
    for module in (
        "pdeforge/datasets/__init__.py",
        "pdeforge/cli.py",
        "pdeforge/train.py",
        "pdeforge/metrics.py",
        "pdeforge/solvers/_etdrk_fused.cpp",
    ):
        assert module in names, module
    # every package folder of the source tree ships (a subpackage missing from pyproject's list would not)
    for init in REPO.rglob("__init__.py"):
        rel = init.relative_to(REPO)
        if rel.parts[0] in ("tests", "benchmarks", "build", ".venv") or any(p.startswith(".") for p in rel.parts):
            continue
        assert f"pdeforge/{rel.as_posix()}" in names, f"{rel} is not in the wheel: list its package in pyproject.toml"
    assert not any(n.startswith("pdeforge/tests/") or n.startswith("pdeforge/.venv") for n in names)


def test_cli_help_answers_at_once_without_torch() -> None:
    code = (
        "import sys, pdeforge.cli as c; c.build_parser(); "
        "assert 'torch' not in sys.modules and 'neuralop' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    out = subprocess.run([sys.executable, "-m", "pdeforge.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "inspect" in out.stdout and "generate" in out.stdout


def test_the_dataset_layer_imports_without_xarray_or_neuraloperator() -> None:
    """`train.py`, `pdeforge generate` and every DataLoader worker import the dataset layer; xarray (only for
    `to_xarray`) and neuraloperator (~4 s, pulls wandb) must not come with it."""
    code = (
        "import sys, pdeforge.datasets, pdeforge.solvers.generate; "
        "bad = [m for m in ('xarray', 'neuralop', 'wandb') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

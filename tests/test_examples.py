"""Every script of examples/ runs, at the tiny size, as a user would run it: its own process, a fresh folder.

Each script is found by its name (``examples/NN_*.py``), so a new one is run without being listed here. It runs with
``PDEFORGE_EXAMPLE_TINY=1`` (a few trajectories and optimiser steps), its outputs and the preset cache in a temporary
folder; it must exit 0 and print no non-finite number. What each known script prints or writes is then checked.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("[0-9][0-9]_*.py"))
NUMBER = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
PNG = b"\x89PNG\r\n\x1a\n"


def run_example(script: Path, tmp_path: Path) -> tuple[str, Path]:
    """Run ``script`` at the tiny size in ``tmp_path``; returns (its stdout, its output folder)."""
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PDEFORGE_EXAMPLE_TINY": "1",
        "PDEFORGE_EXAMPLE_OUT": str(out),
        "PDEFORGE_CACHE": str(tmp_path / "cache"),  # presets generated for the test stay out of ~/.cache
        "OMP_NUM_THREADS": "1",  # tiny tensors: one thread is fastest and fair on a shared machine
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert done.stdout.strip(), f"{script.name} printed nothing"
    bad = re.findall(r"\b(?:nan|inf)\b", done.stdout, flags=re.I)
    assert not bad, f"{script.name} printed non-finite numbers:\n{done.stdout}"
    return done.stdout, out


def number_after(text: str, label: str) -> float:
    """The first number after ``label`` (a regular expression) in ``text``."""
    found = re.search(label + r"\D*?(" + NUMBER + ")", text)
    assert found, f"no number after {label!r} in:\n{text}"
    return float(found.group(1))


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def check_solve_and_plot(stdout: str, out: Path) -> None:
    assert is_png(out / "01_burgers.png")
    assert number_after(stdout, r"\(drift") < 1e-12  # Burgers conserves the mean of u
    start = number_after(stdout, r"max \|u\|:")
    end = number_after(stdout, r"max \|u\|: \S+ at t = 0, ")
    assert 0 < end <= start  # viscous Burgers: the maximum principle


def check_generate_and_inspect(stdout: str, out: Path) -> None:
    assert is_png(out / "02_trajectory.png")
    assert (out / "02_burgers_nu" / "stats.yaml").is_file()
    snapshots = int(number_after(stdout, r"data/train/\S+: \d+ trajectories x"))
    trajectories = int(number_after(stdout, r"domain length \S+,"))
    windows = int(number_after(stdout, r"train trajectories\n"))
    assert windows == trajectories * (snapshots - 2)  # windows of 2 + 1 frames, one per start
    assert "batch['input_fields']: (8, 2, 1, 32)" in stdout and "batch['scalars']: (8, 1)" in stdout
    nus = [float(v) for v in re.findall(NUMBER, stdout.split("viscosity of each window:")[1].splitlines()[0])]
    assert len(nus) == 8 and all(0.003 <= nu <= 0.03 for nu in nus)  # the preset's range of nu
    assert abs(number_after(stdout, "normalised input: mean")) < 0.5


def check_train_fno(stdout: str, out: Path) -> None:
    run = out / "03_fno_burgers"
    assert is_png(run / "prediction.png") and (run / "model.safetensors").is_file()
    by_hand = number_after(stdout, r"\nmean")
    recorded = number_after(stdout, r"metrics.json:")
    assert 0 < by_hand < 2 and abs(by_hand - recorded) < 1e-3  # the loaded model reproduces the run's test figure


def check_finetune_scot(stdout: str, out: Path) -> None:
    for name in ("pretrain", "finetune", "scratch"):
        assert (out / f"04_scot_{name}" / "model.safetensors").is_file(), name
    assert re.search(r"init from \S*04_scot_pretrain: \d+ tensors loaded", stdout)
    for name in ("finetune", "scratch"):
        assert 0 < number_after(stdout, rf"{name}: test median rel L1") < 1000


def check_pinn(stdout: str, out: Path) -> None:
    assert is_png(out / "05_pinn_burgers" / "solution.png")
    assert 0 < number_after(stdout, "test rel L2") < 1
    # the initial and boundary conditions are hard constraints: u(x, 0) = -sin(pi x), u(+-1, t) = 0 exactly
    for line in re.findall(r"u\(x, t = (\S+)\) at x = -1, -0.75, ..., 1: (.*)", stdout):
        u = [float(v) for v in line[1].split()]
        assert len(u) == 9 and abs(u[0]) < 1e-3 and abs(u[-1]) < 1e-3
        if float(line[0]) == 0:
            assert all(abs(v + math.sin(math.pi * (-1 + i / 4))) < 1e-3 for i, v in enumerate(u))
    assert number_after(stdout, "rms") > 0


def check_inverse_problem(stdout: str, out: Path) -> None:
    assert stdout.split()[0] == "200"  # observations
    nu = number_after(stdout, "learned nu =")
    assert 0 < nu < 0.05  # moved from the initial guess towards the true 0.01 (a tiny budget gets no closer)


CHECKS = {
    "01_solve_and_plot": check_solve_and_plot,
    "02_generate_and_inspect": check_generate_and_inspect,
    "03_train_fno": check_train_fno,
    "04_finetune_scot": check_finetune_scot,
    "05_pinn": check_pinn,
    "06_inverse_problem": check_inverse_problem,
}


def test_the_gallery_has_the_six_examples_and_each_follows_the_pattern():
    assert {p.stem for p in EXAMPLES} >= set(CHECKS), "an example of the gallery is missing"
    for script in EXAMPLES:
        text = script.read_text()
        doc = ast.get_docstring(ast.parse(text))
        assert doc and len(doc.splitlines()) >= 3, f"{script.name}: a module docstring saying what it shows"
        for variable in ("PDEFORGE_EXAMPLE_TINY", "PDEFORGE_EXAMPLE_OUT"):
            assert variable in text, f"{script.name}: expected the tiny size and the output folder from {variable}"
        assert "sys.path" not in text, f"{script.name}: no sys.path edits (pdeforge is installed)"
        for node in ast.walk(ast.parse(text)):  # public API only: names of the packages' __all__
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pdeforge":
                assert not any(part.startswith("_") for part in node.module.split(".")), f"{script.name}: private"
                public = getattr(importlib.import_module(node.module), "__all__", ())
                private = [a.name for a in node.names if a.name not in public]
                assert not private, f"{script.name}: {private} not in {node.module}.__all__"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pdeforge":
                assert node.attr == "load_run", f"{script.name}: pdeforge.{node.attr}: expected pdeforge.load_run"


def test_the_docs_render_every_example_from_its_file():
    """docs/examples.md gets the gallery from the scripts at build time (docs/_hooks.py): each one's docstring and
    code, so the page cannot drift from what CI runs."""
    spec = importlib.util.spec_from_file_location("pdeforge_docs_hooks", REPO / "docs" / "_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    assert hooks.example_scripts() == EXAMPLES
    assert hooks.GALLERY in (REPO / "docs" / hooks.EXAMPLES_PAGE).read_text()
    gallery = hooks.examples_gallery()
    for script in EXAMPLES:
        tree = ast.parse(script.read_text())
        code = "\n".join(script.read_text().splitlines()[tree.body[0].end_lineno :]).strip()
        assert f"## `{script.name}`" in gallery and code in gallery, script.name
        assert ast.get_docstring(tree).splitlines()[0] in gallery, script.name


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_at_the_tiny_size(script: Path, tmp_path: Path) -> None:
    stdout, out = run_example(script, tmp_path)
    check = CHECKS.get(script.stem)
    if check is not None:
        check(stdout, out)

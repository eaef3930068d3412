"""The API a new user meets first, and plots people can trust: ``pdeforge.load_run(RUN).predict`` in physical units,
``build_model``'s defaults, the ``pdeforge.operators`` docstring example, shared colour scales and labelled axes,
and ``pdeforge evaluate`` writing training's plots (or refusing other data in one line)."""

from __future__ import annotations

import dataclasses
import doctest
import inspect
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

# -- plots ---------------------------------------------------------------------------------------------------------


def _colourbar_axes(fig) -> set:
    return {im.colorbar.ax for ax in fig.axes for im in ax.images if im.colorbar is not None}


def test_colour_limits_cover_every_array_and_are_symmetric_for_signed_data():
    from pdeforge.plots import colour_limits

    assert colour_limits(np.array([-5.0, 2.0]), np.array([0.1, 0.2])) == (-5.0, 5.0)  # signed: symmetric
    assert colour_limits(np.array([1.0, 2.0]), np.array([0.5, np.nan])) == (0.5, 2.0)  # positive: min to max; NaN out
    assert colour_limits(np.array([1.0, 2.0]), symmetric=True) == (-2.0, 2.0)
    assert colour_limits(np.array([np.nan])) == (0.0, 1.0)
    lo, hi = colour_limits(np.zeros(4))
    assert lo < 0 < hi


def test_2d_prediction_shares_one_colour_scale_for_truth_and_prediction_and_labels_every_axis():
    """The issue's case: truth in +-5, prediction in +-0.2. Drawn on their own scales they look alike; here both
    panels of a field have the same colour limits, covering both arrays, and the error has its own symmetric scale."""
    from pdeforge.plots import prediction_figure

    x, y = np.linspace(0, 1, 16), np.linspace(0, 2, 12)
    X, Y = np.meshgrid(x, y, indexing="ij")
    truth = np.stack([5 * np.sin(2 * np.pi * X) * np.cos(np.pi * Y), 1 + X * Y])  # (C=2, 16, 12)
    pred = np.stack([0.2 * np.sin(2 * np.pi * X), 1.1 + X * Y])
    inp = truth * 0.9
    fig = prediction_figure(
        inp, truth, pred, ["u", "rho"], coords={"x": x, "y": y}, time=0.5, input_time=0.25, title="t"
    )
    bars = _colourbar_axes(fig)
    panels = {ax.get_title().split(",")[0]: ax for ax in fig.axes if ax not in bars}
    assert set(panels) == {f"{f} {k}" for f in ("u", "rho") for k in ("input", "truth", "prediction", "error")}
    for f, c in (("u", 0), ("rho", 1)):
        clim = {k: panels[f"{f} {k}"].images[0].get_clim() for k in ("input", "truth", "prediction", "error")}
        assert clim["truth"] == clim["prediction"] == clim["input"]  # one scale for the compared panels
        lo, hi = clim["truth"]
        both = np.concatenate([truth[c].ravel(), pred[c].ravel()])
        assert lo <= both.min() and hi >= both.max()
        err = np.abs(pred[c] - truth[c]).max()
        assert clim["error"] == pytest.approx((-err, err))  # the error: its own scale, symmetric
        assert panels[f"{f} truth"].images[0].colorbar.ax.get_ylabel() == f
        assert "prediction - truth" in panels[f"{f} error"].images[0].colorbar.ax.get_ylabel()
    u_lo, u_hi = panels["u truth"].images[0].get_clim()
    assert u_lo == -u_hi == -np.abs(truth[0]).max()  # signed data: symmetric about 0, the truth's +-5
    assert panels["rho truth"].images[0].get_clim()[0] > 0  # positive data: not forced to include -max
    for ax in panels.values():
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
        assert "t=0.5" in ax.get_title() or "t=0.25" in ax.get_title()
        left, right, bottom, top = ax.images[0].get_extent()  # physical coordinates, to the cells' edges
        assert left < 0 < 1 < right and bottom < 0 and 2 < top < 2.2
    for ax in bars:
        assert ax.get_ylabel()


def test_2d_input_of_another_quantity_gets_its_own_scale():
    from pdeforge.plots import prediction_figure

    k = np.full((1, 8, 8), 100.0)
    k[0, :4] = 10.0
    truth, pred = np.random.default_rng(0).random((2, 1, 8, 8))
    fig = prediction_figure(k, truth, pred, ["pressure"], input_names=["permeability"])
    bars = _colourbar_axes(fig)
    panels = {ax.get_title(): ax for ax in fig.axes if ax not in bars}
    assert panels["permeability"].images[0].get_clim() == (10.0, 100.0)
    assert panels["pressure truth"].images[0].get_clim() == panels["pressure prediction"].images[0].get_clim()
    for ax in panels.values():  # no coordinates given: the axes say they are grid indices
        assert "grid index" in ax.get_xlabel() and "grid index" in ax.get_ylabel()


def test_1d_prediction_is_drawn_against_physical_x_with_labelled_axes():
    from pdeforge.plots import prediction_figure

    x = np.linspace(0.0, 6.0, 32)
    truth = np.stack([np.sin(x), np.cos(x)])
    pred = truth + 0.1
    fig = prediction_figure(truth, truth, pred, ["u", "v"], coords={"x": x}, time=2.0, input_time=1.0)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_xlabel() == "x" and ax.get_ylabel()
        for line in ax.get_lines():
            if len(line.get_xdata()) == len(x):
                np.testing.assert_array_equal(line.get_xdata(), x)  # physical coordinates, not grid indices
    fields, errors = fig.axes[0::2], fig.axes[1::2]
    assert [ax.get_ylabel() for ax in fields] == ["u", "v"]
    assert [ax.get_title() for ax in fields] == ["u, t=2", "v, t=2"]
    assert all("prediction - truth" in ax.get_ylabel() for ax in errors)
    np.testing.assert_allclose(errors[0].get_lines()[0].get_ydata(), 0.1, atol=1e-12)
    assert [t.get_text() for t in fields[0].get_legend().get_texts()] == ["input, t=1", "truth", "prediction"]


def test_loss_plot_says_what_it_plots(monkeypatch, tmp_path):
    from pdeforge import plots

    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, out: drawn.append(fig) or out)
    log = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5, "valid": 0.7}, {"step": 3, "loss": 0.3}]
    plots.plot_losses(log, tmp_path / "a.png", loss_label="train MSE", valid_label="valid rel L2")
    plots.plot_losses(log, tmp_path / "b.png", loss_label="train rel L2", valid_label="valid rel L2", ylabel="rel L2")
    assert [f.axes[0].get_ylabel() for f in drawn] == ["train MSE; valid rel L2", "rel L2"]
    assert [f.axes[0].get_xlabel() for f in drawn] == ["optimiser step"] * 2


# -- the operators' first API --------------------------------------------------------------------------------------


def test_build_model_defaults_agree_with_the_operator_config():
    from pdeforge.operators import build_model
    from pdeforge.operators.field import ModelSection

    default = inspect.signature(build_model).parameters["use_grid"].default
    assert default is True
    assert default == {f.name: f.default for f in dataclasses.fields(ModelSection)}["use_grid"]


def test_operators_docstring_example_runs():
    """The example a user reads first, on data with an equation parameter (``scalars``), runs as written."""
    import pdeforge.operators

    result = doctest.testmod(pdeforge.operators, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


# -- a trained run: load, predict, evaluate ------------------------------------------------------------------------


def make_root(root: Path, *, field: str = "u", parameters=None, n: int = 32, trajectories=(8, 3, 3)) -> Path:
    """A small 1D dataset root: travelling waves, with the equation parameter ``nu`` unless ``parameters`` says."""
    from pdeforge.datasets import FieldSpec, Schema, TrajectoryWriter, write_stats

    x = 2 * np.pi * np.arange(n) / n
    t = 0.1 * np.arange(5)
    params = {"nu": 0.01} if parameters is None else parameters
    schema = Schema("waves", coords={"x": x}, time=t, fields=(FieldSpec(field),), parameters=params)
    rng = np.random.default_rng(0)
    m = np.arange(1, 4)[:, None]
    for split, k in zip(("train", "valid", "test"), trajectories):
        with TrajectoryWriter(root / "data" / split / "waves.hdf5", schema, k, resume=False) as w:
            a = rng.standard_normal((k, 1, 3, 1))
            u = 3.0 + (a * np.sin(m * (x - t[:, None, None]))).sum(-2)  # (k, T, n): an offset the zscore removes
            w.write_channels(u[:, :, None].astype(np.float32))
    write_stats(root)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A tiny U-Net run (operator task, 12 optimiser steps) on a root with the parameter nu."""
    from pdeforge.families import train

    base = tmp_path_factory.mktemp("api")
    root = make_root(base / "waves")
    run = base / "run"
    train(
        None,
        [
            *("--data.root", str(root), "--task.dt_stride", "1", "--optim.epochs", "2", "--optim.batch_size", "8"),
            *("--model.name", "unet", "--model.args", "{init_features: 4, n_stages: 2}"),
            *("--run.run_dir", str(run), "--run.progress", "false"),
        ],
    )
    return {"base": base, "root": root, "run": run}


def test_load_run_predicts_in_physical_units_with_the_runs_normalisation(trained):
    """Three lines give physical predictions; the test rel L2 recomputed from them is the run's metrics.json."""
    import pdeforge
    from pdeforge.metrics import rel_l2

    run = pdeforge.load_run(trained["run"])
    batch = next(iter(run.loader("test", batch_size=5)))
    pred = run.predict(batch)
    assert pred.shape == batch["output_fields"].shape == (5, 1, 1, 32)
    assert batch["scalars"].shape == (5, 1)  # the parameter the model needs travels in the batch
    assert abs(float(batch["output_fields"].mean()) - 3.0) < 0.5  # physical units: the offset 3 is there
    assert abs(float(pred.mean()) - 3.0) < 1.0  # ... and in the prediction (denormalised)
    errors = torch.cat([rel_l2(run.predict(b), b["output_fields"], 1, reduction="sample") for b in run.loader("test")])
    saved = json.loads((trained["run"] / "metrics.json").read_text())["test"]
    assert len(errors) == saved["n_samples"] == len(run.dataset("test")) == 3 * 4
    assert float(errors.mean()) == pytest.approx(saved["rel_l2"], rel=1e-5)


def test_the_runs_normalisers_are_the_datasets_for_vector_and_constant_fields(tmp_path):
    """predict rebuilds the normalisation from model.json alone (statistics by field, channels flattened): the same
    shifts and scales as the dataset's, for a vector field, a scalar field and a constant field in 2D."""
    from pdeforge.datasets import FieldSpec, Schema, TrajectoryDataset, TrajectoryWriter, write_stats
    from pdeforge.operators.field._family import _normalizers

    x = np.linspace(0, 1, 6)
    fields = (FieldSpec("p"), FieldSpec("velocity", order=1), FieldSpec("k", time_varying=False))
    schema = Schema("mix", coords={"x": x, "y": x}, time=0.1 * np.arange(3), fields=fields)
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        with TrajectoryWriter(tmp_path / "data" / split / "mix.hdf5", schema, 2, resume=False) as w:
            u = rng.normal([1.0, -2.0, 3.0], [1.0, 2.0, 0.5], (2, 3, 6, 6, 3)).transpose(0, 1, 4, 2, 3)
            w.write_channels(u.astype(np.float32), constant=rng.normal(5.0, 2.0, (2, 1, 6, 6)).astype(np.float32))
    write_stats(tmp_path)
    stats = yaml.safe_load((tmp_path / "stats.yaml").read_text())
    for kind in ("zscore", "rms"):
        ds = TrajectoryDataset(tmp_path, split="train", normalization=kind, stats=stats)
        assert ds.metadata.field_names == ("p", "velocity_x", "velocity_y")
        fields_norm, const_norm = _normalizers(stats, ds.metadata, kind)
        for mine, theirs in ((fields_norm, ds.normalizer), (const_norm, ds.const_normalizer)):
            assert torch.equal(mine.shift, theirs.shift) and torch.equal(mine.scale, theirs.scale)
        assert float(fields_norm.scale[1]) != float(fields_norm.scale[0])  # per channel, not one for all


def test_predict_is_the_operator_familys(trained):
    from pdeforge.families import LoadedRun, family_class

    pinn = LoadedRun(None, None, None, family_class("pinn"), {}, Path("runs/burgers"))
    with pytest.raises(ValueError, match=r"^runs/burgers: LoadedRun.predict: a pinn run has no field-to-field"):
        pinn.predict({})


def _evaluate(argv, capsys) -> tuple[int, str, str]:
    from pdeforge.cli import main

    code = main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_writes_trainings_plots_into_its_own_folder(trained, capsys):
    run = trained["run"]
    before = {p.name: p.read_bytes() for p in run.glob("*.png")}
    assert set(before) == {"loss.png", "prediction.png"}
    where = run / "eval" / "waves"
    for again in (False, True):  # a second evaluation of the same run on the same data replaces the first
        if again:
            (where / "stale.png").write_bytes(b"")
        code, out, err = _evaluate([run], capsys)
        assert code == 0, err
        assert err.strip().splitlines()[-1] == f"plots and evaluate.json: {where}"
        assert sorted(p.name for p in where.iterdir()) == ["evaluate.json", "loss.png", "prediction.png"]
        record = json.loads((where / "evaluate.json").read_text())
        saved = json.loads((run / "metrics.json").read_text())
        assert json.loads(out) == record["metrics"] == {"valid": saved["valid"], "test": saved["test"]}
    assert {p.name: p.read_bytes() for p in run.glob("*.png")} == before  # training's plots untouched
    code, _, err = _evaluate([run, "--out", run], capsys)
    assert code == 1 and err == f"error: evaluate {run}: plots folder {run} holds a run; expected another folder " + (
        "(training's plots stay)\n"
    )
    code, _, err = _evaluate([run, "--split", "valid"], capsys)
    assert code == 0 and err.strip().endswith("no plots: they are drawn from the test split (add --split test)")


def test_evaluate_on_other_data_uses_the_runs_normalisation(trained, capsys):
    """The same data under another root whose stats.yaml says otherwise: the same metrics (the model sees data as it
    was trained to), and the plots in RUN/eval/<that root's name>."""
    run, other = trained["run"], trained["base"] / "copy"
    shutil.copytree(trained["root"], other)
    stats = yaml.safe_load((other / "stats.yaml").read_text())
    stats["mean"]["u"] = 100.0
    (other / "stats.yaml").write_text(yaml.safe_dump(stats))
    code, out, err = _evaluate([run, "--data", other, "--split", "test"], capsys)
    assert code == 0, err
    saved = json.loads((run / "metrics.json").read_text())
    assert json.loads(out)["test"] == pytest.approx(saved["test"], rel=1e-6)
    assert (run / "eval" / "copy" / "prediction.png").is_file()


@pytest.mark.parametrize(
    "name, make, why",
    [
        ("v_field", dict(field="v"), r"fields \['u'\] in the run, \['v'\] in the data"),
        ("no_nu", dict(parameters={}), r"scalars \(equation parameters\) \['nu'\] in the run, none in the data"),
        ("coarse", dict(n=8), r"the model, trained at resolution \(32,\), cannot take .* resolution \(8,\): UNet"),
    ],
)
def test_evaluate_refuses_data_the_model_cannot_take_in_one_line(trained, capsys, name, make, why):
    run = trained["run"]
    root = make_root(trained["base"] / name, **make)
    code, out, err = _evaluate([run, "--data", root], capsys)
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: evaluate {run} --data {root}: ")
    assert re.search(why, err), err
    assert not (run / "eval" / name).exists()  # nothing written

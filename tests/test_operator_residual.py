"""``model.residual`` of the operator family: each output frame is the last input frame plus the network's output.
A residual model whose network outputs zero predicts persistence exactly (in normalised and in physical units), it
trains and resumes through ``pdeforge train``, the option is recorded, and a task without an input frame is refused
in one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from pdeforge.datasets import DatasetMetadata, FieldSpec, Schema, TrajectoryWriter
from pdeforge.datasets._stats import write_stats
from pdeforge.operators import FNOConfig, build_from_spec, build_model
from pdeforge.operators.dpot import DPOTFieldsConfig

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("finetune_helpers", HERE / "test_finetune_pretrained.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
waves_root = _helpers._root  # smooth travelling waves, train 3 / valid 2 / test 2 trajectories


class Zero(nn.Module):
    """A network that outputs zeros of ``out_channels`` channels (one unused parameter: its dtype and device)."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels, self.unused = out_channels, nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.out_channels, *x.shape[2:], dtype=x.dtype)


def _meta(resolution=(16, 16)) -> DatasetMetadata:
    return DatasetMetadata(
        dataset_name="test",
        field_names=("u", "v"),
        constant_field_names=(),
        scalar_names=(),
        spatial_dims=("x", "y"),
        resolution=resolution,
        domain_lengths=(1.0, 1.0),
        dt=0.1,
        boundary_conditions=("periodic", "periodic"),
    )


@pytest.mark.parametrize(
    "config, use_grid",
    [
        (FNOConfig(n_modes=4, hidden_channels=8, n_layers=2), True),
        (DPOTFieldsConfig(patch_size=4, embed_dim=16), False),
    ],
)
def test_a_zero_network_predicts_persistence_and_the_spec_keeps_it(config, use_grid) -> None:
    """Every output frame is the last input frame plus the network's output: zero output gives u(t) exactly for each
    of the 3 output frames; with the same weights, residual = plain + last frame; the spec rebuilds it."""
    torch.manual_seed(0)
    kw = dict(n_steps_input=2, n_steps_output=3, use_grid=use_grid)
    plain, res = build_model(config, _meta(), **kw), build_model(config, _meta(), **kw, residual=True)
    res.load_state_dict(plain.state_dict())
    assert "residual" not in plain.model_spec and res.model_spec["residual"] is True
    u = torch.randn(4, 2, 2, 16, 16)
    with torch.no_grad():
        assert torch.allclose(res(u), plain(u) + u[:, -1:], atol=1e-6)
        res.net = Zero(res.layout.out_channels)
        out = res(u)
    assert out.shape == (4, 3, 2, 16, 16)
    for k in range(3):
        assert torch.equal(out[:, k], u[:, 1])
    again = build_from_spec(json.loads(json.dumps(res.model_spec)))
    assert again.residual and not build_from_spec(plain.model_spec).residual
    with pytest.raises(ValueError, match="residual=True needs an input frame"):
        build_model(config, _meta(), n_steps_input=0, n_steps_output=1, residual=True)


def _train(root: Path, run: Path, *extra: str) -> dict:
    from pdeforge.families import train

    return train(
        None,
        [
            *("--data.root", str(root), "--task.kind", "next_step", "--task.n_steps_input", "2"),
            *("--task.dt_stride", "1", "--task.rollout_steps", "2", "--model.residual", "true"),
            *("--model.args", "{n_modes: 4, hidden_channels: 8, n_layers: 2}", "--optim.steps", "6"),
            *("--optim.batch_size", "2", "--run.checkpoint_every", "3", "--run.progress", "false"),
            *("--run.run_dir", str(run), *extra),
        ],
    )


def test_residual_trains_resumes_and_predicts_persistence_in_physical_units(tmp_path, crash_after_checkpoint):
    """``pdeforge train --model.residual true`` (zscore data, 2 frames in): config.yaml and model.json record it; cut
    after the checkpoint at step 3 of 6 and resumed, it ends with the uninterrupted run's weights and metrics;
    resuming with residual false is refused; the loaded run with its network zeroed predicts u(t + dt) = u(t) in
    physical units, with persistence's test error."""
    from pdeforge import train as train_cli
    from pdeforge.checkpoint import load_weights
    from pdeforge.families import load_run

    root = waves_root(tmp_path / "root", (FieldSpec("u"), FieldSpec("v")), n=16, n_steps=6)
    whole = _train(root, tmp_path / "whole")
    assert crash_after_checkpoint(lambda: _train(root, tmp_path / "cut"), nth=1) == [3]
    again = _train(root, tmp_path / "cut", "--run.resume", str(tmp_path / "cut"))
    a, b = load_weights(tmp_path / "whole" / "model.safetensors"), load_weights(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in again.items() if k != "train_seconds"} == {
        k: v for k, v in whole.items() if k != "train_seconds"
    }
    assert yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())["model"]["residual"] is True
    assert json.loads((tmp_path / "cut" / "model.json").read_text())["model_spec"]["residual"] is True
    with pytest.raises(SystemExit, match=r"started with other options \(model.residual True there, False now\)"):
        train_cli.cli(["--run.resume", str(tmp_path / "cut"), "--model.residual", "false"])

    run = load_run(tmp_path / "whole")
    assert run.model.residual
    run.model.net = Zero(run.model.layout.out_channels)
    batch = next(iter(run.loader("test", batch_size=64)))
    pred = run.predict(batch)
    last = batch["input_fields"][:, -1:]
    assert torch.allclose(pred, last, rtol=0, atol=1e-5 * last.abs().max())
    persistence = [
        float(torch.linalg.vector_norm(x[-1] - y[0]) / torch.linalg.vector_norm(y[0]))
        for x, y in zip(batch["input_fields"], batch["output_fields"])
    ]
    errors = [
        float(torch.linalg.vector_norm(p[0] - y[0]) / torch.linalg.vector_norm(y[0]))
        for p, y in zip(pred, batch["output_fields"])
    ]
    assert np.allclose(errors, persistence, atol=1e-5) and min(persistence) > 0.01

    # fine-tuning the residual run: as it was trained, or refused in one line (its weights predict the change)
    from pdeforge.families import train

    argv = [
        *("--data.root", str(root), "--task.kind", "next_step", "--task.n_steps_input", "2", "--task.dt_stride", "1"),
        *("--optim.steps", "2", "--optim.batch_size", "2", "--run.progress", "false"),
        *("--run.init_from", str(tmp_path / "whole"), "--model.args", "{}"),
    ]
    with pytest.raises(ValueError, match=r"init_from .*whole: trained with model.residual true, this run has model"):
        train(None, [*argv, "--run.run_dir", str(tmp_path / "tuned_off")])
    tuned = train(None, [*argv, "--model.residual", "true", "--run.run_dir", str(tmp_path / "tuned")])
    assert tuned["steps"] == 2
    assert json.loads((tmp_path / "tuned" / "model.json").read_text())["finetune"]["reinitialised"] == []


def _steady_root(path: Path) -> Path:
    """Steady data (one snapshot per trajectory): a coefficient field -> a solution field, as Darcy."""
    x = np.linspace(0, 1, 8, endpoint=False)
    schema = Schema(
        "steady",
        coords={"x": x, "y": x},
        time=np.array([0.0]),
        fields=(FieldSpec("a", time_varying=False), FieldSpec("p")),
    )
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("valid", 2), ("test", 2)):
        (path / "data" / split).mkdir(parents=True)
        with TrajectoryWriter(path / "data" / split / f"{split}.hdf5", schema, n_trajectories=count) as writer:
            a = rng.normal(size=(count, 1, 8, 8)).astype("float32")
            writer.write_channels(a[:, None] ** 2, constant=a)
    write_stats(path)
    return path


def test_residual_without_an_input_frame_is_one_line(tmp_path, monkeypatch) -> None:
    """An operator task on steady data (constant fields -> solution) has no input frame: refused in one line."""
    from pdeforge import train

    monkeypatch.delenv("PDEFORGE_TRACEBACK", raising=False)
    root = _steady_root(tmp_path / "steady")
    argv = ["--data.root", str(root), "--model.args", "{n_modes: 2, hidden_channels: 4, n_layers: 1}"]
    argv += ["--optim.batch_size", "2", "--run.max_steps", "1", "--run.progress", "false"]
    argv += ["--run.run_dir", str(tmp_path / "run")]
    train.cli([*argv, "--run.overwrite", "true"])  # the same data and task without residual train
    with pytest.raises(SystemExit) as caught:
        train.cli([*argv, "--run.overwrite", "true", "--model.residual", "true"])
    message = str(caught.value)
    assert "\n" not in message and message.split("error: ", 1)[-1].startswith(
        "--model.residual true: the task has no input frame to add the output to"
    ), message

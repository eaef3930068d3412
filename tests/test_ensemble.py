"""Ensembles (``--run.ensemble N``): N member runs with seeds seed, seed + 1, ... from one command, loaded as one
object whose ``predict`` stacks the members' predictions, evaluated with the ensemble mean's metrics, the CRPS and
the spread-skill ratio; the field-operator family on a tiny generated Burgers dataset, two optimiser steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from pdeforge import metrics as M
from pdeforge.solvers.generate import PRESETS, generate, with_overrides

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory) -> tuple[Path, dict, Path]:
    from pdeforge.families import train

    root = tmp_path_factory.mktemp("ens")
    data = root / "burgers"
    generate(
        with_overrides(PRESETS["burgers_1d"], n_snapshots=5), data, n_trajectories=20, resolution=32, progress=False
    )
    run = root / "run"
    out = train(REPO / "configs" / "fno_burgers.yaml", overrides(data, run))
    return run, out, data


def overrides(data: Path, run: Path, *extra: str) -> list[str]:
    return [
        "--data.root", str(data), "--run.run_dir", str(run), "--run.max_steps", "2", "--run.ensemble", "3",
        "--run.progress", "false", "--model.args", "{n_modes: 4, hidden_channels: 8, n_layers: 2}",
        "--optim.batch_size", "4", *extra,
    ]  # fmt: skip


def test_members_are_complete_runs_with_consecutive_seeds(ensemble_run) -> None:
    run, out, _ = ensemble_run
    record = json.loads((run / "ensemble.json").read_text())
    assert record["members"] == ["members/0", "members/1", "members/2"] and record["seeds"] == [0, 1, 2]
    assert record["family"] == "operator"
    weights = []
    for k in range(3):
        member = run / "members" / str(k)
        for name in ("config.yaml", "model.json", "model.safetensors", "metrics.json"):
            assert (member / name).is_file()
        config = yaml.safe_load((member / "config.yaml").read_text())
        assert config["run"]["seed"] == k and config["run"]["ensemble"] == 1
        assert record["member_metrics"][k]["test"] == json.loads((member / "metrics.json").read_text())["test"]
        from pdeforge.checkpoint import load_weights

        weights.append(load_weights(member / "model.safetensors"))
    key = next(iter(weights[0]))
    assert not torch.equal(weights[0][key], weights[1][key])  # different seeds, different members
    assert len(out["members"]) == 3 and "crps" in out["test"] and out["test"] == record["metrics"]["test"]


def test_load_run_stacks_member_predictions(ensemble_run) -> None:
    from pdeforge import load_run

    run, _, _ = ensemble_run
    ensemble = load_run(run)
    batch = next(iter(ensemble.loader("test", batch_size=2)))
    pred = ensemble.predict(batch)
    assert pred.shape == (3, batch["input_fields"].shape[0], 1, 1, 32) and pred.shape[1] == 2  # (M, B, T_out, C, x)
    for k in range(3):
        assert torch.equal(pred[k], load_run(run / "members" / str(k)).predict(batch))


def test_evaluate_reports_ensemble_mean_crps_and_spread_skill(ensemble_run) -> None:
    """The metrics recomputed from the saved weights equal those from the members' stacked predictions: the
    ensemble mean's RMSE, the fair CRPS and the spread-skill ratio; the members' own metrics are listed."""
    from pdeforge import load_run
    from pdeforge.families import evaluate_run

    run, out, _ = ensemble_run
    metrics = evaluate_run(run)
    assert metrics == {"valid": out["valid"], "test": out["test"]}
    ensemble = load_run(run)
    batches = list(ensemble.loader("test"))
    with torch.no_grad():
        pred = torch.cat([ensemble.predict(b) for b in batches], dim=1)
    truth = torch.cat([b["output_fields"] for b in batches]).to(pred.dtype)
    test = metrics["test"]
    assert test["rmse"] == pytest.approx(M.rmse(pred.mean(0), truth, 1).item(), rel=1e-6)
    assert test["crps"] == pytest.approx(M.crps_ensemble(pred, truth).item(), rel=1e-6)
    assert test["spread_skill"] == pytest.approx(M.spread_skill_ratio(pred, truth).item(), rel=1e-6)
    assert 0 < test["spread_skill"] and test["crps"] < test["rmse"] * 2
    assert [m["rel_l2"] for m in test["members"]] == [o["test"]["rel_l2"] for o in out["members"]]


def test_cli_evaluate_writes_evaluate_json(ensemble_run, capsys) -> None:
    from pdeforge.cli import main

    run, out, _ = ensemble_run
    assert main(["evaluate", str(run), "--out", str(run.parent / "eval_out")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test"]["crps"] == pytest.approx(out["test"]["crps"])
    saved = json.loads((run.parent / "eval_out" / "evaluate.json").read_text())
    assert saved["metrics"]["test"]["spread_skill"] == pytest.approx(out["test"]["spread_skill"])


def test_refuses_existing_folder_and_resume(ensemble_run) -> None:
    from pdeforge.families import train

    run, _, data = ensemble_run
    with pytest.raises(FileExistsError, match="already holds a run or an ensemble; replace it with --run.overwrite"):
        train(REPO / "configs" / "fno_burgers.yaml", overrides(data, run))
    with pytest.raises(ValueError, match="an ensemble is not resumed as a whole"):
        train(REPO / "configs" / "fno_burgers.yaml", [*overrides(data, run), "--run.resume", str(run / "members/0")])
    with pytest.raises(Exception, match="run.ensemble"):
        train(REPO / "configs" / "fno_burgers.yaml", [*overrides(data, run.parent / "other"), "--run.ensemble", "0"])

"""Smoke runs of benchmarks/training.py and the data pieces of benchmarks/accuracy.py, with value checks (< 30 s)."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def accuracy():
    return _load("accuracy")


@pytest.fixture(scope="module")
def training():
    return _load("training")


def test_paper_grf_has_the_papers_covariance(accuracy):
    """Sample variance of u0 at a point = sum_{k >= 1} 2 lambda_k, lambda_k = 625 ((2 pi k)^2 + 25)^-2; zero mean."""
    setting = accuracy.BurgersSetting()
    s = 64
    u0 = accuracy.paper_grf(4000, s, setting, torch.Generator().manual_seed(0))
    assert u0.shape == (4000, 1, s) and u0.dtype == torch.float64
    expected = sum(2 * 625.0 * ((2 * math.pi * k) ** 2 + 25.0) ** -2 for k in range(1, s // 2))
    assert expected == pytest.approx(0.3523, abs=1e-3)
    assert float(u0.var(dim=0).mean()) == pytest.approx(expected, rel=0.03)
    assert float(u0.mean(dim=-1).abs().max()) < 1e-12  # zero mean mode, sample by sample
    # covariance at lag 1/4: sum 2 lambda_k cos(pi k / 2)
    lag = sum(2 * 625.0 * ((2 * math.pi * k) ** 2 + 25.0) ** -2 * math.cos(math.pi * k / 2) for k in range(1, s // 2))
    assert float((u0 * torch.roll(u0, s // 4, -1)).mean()) == pytest.approx(lag, abs=0.01)


def test_burgers_solve_decays_a_small_mode_exactly(accuracy):
    """Linear regime (amplitude 1e-6): u(1) = exp(-nu (2 pi)^2) u0 for u0 = eps sin(2 pi x)."""
    setting = accuracy.BurgersSetting(dt=1e-2)
    x = torch.arange(64, dtype=torch.float64) / 64
    u0 = 1e-6 * torch.sin(2 * math.pi * x)[None, None]
    u1 = accuracy.solve_burgers(u0, setting)
    exact = math.exp(-0.1 * (2 * math.pi) ** 2) * u0
    assert float((u1 - exact).norm() / exact.norm()) < 1e-5


def test_training_benchmark_compares_the_same_model_and_steps(training, tmp_path):
    args = {"n_modes": 4, "hidden_channels": 8, "n_layers": 2}
    r = training.throughput(tmp_path, 16, args, batch_size=16, epochs=2, rounds=1)
    assert r["params_ours"] == r["params_theirs"]  # the same FNO on both sides
    assert r["steps_per_epoch"] == 20 and r["windows"] == 320
    assert r["file_mib"] < 64  # the dataset layer caches it
    assert 0 < r["ours"] < math.inf and 0 < r["theirs"] < math.inf
    assert r["ratio"] == pytest.approx(r["ours"] / r["theirs"])
    assert all(0.0 <= f < 1.0 for f in r["cached_data_time_fraction"])
    # the memory windows are the same normalised numbers train.py reads
    ds = training.TrajectoryDataset(
        tmp_path / "cached", n_steps_input=1, n_steps_output=1, split="train", normalization="zscore"
    )
    mem = training.memory_windows(tmp_path / "cached", "train")
    torch.testing.assert_close(mem[37]["y"], ds[37]["output_fields"][0], rtol=0, atol=0)
    assert abs(float(mem.x.mean())) < 0.2 and float(mem.x.std()) == pytest.approx(1.0, rel=0.2)


@pytest.fixture(scope="module")
def foundation():
    return _load("foundation")


def test_foundation_persistence_floor_is_the_relative_l1_of_u0(foundation, tmp_path):
    """u(x, t) = (1 + t) u0(x): predicting u(t) = u(0) has relative L1 error t / (1 + t) at every point."""
    import numpy as np

    from pdeforge.datasets import FieldSpec, Schema, TrajectoryWriter

    x = np.linspace(0, 1, 8, endpoint=False)
    t = 0.1 * np.arange(9)
    schema = Schema(
        "grow", coords={"x": x, "y": x}, time=t, fields=(FieldSpec("vorticity"),), boundary_conditions="periodic"
    )
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        with TrajectoryWriter(tmp_path / "data" / split / "fields.hdf5", schema, 3, resume=False) as w:
            for _ in range(3):
                u0 = rng.standard_normal((8, 8))
                w.write_channels(((1 + t)[:, None, None] * u0)[None, :, None].astype(np.float32))
    assert foundation.persistence_error(tmp_path, 8) == pytest.approx(100 * 0.8 / 1.8, rel=1e-5)
    assert foundation.persistence_error(tmp_path, 2) == pytest.approx(100 * 0.2 / 1.2, rel=1e-5)


def _fake_scot_run(foundation, calls):
    """A stand-in for foundation.scot_run: writes the run folder's config.yaml as the run skeleton would."""
    import json

    import yaml

    def run(name, overrides, run_dir):
        calls.append(overrides)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(foundation._config(name, overrides)))
        (run_dir / "metrics.json").write_text(json.dumps({"test": {"median_rel_l1": 1.0}}))
        return {"test": {"median_rel_l1": 1.0}}

    return run


def test_foundation_reuses_a_run_folder_only_with_the_same_options(foundation, tmp_path, monkeypatch):
    import json

    calls = []
    monkeypatch.setattr(foundation, "scot_run", _fake_scot_run(foundation, calls))
    run = tmp_path / "run"
    width = ["--optim.steps", "600", "--model.args", json.dumps({"embed_dim": 32, "num_heads": [2, 4, 8, 16]})]
    assert foundation._scot(run, "scot_pretrain.yaml", width) == 1.0 and len(calls) == 1
    (run / "metrics.json").write_text(json.dumps({"test": {"median_rel_l1": 42.0}}))
    # the same options (where it writes, progress and threads aside): reused
    assert foundation._scot(run, "scot_pretrain.yaml", [*width, "--run.progress", "true", "--run.threads", "2"]) == 42.0
    assert len(calls) == 1
    assert foundation._scot(run, "scot_pretrain.yaml", [*width, "--model.args.embed_dim", "8"]) == 1.0
    assert foundation._scot(run, "scot_pretrain.yaml", [*width, "--optim.steps", "300"]) == 1.0
    assert len(calls) == 3


def test_foundation_fine_tuning_is_stale_once_the_pretrained_checkpoint_is_newer(foundation, tmp_path, monkeypatch):
    import json
    import os

    calls = []
    monkeypatch.setattr(foundation, "scot_run", _fake_scot_run(foundation, calls))
    pre, ft = tmp_path / "pretrain", tmp_path / "finetune"
    foundation._scot(pre, "scot_pretrain.yaml", [])
    foundation._scot(ft, "scot_finetune.yaml", ["--run.init_from", str(pre)], after=pre)
    assert len(calls) == 2
    (ft / "metrics.json").write_text(json.dumps({"test": {"median_rel_l1": 42.0}}))
    os.utime(pre / "metrics.json", (1000, 1000)), os.utime(ft / "metrics.json", (2000, 2000))
    assert foundation._scot(ft, "scot_finetune.yaml", ["--run.init_from", str(pre)], after=pre) == 42.0
    assert len(calls) == 2
    os.utime(pre / "metrics.json", (3000, 3000))  # pretraining redone after the fine-tuning run
    assert foundation._scot(ft, "scot_finetune.yaml", ["--run.init_from", str(pre)], after=pre) == 1.0
    assert len(calls) == 3


def test_tsm_reuses_a_run_folder_only_if_trained_on_this_data_as_asked(tmp_path):
    import json

    tsm = _load("tsm")
    spec = {"model.variant": "li", "optim.steps": 3000, "run.threads": 1}
    folder = tmp_path / "li"
    folder.mkdir()
    config = {"model": {"variant": "li"}, "optim": {"steps": 3000}, "run": {"threads": 4}}
    (folder / "model.json").write_text(json.dumps({"config": config, "data_fingerprint": "abc"}))
    tsm._check_reused(folder, spec, "abc")  # threads do not matter
    with pytest.raises(SystemExit, match="trained on other data \\(data fingerprint abc, now abd\\)"):
        tsm._check_reused(folder, spec, "abd")
    with pytest.raises(SystemExit, match="trained with optim.steps 3000 \\(asked 600\\)"):
        tsm._check_reused(folder, {**spec, "optim.steps": 600}, "abc")
    (folder / "model.json").write_text(json.dumps({"config": config}))
    with pytest.raises(SystemExit, match="data fingerprint not recorded"):
        tsm._check_reused(folder, spec, "abc")


def test_pinn_budgets_scale_and_a_phase_switched_off_stays_off():
    pinns = _load("pinns")
    config = {"optim": {"steps": 35000, "lr": 1e-3}, "lbfgs": {"iters": 0}}
    assert pinns._budget(config, 1.0) == ["--optim.steps", "35000", "--lbfgs.iters", "0"]  # no L-BFGS made up
    assert pinns._budget(config, 0.1) == ["--optim.steps", "3500", "--lbfgs.iters", "0"]
    assert pinns._budget({"optim": {"steps": 5}, "lbfgs": {"iters": 3}}, 0.01) == [
        "--optim.steps",
        "1",
        "--lbfgs.iters",
        "1",
    ]
    assert config["optim"]["steps"] == 35000  # the config itself is not changed


def test_pinn_benchmark_trains_a_shipped_config_through_the_skeleton(tmp_path):
    """The advection figure's runs at a tiny budget: both configs train, with finite errors, through train()."""
    pinns = _load("pinns")
    plain = pinns._run(
        "pinn_advection_lagrangian",
        0.001,
        tmp_path / "lag",
        "--data.n_residual",
        "64",
        "--model.width",
        "8",
        "--eval.nx",
        "16",
        "--eval.nt",
        "5",
    )
    assert plain["steps"] == 2 and plain["finish"]["lbfgs"]["iterations"] <= 2
    assert math.isfinite(plain["test"]["rel_l2"]) and (tmp_path / "lag" / "model.safetensors").is_file()


def test_tsm_combine_averages_the_seeds_per_trajectory(tmp_path, capsys):
    """Two seeds' summaries averaged per test trajectory, then paired; different data is refused."""
    import json

    tsm = _load("tsm")
    runs = []
    for seed, (li, hippo) in enumerate((([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]), ([3.0, 2.0, 1.0], [2.0, 4.0, 3.0]))):
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        summary = {
            "protocol": {"data_fingerprint": "abc", "seed": seed},
            "li": {"duration_mean": sum(li) / 3, "per_trajectory": li},
            "tsm-hippo": {"duration_mean": sum(hippo) / 3, "per_trajectory": hippo},
            "tsm-hippo - li": {"mean": 0.0},
        }
        (folder / "summary.json").write_text(json.dumps(summary))
        runs.append(str(folder))
    tsm.combine(runs)
    out = capsys.readouterr().out
    # LI averages to (2, 2, 2), TSM to (2, 3, 2.5): differences (0, 1, 0.5), mean 0.5, standard error 0.5 / sqrt 3
    assert "li             2.00 +- 0.00" in out and "tsm-hippo      2.50 +- 0.41" in out
    assert "tsm-hippo - li: +0.500 +- 0.289  (2 wins, 1 ties of 3)" in out
    # run by run: seed 0 ties, seed 1 by 1; over the two runs 0.5 +- 0.5 (standard deviation 0.707 / sqrt 2)
    assert "tsm-hippo - li: +0.000, +1.000;  over the runs +0.500 +- 0.500 (1 of 2 positive)" in out
    other = json.loads((tmp_path / "s1" / "summary.json").read_text())
    del other["li"]  # a folder whose summary lacks a model: the model is left out, and said so
    (tmp_path / "s1" / "summary.json").write_text(json.dumps(other))
    tsm.combine(runs)
    out = capsys.readouterr().out
    assert f"li: left out, not scored in {runs[1]}" in out and "tsm-hippo - li" not in out
    assert "tsm-hippo      2.50 +- 0.41" in out
    other["protocol"]["data_fingerprint"] = "abd"
    (tmp_path / "s1" / "summary.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="scored on different data"):
        tsm.combine(runs)
    del other["protocol"]
    (tmp_path / "s1" / "summary.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="without the data fingerprint"):
        tsm.combine(runs)
    with pytest.raises(SystemExit, match="summary.json not found"):
        tsm.combine([str(tmp_path / "nowhere")])


def test_tsm_summaries_of_one_model_per_call_are_merged(tmp_path, capsys):
    """Two calls scoring one model each into one folder leave both models and their paired difference; another
    protocol's summary is replaced, not mixed in."""
    import json

    tsm = _load("tsm")
    path = tmp_path / "run" / "summary.json"
    protocol = {"data_fingerprint": "abc", "seed": 0, "history": 32}

    def scored(name, per):
        return {"duration_mean": sum(per) / len(per), "per_trajectory": per}

    tsm.merge_summary(
        path, {"protocol": protocol, "coarse": scored("coarse", [1.0, 1.0]), "li": scored("li", [2.0, 3.0])}
    )
    merged = tsm.merge_summary(
        path,
        {
            "protocol": dict(protocol),
            "coarse": scored("coarse", [1.0, 1.0]),
            "tsm-hippo": scored("tsm-hippo", [3.0, 3.5]),
        },
    )
    out = capsys.readouterr().out
    assert "kept from the earlier calls'" in out and "li 2.50" in out
    on_disk = json.loads(path.read_text())
    assert on_disk == merged
    assert [n for n in on_disk if " - " not in n] == ["protocol", "coarse", "tsm-hippo", "li"]
    assert on_disk["li"]["per_trajectory"] == [2.0, 3.0]
    # TSM - LI over the two trajectories: (+1.0, +0.5), mean 0.75, standard error 0.25
    assert on_disk["tsm-hippo - li"]["mean"] == pytest.approx(0.75)
    assert on_disk["tsm-hippo - li"]["stderr"] == pytest.approx(0.25)
    assert on_disk["tsm-hippo - li"]["wins"] == 2 and on_disk["li - coarse"]["mean"] == pytest.approx(1.5)
    assert not list(path.parent.glob("*.tmp*"))  # the atomic write leaves no temporary file
    tsm.merge_summary(path, {"protocol": {**protocol, "seed": 1}, "li": scored("li", [4.0, 4.0])})
    assert "another protocol's scores" in capsys.readouterr().out
    assert [n for n in json.loads(path.read_text()) if " - " not in n] == ["protocol", "li"]
    path.write_text("{ not json")
    with pytest.raises(SystemExit, match="not a summary.json this benchmark wrote"):
        tsm.merge_summary(path, {"protocol": protocol, "li": scored("li", [4.0, 4.0])})
    assert path.read_text() == "{ not json"  # left as it was

"""The generative next-step family (issue #33): the conditional sampling path against an exact Gaussian case,
PDE-Refiner's objective and sampler, and a run through the entry points (train, resume, load_run, evaluate)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pdeforge.generative._models import ConditionalUNet, ConditionalUNetConfig, DiffusionMethod, GenerativeNextStep
from pdeforge.generative._refiner import RefinerMethod
from pdeforge.operators._unet import UNetConfig

REPO = Path(__file__).resolve().parents[1]
SIGMA_DATA = 0.5  # std of x0 around its conditional mean in the Gaussian case


class _ExactGaussian(nn.Module):
    """The exact network output for ``x0 | c ~ N(c, SIGMA_DATA^2)`` elementwise, as the objective defines it: the
    posterior mean of the noise (objective noise), of ``alpha eps - sigma x0`` (v), or of ``eps - x0`` (flow)."""

    def __init__(self, method: DiffusionMethod) -> None:
        super().__init__()
        self.method, self.schedule = method, method.make_schedule()

    def forward(self, x: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.double().reshape(-1, *(1,) * (x.ndim - 1))
        x, mu, s2 = x.double(), cond.double(), SIGMA_DATA**2
        if self.method.objective == "flow":
            a, s = 1 - t, t
        else:
            a, s = self.schedule.alpha(t), self.schedule.sigma(t)
        var = a**2 * s2 + s**2
        eps = s * (x - a * mu) / var  # E[eps | x_t]
        x0 = mu + a * s2 * (x - a * mu) / var  # E[x0 | x_t]
        out = {"noise": eps, "v": a * eps - s * x0, "flow": eps - x0}[self.method.objective]
        return out.float()


@pytest.mark.parametrize(
    "objective, schedule, sampler, steps",
    [
        ("noise", "vp_linear", "dpm_solver++2m", 20),
        ("v", "vp_cosine", "dpm_solver++2m", 20),
        ("noise", "vp_linear", "ddpm", 200),
        ("flow", "flow", "heun", 40),
    ],
)
def test_conditional_sampling_of_a_gaussian(objective: str, schedule: str, sampler: str, steps: int) -> None:
    """With the exact network of a Gaussian case plugged into the model's sampling path (forward_batch: conditioning,
    sampler, v -> noise conversion, unstacking), the draws have the conditional mean and variance."""
    pytest.importorskip("pdeforge.generative._samplers")
    method = DiffusionMethod(objective, schedule, sampler, steps)
    model = GenerativeNextStep(
        _ExactGaussian(method), method, n_fields=1, n_steps_input=1, n_steps_output=1, use_grid=False
    )
    torch.manual_seed(0)
    mu = torch.linspace(-2.0, 3.0, 16).reshape(1, 1, 1, 16).expand(2000, 1, 1, 16)
    draws = model.forward_batch({"input_fields": mu})  # (B, T_out, C, X)
    assert draws.shape == (2000, 1, 1, 16)
    mean, var = draws.double().mean(0), draws.double().var(0)
    assert torch.allclose(mean, mu[0].double(), atol=0.06), (mean - mu[0]).abs().max()
    assert torch.allclose(var, torch.full_like(var, SIGMA_DATA**2), rtol=0.15), var


class _Recorder(nn.Module):
    """A stub network that returns ``scale * x`` and records the times and inputs it was called with."""

    def __init__(self, scale: float = 0.0) -> None:
        super().__init__()
        self.scale, self.calls = scale, []

    def forward(self, x: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((t.clone(), x.clone()))
        return self.scale * x


def test_refiner_steps_and_noise_levels() -> None:
    """Inference: the one-step prediction from zeros at time 0, then K refinements at times k/K whose inputs carry
    noise of std sigma_min^(k/K) (measured on a large sample), each removed with the network's noise estimate."""
    K, s_min = 3, 1e-2
    method = RefinerMethod(refiner_steps=K, min_noise_std=s_min)
    net = _Recorder(scale=0.0)  # predicts zero noise: each step keeps its noisy input
    torch.manual_seed(0)
    out = method.sample(net, torch.zeros(4, 1, 4096), (4, 1, 4096))
    times = [float(t[0]) for t, _ in net.calls]
    assert times == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert torch.count_nonzero(net.calls[0][1]) == 0  # k = 0 sees zeros
    previous = torch.zeros(4, 1, 4096)
    for k, (_, x) in enumerate(net.calls[1:], start=1):
        added = (x - previous).std().item()
        assert added == pytest.approx(s_min ** (k / K), rel=0.05)
        previous = x
    assert torch.equal(out, previous)
    assert method.noise_std(torch.arange(4)).tolist() == pytest.approx([0.0, s_min ** (1 / 3), s_min ** (2 / 3), s_min])


def test_refiner_loss_terms_and_weights() -> None:
    """k = 0: the MSE of the prediction from zeros against u(t); k >= 1: the MSE of the noise estimate at std
    sigma_k; the training loss draws k uniformly from {0..K}, each term weighted alike."""
    K = 3
    method = RefinerMethod(refiner_steps=K, min_noise_std=4e-7)
    x0 = torch.full((6, 1, 16), 3.0)
    noise = torch.randn(6, 1, 16, generator=torch.Generator().manual_seed(1))
    k = torch.tensor([0, 1, 2, 3, 0, 2])
    net = _Recorder(scale=0.5)
    terms = method.loss_terms(net, x0, torch.zeros_like(x0), k, noise)
    for i in range(6):
        sigma = 0.0 if k[i] == 0 else 4e-7 ** (int(k[i]) / K)
        x_in = torch.zeros_like(x0[i]) if k[i] == 0 else x0[i] + sigma * noise[i]
        target = x0[i] if k[i] == 0 else noise[i]
        assert float(terms[i]) == pytest.approx(float(((0.5 * x_in - target) ** 2).mean()), rel=1e-5)
    # a network that outputs zeros: L_0 = mean(x0^2) = 9, L_k = mean(eps^2) ~ 1; uniform k: (9 + K) / (K + 1) = 3
    torch.manual_seed(0)
    big = torch.full((8000, 1, 16), 3.0)
    loss = method.loss(_Recorder(scale=0.0), big, torch.zeros_like(big))
    assert float(loss) == pytest.approx((9 + K) / (K + 1), abs=0.15)


def test_conditional_unet_uses_time_and_conditioning() -> None:
    """The network's output depends on the time and the conditioning (time added to every stage), and a periodic
    axis keeps shift equivariance by the U-Net's coarsening factor."""
    torch.manual_seed(0)
    cfg = ConditionalUNetConfig(UNetConfig(init_features=8, n_stages=2, layer_scale_init=0.1), time_dim=16)
    net = ConditionalUNet(cfg, 1, 1, (True,))
    x, c = torch.randn(2, 1, 32), torch.randn(2, 1, 32)
    t = torch.tensor([0.1, 0.9])
    y = net(x, c, t)
    assert y.shape == x.shape
    assert not torch.allclose(y, net(x, c, t.flip(0)))
    assert not torch.allclose(y, net(x, torch.randn_like(c), t))
    shifted = net(x.roll(4, -1), c.roll(4, -1), t)
    assert torch.allclose(shifted, y.roll(4, -1), atol=1e-5)
    # every time projection is used: each gets a gradient
    net(x, c, t).square().sum().backward()
    for proj in [*net.to_encoder, net.to_neck, *net.to_decoder]:
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------------------
# through the entry points
# ------------------------------------------------------------------------------------------------------------
def _overrides(root: Path, run: Path, *extra: str) -> list[str]:
    return [
        "--data.root", str(root),
        "--run.run_dir", str(run),
        "--run.progress", "false",
        "--run.threads", "1",
        "--model.unet", "{init_features: 8, n_stages: 2}",
        "--model.time_dim", "16",
        "--optim.batch_size", "8",
        "--optim.steps", "4",
        "--eval.n_samples", "2",
        "--eval.max_trajectories", "2",
        "--eval.valid_batches", "2",
        "--task.rollout_steps", "4",
        *extra,
    ]  # fmt: skip


def _losses(run: Path) -> list[float]:
    lines = (run / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


def _valid(run: Path) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if line.strip()]
    return [(e["step"], e["valid"]) for e in lines if "valid" in e]


def test_diffusion_run_resume_load_evaluate(ks_root: Path, tmp_path: Path) -> None:
    """A diffusion run through `pdeforge train`'s function: finite probabilistic metrics; stopped at step 2 and
    resumed, the losses are those of the uninterrupted run; load_run and evaluate_run give back the test metrics."""
    pytest.importorskip("pdeforge.generative._samplers")
    from pdeforge import load_run
    from pdeforge.families import evaluate_run, train

    config = REPO / "configs" / "diffusion_ks.yaml"
    sampling = ["--diffusion.steps", "4"]
    whole = train(config, _overrides(ks_root, tmp_path / "whole", *sampling))
    p = whole["test"]["probabilistic"]
    for key in ("crps", "spread_skill", "energy_score", "high_correlation_duration_members"):
        assert math.isfinite(p[key]), (key, p[key])
    assert p["crps"] > 0 and len(p["rank_histogram"]) == 3 and sum(p["rank_histogram"]) == pytest.approx(1.0)
    assert p["n_samples"] == 2 and p["n_trajectories"] == 1 and p["steps"] == 4  # 10 trajectories: 8 / 1 / 1
    assert math.isfinite(whole["test"]["rel_l2"]) and len(whole["test"]["rollout"]["rel_l2_per_step"]) == 4

    part = tmp_path / "part"
    train(config, _overrides(ks_root, part, *sampling, "--run.max_steps", "2"))
    train(None, ["--run.resume", str(part), "--run.max_steps", "0", "--run.progress", "false"])
    assert _losses(part) == _losses(tmp_path / "whole")
    # the valid objective after the last step (seeded noise) is a function of the weights: the same after a resume
    # (the loader made mid-epoch by the resume must not draw from torch's global generator, which the loss's noise uses)
    assert _valid(part)[-1] == _valid(tmp_path / "whole")[-1] and _valid(part)[-1][0] == 4

    run = load_run(tmp_path / "whole")
    assert run.family.name == "generative" and run.model.method.steps == 4
    again = evaluate_run(tmp_path / "whole", splits=("test",), plots=tmp_path / "eval")  # what `pdeforge evaluate` does
    assert again["test"]["probabilistic"] == p  # seeded draws: the same numbers from the saved weights
    assert (tmp_path / "eval" / "rollout_error.png").is_file() and (tmp_path / "whole" / "loss.png").is_file()


def test_refiner_run(ks_root: Path, tmp_path: Path) -> None:
    """PDE-Refiner's config trains and evaluates through the same entry point; K = 0 (the MSE U-Net) gives members
    that are all equal (a deterministic model: zero spread)."""
    from pdeforge.families import train

    config = REPO / "configs" / "pde_refiner_ks.yaml"
    out = train(config, _overrides(ks_root, tmp_path / "refiner", "--optim.steps", "2"))
    assert math.isfinite(out["test"]["probabilistic"]["crps"])
    mse = train(config, _overrides(ks_root, tmp_path / "mse", "--optim.steps", "2", "--refiner.refiner_steps", "0"))
    assert mse["test"]["probabilistic"]["spread_skill"] == pytest.approx(0.0, abs=1e-6)


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    """A flow schedule with a noise objective is refused in one line naming the options."""
    from pdeforge.families import train

    with pytest.raises(ValueError, match="diffusion.objective noise with diffusion.schedule flow"):
        train(REPO / "configs" / "diffusion_ks.yaml", ["--diffusion.schedule", "flow", "--run.run_dir", str(tmp_path)])


def test_config_loads_without_torch() -> None:
    """The family's config is read and checked before torch loads (as every other family's); the family and the
    sampler load on first use from the package, and the config class is the one the family declares."""
    import subprocess
    import sys

    code = (
        "import sys; from pdeforge.generative._config import GenerativeRunConfig; "
        "from pdeforge.generative import GenerativeRunConfig as again; assert again is GenerativeRunConfig; "
        "from pdeforge.training.config import load_config; "
        "c = load_config(GenerativeRunConfig, None, ['--model.kind', 'autoencoder']); "
        "assert c.model.kind == 'autoencoder'; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    from pdeforge.generative import GenerativeFamily, GenerativeRunConfig, sample
    from pdeforge.generative._family import GenerativeRunConfig as compat

    assert GenerativeFamily.config_class is GenerativeRunConfig is compat and callable(sample)


def test_train_batches_resume_and_ranks() -> None:
    """The shared training batches (pdeforge.tasks.train_batches): a resume from batch k gives the tail of the
    epoch's batches; two ranks see disjoint samples; another epoch another order."""
    from pdeforge.tasks import train_batches

    class _Indices(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 37

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"i": torch.tensor(i)}

    def batches(**kw) -> list[list[int]]:
        args = {"epoch": 0, "start": 0, "seed": 3, "device": torch.device("cpu"), **kw}
        return [b["i"].tolist() for b in train_batches(_Indices(), 4, **args)]

    whole = batches()
    assert len(whole) == 9 and len({i for b in whole for i in b}) == 36
    assert batches(start=3) == whole[3:]
    r0, r1 = batches(world=2, rank=0), batches(world=2, rank=1)
    assert not {i for b in r0 for i in b} & {i for b in r1 for i in b}
    assert batches(epoch=1) != whole

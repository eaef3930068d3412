"""A family of the smallest kind, to test the run skeleton alone: a linear map fitted to noisy pairs.

Run as a script (``python toy_family.py RUN_DIR [overrides]``) it trains through :func:`pdeforge.training.fit`, so
it also runs under torchrun.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pdeforge.training import AbstractFamily, DataSection, OptimSection, RunSection, fit, load_config
from pdeforge.training.config import option, section


@dataclass
class ToyData(DataSection):
    n_samples: int = option(64, "pairs in the train split", min=1)
    nan_at_step: int = option(-1, "the loss is NaN from this optimiser step on (-1: never)")
    noise: float = option(1e-3, "std of the noise added to the inputs at each step (from torch's global RNG)", min=0)


@dataclass
class ToyConfig:
    family: str = option("toy", "the family")
    run: RunSection = section(RunSection, "the run")
    data: ToyData = section(ToyData, "the data")
    optim: OptimSection = section(lambda: OptimSection(epochs=4, batch_size=8, lr=0.2, warmup=0.1), "the optimiser")


class ToyFamily(AbstractFamily):
    name = "toy"
    config_class = ToyConfig

    def prepare(self) -> None:
        g = torch.Generator().manual_seed(123)
        self.a = torch.randn(3, 2, generator=g, dtype=torch.float64)
        n = self.config.data.n_samples
        self.split = {}
        for name, count in (("train", n), ("valid", 16), ("test", 16)):
            x = torch.randn(count, 3, generator=g, dtype=torch.float64)
            self.split[name] = (x, x @ self.a + 0.01 * torch.randn(count, 2, generator=g, dtype=torch.float64))
        self.calls = 0

    def build_model(self) -> nn.Module:
        return nn.Linear(3, 2, dtype=torch.float64)

    def steps_per_epoch(self) -> int:
        return self.config.data.n_samples // (self.config.optim.batch_size * self.env.world)

    def train_batches(self, epoch: int, start: int) -> Iterator[Any]:
        x, y = self.split["train"]
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1000 * self.config.run.seed + epoch))
        bs, world, rank = self.config.optim.batch_size, self.env.world, self.env.rank
        for k in range(start, self.steps_per_epoch()):
            idx = order[k * bs * world : (k + 1) * bs * world][rank * bs : (rank + 1) * bs]
            yield x[idx], y[idx]

    def loss(self, net: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        self.calls += 1
        x = x + self.config.data.noise * torch.randn(
            x.shape, dtype=x.dtype
        )  # input noise: training draws from torch's RNG
        loss = ((net(x) - y) ** 2).mean()
        bad = self.config.data.nan_at_step
        return loss * float("nan") if bad >= 0 and self.calls > bad * self.config.optim.grad_accum else loss

    def _error(self, model: nn.Module, split: str) -> float:
        x, y = self.split[split]
        with torch.no_grad():
            return float(((model(x) - y) ** 2).mean())

    def validate(self, model: nn.Module) -> float:
        return self._error(model, "valid")

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        return {"mse": self._error(model, split)}

    def envelope(self, model: nn.Module) -> dict[str, Any]:
        return {"model_spec": {"in": 3, "out": 2}, "metadata": {}, "stats": None}

    @classmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> nn.Module:
        return nn.Linear(envelope["model_spec"]["in"], envelope["model_spec"]["out"], dtype=torch.float64)

    def summary(self, metrics: Mapping[str, Any]) -> str:
        return f"test mse {metrics['test']['mse']:.4g}"


def train(run_dir: str, *overrides: str) -> dict:
    cfg = load_config(ToyConfig, values={}, overrides=["--run.run_dir", run_dir, "--run.progress", "false", *overrides])
    return fit(ToyFamily, cfg)


if __name__ == "__main__":
    train(sys.argv[1], *sys.argv[2:])

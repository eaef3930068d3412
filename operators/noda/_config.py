"""NODA's config: the shared ``run``, ``data`` and ``optim`` sections, the model, the measurements, the training
window and the evaluation. No torch here: ``--help`` and a typo cost a second.

    family: noda
    run:          RunSection (run_dir, seed, device, resume, init_from, max_steps, checkpoint_every, ...)
    data:         a preset (ks_1d) or a dataset root, plus dt_stride and max_trajectories
    optim:        AdamW + warm-up/cosine; NODA's defaults: 1500 steps of 16 windows, lr 1e-3, no warm-up, clip 1.0
    model:        the prediction FNO, the gain K, the measurement operator E
    observations: the measurement model y = m (z + eta): sensor mask, observed fraction, noise
    window:       the unrolled training window: spinup (assimilated, no gradient) + unroll (differentiated) steps
    eval:         arrival rates rolled out on whole trajectories, horizon, seed, an optional baseline run
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...training.config import DataSection, OptimSection, RunSection, option, section

__all__ = [
    "NODARunConfig",
    "NODAConfig",
    "GainConfig",
    "NODAData",
    "ObservationSection",
    "WindowSection",
    "EvalSection",
    "GAINS",
    "MEASUREMENTS",
    "PREDICTOR_OPTIONS",
]

GAINS = ("gated", "identity")
MEASUREMENTS = ("identity", "learned")
#: the options of the prediction step's FNO (``pdeforge.operators.FNOConfig``'s fields)
PREDICTOR_OPTIONS = ("n_modes", "hidden_channels", "n_layers", "domain_padding")


@dataclass(frozen=True)
class GainConfig:
    """The gain ``K``: ``"gated"`` (learned, a small FNO mixing the innovation with its spread field) or
    ``"identity"`` (``K = I``); the gated gain's FNO size."""

    kind: str = option("gated", "gated (learned: K d = g d + (1 - g)(I d + S)) | identity (K = I)", choices=GAINS)
    n_modes: int = option(16, "Fourier modes of the gated gain's FNO", min=1)
    hidden_channels: int = option(16, "width of the gated gain's FNO", min=1)
    n_layers: int = option(2, "blocks of the gated gain's FNO", min=1)

    def __post_init__(self) -> None:
        if self.kind not in GAINS:
            raise ValueError(f"gain kind should be one of {GAINS}, got {self.kind!r}")


@dataclass(frozen=True)
class NODAConfig:
    """A NODA model: the prediction step's FNO (``predictor``: FNOConfig fields), the gain ``K`` and the measurement
    operator ``E`` (``"identity"``: grid values, or ``"learned"``: a pointwise map starting at the identity)."""

    predictor: dict = option(
        {"n_modes": 16, "hidden_channels": 32, "n_layers": 4},
        f"the prediction step's FNO z^f = z + F(z): {', '.join(PREDICTOR_OPTIONS)}",
    )
    gain: GainConfig = section(GainConfig, "the gain K")
    measurement: str = option(
        "identity", "the measurement operator E: identity | learned (E z = z + W z + b)", choices=MEASUREMENTS
    )

    def __post_init__(self) -> None:
        if self.measurement not in MEASUREMENTS:
            raise ValueError(f"measurement should be one of {MEASUREMENTS}, got {self.measurement!r}")
        unknown = sorted(set(self.predictor) - set(PREDICTOR_OPTIONS))
        if unknown:
            raise ValueError(
                f"model.predictor: unknown option(s) {unknown}; expected FNO options {list(PREDICTOR_OPTIONS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"predictor": dict(self.predictor), "gain": dict(vars(self.gain)), "measurement": self.measurement}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NODAConfig:
        return cls(
            predictor=dict(d.get("predictor") or {}),
            gain=GainConfig(**(d.get("gain") or {})),
            measurement=d.get("measurement", "identity"),
        )


@dataclass
class NODAData(DataSection):
    """The trajectories (a preset or a dataset root) and how they are read: frames ``dt_stride`` snapshots apart."""

    dt_stride: int = option(1, "stored snapshots between two frames: the assimilation step is dt_stride * dt", min=1)
    max_trajectories: int = option(0, "train on the first N training trajectories only (0: all)", min=0)


@dataclass
class ObservationSection:
    """The measurement model ``y_k = m (z_k + eta_k)``, a measurement arriving at each step with probability alpha
    (alpha is drawn per training window, and set per rollout by ``eval.alphas``)."""

    mask: str = option(
        "regular",
        "random (a random subset of points) | regular (sensors every 1/fraction points)",
        choices=("random", "regular"),
    )
    fraction: float = option(0.25, "share of grid points observed, in (0, 1]", positive=True)
    noise: float = option(0.05, "noise std as a fraction of each channel's trajectory rms", min=0)


@dataclass
class WindowSection:
    """One training sample: ``spinup + unroll + 1`` frames. From the first frame (pulled towards another random frame
    when measurements arrive), ``spinup`` assimilated steps without gradient bring the state to the errors it will
    carry in use; then ``unroll`` steps are differentiated."""

    spinup: int = option(4, "assimilated steps without gradient before the differentiated ones", min=0)
    unroll: int = option(8, "differentiated steps of the recursion", min=1)
    alpha_max: float = option(
        0.5, "each window draws its arrival rate alpha in [0, alpha_max] (0 with prob. 1/4)", min=0
    )
    misfit_weight: float = option(0.1, "weight of the measurement misfit |m (E z^f - y)|^2 / |m y|^2", min=0)
    perturb: float = option(
        1.0,
        "windows with measurements start at z_0 + lam (z' - z_0), lam ~ U[0, perturb], "
        "z' a random frame of a random trajectory",
        min=0,
    )


@dataclass
class EvalSection:
    """Whole trajectories of the valid/test split rolled out from their first frame, once per arrival rate."""

    alphas: list = option([0.0, 0.1, 0.25, 0.5], "arrival rates to roll out with (each in [0, 1])")
    horizon: int = option(0, "steps rolled out (0: the whole trajectories)", min=0)
    seed: int = option(
        12345, "seed of the evaluation's measurements (trajectory j: numpy default_rng([seed, j]))", min=0
    )
    long_fraction: float = option(0.25, "'long horizon' = this last fraction of the horizon", positive=True)
    batch_size: int = option(64, "trajectories rolled out together", min=1)
    baseline_run: str = option(
        "",
        "a run folder whose model maps a frame to the next (e.g. an operator-family FNO "
        "next_step run), rolled out on the same trajectories for comparison; empty: none",
    )


@dataclass
class NODARunConfig:
    """Prediction with data assimilation by a semilinear neural operator (Singh et al., ICLR 2024)."""

    family: str = option("noda", "the family", choices=("noda",))
    run: RunSection = section(RunSection, "where the run writes, how it starts and is saved")
    data: NODAData = section(NODAData, "the trajectories: a preset or a dataset root")
    optim: OptimSection = section(
        lambda: OptimSection(steps=1500, batch_size=16, lr=1e-3, warmup=0.0),
        "AdamW and its schedule (NODA: 1500 steps of 16 windows, cosine, no warm-up)",
    )
    model: NODAConfig = section(NODAConfig, "the prediction FNO, the gain and the measurement operator")
    observations: ObservationSection = section(ObservationSection, "the measurement model")
    window: WindowSection = section(WindowSection, "the unrolled training window")
    eval: EvalSection = section(EvalSection, "the rollouts that make the metrics")


def check_config(config: NODARunConfig, where: str = "noda") -> None:
    """The checks that span options or bounds the grammar cannot say: one ValueError naming the option."""
    if config.window.alpha_max > 1:
        raise ValueError(f"{where}: window.alpha_max {config.window.alpha_max}: expected a probability in [0, 1]")
    if config.observations.fraction > 1:
        raise ValueError(
            f"{where}: observations.fraction {config.observations.fraction}: expected a share of grid points in (0, 1]"
        )
    bad = [a for a in config.eval.alphas if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a <= 1]
    if bad or not config.eval.alphas:
        raise ValueError(
            f"{where}: eval.alphas {config.eval.alphas}: expected a non-empty list of arrival rates in [0, 1]"
        )
    if config.eval.long_fraction > 1:
        raise ValueError(f"{where}: eval.long_fraction {config.eval.long_fraction}: expected a fraction in (0, 1]")

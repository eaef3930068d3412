"""NODA: prediction with data assimilation by a semilinear neural operator (Singh et al., ICLR 2024).

    pdeforge train configs/noda_ks.yaml                          # KS 1D (the ks_1d preset, generated once)
    pdeforge train configs/noda_ks.yaml --run.max_steps 50 --run.run_dir runs/noda_smoke
    pdeforge train configs/noda_ks.yaml --run.resume runs/noda_ks      # continue from its checkpoint
    pdeforge train configs/noda_ks.yaml --eval.baseline_run runs/fno_ks   # compare with a plain FNO run

The model (:class:`NODA`) is ``z^f = z + F(z)``, ``z^a = z^f + K(z^f)[m (y - E z^f)]`` when a measurement
arrives. Training (:class:`NODAFamily`, through :func:`pdeforge.training.fit`) unrolls the recursion over windows
read lazily from the dataset: ``spinup`` assimilated steps without gradient, then ``unroll`` differentiated ones;
each window draws its own arrival rate in ``[0, alpha_max]`` (0 with probability 1/4), so one model serves every
rate, and a window with measurements starts between its first frame and a random other frame, so the gain learns to
pull a distant state back. Evaluation rolls out whole valid/test trajectories from their first frame for each rate
in ``eval.alphas`` (and a baseline run's model, when ``eval.baseline_run`` names one).

Names load on first use: the config classes without torch. A trained NODA is ``pdeforge.load_run(RUN).model``.

Examples:
    An untrained NODA sized for a dataset root (``data/burgers``: ``pdeforge generate burgers_1d --out data/burgers
    --n-trajectories 20 --resolution 32``), unrolled 10 steps from a trajectory's first frame with sensors at every
    4th point:

    >>> import torch
    >>> from pdeforge.datasets import TrajectoryDataset
    >>> from pdeforge.operators.noda import NODAFamily, NODARunConfig, NODAConfig, GainConfig, NODA, build_noda
    >>> sample = TrajectoryDataset("data/burgers", split="test", full_trajectory=True)[0]
    >>> model = build_noda(NODAConfig(), TrajectoryDataset("data/burgers", split="test").metadata)
    >>> state, truth = sample["input_fields"], sample["output_fields"][None, :10]  # (B, C, x), (B, steps, C, x)
    >>> mask = torch.zeros(1, 1, 32)
    >>> mask[..., ::4] = 1  # the sensors
    >>> out = model(state, 10, truth, mask, torch.ones(1, 10, dtype=torch.bool))  # a measurement at every step
    >>> out["forecast"].shape, out["analysis"].shape
    (torch.Size([1, 10, 1, 32]), torch.Size([1, 10, 1, 32]))
    >>> never = model(state, 10, truth, mask, torch.zeros(1, 10, dtype=torch.bool))
    >>> torch.equal(never["analysis"], never["forecast"])  # no measurement arrived: z^a = z^f
    True
"""

from __future__ import annotations

from ..._lazy import lazy_exports

# every public name, with the module that defines it
_WHERE = {
    **dict.fromkeys(
        (
            "NODARunConfig",
            "NODAConfig",
            "GainConfig",
            "NODAData",
            "ObservationSection",
            "WindowSection",
            "EvalSection",
            "GAINS",
            "MEASUREMENTS",
            "check_config",
        ),
        "._config",
    ),
    **dict.fromkeys(
        (
            "NODA",
            "AbstractGain",
            "GatedGain",
            "IdentityGain",
            "AbstractMeasurement",
            "IdentityMeasurement",
            "LearnedMeasurement",
            "spread_innovation",
            "build_noda",
            "predictor_config",
        ),
        "._model",
    ),
    **dict.fromkeys(("WindowSampler", "open_windows"), "._data"),
    **dict.fromkeys(("rollout", "rollout_errors", "baseline_errors"), "._eval"),
    "NODAFamily": "._family",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

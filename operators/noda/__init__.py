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

Public API (names load on first use: the config classes without torch)::

    from pdeforge.operators.noda import NODAFamily, NODARunConfig, NODAConfig, GainConfig, NODA, build_noda
    from pdeforge.operators.noda import rollout, rollout_errors
    run = pdeforge.families.load_run("runs/noda_ks")                # run.model: the trained NODA
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

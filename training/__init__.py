"""The run skeleton shared by every model family: config grammar, run folder, schedule, RNG bundle, the loop.

A family subclasses :class:`AbstractFamily` (its config, data, model, loss, evaluation, plots, how its model is
rebuilt) and :func:`fit` trains it: see :mod:`pdeforge.training.loop` for the steps and
:mod:`pdeforge.training.config` for the grammar (``--section.key value``).

Names are imported on first use (PEP 562), so the config grammar loads without torch: ``--help`` answers at once.

Examples:
    A family's config, checked before any work, then trained by the one loop (``pdeforge.families.train`` does both
    for a config file: ``pdeforge train CONFIG``):

    >>> from pdeforge.operators.field import FieldOperatorFamily, OperatorConfig
    >>> from pdeforge.training import fit, load_config
    >>> config = load_config(OperatorConfig, "configs/fno_burgers.yaml", ["--data.root", "data/burgers"])
    >>> config.run.run_dir, config.run.max_steps = "runs/fno_smoke", 2
    >>> metrics = fit(FieldOperatorFamily, config)  # doctest: +ELLIPSIS
    run runs/fno_smoke: operator (...)...
    run folder: runs/fno_smoke
    >>> metrics["steps"], sorted(metrics["test"])[:3]
    (2, ['crmse', 'frmse_high', 'frmse_low'])
"""

from __future__ import annotations

from .._lazy import lazy_exports

# every public name, with the module that defines it
_WHERE = {
    **dict.fromkeys(
        (
            "ConfigError",
            "DataSection",
            "OptimSection",
            "RunSection",
            "build_config",
            "config_help",
            "config_to_dict",
            "load_config",
            "option",
            "parse_overrides",
            "read_yaml",
            "resume_safe_keys",
            "section",
        ),
        ".config",
    ),
    **dict.fromkeys(("cache_dir", "check_dataset_root", "dataset_root", "root_problem"), ".data"),
    **dict.fromkeys(
        (
            "AbstractFamily",
            "Environment",
            "NonFiniteLossError",
            "fit",
            "reports_failure",
            "setup_environment",
        ),
        ".loop",
    ),
    **dict.fromkeys(("FineTuneRecord", "init_matching", "prefix_parameter_groups"), ".finetune"),
    **dict.fromkeys(
        (
            "LOGGERS",
            "AbstractLogger",
            "LoggerGroup",
            "MLflowLogger",
            "TensorBoardLogger",
            "WandbLogger",
            "check_loggers",
            "open_loggers",
            "scalars",
        ),
        ".loggers",
    ),
    **dict.fromkeys(("capture_rng", "restore_rng", "seed_everything"), ".rng"),
    **dict.fromkeys(("ENVELOPE_FORMAT", "RunFolder", "check_finite", "read_envelope"), ".run_folder"),
    **dict.fromkeys(("lr_factor", "make_scheduler", "warmup_steps"), ".schedule"),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

"""Train a model on PDE data and report honest test metrics: the main job, and every family's config.

    python train.py                                      # the embedded default: Burgers data (generated once), FNO
    python train.py configs/fno_navier_stokes.yaml       # a config file of any family (its `family:` says which)
    python train.py --model.name unet --optim.epochs 5   # overrides: --section.key value (YAML values: 1e-3, [a, b])
    python train.py --run.resume runs/default            # continue a run exactly where its checkpoint stopped
    python train.py --run.init_from runs/pretrained --model.lr_groups '{net.lifting: 1e-3}'   # fine-tune
    torchrun --nproc_per_node 2 train.py ...             # DDP (gloo on CPU, NCCL on GPUs); only rank 0 writes
    python train.py [CONFIG] --help                      # every option of that config, with its default

``pdeforge train CONFIG`` is the same code path. The run folder (``run.run_dir``; default ``runs/<config name>``,
``runs/default`` for the embedded default) is the only output: ``config.yaml``, ``metrics.json`` (``valid`` and
``test``), ``model.safetensors`` (best on valid) + ``model.json`` (how to rebuild it: ``pdeforge.load_run``),
``train_log.jsonl``, plots, and ``checkpoint/`` for resuming. A folder that holds a run is never reused silently:
``--run.resume`` it or ``--run.overwrite true``. Normalisation statistics come from the train split only; model
selection uses valid; test is read once, at the end.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def split_argv(argv: Sequence[str]) -> tuple[str | None, list[str], bool]:
    """(config file or None, the ``--section.key value`` overrides, whether --help was asked)."""
    argv = list(argv)
    wants_help = any(a in ("-h", "--help") for a in argv)
    argv = [a for a in argv if a not in ("-h", "--help")]
    path = argv.pop(0) if argv and not argv[0].startswith("--") else None
    return path, argv, wants_help


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train the config ``argv`` names (none: the field-operator family's embedded default); returns the metrics."""
    from pdeforge.families import config_class, family_name, train

    path, overrides, wants_help = split_argv(sys.argv[1:] if argv is None else argv)
    if wants_help:
        from pdeforge.training.config import config_help

        name = family_name(path)
        print(
            __doc__.split("\n\n")[0] + f"\n\nOptions of the {name} family "
            f"({'from ' + path if path else 'the embedded default'}; --section.key value):\n"
        )
        print(config_help(config_class(name, path or "config")))
        return {}
    if path is None and not any(o.split("=")[0] in ("--run.run_dir", "--run.resume") for o in overrides):
        overrides = ["--run.run_dir", str(Path("runs") / "default"), *overrides]
    return train(path, overrides)


def cli(argv: Sequence[str]) -> None:
    """``python train.py ...``: bad input (an option, a file, a device, a run folder) ends with one ``error:`` line
    naming it, not a traceback; ``PDEFORGE_TRACEBACK=1`` shows the traceback instead. Ctrl-C ends with one line
    naming the run folder's last checkpoint and the command that resumes it (exit status 130). Under torchrun the
    line is printed once, by the process that stopped first (`pdeforge.training.reports_failure`)."""
    try:
        main(argv)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C (torchrun passes one on) cuts no line short
        if os.environ.get("PDEFORGE_TRACEBACK"):
            raise
        from pdeforge.cli import INTERRUPTED, interrupted_training

        if _reports_failure():
            print(interrupted_training(list(argv), "python train.py"), file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    except (ValueError, OSError) as e:
        if os.environ.get("PDEFORGE_TRACEBACK"):
            raise
        raise SystemExit(f"train.py: error: {e}" if _reports_failure() else 1) from None
    except Exception:
        if os.environ.get("PDEFORGE_TRACEBACK") or _reports_failure():
            raise
        raise SystemExit(1) from None  # under torchrun: stopped by another process's failure, which that one says


def _reports_failure() -> bool:
    from pdeforge.training import reports_failure  # imported here: --help answers without torch

    return reports_failure()


if __name__ == "__main__":
    cli(sys.argv[1:])

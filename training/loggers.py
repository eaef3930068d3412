"""Experiment trackers: what :func:`pdeforge.training.fit` logs besides the run folder (``run.loggers``).

    run.loggers: [tensorboard, wandb, mlflow]      # any subset; none by default

Each tracker is one final class answering the four hooks of :class:`AbstractLogger`; :data:`LOGGERS` lists them by
name. Only the main process logs (DDP rank 0). A tracker keeps what it needs to continue in the run folder, so a
resumed run (``--run.resume``) continues the same TensorBoard folder, MLflow run and wandb run:

    RUN/tensorboard/           TensorBoard event files (a resume appends a new file to the same folder)
    RUN/mlruns/                the MLflow file store, unless MLFLOW_TRACKING_URI names another
    RUN/mlflow_run_id.txt      the MLflow run a resume continues
    RUN/wandb/                 wandb's run files (offline runs with WANDB_MODE=offline)
    RUN/wandb_run_id.txt       the wandb run id a resume continues (``resume="allow"``)

The backends are optional extras, imported only when a tracker opens: :func:`check_loggers` finds a missing one
from the config alone, before any work.
"""

from __future__ import annotations

import abc
import importlib.util
import math
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .._files import atomic_write

__all__ = [
    "AbstractLogger",
    "LOGGERS",
    "LoggerGroup",
    "MLflowLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "check_loggers",
    "open_loggers",
    "scalars",
]


class AbstractLogger(abc.ABC):
    """One experiment tracker. A final subclass opens (or, on a resume, reopens) its run in ``__init__(run_dir,
    family, start_step)``; ``start_step`` is the optimiser step a resumed run continues from (0 when fresh)."""

    #: the module that must be importable, and the pdeforge extra that installs it
    module: str
    extra: str

    @abc.abstractmethod
    def log_config(self, config: dict) -> None:
        """The resolved config of a fresh run (a nested mapping of plain values), once."""

    @abc.abstractmethod
    def log_metrics(self, values: dict[str, float], step: int) -> None:
        """Scalars (``train/loss``, ``valid/selection``, ``test/mse``, ...) at optimiser step ``step``."""

    @abc.abstractmethod
    def log_image(self, name: str, path: Path, step: int) -> None:
        """The PNG at ``path`` under ``name``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Write out what is buffered and end the run (a resume reopens it)."""


class TensorBoardLogger(AbstractLogger):
    """``torch.utils.tensorboard.SummaryWriter`` writing into ``RUN/tensorboard/``."""

    module, extra = "tensorboard", "tensorboard"

    def __init__(self, run_dir: Path, family: str, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run redoes the steps after its checkpoint: purge_step hides what the interrupted run logged
        # for them, so each step shows once
        self.writer = SummaryWriter(
            str(Path(run_dir) / "tensorboard"), purge_step=start_step + 1 if start_step else None
        )

    def log_config(self, config: dict) -> None:
        # four spaces: TensorBoard renders text as Markdown, and this keeps the YAML a code block
        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "".join("    " + line + "\n" for line in text.splitlines()))

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image(name, pixels, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class MLflowLogger(AbstractLogger):
    """An MLflow run (through ``MlflowClient``, no global active run) in the experiment ``MLFLOW_EXPERIMENT_NAME``
    (default ``pdeforge``), named after the run folder and tagged with the family. The store is
    ``MLFLOW_TRACKING_URI`` if set, else the file store ``RUN/mlruns``. Images are logged as artifacts under
    ``plots/`` (MLflow shows them in the run's artifact view)."""

    module, extra = "mlflow", "mlflow"

    def __init__(self, run_dir: Path, family: str, start_step: int) -> None:
        from mlflow.tracking import MlflowClient

        run_dir = Path(run_dir)
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = (run_dir / "mlruns").resolve().as_uri()
            # MLflow 3 refuses a file store unless this is set; a store inside the run folder is what is wanted here
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        saved = run_dir / "mlflow_run_id.txt"
        if saved.is_file():
            self.run_id = saved.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "pdeforge")
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            self.run_id = self.client.create_run(
                experiment_id, run_name=run_dir.name, tags={"family": family}
            ).info.run_id
            atomic_write(saved, lambda tmp: tmp.write_text(self.run_id + "\n"))

    def log_config(self, config: dict) -> None:
        from mlflow.entities import Param

        self.client.log_dict(self.run_id, config, "config.yaml")
        # also as params (dotted keys), which MLflow compares across runs; its limits: 100 a batch, values of 500
        # characters in older versions
        params = [Param(k, str(v)[:500]) for k, v in _flatten(config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def log_image(self, name: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), "plots")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbLogger(AbstractLogger):
    """A Weights & Biases run in the project ``WANDB_PROJECT`` (default ``pdeforge``), named after the run folder and
    tagged with the family, its files in ``RUN/wandb/``. ``WANDB_MODE`` is wandb's own (``offline``: no network;
    ``wandb sync RUN/wandb/offline-run-*`` uploads later)."""

    module, extra = "wandb", "wandb"

    def __init__(self, run_dir: Path, family: str, start_step: int) -> None:
        import wandb

        run_dir = Path(run_dir)
        saved = run_dir / "wandb_run_id.txt"
        run_id = saved.read_text().strip() if saved.is_file() else uuid.uuid4().hex[:8]
        # WANDB_MODE read for each run: wandb's process-wide settings would keep the mode of the process's first run
        mode = os.environ.get("WANDB_MODE") or None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "pdeforge"),
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            name=run_dir.name,
            tags=[family],
            mode={"dryrun": "offline", "run": "online"}.get(mode, mode),
        )
        if not saved.is_file():
            atomic_write(saved, lambda tmp: tmp.write_text(run_id + "\n"))

    def log_config(self, config: dict) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        import wandb

        self.run.log({name: wandb.Image(str(path))}, step=step)

    def close(self) -> None:
        self.run.finish()


#: experiment trackers by name (``run.loggers``)
LOGGERS: dict[str, type[AbstractLogger]] = {
    "tensorboard": TensorBoardLogger,
    "wandb": WandbLogger,
    "mlflow": MLflowLogger,
}


class LoggerGroup(AbstractLogger):
    """Several trackers as one (none: every hook does nothing, as on the processes other than the main one)."""

    def __init__(self, loggers: Sequence[AbstractLogger] = ()) -> None:
        self.loggers = list(loggers)

    def log_config(self, config: dict) -> None:
        for logger in self.loggers:
            logger.log_config(config)

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        if values:
            for logger in self.loggers:
                logger.log_metrics(values, step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        for logger in self.loggers:
            logger.log_image(name, path, step)

    def close(self) -> None:
        # every tracker is closed even if one fails; the first failure is raised afterwards
        failure = None
        for logger in self.loggers:
            try:
                logger.close()
            except Exception as e:  # noqa: BLE001
                failure = failure or e
        if failure is not None:
            raise failure


def check_loggers(names: Sequence[str], where: str) -> None:
    """A one-line ValueError for a name that is not in :data:`LOGGERS` or a tracker whose package is not installed
    (naming the extra that installs it). Only looks the package up: nothing heavy is imported."""
    for name in names:
        if not isinstance(name, str) or name not in LOGGERS:
            raise ValueError(f"{where}: run.loggers: {name!r}: expected a list of {', '.join(sorted(LOGGERS))}")
        tracker = LOGGERS[name]
        if importlib.util.find_spec(tracker.module) is None:
            raise ValueError(
                f"{where}: run.loggers: {name!r} needs the {tracker.module} package, not installed: "
                f'pip install -e ".[{tracker.extra}]"'
            )


def open_loggers(names: Sequence[str], run_dir: Path, family: str, start_step: int) -> LoggerGroup:
    """The trackers ``names`` opened on ``run_dir`` (a resume, ``start_step > 0``, continues their runs)."""
    opened: list[AbstractLogger] = []
    try:
        for name in dict.fromkeys(names):  # a name listed twice opens once
            opened.append(LOGGERS[name](Path(run_dir), family, start_step))
    except BaseException:
        LoggerGroup(opened).close()
        raise
    return LoggerGroup(opened)


def scalars(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of nested mappings as ``{"test/rel_l2": value}``; lists, strings and booleans are left
    out (trackers take scalars)."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalars(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{dotted key: value}`` (MLflow params)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out

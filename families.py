"""The model families, listed once, and what works on any of them: train a config, load or evaluate a run.

    pdeforge train configs/tsm_kolmogorov.yaml --run.max_steps 2 --run.run_dir runs/smoke
    pdeforge evaluate runs/smoke                 # the run's metrics recomputed from its saved weights, and its plots

A config names its family (``family: tsm``); a config without one is the field-operator family of ``train.py``.
This module is an entry point: it imports the families, and nothing below it imports it.

Examples:
    A smoke run from Python (``train`` is ``pdeforge train``), on a small dataset root (``data/burgers``:
    ``pdeforge generate burgers_1d --out data/burgers --n-trajectories 20 --resolution 32``), then the run loaded
    and its metrics recomputed:

    >>> import pdeforge
    >>> from pdeforge.families import evaluate_run, train
    >>> overrides = ["--data.root", "data/burgers", "--run.max_steps", "2", "--run.run_dir", "runs/smoke"]
    >>> metrics = train("configs/fno_burgers.yaml", overrides)  # doctest: +ELLIPSIS
    run runs/smoke: operator (...)...
    run folder: runs/smoke
    >>> run = pdeforge.load_run("runs/smoke")  # run.model, run.config, run.metadata, run.envelope
    >>> evaluate_run("runs/smoke")["test"] == metrics["test"]
    True

    A field-operator run predicts in physical units, with the normalisation it was trained with:

    >>> batch = next(iter(run.loader("test")))  # test samples in physical units (batch["output_fields"]: truth)
    >>> run.predict(batch).shape  # (B, T_out, C, *space), physical units
    torch.Size([2, 1, 1, 32])
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FAMILIES",
    "family_class",
    "config_class",
    "family_name",
    "load_family_config",
    "train",
    "load_run",
    "run_folder",
    "evaluate_run",
    "evaluation_folder",
    "LoadedRun",
]

#: family name -> (module, family class, config class): every family of pdeforge, written out here
FAMILIES: dict[str, tuple[str, str, str]] = {
    "operator": ("pdeforge.operators.field", "FieldOperatorFamily", "OperatorConfig"),
    "tsm": ("pdeforge.operators.tsm", "TSMFamily", "TSMRunConfig"),
    "noda": ("pdeforge.operators.noda", "NODAFamily", "NODARunConfig"),
    "scot": ("pdeforge.operators.scot", "ScOTFamily", "ScOTRunConfig"),
    "pinn": ("pdeforge.pinns", "PINNFamily", "PINNConfig"),
    "generative": ("pdeforge.generative", "GenerativeFamily", "GenerativeRunConfig"),
}


def _entry(name: str, where: str) -> tuple[str, str, str]:
    if name not in FAMILIES:
        raise ValueError(f"{where}: family {name!r}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_class(name: str, where: str = "config") -> type:
    """The family class called ``name``; an unknown name is a ValueError listing the families."""
    module, cls, _ = _entry(name, where)
    return getattr(importlib.import_module(module), cls)


def config_class(name: str, where: str = "config") -> type:
    """The config class of the family called ``name`` (for a family whose package loads lazily, without torch)."""
    module, _, cls = _entry(name, where)
    return getattr(importlib.import_module(module), cls)


def family_name(path: str | Path | None) -> str:
    """The family a config file names (``family:``; none: ``operator``)."""
    from .training.config import read_yaml

    return read_yaml(path).get("family", "operator") if path is not None else "operator"


def load_family_config(path: str | Path | None, overrides: Sequence[str] = ()) -> tuple[type, Any]:
    """(family class, its config) from a YAML file (``family:`` names the family; none: ``operator``) and
    ``--section.key value`` overrides. The config is checked before the family's code is imported."""
    from .training.config import load_config

    where = str(path) if path is not None else "config"
    name = family_name(path)
    config = load_config(config_class(name, where), path, overrides)
    return family_class(name, where), config


def train(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``pdeforge train PATH [overrides]``: the run of any family's config; returns its metrics."""
    from .training.config import parse_overrides
    from .training.loop import fit

    resume = dict(parse_overrides(overrides)).get("run.resume")
    if path is None and resume:  # continue a run as it was configured: its own config.yaml, then the overrides
        path = Path(str(resume)) / "config.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"--run.resume {resume}: not a run folder (no config.yaml); expected a folder "
                "that `pdeforge train` or train.py wrote"
            )
    family, config = load_family_config(path, overrides)
    if path is not None and not config.run.run_dir and not config.run.resume:  # runs/<config name>
        config.run.run_dir = str(Path("runs") / Path(path).stem)
    where = str(path) if path is not None else "config"
    if config.run.ensemble > 1:  # N members with seeds seed, seed + 1, ... (pdeforge.training.ensemble)
        from .training.ensemble import fit_ensemble

        device = config.run.device
        return fit_ensemble(family, config, where=where, evaluate=lambda root: evaluate_run(root, device=device))
    return fit(family, config, where=where)


@dataclass
class LoadedRun:
    """A trained run: ``model`` (eval mode, its selected weights), ``config`` (the family's config dataclass),
    ``metadata`` (the DatasetMetadata the model was built for; None for a family without a dataset, PINNs),
    ``family`` (the class), the raw ``envelope`` (model.json) and ``run_dir``.

    A field-operator run (``family.name == "operator"``) also predicts in physical units: :meth:`dataset` and
    :meth:`loader` give the samples it is evaluated on, unnormalised, and :meth:`predict` normalises a batch with the
    run's statistics (fitted on its train split, kept in model.json), calls the model with the fields, constant
    fields and equation parameters it takes, and denormalises its output. The other families' models have inputs of
    their own (a PINN: points; TSM: the FV solver's state; NODA: observations; scOT: a time lead): use ``model``.
    """

    model: Any
    config: Any
    metadata: Any
    family: type
    envelope: dict[str, Any]
    run_dir: Path | None = None

    def dataset(self, split: str = "test", data: str | Path | None = None) -> Any:
        """The task's samples of ``split`` in physical units, from the run's dataset root or ``data`` (a root of the
        same fields): dicts of ``input_fields (T_in, C, *space)``, ``output_fields``, ``constant_fields``,
        ``scalars``, times and ``grid``, as the run is evaluated on."""
        family = self._field_family("dataset")
        if data is not None:
            _check_data(self, data, (split,), f"{self.run_dir}: dataset({split!r}, data={str(data)!r})")
        return family.physical_dataset(self.config, split, data)

    def loader(self, split: str = "test", batch_size: int = 32, data: str | Path | None = None) -> Any:
        """A DataLoader over :meth:`dataset` (in order), whose batches :meth:`predict` takes."""
        from torch.utils.data import DataLoader

        return DataLoader(self.dataset(split, data), batch_size=batch_size, shuffle=False)

    def predict(self, batch: dict[str, Any]) -> Any:
        """The model's prediction ``(B, T_out, C, *space)`` in physical units, on the model's device, for a batch of
        physical samples (``input_fields (B, T_in, C, *space)``, and ``constant_fields``, ``scalars`` when the data
        have them; a sample of :meth:`dataset` needs a batch axis: ``{k: v[None] for k, v in sample.items()}``)."""
        return self._field_family("predict").predict_physical(self.model, self.config, self.envelope, batch)

    def _field_family(self, what: str) -> type:
        if not hasattr(self.family, "predict_physical"):
            raise ValueError(
                f"{self.run_dir}: LoadedRun.{what}: a {self.family.name} run has no field-to-field prediction in "
                "physical units (that is the operator family's); call run.model with its own inputs"
            )
        return self.family


def run_folder(run_dir: str | Path) -> Path:
    """The local folder of a run: a folder as it is, or ``hf://org/name[@revision]`` (a folder that ``pdeforge
    export`` wrote, published on the Hugging Face Hub) through ``huggingface_hub``'s cache (``$HF_HUB_CACHE``;
    ``HF_HUB_OFFLINE=1`` reads the cache only)."""
    from ._hub import hub_folder, is_hub_url, parse_hub_url

    if is_hub_url(run_dir):
        repo, revision = parse_hub_url(str(run_dir))
        return hub_folder(repo, revision=revision)
    return Path(run_dir)


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun | Any:
    """Rebuild the model of any family's run folder from ``model.json`` and ``model.safetensors``; ``run_dir`` is a
    folder or ``hf://org/name[@revision]`` (see :func:`run_folder`). An ensemble's folder (``--run.ensemble N``)
    gives a :class:`~pdeforge.training.ensemble.LoadedEnsemble` of its members' runs, whose ``predict`` stacks
    their predictions on a new axis 0."""
    from ._device import check_device, resolve_device
    from .checkpoint import load_weights
    from .training.config import build_config
    from .training.ensemble import LoadedEnsemble, is_ensemble, read_ensemble
    from .training.run_folder import read_envelope

    check_device(device, "load_run")
    run_dir = run_folder(run_dir)
    if is_ensemble(run_dir):
        record = read_ensemble(run_dir)
        return LoadedEnsemble([load_run(run_dir / m, device) for m in record["members"]], run_dir, record)
    envelope = read_envelope(run_dir)
    family = family_class(envelope["family"], str(run_dir / "model.json"))
    config = build_config(family.config_class, envelope["config"], where=str(run_dir / "model.json"))
    model = family.rebuild(envelope)
    weights = load_weights(run_dir / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{run_dir / 'model.safetensors'}: the weights do not fit the model model.json describes "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.to(resolve_device(device)).eval()
    meta = envelope.get("metadata")
    if meta:
        from .datasets import DatasetMetadata

        meta = DatasetMetadata.from_dict(meta)
    return LoadedRun(model, config, meta or None, family, envelope, run_dir)


def evaluation_folder(run_dir: str | Path, data: str | Path | None = None) -> Path:
    """Where ``pdeforge evaluate`` draws its plots unless told (``--out``): ``RUN/eval/<data>``, named by the folder
    of the dataset root evaluated (``data``; None: the run's own root, or its preset's name)."""
    from ._hub import is_hub_url, parse_hub_url

    if is_hub_url(run_dir):  # not into the Hub's cache: ./eval/<org--name>
        return Path("eval") / parse_hub_url(str(run_dir))[0].replace("/", "--")
    if data is not None:  # a URL: its last part
        return (
            Path(run_dir)
            / "eval"
            / (str(data).rstrip("/").rsplit("/", 1)[-1] if "://" in str(data) else Path(data).resolve().name)
        )
    from .training.ensemble import is_ensemble, read_ensemble
    from .training.run_folder import read_envelope

    envelope_dir = Path(run_dir) / read_ensemble(run_dir)["members"][0] if is_ensemble(run_dir) else run_dir
    own = read_envelope(envelope_dir)["config"].get("data", {})
    return Path(run_dir) / "eval" / (Path(own["root"]).name if own.get("root") else own.get("preset") or "run_data")


def _check_data(run: LoadedRun, data: str | Path, splits: Sequence[str], where: str) -> Any:
    """Refuse, in one line starting with ``where``, a dataset root ``data`` the run's model cannot be evaluated on:
    not a dataset root, or other fields, constant fields, equation parameters (scalars) or spatial axes than the
    model was trained on. Returns the DatasetMetadata of its train split."""
    from .datasets import TrajectoryDataset
    from .training.data import check_dataset_root, root_problem

    if run.metadata is None:
        raise ValueError(f"{where}: a {run.family.name} run trains on no dataset root; evaluate it without --data")
    sources = getattr(run.config.data, "sources", None)
    if sources:
        raise ValueError(
            f"{where}: the run trains on a mixture of {len(sources)} datasets (data.sources), which --data would not "
            "replace; evaluate it on its own data"
        )
    problem = root_problem(str(data))
    if problem:
        raise ValueError(f"{where}: {data}: {problem}")
    check_dataset_root(data, where=f"{where}: {data}")  # every split's files, as training checks them
    mine, found = run.metadata, []
    for split in dict.fromkeys(("train", *splits)):
        try:
            theirs = TrajectoryDataset(data, 0, 1, split=split, cache_small=False).metadata
        except (ValueError, OSError) as e:
            raise ValueError(f"{where}: {e}") from None
        found.append(theirs)
        differ = []
        for key, what in (
            ("field_names", "fields"),
            ("constant_field_names", "constant fields"),
            ("scalar_names", "scalars (equation parameters)"),
            ("spatial_dims", "spatial axes"),
        ):
            a, b = list(getattr(mine, key)), list(getattr(theirs, key))
            if a != b:
                differ.append(f"{what} {a or 'none'} in the run, {b or 'none'} in the data")
        if differ:
            raise ValueError(
                f"{where}: the {split} split of {data} differs from what the model was trained on: "
                + "; ".join(differ)
                + "; expected a dataset root with the run's fields, parameters and axes"
            )
    return found[0]


def evaluate_run(
    run_dir: str | Path,
    *,
    data: str | Path | None = None,
    splits: Sequence[str] = ("valid", "test"),
    device: str = "cpu",
    plots: str | Path | None = None,
) -> dict[str, Any]:
    """The metrics of a run's saved weights on ``splits``, recomputed as training computed them, with the run's own
    normalisation (``data``: another dataset root of the same fields, parameters and axes; refused otherwise).

    ``plots``: a folder to draw the plots training draws into (the family's ``plots`` hook, on the test split, which
    ``splits`` must hold), with ``evaluate.json`` (the run, the data, the metrics). It is never the run folder: a
    folder that holds a run, or files that an evaluation did not write, or the evaluation of another run or
    data, is refused; the evaluation of the same run on the same data is replaced (the same weights on the same
    data). Everything is checked before the evaluation starts."""
    from ._device import resolve_device
    from .training.loop import Environment

    where = f"evaluate {run_dir}" + (f" --data {data}" if data is not None else "")
    run_dir = run_folder(run_dir)
    from .training.ensemble import is_ensemble

    if is_ensemble(run_dir):
        return _evaluate_ensemble(Path(run_dir), data, splits, device, plots, where)
    run = load_run(run_dir, device)
    config = run.config
    theirs = None
    if data is not None:
        theirs = _check_data(run, data, splits, where)
        config.data.root = str(data)
    from .datasets._remote import is_url

    where_data = None if data is None else str(data) if is_url(data) else str(Path(data).resolve())
    record = {"run": str(Path(run_dir).resolve()), "data": where_data}
    if plots is not None:
        _claim_plots_folder(Path(plots), Path(run_dir), record, splits, where)
    family = run.family(config, Environment(resolve_device(device)))
    family.restore(run.envelope)
    family.prepare()
    try:
        metrics = {split: family.evaluate(run.model, split) for split in splits}
    except (RuntimeError, ValueError) as e:  # a grid the network cannot take (too coarse for a U-Net's stages, ...)
        if theirs is None or theirs.resolution == run.metadata.resolution:
            raise
        raise ValueError(
            f"{where}: the model, trained at resolution {run.metadata.resolution}, cannot take {data}'s resolution "
            f"{theirs.resolution}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    if plots is not None:
        _write_plots(family, run, Path(plots), metrics, record)
    return metrics


_RECORD = "evaluate.json"  # what marks a folder as an evaluation's: {run, data, metrics}


def _evaluate_ensemble(
    run_dir: Path, data: str | Path | None, splits: Sequence[str], device: str, plots: Path | None, where: str
) -> dict[str, Any]:
    """:func:`evaluate_run` of an ensemble's folder: per split the ensemble's metrics and its members' own
    (:func:`pdeforge.training.ensemble.evaluate_members`); ``plots`` gets ``evaluate.json`` only."""
    from .datasets._remote import is_url
    from .training.ensemble import evaluate_members, read_ensemble
    from .training.run_folder import RunFolder

    record = read_ensemble(run_dir)
    ensemble = load_run(run_dir, device)
    if data is not None:
        _check_data(ensemble.members[0], data, splits, where)
    saved = record.get("member_metrics") or []
    if data is None and len(saved) == len(ensemble.members) and all(s in m for m in saved for s in splits):
        members = saved  # recomputing a member's own metrics gives the same numbers (test_train checks it)
    else:
        members = [evaluate_run(run_dir / m, data=data, splits=splits, device=device) for m in record["members"]]
    where_data = None if data is None else str(data) if is_url(data) else str(Path(data).resolve())
    out_record = {"run": str(run_dir.resolve()), "data": where_data}
    if plots is not None:
        _claim_plots_folder(Path(plots), run_dir, out_record, splits, where)
    metrics = evaluate_members(ensemble, splits, members, data)
    if plots is not None:
        Path(plots).mkdir(parents=True, exist_ok=True)
        RunFolder(plots).write_text(_RECORD, json.dumps({**out_record, "metrics": metrics}, indent=1))
    return metrics


def _claim_plots_folder(out: Path, run_dir: Path, record: dict, splits: Sequence[str], where: str) -> None:
    if "test" not in splits:
        raise ValueError(f"{where}: the plots are drawn from the test split; add it to the splits, or draw none")
    if out.resolve() == run_dir.resolve() or any((out / n).exists() for n in ("model.json", "config.yaml")):
        raise ValueError(f"{where}: plots folder {out} holds a run; expected another folder (training's plots stay)")
    if out.is_file():
        raise ValueError(f"{where}: plots folder {out} is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / _RECORD).is_file():
            raise ValueError(
                f"{where}: plots folder {out} holds files an evaluation did not write; expected a new or empty folder "
                "(--out)"
            )
        before = json.loads((out / _RECORD).read_text())
        if {k: before.get(k) for k in record} != record:
            raise ValueError(
                f"{where}: plots folder {out} holds the evaluation of run {before.get('run')} on data "
                f"{before.get('data') or 'its own'}; choose another folder (--out)"
            )


def _write_plots(family: Any, run: LoadedRun, out: Path, metrics: dict, record: dict) -> None:
    """The family's plots of ``run`` into ``out`` (an earlier evaluation of the same run and data there replaced)."""
    import shutil

    from .training.run_folder import RunFolder

    if out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    folder = RunFolder(out)
    folder.write_text(_RECORD, json.dumps({**record, "metrics": metrics}, indent=1))  # first: the folder is ours
    log = Path(run.run_dir) / "train_log.jsonl"
    folder.log = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    family.plots(run.model, folder, metrics)

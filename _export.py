"""``pdeforge export RUN DIR``: a run folder of any family as a folder the Hugging Face Hub takes as it is.

    pdeforge export runs/fno_burgers hub/fno-burgers
    huggingface-cli upload ORG/fno-burgers hub/fno-burgers      # publish it
    python -c "import pdeforge; pdeforge.load_run('hf://ORG/fno-burgers')"

The folder holds what :func:`pdeforge.load_run` and ``pdeforge evaluate`` read (``model.safetensors``, the
``model.json`` envelope), the run's ``config.yaml``, ``metrics.json``, ``train_log.jsonl`` and plots (``*.png``),
and a generated model card ``README.md`` (the family, the data, the metrics, the command that made it). The
training checkpoint (``checkpoint/``, optimiser state) stays behind. The folder is written next to ``DIR`` and
renamed into place, so a crash leaves no half-exported folder; an existing non-empty ``DIR`` is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

__all__ = ["export_run", "model_card"]

#: the files of a run folder that are published (plots: every top-level *.png besides)
FILES = ("model.safetensors", "model.json", "config.yaml", "metrics.json", "train_log.jsonl")
REQUIRED = ("model.safetensors", "model.json", "metrics.json")


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the Hub-ready folder ``out`` from the finished run folder ``run_dir``; returns ``out``.

    Raises one-line errors: FileNotFoundError for a folder that is no run, or a run without final weights and
    metrics (not finished); FileExistsError for an ``out`` that exists and is not an empty folder."""
    from .training.run_folder import read_envelope

    run_dir, out = Path(run_dir), Path(out)
    where = f"export {run_dir}"
    envelope = read_envelope(run_dir)  # a one-line error for a folder that is no run
    missing = [name for name in REQUIRED if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{where}: no {', '.join(missing)}: the run has not finished; export a run that training completed"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{where} {out}: {out} exists and is not an empty folder; expected a new folder")
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise ValueError(f"{where} {out}: expected a folder outside the run folder")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    files = [name for name in FILES if (run_dir / name).is_file()] + sorted(p.name for p in run_dir.glob("*.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(8)}.tmp")
    tmp.mkdir()
    try:
        for name in files:
            shutil.copy2(run_dir / name, tmp / name)
        (tmp / "README.md").write_text(model_card(envelope, metrics, files))
        if out.is_dir():
            out.rmdir()  # empty (checked above); a file put there meanwhile makes this fail rather than be lost
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _flat_metrics(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat_metrics(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def model_card(envelope: dict[str, Any], metrics: dict[str, Any], files: list[str]) -> str:
    """The model card (``README.md``, with the Hub's YAML header) of a run: family, data, metrics, command."""
    import yaml

    family = envelope["family"]
    config = envelope.get("config", {})
    data = config.get("data", {}) or {}
    spec = envelope.get("model_spec") or config.get("model") or {}
    model_name = spec.get("name") if isinstance(spec, dict) else None
    meta = envelope.get("metadata") or {}
    source = data.get("root") or ""
    preset = data.get("preset") or ""
    header = {
        "library_name": "pdeforge",
        "tags": ["pdeforge", "pde", "scientific-ml", family] + ([model_name] if model_name else []),
    }
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", ""]
    title = f"{model_name} ({family})" if model_name else family
    lines += [
        f"# pdeforge run: {title}",
        "",
        f"A model of the pdeforge family `{family}`, exported from its run folder by `pdeforge export`.",
        "",
        "## Use",
        "",
        "```python",
        "import pdeforge",
        'run = pdeforge.load_run("hf://ORG/NAME")  # run.model, run.config, run.metadata',
        "```",
        "",
        "`pdeforge evaluate hf://ORG/NAME` recomputes the metrics below (on the training data, or `--data ROOT`).",
        "",
        "## Data",
        "",
    ]
    if preset:
        lines.append(f"- preset: `{preset}` (`pdeforge generate {preset}` writes it)")
    if source:
        lines.append(f"- dataset root it was trained on: `{source}`")
    for key, what in (
        ("dataset_name", "dataset"),
        ("field_names", "fields"),
        ("constant_field_names", "constant fields"),
        ("scalar_names", "scalars (equation parameters)"),
        ("spatial_dims", "spatial axes"),
        ("resolution", "resolution"),
    ):
        if meta.get(key):
            value = meta[key]
            lines.append(f"- {what}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    if not (preset or source or meta):
        lines.append("- no dataset root (the family trains on its own collocation points)")
    lines += ["", "## Metrics", "", "| split | metric | value |", "|---|---|---|"]
    for split, values in metrics.items():
        if isinstance(values, dict):
            for key, value in _flat_metrics(values).items():
                lines.append(f"| {split} | {key} | {value:.6g} |")
    lines += [
        "",
        "## How it was made",
        "",
        "```bash",
        "pdeforge train config.yaml    # config.yaml in this folder holds every option of the run",
        "```",
        "",
        "## Files",
        "",
        *(f"- `{name}`" for name in files),
        "",
    ]
    return "\n".join(lines)

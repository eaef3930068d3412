"""The ``pdeforge`` command line.

Each subcommand imports what it needs inside its handler, so ``pdeforge --help`` answers at once (torch and
neuraloperator, which pulls wandb, cost seconds to import).

    pdeforge inspect PATH                    what a file / folder / dataset root holds, or why it is invalid
    pdeforge convert pdebench SRC OUT        a PDEBench file into pdeforge's format (The Well's layout)
    pdeforge convert poseidon|pdearena SRC --out ROOT   Poseidon's netCDF / PDEArena's HDF5 files, the same way
    pdeforge generate PRESET --out ROOT      reference data from the solvers (``--list`` shows the presets)
    pdeforge plot PATH                       look at a trajectory (space-time image in 1D, snapshots in 2D)
    pdeforge train CONFIG [--section.key V]  train any family's config (python train.py is the same code path)
    pdeforge evaluate RUN_DIR                recompute a run's metrics from its saved weights; its plots in RUN/eval/
    pdeforge export RUN_DIR DIR              a run as a Hugging Face Hub folder (load_run("hf://org/name") reads it)
    pdeforge download the_well|pdebench NAME --out DIR   published data, resumable and checksummed (pdebench --list)

Bad input (a missing or invalid file, an option out of range) ends with one ``error: ...`` line and exit status 1;
``PDEFORGE_TRACEBACK=1`` shows the traceback instead. Ctrl-C ends with one line saying what was kept and the command
that resumes it, and exit status 130 (as a shell reports a process ended by SIGINT). docs/errors.md lists them all.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

INTERRUPTED = 128 + 2  # the exit status of a command stopped by Ctrl-C (SIGINT), as a shell reports it


def _inspect(args: argparse.Namespace) -> int:
    from .datasets import FormatError, validate
    from .datasets._remote import is_url, local_path, read_remote, url_join

    options = None
    if args.storage_options:
        import yaml

        options = yaml.safe_load(args.storage_options)
        if not isinstance(options, dict) or not is_url(args.path):
            raise ValueError(
                f"--storage-options {args.storage_options!r}: expected a mapping (e.g. '{{anon: true}}') for a URL path"
            )
    if is_url(args.path):  # a file or dataset root at a URL (https://, s3://, hf://, ...), read through the cache
        try:
            infos = validate(args.path, check_values=not args.fast, storage_options=options)
        except (ValueError, OSError) as e:  # not found, refused, timed out, damaged: one line naming the URL
            print(f"invalid: {e}", file=sys.stderr)
            return 1
        for info in infos:
            print(describe_file(info))
        stats = url_join(args.path, "stats.yaml")
        try:
            read_remote(stats, options)
            print(f"statistics: {stats} (fitted on the train split)")
        except OSError:  # a root without stats.yaml, or a single file: no statistics to name
            pass
        return 0
    root = Path(local_path(args.path))
    if not root.exists():
        print(
            f"invalid: {root}: no such file or folder (expected an .hdf5 file, a folder of them, or a dataset root)",
            file=sys.stderr,
        )
        return 1
    try:
        infos = validate(root, check_values=not args.fast)
    except (FormatError, FileNotFoundError) as e:
        print(f"invalid: {e}", file=sys.stderr)
        return 1
    for info in infos:
        print(describe_file(info))
    if (root / "stats.yaml").is_file():
        print(f"statistics: {root / 'stats.yaml'} (fitted on the train split)")
    if root.is_dir() and (root / "data").is_dir():
        missing = [s for s in ("train", "valid", "test") if not any((root / "data" / s).glob("*.h*5"))]
        if missing:  # valid files, but not a root training can use
            print(f"note: no {' or '.join(missing)} split: pdeforge train needs train, valid and test")
    return 0


def describe_file(info) -> str:
    """A human summary of one validated file (`FileInfo`)."""
    import numpy as np

    lines = [
        f"{info.path}",
        f"  dataset    {info.dataset_name}  ({info.n_trajectories} trajectories x {info.n_steps} snapshots)",
    ]
    for d, c, bc in zip(info.spatial_dims, info.coords, info.boundary_conditions):
        c = np.asarray(c)
        lines.append(f"  grid {d:<5} {len(c)} points in [{c[0]:.6g}, {c[-1]:.6g}], {bc}")
    t = np.asarray(info.time)
    lines.append(f"  time       {len(t)} snapshots in [{t[0]:.6g}, {t[-1]:.6g}], dt = {info.dt:.6g}")
    for fi in info.fields:
        kind = ("scalar", "vector", "tensor")[fi.order] + (" field" if fi.time_varying else " field (time-invariant)")
        lines.append(f"  field      {fi.name:<16} {str(fi.shape):<26} {kind}")
    for name, sv, tv in info.scalars:
        lines.append(
            f"  scalar     {name:<16} {'per trajectory' if sv else 'constant'}{', time-varying' if tv else ''}"
        )
    if info.parameters:
        lines.append("  parameters " + ", ".join(f"{k}={v}" for k, v in info.parameters.items()))
    prov = {
        k: v
        for k, v in info.attrs.items()
        if k.startswith("pdeforge")
        or k
        in (
            "equation",
            "equation_params",
            "solver",
            "scheme",
            "dt_internal",
            "seed",
            "source_file",
            "source_format",
            "preset",
        )
    }
    for k, v in prov.items():
        lines.append(f"  provenance {k} = {v}")
    return "\n".join(lines)


def _convert(args: argparse.Namespace) -> int:
    from .datasets import FormatError, convert_pdebench

    if args.seed < 0:
        raise ValueError(f"--seed {args.seed}: expected an integer >= 0")
    if args.max_trajectories is not None and args.max_trajectories < 1:
        raise ValueError(f"--max-trajectories {args.max_trajectories}: expected an integer >= 1 (default: all)")
    if Path(args.out).resolve() == Path(args.src).resolve():  # --overwrite would replace the source by its copy
        raise ValueError(f"{args.out}: the source file itself; expected another OUT (a new folder or .hdf5 file)")
    try:
        paths = convert_pdebench(
            args.src,
            args.out,
            split=None if args.no_split else (0.8, 0.1, 0.1),
            seed=args.seed,
            max_trajectories=args.max_trajectories,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
    except (FormatError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for p in paths:
        print(f"wrote {p}")
    return 0


def _convert_collection(args: argparse.Namespace) -> int:
    """``pdeforge convert poseidon|pdearena SRC --out ROOT``."""
    from .datasets import FormatError
    from .datasets._pdearena import convert_pdearena
    from .datasets._poseidon import convert_poseidon

    out = args.out_option or args.out
    if out is None:
        raise ValueError(f"convert {args.format}: expected the output dataset root as OUT or --out DIR")
    if args.max_trajectories is not None and args.max_trajectories < 1:
        raise ValueError(f"--max-trajectories {args.max_trajectories}: expected an integer >= 1 (default: all)")
    if Path(out).resolve() == Path(args.src).resolve():
        raise ValueError(f"{out}: the source itself; expected another OUT (a new dataset root folder)")
    common = dict(
        max_trajectories=args.max_trajectories,
        progress=not args.no_progress,
        dataset_name=args.name,
        overwrite=args.overwrite,
    )
    try:
        if args.format == "poseidon":
            split = args.split
            if split not in ("poseidon", "none"):
                try:
                    split = tuple(float(p) for p in split.split(","))
                except ValueError:
                    raise ValueError(
                        f"--split {args.split!r}: expected 'poseidon', 'none' or three fractions like 0.8,0.1,0.1"
                    ) from None
            paths = convert_poseidon(
                args.src, out, problem=args.problem, split=None if split == "none" else split, seed=args.seed, **common
            )
        else:
            paths = convert_pdearena(args.src, out, **common)
    except (FormatError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for p in paths:
        print(f"wrote {p}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from .solvers import generate as gen

    return gen.main(args)


def _plot(args: argparse.Namespace) -> int:
    from .datasets import validate
    from .plots import plot_file

    path = Path(args.path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file or folder (expected an .hdf5 file, a folder of them, or a dataset root)"
        )
    root = path.is_dir() and (path / "data").is_dir()
    if args.split is not None and not root:
        raise ValueError(
            f"--split {args.split}: {path} is not a dataset root (ROOT/data/{{train,valid,test}}); "
            "expected --split only with a root"
        )
    split = args.split or "test"
    if root and not any(p.suffix in (".hdf5", ".h5") for p in (path / "data" / split).glob("*")):
        have = [s for s in ("train", "valid", "test") if any((path / "data" / s).glob("*.h*5"))]
        raise ValueError(
            f"{path}: no {split} split (data/{split}/*.hdf5 not found); the root has "
            f"{', '.join(have) or 'none'}: choose one with --split"
        )
    validate(path, check_values=False)  # inspect --fast's check of every file (every split of a root) first
    out = plot_file(path, trajectory=args.trajectory, out=args.out, field=args.field, split=split)
    print(f"wrote {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import main

    main([a for a in (args.config, *args.overrides) if a is not None])
    return 0


def _interrupted_run_dir(argv: Sequence[str]) -> Path:
    """The run folder that ``pdeforge train ARGV`` writes, found as `pdeforge.families.train` and `fit` find it."""
    from .families import load_family_config
    from .train import split_argv
    from .training.config import parse_overrides

    path, overrides, _ = split_argv(argv)
    given = dict(parse_overrides(overrides))
    if given.get("run.resume"):
        return Path(str(given["run.resume"]))
    if path is None:  # the embedded default: train.main puts it in runs/default
        return Path(str(given.get("run.run_dir") or Path("runs") / "default"))
    _, config = load_family_config(path, overrides)
    return Path(config.run.resume or config.run.run_dir or Path("runs") / Path(path).stem)


def interrupted_training(argv: Sequence[str], command: str = "pdeforge train") -> str:
    """The one line that ends a training run stopped by Ctrl-C: what its run folder keeps and how to go on.

    ``argv`` are the arguments the run was started with (``[CONFIG] --section.key value ...``), ``command`` the
    program that ran them (``pdeforge train`` or ``python train.py``; under torchrun, the torchrun command with as
    many processes). A run resumes from its last checkpoint with only ``--run.resume RUN_DIR``: the run folder's
    ``config.yaml`` holds every option it was started with.
    """
    from .checkpoint import load_state

    try:
        run_dir = _interrupted_run_dir(argv)
    except (ValueError, OSError):  # the config was refused before the run began: nothing of it was written
        return "interrupted: nothing was written"
    checkpoint = run_dir / "checkpoint" / "state.pt"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: resumed by the same processes
        nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
        launch = "torchrun" + (f" --nnodes {nodes}" if nodes > 1 else "")
        launch += f" --nproc_per_node {os.environ.get('LOCAL_WORLD_SIZE', os.environ['WORLD_SIZE'])}"
        command = f"{launch} {'train.py' if command == 'python train.py' else '-m pdeforge.cli train'}"
    again = f"{command} {shlex.join(argv)}".rstrip()
    if checkpoint.is_file():
        try:
            step = f"step {int(load_state(checkpoint)['counters']['step'])}"
        except Exception:  # an unreadable checkpoint is for --run.resume to report, not this line
            step = "its last step"
        return (
            f"interrupted: {run_dir} keeps its last checkpoint ({step}); resume with: {command} --run.resume "
            f"{shlex.quote(str(run_dir))}"
        )
    if (run_dir / "config.yaml").is_file():
        return (
            f"interrupted before the first checkpoint: nothing to resume ({run_dir} holds its config.yaml only); "
            f"start again with: {again} --run.overwrite true"
        )
    return f"interrupted before the run folder was written: nothing was kept; start again with: {again}"


def _evaluate(args: argparse.Namespace) -> int:
    from .families import evaluate_run, evaluation_folder

    splits = args.split or ("valid", "test")
    out = None
    if "test" in splits:  # the plots are training's, drawn from the test split
        out = Path(args.out) if args.out else evaluation_folder(args.run_dir, args.data)
    elif args.out:
        raise ValueError(f"--out {args.out}: the plots are drawn from the test split; add --split test")
    metrics = evaluate_run(args.run_dir, data=args.data, splits=splits, device=args.device, plots=out)
    print(json.dumps(metrics, indent=2))
    if out is not None:  # stderr: stdout is the metrics' JSON
        print(f"plots and evaluate.json: {out}", file=sys.stderr)
    else:
        print("no plots: they are drawn from the test split (add --split test)", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from ._export import export_run

    out = export_run(args.run_dir, args.out)
    print(f"exported {args.run_dir} to {out}; publish it with: huggingface-cli upload ORG/NAME {shlex.quote(str(out))}")
    return 0


def _download(args: argparse.Namespace) -> int:
    try:
        return _download_files(args)
    except KeyboardInterrupt:  # what was kept and the command that resumes it
        kept = sorted(Path(args.out).rglob("*.partial")) if Path(args.out).is_dir() else []
        what = f"the partial {', '.join(str(p) for p in kept)}" if kept else "no partial file"
        again = shlex.join(
            ["pdeforge", "download", args.source, args.name, "--out", args.out] + _download_options(args)
        )
        print(f"interrupted: {args.out} keeps its finished files and {what}; resume with: {again}", file=sys.stderr)
        return INTERRUPTED


def _download_options(args: argparse.Namespace) -> list[str]:
    options = [x for split in args.split or () for x in ("--split", split)]
    options += ["--convert"] if args.convert else []
    return options + (["--base-url", args.base_url] if args.base_url else [])


def _download_files(args: argparse.Namespace) -> int:
    from .datasets._download import download_pdebench, download_well

    if args.list:
        if args.source != "pdebench":
            raise ValueError("--list: expected it with pdebench (The Well's datasets: the_well's registry)")
        from .datasets._download import pdebench_table

        rows = pdebench_table()
        for r in rows:
            print(f"{r['PDE']:12s} {r['Path']}{r['Filename']}")
        print(f"{len(rows)} files; pdeforge download pdebench FILE|PDE --out DIR fetches them", file=sys.stderr)
        return 0
    if not args.name or not args.out:
        raise ValueError(f"download {args.source}: expected NAME and --out DIR (pdebench --list shows its files)")
    progress = not args.no_progress
    if args.source == "the_well":
        if args.convert:
            raise ValueError("--convert: The Well's files are in pdeforge's layout already; expected it with pdebench")
        splits = args.split or ("train", "valid", "test")
        paths = download_well(args.name, args.out, splits=splits, base_url=args.base_url, progress=progress)
        print(f"{len(paths)} files of the_well {args.name} ({', '.join(splits)}) in {args.out}")
    else:
        if args.split:
            raise ValueError("--split: PDEBench files are not split; expected it with the_well (--convert splits)")
        paths = download_pdebench(args.name, args.out, base_url=args.base_url, convert=args.convert, progress=progress)
        what = "dataset roots" if args.convert else "files"
        print(f"{len(paths)} {what} of pdebench {args.name}: " + ", ".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pdeforge", description="pdeforge: PDE reference data, datasets and surrogate models."
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("inspect", help="show what a file, folder or dataset root holds, or why it is invalid")
    s.add_argument(
        "path",
        help="an .hdf5 file, a folder of them, or a dataset root (ROOT/data/{train,valid,test}); a path or a URL "
        "(https://, s3://, gs://, hf://: read through the block cache, see docs/guides/data.md)",
    )
    s.add_argument("--fast", action="store_true", help="skip the scan for NaN/Inf values")
    s.add_argument(
        "--storage-options", default=None, metavar="MAPPING", help="a URL's fsspec options, e.g. '{anon: true}'"
    )
    s.set_defaults(func=_inspect)

    s = sub.add_parser("convert", help="convert other formats into pdeforge's (The Well's layout)")
    csub = s.add_subparsers(dest="format", metavar="FORMAT", required=True)
    c = csub.add_parser("pdebench", help="a PDEBench .hdf5/.h5 file (any of its four layouts)")
    c.add_argument("src", help="PDEBench file")
    c.add_argument("out", help="dataset root folder (split into train/valid/test) or a single .hdf5 file")
    c.add_argument("--seed", type=int, default=0, help="seed of the train/valid/test split (default 0)")
    c.add_argument("--max-trajectories", type=int, default=None, help="convert only the first N trajectories")
    c.add_argument("--no-split", action="store_true", help="put every trajectory in train (default: 80/10/10 split)")
    c.add_argument("--overwrite", action="store_true", help="replace existing output files")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=_convert)
    for name, text, src_help in (
        ("poseidon", "one of Poseidon's downstream netCDF files (NS-PwC.nc, CE-RP.nc, ...)", "the assembled .nc file"),
        ("pdearena", "PDEArena's Navier-Stokes 2D .h5 files or shallow-water output.nc files", "a file or folder"),
    ):
        c = csub.add_parser(name, help=text)
        c.add_argument("src", help=src_help)
        c.add_argument("out", nargs="?", default=None, help="the dataset root folder to write (or --out)")
        c.add_argument("--out", dest="out_option", metavar="DIR", default=None, help="the dataset root folder")
        c.add_argument("--name", default=None, help="dataset_name of the root (default: the problem / collection)")
        c.add_argument("--max-trajectories", type=int, default=None, help="convert only the first N trajectories")
        c.add_argument("--overwrite", action="store_true", help="replace existing output files")
        c.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "poseidon":
            c.add_argument("--problem", default=None, help="the problem of a renamed file (e.g. NS-PwC); default: stem")
            c.add_argument(
                "--split", default="poseidon", help="'poseidon' (scOT's split, default), 'none', or 0.8,0.1,0.1"
            )
            c.add_argument("--seed", type=int, default=0, help="seed of a fractional split (default 0)")
        c.set_defaults(func=_convert_collection)

    s = sub.add_parser("generate", help="generate reference data with the classical solvers (--list: presets)")
    s.add_argument("preset", nargs="?", help="preset name (see --list)")
    s.add_argument("--list", action="store_true", help="list presets with PDE, parameters, grid and time steps")
    s.add_argument("--out", help="dataset root to write (ROOT/data/{train,valid,test}, ROOT/stats.yaml)")
    s.add_argument("--n-trajectories", type=int, default=None, help="total trajectories (default: the preset's)")
    s.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="grid points per axis (default: the preset's); below the preset's minimum (--list) it is refused",
    )
    s.add_argument(
        "--allow-underresolved",
        action="store_true",
        help="write a --resolution below the preset's minimum anyway; generation.json and every file say "
        "'underresolved'",
    )
    s.add_argument(
        "--substeps",
        type=int,
        default=None,
        metavar="K",
        help="solver steps per stored snapshot (dt = snapshot interval / K; snapshots stay where they are); "
        "default: the preset's; the spectral presets only (the FV ones step by CFL, darcy_2d is steady)",
    )
    s.add_argument(
        "--dt",
        type=float,
        default=None,
        help="the solver's time step instead of --substeps: it must divide the snapshot interval into whole steps",
    )
    s.add_argument("--seed", type=int, default=0, help="random seed (same seed -> same numbers, any sharding)")
    s.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (default cpu)")
    s.add_argument("--batch-size", type=int, default=None, help="trajectories solved together (default: the preset's)")
    s.add_argument("--shard", default=None, help="i/n: write only shard i of n (automatic under torchrun)")
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a root made with other parameters (or without a generation record: older pdeforge, "
        "pdeforge convert); without it such a root is refused, and one of the same parameters is "
        "resumed or left as it is",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_generate)

    s = sub.add_parser("plot", help="plot one trajectory (1D: space-time image, 2D: snapshots or a GIF)")
    s.add_argument("path", help="an .hdf5 file, a folder of them, or a dataset root (its --split)")
    s.add_argument(
        "--split",
        default=None,
        choices=("train", "valid", "test"),
        help="the split of a dataset root to plot from (default test; only with a root)",
    )
    s.add_argument("--trajectory", type=int, default=0, help="trajectory index (default 0; across a folder's files)")
    s.add_argument("--field", default=None, help="channel name to plot (default: all, one row each)")
    s.add_argument(
        "--out",
        default=None,
        help="output .png or .gif (default: FILE.trajI.png next to a file, SPLIT_trajI.png in a root)",
    )
    s.set_defaults(func=_plot)

    s = sub.add_parser(
        "train",
        help="train any family's config (--section.key value overrides; CONFIG --help: options)",
        add_help=False,
    )
    s.add_argument("config", nargs="?", default=None, help="a YAML config (configs/*.yaml); none: the main job")
    s.add_argument("overrides", nargs=argparse.REMAINDER, help="--section.key value ... (e.g. --optim.lr 1e-3)")
    s.set_defaults(func=_train)

    s = sub.add_parser(
        "evaluate", help="recompute a run's metrics from its saved weights and draw its plots (any family)"
    )
    s.add_argument("run_dir", help="a run folder written by pdeforge train or train.py")
    s.add_argument(
        "--data",
        default=None,
        help="dataset root (default: the one the run was trained on); another needs the run's fields, parameters "
        "and axes, and is normalised with the run's statistics",
    )
    s.add_argument(
        "--split",
        action="append",
        choices=("train", "valid", "test"),
        help="a split to evaluate (repeatable; default valid and test)",
    )
    s.add_argument(
        "--out",
        default=None,
        help="folder for the plots training draws, from the test split, and evaluate.json (default RUN/eval/DATA, "
        "DATA the data root's folder name); a folder holding anything but the same run's evaluation on the same "
        "data is refused",
    )
    s.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (default cpu)")
    s.set_defaults(func=_evaluate)

    s = sub.add_parser(
        "export", help="write a run folder as a Hugging Face Hub folder (weights, model.json, metrics, plots, card)"
    )
    s.add_argument("run_dir", help="a finished run folder written by pdeforge train or train.py (any family)")
    s.add_argument("out", help="the folder to write (new or empty); huggingface-cli upload publishes it as it is")
    s.set_defaults(func=_export)

    s = sub.add_parser(
        "download", help="fetch The Well's or PDEBench's files (resumable, checksummed; --convert: PDEBench -> root)"
    )
    s.add_argument("source", choices=("the_well", "pdebench"), help="the collection")
    s.add_argument(
        "name",
        nargs="?",
        help="the_well: a dataset (e.g. turbulent_radiative_layer_2D); pdebench: a file of its table (e.g. "
        "1D_Advection_Sols_beta0.1) or a PDE (e.g. Advection: all its files)",
    )
    s.add_argument("--out", default=None, help="the folder to write (the_well: a dataset root)")
    s.add_argument("--list", action="store_true", help="pdebench: print its published table of files (PDE, path)")
    s.add_argument(
        "--split",
        action="append",
        choices=("train", "valid", "test"),
        help="the_well: a split to fetch (repeatable; default all three)",
    )
    s.add_argument("--convert", action="store_true", help="pdebench: also convert each file into a dataset root")
    s.add_argument("--base-url", default=None, help="a mirror to fetch from instead of the collection's own server")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=_download)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # its options are the config's (--section.key value), not argparse's
        args = argparse.Namespace(func=_train, config=None, overrides=argv[1:])
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line, not the traceback of wherever the work happened to be
        if os.environ.get("PDEFORGE_TRACEBACK"):
            raise
        # a second Ctrl-C (torchrun passes one on) cuts no line short; the handler is put back afterwards, so that
        # main() called in a process (tests, notebooks) does not leave Ctrl-C ignored there and in its children
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if args.func is _train:
                if _reports_failure():  # under torchrun: once, not once per process
                    argv_train = [a for a in (args.config, *args.overrides) if a is not None]
                    print(interrupted_training(argv_train), file=sys.stderr)
            else:  # generate answers Ctrl-C itself (what it kept, how to resume); the others have nothing to resume
                print(f"interrupted: pdeforge {argv[0]} stopped before it finished", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        return INTERRUPTED
    except BrokenPipeError:  # `pdeforge generate --list | head`: the reader has gone; not an error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush must not raise again
        return 128 + 13  # as a shell reports a process ended by SIGPIPE
    except (ValueError, OSError, IndexError) as e:  # bad input (a path, a file, an option): its message, one line
        if os.environ.get("PDEFORGE_TRACEBACK"):  # the escape hatch, as for train.py
            raise
        if args.func is not _train or _reports_failure():
            print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception:
        if os.environ.get("PDEFORGE_TRACEBACK") or args.func is not _train or _reports_failure():
            raise
        return 1  # under torchrun: stopped by another process's failure, which that one says


def _reports_failure() -> bool:
    from .training import reports_failure

    return reports_failure()


if __name__ == "__main__":
    sys.exit(main())

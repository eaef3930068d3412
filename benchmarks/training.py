"""Samples/s of train.py's loop against neuraloperator's ``Trainer``, and the data-stall fraction through HDF5.

    python benchmarks/training.py [--resolution 64] [--batch-size 16] [--epochs 4] [--rounds 4] [--threads 1]

1. **Throughput (goal: ratio >= 1.0).** One 2D dataset (1 field, ``resolution^2``, 40 training trajectories of 9
   snapshots: 320 next-step windows) is written small enough (< 64 MiB) for the dataset layer to hold it in memory.
   - *train.py*: ``pdeforge.train.main([...])`` itself, unmodified, on that dataset (task ``next_step``, 1 frame in,
     its defaults but no gradient clipping (the Trainer has none): z-score normalisation, rel-L2 loss in physical
     units, AdamW, warm-up + cosine stepped per iteration); steps and wall time are read from its
     ``train_log.jsonl`` (``epoch_time`` per epoch, validation excluded). Nothing is factored out of train.py.
   - *neuraloperator*: ``neuralop.training.Trainer`` with ``neuralop.models.FNO`` of the same ``n_modes``, width and
     layers (its ``positional_embedding="grid"`` adds the same two grid channels train.py's ``use_grid`` adds; the
     parameter counts are printed and must agree), its default ``LpLoss``, AdamW + cosine per epoch, on the same
     normalised windows, read once into memory tensors, with the same batch size and ``drop_last`` (same steps).
     Its per-epoch ``epoch_train_time`` (validation excluded) is recorded.
   Both run in this process, alternated ``rounds`` times in ABBA order (so a drift of the machine's speed favours
   neither); each side's first epoch of a run is dropped (warm-up) and samples/s = batch * steps / median epoch time.
   The ratio of each round's adjacent pair of runs is printed too: its spread is this machine's noise.
2. **Data stall (goal: < 5 %).** A second file of the same windows' shape, larger than the 64 MiB cache (112
   trajectories x 41 snapshots = 72 MiB, read lazily from HDF5), trained by train.py on its first 8 trajectories
   (the same 20 steps per epoch) with ``num_workers`` 0 and 2; prints train_log.jsonl's ``data_time_fraction``
   (time waiting for the loader / epoch time). The file was just written, so the OS page cache is likely warm: this
   measures the dataset layer's own cost (h5py reads, normalisation, collation), not a cold disk.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pdeforge.datasets import FieldSpec, Schema, TrajectoryDataset, TrajectoryWriter, write_stats


def write_dataset(root: Path, n_train: int, n_steps: int, resolution: int, seed: int = 0) -> Path:
    """``root/data/{train,valid,test}/fields.hdf5`` (+ ``stats.yaml``): smooth travelling random Fourier fields.

    Each trajectory is ``u(x, y, t) = Re sum_m c_m exp(i (m . x + omega_m t))`` over modes ``|m_i| <= 4`` (values
    only need to be realistic enough for the loss; the benchmark measures time).
    """
    x = np.arange(resolution) * (2 * np.pi / resolution)
    t = 0.1 * np.arange(n_steps)
    schema = Schema(
        "bench_fields", coords={"x": x, "y": x}, time=t, fields=(FieldSpec("u"),), boundary_conditions="periodic"
    )
    rng = np.random.default_rng(seed)
    m = np.arange(-4, 5)
    mx, my = np.meshgrid(m, m, indexing="ij")
    amp = 1.0 / (1.0 + mx**2 + my**2)
    phase = np.exp(1j * m[:, None] * x[None])  # (9, s): exp(i m x)
    for split, n in (("train", n_train), ("valid", 4), ("test", 4)):
        with TrajectoryWriter(root / "data" / split / "fields.hdf5", schema, n, resume=False) as w:
            for _ in range(n):
                c = amp * (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape))
                omega = rng.uniform(-2, 2, amp.shape)
                ct = c[None] * np.exp(1j * omega[None] * t[:, None, None])  # (T, 9, 9)
                u = np.einsum("tab,ai,bj->tij", ct, phase, phase).real
                w.write_channels(u[None, :, None].astype(np.float32))  # (1, T, C=1, s, s)
    write_stats(root)
    return root


def run_train_py(
    data: Path,
    run_dir: Path,
    model_args: dict,
    batch_size: int,
    epochs: int,
    num_workers: int = 0,
    max_train_trajectories: int = 0,
) -> dict:
    """``pdeforge.train.main`` on ``data``; returns its per-epoch log entries, steps per epoch and parameters."""
    from pdeforge.train import main

    argv = [
        "--data.root",
        str(data),
        "--task.kind",
        "next_step",
        "--task.n_steps_input",
        "1",
        "--task.n_steps_output",
        "1",
        "--task.dt_stride",
        "1",
        "--model.name",
        "fno",
        "--model.args",
        json.dumps(model_args),
        "--optim.epochs",
        str(epochs),
        "--optim.batch_size",
        str(batch_size),
        "--run.run_dir",
        str(run_dir),
        "--run.overwrite",
        "true",
        "--run.progress",
        "false",
        "--data.num_workers",
        str(num_workers),
        "--data.max_train_trajectories",
        str(max_train_trajectories),
        "--task.rollout_steps",
        "1",
        "--optim.grad_clip",
        "0",
    ]  # like for like: neuraloperator's Trainer does not clip gradients
    results = main(argv)
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    epochs_log = [r for r in log if "epoch_time" in r]
    steps = [b["step"] - a["step"] for a, b in zip([{"step": 0}] + epochs_log, epochs_log)]
    return {"epochs": epochs_log, "steps_per_epoch": steps, "n_parameters": results["n_parameters"]}


class _Windows(torch.utils.data.Dataset):
    """In-memory ``{"x": (C, *space), "y": (C, *space)}`` samples, the batch format neuraloperator's Trainer takes."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def memory_windows(data: Path, split: str) -> _Windows:
    """Every next-step window of ``split``, normalised exactly as train.py normalises them, as memory tensors."""
    ds = TrajectoryDataset(data, n_steps_input=1, n_steps_output=1, split=split, normalization="zscore")
    samples = [ds[i] for i in range(len(ds))]
    return _Windows(
        torch.stack([s["input_fields"][0] for s in samples]), torch.stack([s["output_fields"][0] for s in samples])
    )


def run_neuralop(
    train: _Windows, valid: _Windows, model_args: dict, batch_size: int, epochs: int, seed: int = 0
) -> dict:
    """neuraloperator's ``Trainer`` on its own FNO; returns per-epoch train times, steps per epoch and parameters."""
    from neuralop.models import FNO
    from neuralop.training import Trainer

    class TimedTrainer(Trainer):
        times: list[float] = []

        def train_one_epoch(self, epoch, train_loader, training_loss):  # record the time it measures itself
            out = super().train_one_epoch(epoch, train_loader, training_loss)
            self.times.append(out[3])
            return out

    torch.manual_seed(seed)
    n_dims = train.x.ndim - 2
    model = FNO(
        n_modes=(model_args["n_modes"],) * n_dims,
        in_channels=train.x.shape[1],
        out_channels=train.y.shape[1],
        hidden_channels=model_args["hidden_channels"],
        n_layers=model_args["n_layers"],
        positional_embedding="grid",
    )
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True)
    valid_loader = torch.utils.data.DataLoader(valid, batch_size=batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    trainer = TimedTrainer(model=model, n_epochs=epochs, device="cpu", eval_interval=epochs + 1, verbose=False)
    trainer.times = []
    with warnings.catch_warnings():  # its FNO and LpLoss are handed the whole {"x", "y"} batch and warn once each
        warnings.filterwarnings("ignore", message=r".*received unexpected keyword arguments")
        trainer.train(
            train_loader=loader, test_loaders={"valid": valid_loader}, optimizer=optimizer, scheduler=scheduler
        )
    return {
        "times": trainer.times,
        "steps_per_epoch": len(loader),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }


def throughput(root: Path, resolution: int, model_args: dict, batch_size: int, epochs: int, rounds: int) -> dict:
    """Alternate train.py and neuraloperator's Trainer ``rounds`` times; samples/s of each and their ratio."""
    data = write_dataset(root / "cached", n_train=40, n_steps=9, resolution=resolution)
    size = sum(p.stat().st_size for p in (data / "data").rglob("*.hdf5"))
    train, valid = memory_windows(data, "train"), memory_windows(data, "valid")
    ours, theirs, info = [], [], {}
    per_round = []
    for r in range(rounds):  # ABBA order: a drift in the machine's speed does not favour either side
        if r % 2 == 0:
            a = run_train_py(data, root / f"run_{r}", model_args, batch_size, epochs)
            b = run_neuralop(train, valid, model_args, batch_size, epochs, seed=r)
        else:
            b = run_neuralop(train, valid, model_args, batch_size, epochs, seed=r)
            a = run_train_py(data, root / f"run_{r}", model_args, batch_size, epochs)
        if set(a["steps_per_epoch"]) != {b["steps_per_epoch"]}:
            raise RuntimeError(
                f"steps per epoch differ: train.py {a['steps_per_epoch']}, neuraloperator {b['steps_per_epoch']}"
            )
        a_times, b_times = [e["epoch_time"] for e in a["epochs"][1:]], b["times"][1:]
        ours, theirs = ours + a_times, theirs + b_times
        per_round.append(statistics.median(b_times) / statistics.median(a_times))
        info = {
            "steps_per_epoch": b["steps_per_epoch"],
            "params_ours": a["n_parameters"],
            "params_theirs": b["n_parameters"],
            "cached_data_time_fraction": [e["data_time_fraction"] for e in a["epochs"][1:]],
        }
    n = batch_size * info["steps_per_epoch"]
    ours_rate, theirs_rate = n / statistics.median(ours), n / statistics.median(theirs)
    return info | {
        "file_mib": size / 2**20,
        "windows": len(train),
        "ours": ours_rate,
        "theirs": theirs_rate,
        "ratio": ours_rate / theirs_rate,
        "epoch_times_ours": ours,
        "epoch_times_theirs": theirs,
        "ratio_per_round": per_round,
    }


def data_stall(
    root: Path, resolution: int, model_args: dict, batch_size: int, epochs: int, workers: tuple[int, ...]
) -> dict:
    """train.py on a file larger than the cache (first 8 trajectories): data_time_fraction per epoch per worker
    count."""
    data = write_dataset(root / "large", n_train=112, n_steps=41, resolution=resolution, seed=1)
    size = (data / "data" / "train" / "fields.hdf5").stat().st_size
    out: dict = {"file_mib": size / 2**20}
    for w in workers:
        a = run_train_py(
            data, root / f"run_large_w{w}", model_args, batch_size, epochs, num_workers=w, max_train_trajectories=8
        )
        out[w] = [e["data_time_fraction"] for e in a["epochs"]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--n-modes", type=int, default=16)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per run (the first of each run is not timed)")
    ap.add_argument("--rounds", type=int, default=4, help="alternations of the two trainers")
    ap.add_argument("--stall-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    ap.add_argument("--skip-stall", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_args = {"n_modes": args.n_modes, "hidden_channels": args.width, "n_layers": args.layers}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        r = throughput(root, args.resolution, model_args, args.batch_size, args.epochs, args.rounds)
        print(
            f"\nFNO {model_args} on {args.resolution}^2, 1 field; {r['windows']} windows in memory "
            f"(file {r['file_mib']:.1f} MiB, "
            f"cached), batch {args.batch_size}, {r['steps_per_epoch']} steps/epoch, {args.threads} thread(s); "
            f"parameters: train.py {r['params_ours']:,}, neuraloperator {r['params_theirs']:,}"
        )
        print(
            f"  train.py (pdeforge.train.main, train_log.jsonl)  {r['ours']:8.1f} samples/s  "
            f"(epoch times {', '.join(f'{t:.2f}' for t in r['epoch_times_ours'])} s)"
        )
        print(
            f"  neuralop.training.Trainer                       {r['theirs']:8.1f} samples/s  "
            f"(epoch times {', '.join(f'{t:.2f}' for t in r['epoch_times_theirs'])} s)"
        )
        print(
            f"  ratio train.py / Trainer = {r['ratio']:.3f}  "
            f"(goal >= 1.0: {'met' if r['ratio'] >= 1.0 else 'NOT met'}); "
            f"data_time_fraction with the cached file: {max(r['cached_data_time_fraction']):.2%} (max over epochs)"
        )
        print(
            f"  ratio per round (adjacent runs, ABBA order): {', '.join(f'{x:.3f}' for x in r['ratio_per_round'])}; "
            f"median {statistics.median(r['ratio_per_round']):.3f}"
        )
        if not args.skip_stall:
            s = data_stall(root, args.resolution, model_args, args.batch_size, args.stall_epochs, (0, 2))
            lazy = (
                "> 64 MiB cache: read lazily from HDF5"
                if s["file_mib"] > 64
                else "CACHED in memory: raise --resolution"
            )
            print(
                f"\ndata stall, file {s['file_mib']:.1f} MiB ({lazy}), first 8 trajectories, "
                f"{args.stall_epochs} epochs:"
            )
            for w in (0, 2):
                fr = s[w]
                print(
                    f"  num_workers {w}: data_time_fraction per epoch {', '.join(f'{f:.2%}' for f in fr)}; "
                    "after the first "
                    f"epoch max {max(fr[1:] or fr):.2%} (goal < 5%: {'met' if max(fr[1:] or fr) < 0.05 else 'NOT met'})"
                )
        print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

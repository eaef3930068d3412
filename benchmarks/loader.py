"""Windows/s through `TrajectoryDataset` + DataLoader against raw h5py slicing and an in-memory tensor.

    python benchmarks/loader.py [--trajectories 24] [--steps 40] [--resolution 128] [--workers 0]

Writes a 2D dataset (two fields: a scalar and a 2-vector, float32) larger than the small-file cache, then reads the
same windows (n_steps_input=4, n_steps_output=1, shuffled order, batch 16) three ways in this process and prints
windows/s and ratios. Goal: TrajectoryDataset >= 0.8x raw h5py slicing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from pdeforge.datasets import FieldSpec, Schema, TrajectoryDataset, TrajectoryWriter


def make_file(path: Path, n_traj: int, n_t: int, n: int) -> None:
    x = np.linspace(0, 1, n, endpoint=False)
    schema = Schema(
        "bench", coords={"x": x, "y": x}, time=0.1 * np.arange(n_t), fields=(FieldSpec("p"), FieldSpec("velocity", 1))
    )
    rng = np.random.default_rng(0)
    with TrajectoryWriter(path, schema, n_traj) as w:
        for _ in range(n_traj // 4):
            w.write_channels(rng.standard_normal((4, n_t, 3, n, n), dtype=np.float32))


def raw_h5py(path: Path, windows: list[tuple[int, int]], n_in: int, n_out: int, batch: int) -> int:
    """The baseline a user would hand-write: slice each field, stack channels first, batch."""
    count = 0
    with h5py.File(path, "r") as f:
        p, v = f["t0_fields/p"], f["t1_fields/velocity"]
        for i in range(0, len(windows), batch):
            xs, ys = [], []
            for traj, start in windows[i : i + batch]:
                sl = slice(start, start + n_in + n_out)
                a = np.concatenate([p[traj, sl][:, None], np.moveaxis(v[traj, sl], -1, 1)], axis=1)
                t = torch.from_numpy(a)
                xs.append(t[:n_in]), ys.append(t[n_in:])
            torch.stack(xs), torch.stack(ys)
            count += len(xs)
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=int, default=24)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n_in, n_out, batch = 4, 1, 16
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.hdf5"
        make_file(path, args.trajectories, args.steps, args.resolution)
        size_mb = path.stat().st_size / 2**20
        ds = TrajectoryDataset(path, n_steps_input=n_in, n_steps_output=n_out)
        order = np.random.default_rng(1).permutation(len(ds))
        windows = [ds.window(int(i)) for i in order]
        sampler = [int(i) for i in order]
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=args.workers)
        memory = torch.from_numpy(
            np.concatenate([ds.read(t, range(args.steps))["fields"][None].numpy() for t in range(len(ds.trajectories))])
        )

        def run_ours() -> int:
            return sum(b["input_fields"].shape[0] for b in loader)

        def run_memory() -> int:
            count = 0
            for i in range(0, len(windows), batch):
                chunk = windows[i : i + batch]
                (
                    torch.stack([memory[t, s : s + n_in] for t, s in chunk]),
                    torch.stack([memory[t, s + n_in : s + n_in + n_out] for t, s in chunk]),
                )
                count += len(chunk)
            return count

        rates = {}
        for name, fn in (
            ("raw h5py slicing", lambda: raw_h5py(path, windows, n_in, n_out, batch)),
            ("TrajectoryDataset+DataLoader", run_ours),
            ("in-memory tensor", run_memory),
        ):
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                n = fn()
                best = min(best, time.perf_counter() - t0)
            rates[name] = n / best
        print(
            f"file {size_mb:.0f} MB, {len(ds)} windows of {n_in}+{n_out} frames, 3 x {args.resolution}^2, "
            f"batch {batch}, workers {args.workers}"
        )
        base = rates["raw h5py slicing"]
        for name, r in rates.items():
            print(f"  {name:<30} {r:10.1f} windows/s   {r / base:6.2f}x raw h5py")
        ratio = rates["TrajectoryDataset+DataLoader"] / base
        print(f"goal >= 0.8x raw h5py: {'met' if ratio >= 0.8 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()

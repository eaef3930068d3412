"""One training step of AViT (MPP) and DPOT, pdeforge's against the original code, on one CPU thread.

    python benchmarks/pretrained_speed.py --original-env /work/envs/pretrained_speed   # ~4 min on a free CPU

A step is forward + MSE loss + backward + AdamW step (lr 1e-4) on a fixed batch, float32, train mode, one thread;
its cost is the process CPU time (``time.process_time``), the best of ``--rounds`` x ``--repeats`` steps (each
process times ``--repeats`` after two warm-up steps; the implementations' processes alternate). Both start from
the same weights (pdeforge's model, initialised with seed 0, its state dict loaded strictly into the original: same
key names) and the same inputs; before timing, the eval-mode outputs of the two are compared (max |difference|
printed: the same computation, not just the same shapes). Sizes (``--sizes``): ``tiny``, the reference configs
``tests/reference/{mpp,dpot}/tiny_config.json``, and ``Ti``, the released sizes (AViT-Ti 7.3M parameters, DPOT-Ti
7.5M):

    AViT tiny: x (T=4, B=4, C=3, 64, 64), n_states 5;    AViT Ti: x (T=8, B=2, C=3, 128, 128), n_states 12
    DPOT tiny: x (B=4, 32, 32, T=3, C=3) -> 2 frames;    DPOT Ti: x (B=2, 128, 128, T=10, C=4) -> 1 frame

AViT's drop path (0.2, what the original's ``build_avit`` always sets) is active in both: random, but the same work.
The original code is run from copies of its repositories in its own environment ENV, never imported into pdeforge
nor installed as a dependency::

    git clone https://github.com/PolymathicAI/multiple_physics_pretraining ENV/mpp   # MIT
    git clone https://github.com/HaoZhongkai/DPOT ENV/dpot                           # no licence: run, not copied
    python -m venv ENV/venv  (torch, numpy, einops, safetensors as here)  &&  ENV/venv/bin/pip install --no-deps timm

MPP's model imports ``timm.layers.DropPath``; timm imports torchvision at load time, whose wheel does not fit a CPU
torch here: the benchmark writes ``ENV/stubs/torchvision.py``, an inert stand-in (no model code uses torchvision).

Prints a table (ms per step, ratio ours / original; < 1: ours is faster) and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]
SHAPES = {  # (model, size) -> input shape, as the class docstring lists
    ("avit", "tiny"): (4, 4, 3, 64, 64),
    ("avit", "Ti"): (8, 2, 3, 128, 128),
    ("dpot", "tiny"): (4, 32, 32, 3, 3),
    ("dpot", "Ti"): (2, 128, 128, 10, 4),
}


def model_config(model: str, size: str) -> dict:
    """The constructor arguments (the original's names; pdeforge's configs take the same)."""
    if model == "avit":
        if size == "tiny":
            return json.loads((REPO / "tests" / "reference" / "mpp" / "tiny_config.json").read_text())
        fixed = dict(block_type="axial", space_type="axial_attention", time_type="attention", bias_type="rel")
        return dict(embed_dim=192, num_heads=3, processor_blocks=12, n_states=12, patch_size=[16, 16], **fixed,
                    gradient_checkpointing=False)  # fmt: skip
    if size == "tiny":
        return json.loads((REPO / "tests" / "reference" / "dpot" / "tiny_config.json").read_text())
    return dict(img_size=128, patch_size=8, mixing_type="afno", in_channels=4, out_channels=4, in_timesteps=10,
                out_timesteps=1, n_blocks=4, embed_dim=512, out_layer_dim=32, depth=4, modes=32, mlp_ratio=1.0,
                n_cls=12, normalize=False, act="gelu", time_agg="exp_mlp")  # fmt: skip


# -- the two implementations (each worker imports only its own) ------------------------------------------------------
def build_ours(model: str, size: str) -> torch.nn.Module:
    if model == "avit":
        from pdeforge.operators.mpp import AViT, AViTConfig

        return AViT(AViTConfig.from_dict(model_config(model, size)))
    from pdeforge.operators.dpot import DPOT, DPOTConfig

    return DPOT(DPOTConfig(**model_config(model, size)))


def build_original(model: str, size: str) -> torch.nn.Module:
    cfg = model_config(model, size)
    if model == "avit":
        from models.avit import build_avit  # MPP's repository on PYTHONPATH

        return build_avit(SimpleNamespace(**{**cfg, "patch_size": tuple(cfg["patch_size"])}))
    from models.dpot import DPOTNet  # DPOT's repository on PYTHONPATH

    return DPOTNet(**cfg)


def inputs(model: str, size: str) -> dict[str, torch.Tensor]:
    """The fixed batch (seed 0): the model's arguments and the target."""
    g = torch.Generator().manual_seed(0)
    shape = SHAPES[(model, size)]
    x = torch.randn(shape, generator=g)
    if model == "avit":
        t, b, c = shape[:3]
        labels = torch.arange(c).repeat(b, 1)  # fields 0 .. C-1 of the vocabulary
        bcs = torch.tensor([[1, 1]]).repeat(b, 1)
        return {"x": x, "labels": labels, "bcs": bcs, "y": torch.randn(b, c, *shape[3:], generator=g)}
    cfg = model_config(model, size)
    y_shape = (shape[0], *shape[1:3], cfg["out_timesteps"], cfg["out_channels"])
    return {"x": x, "y": torch.randn(y_shape, generator=g)}


def prediction(net: torch.nn.Module, model: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    if model == "avit":
        return net(batch["x"], batch["labels"], batch["bcs"])
    return net(batch["x"])[0]  # (pred, cls_pred): the prediction


def worker(args: argparse.Namespace) -> dict:
    """Build ``args.impl``'s model with the shared weights, check it, time the step; returns a JSON-able dict."""
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    net = (build_ours if args.impl == "ours" else build_original)(args.model, args.size)
    net.load_state_dict(load_file(args.weights), strict=True)
    batch = inputs(args.model, args.size)
    net.eval()
    with torch.no_grad():
        out = prediction(net, args.model, batch)
    torch.save(out, args.output)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step() -> float:
        t0 = time.process_time()
        loss = torch.mean((prediction(net, args.model, batch) - batch["y"]) ** 2)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.process_time() - t0

    for _ in range(2):
        step()
    times = [step() for _ in range(args.repeats)]
    n_params = sum(p.numel() for p in net.parameters())
    return {"best_s": min(times), "median_s": sorted(times)[len(times) // 2], "times_s": times, "n_params": n_params}


TORCHVISION_STUB = '''"""An inert stand-in for torchvision (written by pdeforge's benchmarks/pretrained_speed.py): timm
imports it at load time, no model code of MPP uses it. Every attribute and submodule is a placeholder; calling one
raises."""
import enum
import importlib.machinery
import sys
import types


class _Stub(types.ModuleType):
    __path__: list = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "InterpolationMode":
            return enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC BOX HAMMING LANCZOS NEAREST_EXACT")
        full = f"{self.__name__}.{name}"
        return sys.modules.setdefault(full, _Stub(full))

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self.__name__} is a stand-in: torchvision is not installed here")

    def __mro_entries__(self, bases):
        return (object,)


class _Finder:
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return _Stub(spec.name)

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())
del sys.modules["torchvision"]
import torchvision  # noqa: E402,F401  (again, through the finder)
'''


def run_worker(impl: str, model: str, size: str, weights: Path, out: Path, repeats: int, env: Path) -> dict:
    cmd = [__file__, "--worker", impl, "--model", model, "--size", size, "--weights", str(weights)]
    cmd += ["--output", str(out), "--repeats", str(repeats)]
    child = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if impl == "ours":
        python = sys.executable
    else:
        python = str(env / "venv" / "bin" / "python")
        repo = env / ("mpp" if model == "avit" else "dpot")
        child["PYTHONPATH"] = os.pathsep.join([str(env / "stubs"), str(repo)])
        if model == "avit":
            run = f"sys.argv = {cmd!r}; runpy.run_path({__file__!r}, run_name='__main__')"
            cmd = ["-c", f"import torchvision, runpy, sys; {run}"]  # the stand-in first, then timm can load
    r = subprocess.run([python, *cmd], capture_output=True, text=True, env=child, cwd=tempfile.gettempdir())
    if r.returncode:
        raise SystemExit(f"{impl} {model} {size} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--original-env", default="/work/envs/pretrained_speed", help="ENV: mpp/, dpot/, venv/, stubs/")
    ap.add_argument("--models", nargs="+", default=["avit", "dpot"], choices=("avit", "dpot"))
    ap.add_argument("--sizes", nargs="+", default=["tiny", "Ti"], choices=("tiny", "Ti"))
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per process (the best is reported)")
    ap.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating")
    ap.add_argument("--out", default="runs/pretrained_speed.json")
    ap.add_argument("--worker", choices=("ours", "original"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.impl = args.worker
        print(json.dumps(worker(args)))
        return
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    env = Path(args.original_env)
    missing = [str(env / p) for p in ("mpp/models/avit.py", "dpot/models/dpot.py", "venv/bin/python")]
    missing = [p for p in missing if not Path(p).exists()]
    if missing:
        raise SystemExit(f"--original-env {env}: missing {missing}; set it up as the module docstring says")
    stub = env / "stubs" / "torchvision.py"
    if not stub.is_file():
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(TORCHVISION_STUB)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for size in args.sizes:
                torch.manual_seed(0)
                weights = Path(tmp) / f"{model}_{size}.safetensors"
                save_file({k: v.contiguous() for k, v in build_ours(model, size).state_dict().items()}, weights)
                res: dict[str, dict] = {}
                for _ in range(args.rounds):  # alternating processes: a load change hits both alike
                    for impl in ("original", "ours"):
                        out = Path(tmp) / f"{model}_{size}_{impl}.pt"
                        got = run_worker(impl, model, size, weights, out, args.repeats, env)
                        got["output"] = torch.load(out, weights_only=True)
                        if impl in res:
                            got["times_s"] = res[impl]["times_s"] + got["times_s"]
                            got["best_s"] = min(got["times_s"])
                            got["median_s"] = sorted(got["times_s"])[len(got["times_s"]) // 2]
                        res[impl] = got
                diff = float((res["ours"].pop("output") - res["original"].pop("output")).abs().max())
                row = {
                    "model": model,
                    "size": size,
                    "n_params": res["ours"]["n_params"],
                    "ours": res["ours"],
                    "original": res["original"],
                    "ratio_best": res["ours"]["best_s"] / res["original"]["best_s"],
                    "eval_output_max_abs_diff": diff,
                }
                rows.append(row)
                print(
                    f"{model:4s} {size:4s} ({row['n_params']:,} params): ours {1e3 * res['ours']['best_s']:8.1f} ms, "
                    f"original {1e3 * res['original']['best_s']:8.1f} ms per step "
                    f"(best of {args.rounds} x {args.repeats}); "
                    f"ratio {row['ratio_best']:.3f}; eval outputs differ by {diff:.2e}",
                    flush=True,
                )
    load = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "loadavg": load, "torch": torch.__version__}, indent=1))
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.out}")


if __name__ == "__main__":
    main()

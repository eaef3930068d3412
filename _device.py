"""The ``device`` option of the training families: ``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` (cuda if available).

A config checks it with `check_device` when it is made (so a run is refused before any work) and turns it into a
torch device with `resolve_device`; `synchronize` waits for a GPU before a clock is read. `compile_problem` says
why ``torch.compile`` could not build kernels for a device here, before a run asks it to.
"""

from __future__ import annotations

import importlib.util
import re

import torch

__all__ = ["check_device", "compile_problem", "device_problem", "resolve_device", "synchronize"]


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot run here, worded as the config checker words a problem ("expected ..."); None if it
    can."""
    if device in ("cpu", "auto"):
        return None
    if not re.fullmatch(r"cuda(:\d+)?", device):
        return "expected one of 'cpu', 'cuda', 'cuda:N', 'auto'"
    if not torch.cuda.is_available():
        return "expected 'cpu' or 'auto': CUDA is not available here (torch.cuda.is_available() is False)"
    count = torch.cuda.device_count()
    if int(device.partition(":")[2] or 0) >= count:
        return f"expected cuda:0 .. cuda:{count - 1}, the CUDA devices here"
    return None


def resolve_device(device: str) -> torch.device:
    """``device`` as a torch device (``auto``: cuda if available, else cpu)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_device(device: str, where: str) -> None:
    """Raise a one-line ValueError ``"<where>: device '...': expected ..."`` unless ``device`` can run here."""
    problem = device_problem(device)
    if problem:
        raise ValueError(f"{where}: device {device!r}: {problem}")


def synchronize(on: torch.Tensor | torch.device) -> None:
    """Wait for the work queued on ``on``'s device if it is a GPU (CUDA runs asynchronously); nothing on the CPU."""
    device = on.device if isinstance(on, torch.Tensor) else torch.device(on)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compile_problem(device: torch.device | str) -> str | None:
    """Why ``torch.compile`` (Inductor) cannot build kernels for ``device`` here, or None: on the CPU it needs a C++
    compiler, on CUDA Triton. Without this check the first compiled call fails deep inside Inductor."""
    device = torch.device(device)
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
        except ImportError:  # another torch layout: torch.compile says it itself
            return None
        try:
            get_cpp_compiler()  # runs `<compiler> --version` once per process
        except Exception:  # InvalidCxxCompiler, or an odd compiler setting
            return "Inductor needs a C++ compiler for CPU kernels (g++, or the one named in $CXX) and finds none"
    elif device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Inductor needs Triton for CUDA kernels (pip install triton) and it is not installed"
    return None

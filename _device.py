"""The ``device`` option of the training families: ``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` (cuda if available).

A config checks it with `check_device` when it is made (so a run is refused before any work) and turns it into a
torch device with `resolve_device`; `synchronize` waits for a GPU before a clock is read.
"""

from __future__ import annotations

import re

import torch

__all__ = ["check_device", "device_problem", "resolve_device", "synchronize"]


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot run here, worded as `pdeforge._spec.check_fields` words a problem ("expected ...");
    None if it can."""
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

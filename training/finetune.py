"""Fine-tuning, the same for every family: ``run.init_from``'s weights copied where name and shape match
(:func:`init_matching`), parameter groups with their own learning rates and frozen prefixes
(:func:`prefix_parameter_groups`), and the record of both in ``model.json`` (:class:`FineTuneRecord`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["FineTuneRecord", "init_matching", "prefix_parameter_groups"]


def init_matching(model: nn.Module, weights: Mapping[str, torch.Tensor], reinit: tuple[str, ...] = ()) -> dict:
    """Copy the tensors of ``weights`` whose name and shape match ``model``'s; keep the fresh initialisation for the
    others and for names starting with a ``reinit`` prefix. Returns ``{"loaded": n, "reinitialised": [names],
    "unused": [names of weights the model has no tensor for]}``; none matching is a ValueError. (A checkpoint under
    other key names is mapped onto the model's first: the operator family prefixes a pretrained AViT's or DPOT's
    keys with their ``STATE_PREFIX``.)"""
    own = model.state_dict()
    loaded, fresh = 0, []
    for name, value in own.items():
        src = weights.get(name)
        if src is None or name.startswith(tuple(reinit)) or tuple(src.shape) != tuple(value.shape):
            fresh.append(name)
            continue
        own[name] = src.to(value.dtype)
        loaded += 1
    if loaded == 0:
        raise ValueError("no tensor of the checkpoint matches this model by name and shape")
    model.load_state_dict(own)
    return {"loaded": loaded, "reinitialised": fresh, "unused": [k for k in weights if k not in own]}


def prefix_parameter_groups(
    model: nn.Module,
    lr_groups: Mapping[str, float],
    freeze: tuple[str, ...] | list[str] = (),
    where: str = "model",
    named: Mapping[str, tuple[str, ...]] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Fine-tuning's parameter groups by parameter-name prefix: freeze (``requires_grad = False``, left out of every
    group) the parameters whose names start with a ``freeze`` prefix; put each other parameter in the group of the
    first ``lr_groups`` prefix it starts with (its learning rate; e.g. embedding / body / head as Poseidon's three
    groups), the rest in a group ``"rest"`` without a learning rate of its own (``optim.lr``). Returns
    ``(groups, frozen names)``. A key of ``named`` stands for its prefixes wherever a prefix is expected (a family's
    named groups: scOT's ``time_embedding`` is every time-conditioned norm of its body). A prefix matching no
    parameter, or a group left with frozen parameters only, is a ValueError naming ``where`` (``model.freeze``,
    ``model.lr_groups``) and how the names start."""
    names = [n for n, _ in model.named_parameters()]
    named = dict(named or {})

    def starts(name: str, q: str) -> bool:
        return name.startswith(tuple(named.get(q, (q,))))

    def unmatched(prefixes: Any, option: str) -> None:
        empty = [q for q in prefixes if not any(starts(n, q) for n in names)]
        if empty:
            begin = sorted({n.rsplit(".", 2)[0] for n in names})[:12]
            also = f" or a named group {sorted(named)}" if named else ""
            raise ValueError(
                f"{where}.{option}: prefixes {empty} match no parameter; parameter names start like {begin}{also}"
            )

    unmatched(freeze, "freeze")
    unmatched(lr_groups, "lr_groups")
    frozen = [n for n in names if any(starts(n, q) for q in freeze)]
    buckets: dict[str, list[nn.Parameter]] = {q: [] for q in lr_groups}
    rest: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
            continue
        prefix = next((q for q in lr_groups if starts(name, q)), None)
        (buckets[prefix] if prefix is not None else rest).append(p)
    idle = [q for q, ps in buckets.items() if not ps]
    if idle:
        raise ValueError(f"{where}.lr_groups: prefixes {idle} hold frozen parameters only ({where}.freeze)")
    groups = [{"params": ps, "lr": float(lr_groups[q]), "name": q} for q, ps in buckets.items()]
    return groups + ([{"params": rest, "name": "rest"}] if rest else []), frozen


class FineTuneRecord:
    """What ``run.init_from`` loaded and re-initialised, what is frozen and the learning-rate groups: the
    ``finetune`` entry of ``model.json`` (and of the checkpoint's family state), the same for every family."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}

    def load(
        self, model: nn.Module, weights: Mapping[str, torch.Tensor], source: str, reinit: tuple[str, ...] = ()
    ) -> str:
        """:func:`init_matching` of ``weights`` (already under the model's key names) into ``model``, recorded;
        returns the line ``fit`` prints."""
        report = init_matching(model, weights, tuple(reinit))
        fresh = report["reinitialised"]
        self.record.update(
            init_from=str(source),
            loaded=[k for k in model.state_dict() if k not in fresh],
            reinitialised=fresh,
            unused=report["unused"],
        )
        return f"{report['loaded']} tensors loaded, re-initialised {fresh}"

    def groups(
        self,
        model: nn.Module,
        lr_groups: Mapping[str, float],
        freeze: tuple[str, ...] | list[str],
        named: Mapping[str, tuple[str, ...]] | None = None,
    ) -> list[dict[str, Any]]:
        """:func:`prefix_parameter_groups` (``where="model"``), recorded when anything is frozen or grouped."""
        groups, frozen = prefix_parameter_groups(model, lr_groups, freeze, named=named)
        if frozen or lr_groups:
            self.record.update(frozen=frozen, lr_groups={g["name"]: g.get("lr") for g in groups})
        return groups

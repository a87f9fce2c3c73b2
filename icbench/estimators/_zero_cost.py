"""The shared part of the zero-cost proxies: the candidate's network, briefly warm-started.

Every unit starts as exactly the plain convolution (`UnitConv2d`: its gate or slope starts at the
identity), so at initialisation every placement of one basic network computes the *same function*: a
proxy computed there can see parameter counts, never the unit. icbench therefore computes every proxy
after a short warm start: the network is built and initialised as a trial builds it (the repeat's seed),
its units calibrated on a training batch (`unit_init: data`), then trained `WARM_STEPS` SGD steps with the
table's recipe (learning rate ramped up linearly, as a trial's warm-up starts, momentum, weight decay and
the units' learning-rate multiplier; no
augmentation, no WLD: a proxy sees the network, not the training objective, so WLD on and off score alike).
That is enough for the units to leave the identity (their multiplier is 30) at a cost of a fraction of one
epoch, and it is counted in each proxy's cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from icbench.estimators._base import EstimateContext, Scores, TableCandidate
from icbench.recipe import LEGACY_UNIT_RECIPE

#: SGD steps of the warm start and the batch size of it and of every proxy's batch.
WARM_STEPS = 20
BATCH = 64


def build_network(cand: TableCandidate, ctx: EstimateContext, seed: int) -> nn.Module:
    """The candidate's network, initialised with `seed` exactly as a trial initialises it."""
    from icbench.training.candidate import build_candidate

    e = ctx.experiment
    config = {
        "family": e["family"], "size": e.get("size"), "width": e.get("width", 1.0),
        "family_kwargs": e.get("family_kwargs") or {}, "unit": cand.unit, "placement": cand.placement,
        "dataset": e["dataset"], "dataset_kwargs": e.get("dataset_kwargs") or {}, "seed": seed,
    }  # fmt: skip
    model, _, _ = build_candidate(config)
    return model


def _batches(ctx: EstimateContext, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    key = f"batches/{seed}"
    if key not in ctx._cache:
        gen = torch.Generator().manual_seed(10_007 + seed)
        out: list[tuple[torch.Tensor, torch.Tensor]] = []
        while len(out) < WARM_STEPS + 1:  # a small training split is gone through more than once
            out += list(ctx.splits().train.batches(BATCH, shuffle=True, generator=gen, drop_last=True))
        ctx._cache[key] = out[: WARM_STEPS + 1]
    return ctx._cache[key]


def warm_network(cand: TableCandidate, ctx: EstimateContext, repeat: int) -> tuple[nn.Module, torch.Tensor,
                                                                                   torch.Tensor, float]:  # fmt: skip
    """(warm-started network in train mode, a proxy batch x, y, seconds the warm start took).

    The warm state is kept per (placement, repeat) in `ctx`, so the proxies of one run share it; each
    proxy is still charged the warm start's seconds (what it costs a user who runs that proxy alone).
    """
    from icbench.training.candidate import calibration_batch
    from icbench.training.loop import param_groups
    from icbench.units import calibrate_units

    seed = ctx.seed(repeat)
    batches = _batches(ctx, seed)
    cache = ctx._cache.setdefault("warm", {})
    key = (cand.placement, repeat)
    model = build_network(cand, ctx, seed)
    if key in cache:
        state, seconds = cache[key]
        model.load_state_dict(state)
    else:
        t0 = time.perf_counter()
        recipe = {**LEGACY_UNIT_RECIPE, **ctx.experiment}
        if recipe.get("unit_init") == "data":
            calibrate_units(model, calibration_batch(ctx.splits(), seed))
        opt = torch.optim.SGD(
            param_groups(model, float(recipe.get("weight_decay", 0.0)), float(recipe["unit_lr_mult"])),
            lr=float(recipe.get("lr", 0.1)), momentum=float(recipe.get("momentum", 0.9)),
        )  # fmt: skip
        model.train()
        for i, (x, y) in enumerate(batches[:WARM_STEPS]):
            for group in opt.param_groups:  # a linear ramp, as the start of a trial's warm-up
                group["lr"] = float(recipe.get("lr", 0.1)) * group["lr_mult"] * (i + 1) / WARM_STEPS
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        seconds = time.perf_counter() - t0
        cache[key] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, seconds)
    x, y = batches[WARM_STEPS]
    return model, x, y, seconds


def proxy_scores(
    cands: Sequence[TableCandidate],
    ctx: EstimateContext,
    repeat: int,
    proxy: Callable[[nn.Module, torch.Tensor, torch.Tensor], float],
) -> Scores:
    """`proxy` on every candidate's warm-started network; per-candidate seconds = warm start + proxy.

    A proxy sees the network, not WLD: a placement is computed once and its twin with the other WLD
    setting gets the same score at no further cost."""
    values: dict[Any, float] = {}
    by_placement: dict[str, float] = {}
    spent = 0.0
    t_setup = time.perf_counter()
    ctx.splits()
    setup = time.perf_counter() - t_setup
    for c in cands:
        if c.placement not in by_placement:
            model, x, y, warm_s = warm_network(c, ctx, repeat)
            t0 = time.perf_counter()
            by_placement[c.placement] = float(proxy(model, x, y))
            spent += warm_s + time.perf_counter() - t0
        values[c.key] = by_placement[c.placement]
    return Scores(values, setup, spent / max(1, len(cands)))

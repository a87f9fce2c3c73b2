"""`supernet`: a weight-sharing supernet over site masks (one-shot NAS: uniform single-path sampling,
Guo et al. 2019; BN recalibration per candidate).

Per unit, one network holds the unit at every site any candidate of that unit uses; the convolution,
BatchNorm and unit weights are shared by all masks. It is trained once, with the table's recipe and
budget (epochs, batch size, learning-rate schedule, the units' multiplier, augmentation), switching to a
random mask at every step (each site on with probability 1/2: every mask alike). A site switched off runs
its plain convolution (`UnitConv2d.conv`: the same weight, none of the unit's own parameters). A
candidate is scored by switching to its mask, re-estimating the BatchNorm statistics on
`CALIB_BATCHES` training batches, and measuring validation accuracy; the shared weights are restored
after each candidate. WLD is not simulated: a placement with and without WLD scores alike.

Cost: set-up = the supernets' training (one per unit, each about one candidate's training: the report
states the multiple), per candidate = recalibration and one validation pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from icbench.estimators._base import ESTIMATORS, EstimateContext, Estimator, Scores, TableCandidate
from icbench.estimators._zero_cost import build_network
from icbench.recipe import LEGACY_UNIT_RECIPE
from icbench.units import UnitConv2d

#: Training batches the BatchNorm statistics of a candidate are re-estimated on.
CALIB_BATCHES = 10


class Supernet:
    """One unit's supernet: `model` with the unit at `sites` (site index -> module), switchable by mask."""

    def __init__(self, model: nn.Module, sites: dict[int, UnitConv2d]) -> None:
        self.model = model
        self.sites = sites

    @classmethod
    def build(cls, cands: Sequence[TableCandidate], ctx: EstimateContext, seed: int) -> Supernet:
        """The network holding the unit at every site the candidates of one unit use."""
        width = max(len(c.bits) for c in cands)
        used = sorted({i for c in cands for i, b in enumerate(c.bits) if b == "1"})
        full = TableCandidate(f"{cands[0].unit}:" + "".join("1" if i in used else "0" for i in range(width)),
                              False, cands[0].unit, 0.0, 0.0, len(used), {})  # fmt: skip
        model = build_network(full, ctx, seed)
        modules = {name: m for name, m in model.named_modules() if isinstance(m, UnitConv2d)}
        sites: dict[int, UnitConv2d] = {}
        for i in used:  # which module is site i: the one a single-site placement turns into the unit
            one = TableCandidate(f"{cands[0].unit}:" + "".join("1" if j == i else "0" for j in range(width)),
                                 False, cands[0].unit, 0.0, 0.0, 1, {})  # fmt: skip
            names = [n for n, m in build_network(one, ctx, seed).named_modules() if isinstance(m, UnitConv2d)]
            sites[i] = modules[names[0]]
        return cls(model, sites)

    def set_mask(self, bits: str) -> None:
        """Sites whose bit is 1 run the unit; the others their plain convolution."""
        for i, m in self.sites.items():
            on = i < len(bits) and bits[i] == "1"
            if on and "forward" in m.__dict__:
                del m.forward
            elif not on:
                m.forward = m.conv  # type: ignore[method-assign]

    @contextmanager
    def candidate(self, bits: str) -> Iterator[nn.Module]:
        """The model switched to `bits` with its BatchNorm statistics re-estimated; every weight and
        buffer is restored on exit."""
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        try:
            self.set_mask(bits)
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the calibration batches
            yield self.model
        finally:
            for m, mom in zip(bns, momenta, strict=True):
                m.momentum = mom
            self.model.load_state_dict(saved)
            self.set_mask("1" * (max(self.sites, default=0) + 1))


def train_supernet(net: Supernet, ctx: EstimateContext, seed: int) -> float:
    """Train the supernet with the table's recipe and a random mask per step; returns seconds."""
    from icbench.training.loop import lr_at, param_groups

    e = {**LEGACY_UNIT_RECIPE, **ctx.experiment}
    splits = ctx.splits()
    t0 = time.perf_counter()
    if e.get("unit_init") == "data":
        from icbench.training.candidate import calibration_batch
        from icbench.units import calibrate_units

        calibrate_units(net.model, calibration_batch(splits, seed))
    lr, bs, epochs = float(e.get("lr", 0.1)), int(e.get("batch_size", 64)), int(e.get("epochs", 1))
    opt = torch.optim.SGD(
        param_groups(net.model, float(e.get("weight_decay", 0.0)), float(e["unit_lr_mult"])),
        lr=lr, momentum=float(e.get("momentum", 0.9)), nesterov=bool(e.get("nesterov", False)),
    )  # fmt: skip
    steps = len(splits.train) // bs
    total = steps * epochs
    warm = (
        int(e["warmup_epochs"] * steps)
        if e.get("warmup_epochs")
        else int(float(e.get("warmup_fraction") or 0) * total)
    )
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    net.model.train()
    step = 0
    for _ in range(epochs):
        for x, y in splits.train.batches(bs, shuffle=True, augment=splits.info.augment, drop_last=True,
                                         generator=gen):  # fmt: skip
            net.set_mask("".join("1" if b else "0" for b in rng.random(max(net.sites) + 1) < 0.5))
            rate = lr_at(step, total, warm, lr, str(e.get("schedule", "linear")))
            for group in opt.param_groups:
                group["lr"] = rate * group["lr_mult"]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(
                net.model(x), y, label_smoothing=float(e.get("label_smoothing", 0))
            )
            loss.backward()
            opt.step()
            step += 1
    net.set_mask("1" * (max(net.sites) + 1))
    return time.perf_counter() - t0


def score_candidate(net: Supernet, bits: str, ctx: EstimateContext, seed: int) -> float:
    """Validation accuracy of the candidate `bits` in the supernet, BatchNorm recalibrated."""
    from icbench.training.loop import evaluate

    splits = ctx.splits()
    gen = torch.Generator().manual_seed(20_011 + seed)
    with net.candidate(bits) as model:
        model.train()
        with torch.no_grad():
            for i, (x, _) in enumerate(splits.train.batches(int(ctx.experiment.get("batch_size", 64)),
                                                            shuffle=True, generator=gen)):  # fmt: skip
                if i >= CALIB_BATCHES:
                    break
                model(x)
        return evaluate(model, splits.val)


@ESTIMATORS.register("supernet")
class SupernetEstimator(Estimator):
    kind = "proxy"
    describe = (
        "validation accuracy in a weight-sharing supernet per unit (uniform random masks, the table's "
        "budget), BatchNorm recalibrated per candidate"
    )

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        seed = ctx.seed(repeat)
        by_unit: dict[str, list[TableCandidate]] = {}
        for c in cands:
            if "1" in c.bits:
                by_unit.setdefault(c.unit, []).append(c)
        values: dict[tuple[str, bool], float] = {}
        setup, spent = 0.0, 0.0
        nets: dict[str, Supernet] = {}
        for unit, members in sorted(by_unit.items()):
            nets[unit] = Supernet.build(members, ctx, seed)
            setup += train_supernet(nets[unit], ctx, seed)
        by_placement: dict[str, float] = {}  # WLD is not simulated: a placement's twin is not scored again
        for c in cands:
            t0 = time.perf_counter()
            if c.placement in by_placement:
                values[c.key] = by_placement[c.placement]
                continue
            if "1" in c.bits:
                values[c.key] = score_candidate(nets[c.unit], c.bits, ctx, seed)
            elif nets:  # the basic network: every site off, in the first unit's supernet
                values[c.key] = score_candidate(next(iter(nets.values())), "0" * len(c.bits), ctx, seed)
            else:
                values[c.key] = float("nan")
            by_placement[c.placement] = values[c.key]
            spent += time.perf_counter() - t0
        return Scores(values, setup, spent / max(1, len(cands)))

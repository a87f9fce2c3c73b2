"""Sites, placement strategies, canonical strings, `apply` and `load_basic_weights` (DESIGN.md §5).

A *site* is an `nn.Conv2d` of the model, named by its module path (`layer2.0.conv1`); the sites are
listed in forward order (recorded by forward hooks during one pass on meta tensors). Site names and
their order are a frozen API: studies and reports depend on them. Each family documents how its sites
group into stages and blocks and which are eligible by default (`icbench.families`); `sites()` can
override eligibility.

A *placement* is a unit name and one bit per site (all sites, in order). Its canonical string is
`"<unit>:<bits>"`, e.g. `"ic:0110110"`, and `Placement.parse` reads it back. Strategies (registry
`STRATEGIES`) turn a site list and a few arguments into a placement; none of them touches a
non-eligible site, except an explicit `mask(..., by="all")` over every site.
"""

from __future__ import annotations

import fnmatch
import inspect
import random as _random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from icbench.checkpoints import check_state_dict, read_state_dict
from icbench.cost import count_macs
from icbench.errors import CheckpointError, ConfigError, UnknownNameError
from icbench.families import FAMILIES, GENERIC, Family
from icbench.families._base import block_key
from icbench.registry import Registry
from icbench.units import UNITS, UnitConv2d, make_unit, unit_name

DEFAULT_INPUT_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class Site:
    """One convolution of a model where a unit can go.

    Attributes:
        index: position in forward order (0-based).
        name: module path, e.g. "layer2.0.conv1" (frozen API).
        stage: the family's stage (see the family's docstring; 0 is usually the stem).
        block: block index over the whole network, 0-based in forward order.
        kernel_size, stride: (height, width).
        in_channels, out_channels, groups: the convolution's.
        macs: multiply-accumulates of the convolution per image (bias additions not included).
        macs_share: `macs` / the whole model's MACs (as counted by `icbench.cost.count_macs`).
        eligible: whether strategies may place a unit here.
    """

    index: int
    name: str
    stage: int
    block: int
    kernel_size: tuple[int, int]
    in_channels: int
    out_channels: int
    stride: tuple[int, int]
    groups: int
    macs: int
    macs_share: float
    eligible: bool


# ---------------------------------------------------------------------------------------------------
# Sites
# ---------------------------------------------------------------------------------------------------
def _family_of(model: nn.Module, family: str | None) -> Family:
    if family is not None:
        return FAMILIES.get(family)
    spec = getattr(model, "icbench_spec", None)
    return FAMILIES.get(spec.family) if spec is not None else GENERIC


def _input_shape_of(model: nn.Module, input_shape: Sequence[int] | None) -> tuple[int, int, int]:
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)  # type: ignore[return-value]
    spec = getattr(model, "icbench_spec", None)
    return spec.input_shape if spec is not None else DEFAULT_INPUT_SHAPE


def _match_names(patterns: Iterable[str], names: Sequence[str]) -> set[str]:
    """Site names matched by exact names or fnmatch patterns; a pattern matching nothing is an error."""
    if isinstance(patterns, str):
        patterns = [patterns]
    matched: set[str] = set()
    for pattern in patterns:
        is_pattern = any(ch in pattern for ch in "*?[")
        hits = fnmatch.filter(names, pattern) if is_pattern else [n for n in names if n == pattern]
        if not hits:
            raise UnknownNameError("site", pattern, names)
        matched.update(hits)
    return matched


def sites(
    model: nn.Module,
    input_shape: tuple[int, int, int] | None = None,
    family: str | None = None,
    *,
    eligible: Iterable[str] | Callable[[Site], bool] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> list[Site]:
    """The model's convolution sites in forward order, with metadata and eligibility.

    Every `nn.Conv2d` (units included) called in one forward pass is a site; a convolution called
    several times is listed once, at its first call, with the MACs of all calls. Convolutions never
    called are not sites.

    Args:
        model: the network (not modified; its modes are restored).
        input_shape: (C, H, W) of one input; default: the shape the model was built for
            (`model.icbench_spec`), else (3, 32, 32).
        family: whose stage/eligibility rules to use; default: the family the model was built by,
            else the shared rules.
        eligible: replaces the default eligibility: the eligible site names (or fnmatch patterns), or
            a predicate on the `Site` (which then holds the default eligibility).
        include: site names or patterns made eligible (after `eligible`).
        exclude: site names or patterns made ineligible (last).

    Returns:
        The sites, index 0 first.

    Raises:
        UnknownNameError: unknown family, or a site name/pattern that matches no site (the message
            lists the sites).
        CostError: the model cannot run on `input_shape`.
    """
    fam = _family_of(model, family)
    shape = _input_shape_of(model, input_shape)
    name_of = {id(m): n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    calls: dict[str, dict[str, Any]] = {}

    def reset(*_: Any) -> None:  # a pass started (a failed meta pass may be retried on real tensors)
        calls.clear()

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        name = name_of[id(module)]
        out_shape = tuple(output.shape)
        macs = (
            int(torch.Size(out_shape[1:]).numel())
            * (module.in_channels // module.groups)
            * module.kernel_size[0]
            * module.kernel_size[1]
        )
        entry = calls.setdefault(name, {"module": module, "out_hw": tuple(out_shape[2:4]), "macs": 0})
        entry["macs"] += macs

    handles = [model.register_forward_pre_hook(reset)]
    handles += [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        total_macs = count_macs(model, shape)
    finally:
        for handle in handles:
            handle.remove()

    names = list(calls)
    convs = [calls[n]["module"] for n in names]
    keys = [block_key(n) for n in names]
    blocks = [0] * len(names)
    for i in range(1, len(names)):
        blocks[i] = blocks[i - 1] + (keys[i] != keys[i - 1])
    stages = fam.site_stages(model, names, blocks, [calls[n]["out_hw"] for n in names])

    site_list = [
        Site(
            index=i,
            name=name,
            stage=int(stages[i]),
            block=blocks[i],
            kernel_size=tuple(conv.kernel_size),
            in_channels=conv.in_channels,
            out_channels=conv.out_channels,
            stride=tuple(conv.stride),
            groups=conv.groups,
            macs=calls[name]["macs"],
            macs_share=calls[name]["macs"] / total_macs if total_macs else 0.0,
            eligible=fam.default_eligible(i, name, conv),
        )
        for i, (name, conv) in enumerate(zip(names, convs, strict=True))
    ]
    return _override_eligibility(site_list, eligible, include, exclude)


def _override_eligibility(
    site_list: list[Site],
    eligible: Iterable[str] | Callable[[Site], bool] | None,
    include: Iterable[str] | None,
    exclude: Iterable[str] | None,
) -> list[Site]:
    names = [s.name for s in site_list]
    flags = [s.eligible for s in site_list]
    if callable(eligible):
        flags = [bool(eligible(s)) for s in site_list]
    elif eligible is not None:
        chosen = _match_names(eligible, names)
        flags = [n in chosen for n in names]
    if include is not None:
        chosen = _match_names(include, names)
        flags = [f or n in chosen for f, n in zip(flags, names, strict=True)]
    if exclude is not None:
        chosen = _match_names(exclude, names)
        flags = [f and n not in chosen for f, n in zip(flags, names, strict=True)]
    return [replace(s, eligible=f) for s, f in zip(site_list, flags, strict=True)]


def eligible_blocks(site_list: Sequence[Site]) -> list[list[Site]]:
    """The blocks holding at least one eligible site, in order, each as its eligible sites.

    This is what block-level strategies (`first_k`, `last_k`, `every_other`, `mask(by="block")`) count.
    """
    groups: dict[int, list[Site]] = {}
    for site in site_list:
        if site.eligible:
            groups.setdefault(site.block, []).append(site)
    return list(groups.values())


# ---------------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """A unit and one bit per site (all sites, in forward order): which sites get the unit."""

    unit: str
    mask: tuple[bool, ...]

    @property
    def canonical(self) -> str:
        """`"<unit>:<bits>"`, e.g. `"ic:0110"`: equal placements have equal strings."""
        return f"{self.unit}:{''.join('1' if b else '0' for b in self.mask)}"

    @property
    def n_sites(self) -> int:
        return len(self.mask)

    @property
    def n_units(self) -> int:
        """Number of sites that get the unit."""
        return sum(self.mask)

    @property
    def is_basic(self) -> bool:
        """True if the placed network is the basic one (no site set, or the unit is `conv`)."""
        return self.n_units == 0 or self.unit == "conv"

    def site_names(self, site_list: Sequence[Site]) -> list[str]:
        """Names of the sites that get the unit."""
        _check_length(self.mask, site_list, [s.name for s in site_list], "placement mask (all sites)")
        return [s.name for s, bit in zip(site_list, self.mask, strict=True) if bit]

    @classmethod
    def parse(cls, text: str) -> Placement:
        """Read a canonical string `"<unit>:<bits>"` back.

        Raises:
            ConfigError: not of that form.
            UnknownNameError: unknown unit (the message lists the units).
        """
        if not isinstance(text, str) or text.count(":") != 1:
            raise ConfigError(f"placement {text!r} is not of the form '<unit>:<bits>', e.g. 'ic:0110'")
        unit, bits = text.split(":")
        UNITS.get(unit)
        return cls(unit, _parse_bits(bits, f"placement {text!r}"))

    def __str__(self) -> str:
        return self.canonical


def _parse_bits(bits: str | Sequence[bool | int], what: str) -> tuple[bool, ...]:
    if isinstance(bits, str):
        if set(bits) - {"0", "1"}:
            raise ConfigError(f"{what}: a mask string holds only '0' and '1', got {bits!r}")
        return tuple(ch == "1" for ch in bits)
    try:
        values = list(bits)
    except TypeError:
        raise ConfigError(f"{what}: a mask is a string of 0/1 or a list of booleans, got {bits!r}") from None
    if not all(isinstance(v, (bool, int)) and int(v) in (0, 1) for v in values):
        raise ConfigError(f"{what}: a mask holds only booleans or 0/1, got {bits!r}")
    return tuple(bool(v) for v in values)


def _check_length(
    mask: Sequence[bool], expected_items: Sequence[Any], labels: Sequence[str], what: str
) -> None:
    if len(mask) != len(expected_items):
        raise ConfigError(
            f"{what} has {len(mask)} entries, expected {len(expected_items)}: one per " + ", ".join(labels)
        )


# ---------------------------------------------------------------------------------------------------
# Strategies: (site_list, **arguments) -> one bit per site
# ---------------------------------------------------------------------------------------------------
Strategy = Callable[..., list[bool]]
STRATEGIES: Registry[Strategy] = Registry("strategy")


def _select(site_list: Sequence[Site], chosen: Iterable[Site]) -> list[bool]:
    names = {s.name for s in chosen}
    return [s.name in names for s in site_list]


def _check_k(k: int, n_blocks: int, strategy: str) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n_blocks:
        raise ConfigError(
            f"strategy {strategy!r}: k must be an integer in 0..{n_blocks} (eligible blocks), got {k!r}"
        )


@STRATEGIES.register("none")
def strategy_none(site_list: Sequence[Site]) -> list[bool]:
    """No unit anywhere: the basic network."""
    return [False] * len(site_list)


@STRATEGIES.register("all")
def strategy_all(site_list: Sequence[Site]) -> list[bool]:
    """Every eligible site."""
    return [s.eligible for s in site_list]


@STRATEGIES.register("stages")
def strategy_stages(site_list: Sequence[Site], stages: int | str | Sequence[int]) -> list[bool]:
    """Every eligible site in the given stages (the family's stage numbers, see `Site.stage`).

    `stages` is a stage number, a list of them, or a comma-separated string ("3,4"): the form a search
    space uses, since Optuna stores only scalar categorical choices.
    """
    if isinstance(stages, str):
        try:
            stages = [int(part) for part in stages.split(",")]
        except ValueError:
            raise ConfigError(
                f"strategy 'stages': {stages!r} is not a comma-separated list of stage numbers",
                field="stages",
            ) from None
    wanted = [stages] if isinstance(stages, int) else list(stages)
    available = sorted({s.stage for s in site_list if s.eligible})
    unknown = [st for st in wanted if st not in available]
    if unknown:
        raise ConfigError(
            f"strategy 'stages': no eligible site in stage(s) {unknown}; "
            f"stages with eligible sites: {available}",
            field="stages",
        )
    return [s.eligible and s.stage in wanted for s in site_list]


@STRATEGIES.register("first_k")
def strategy_first_k(site_list: Sequence[Site], k: int) -> list[bool]:
    """The eligible sites of the first `k` blocks that have any (see `eligible_blocks`)."""
    blocks = eligible_blocks(site_list)
    _check_k(k, len(blocks), "first_k")
    return _select(site_list, (s for block in blocks[:k] for s in block))


@STRATEGIES.register("last_k")
def strategy_last_k(site_list: Sequence[Site], k: int) -> list[bool]:
    """The eligible sites of the last `k` blocks that have any (see `eligible_blocks`)."""
    blocks = eligible_blocks(site_list)
    _check_k(k, len(blocks), "last_k")
    return _select(site_list, (s for block in blocks[len(blocks) - k :] for s in block))


@STRATEGIES.register("every_other")
def strategy_every_other(site_list: Sequence[Site], offset: int = 0) -> list[bool]:
    """The eligible sites of every other eligible block: blocks offset, offset + 2, ... (offset 0 or 1)."""
    if offset not in (0, 1):
        raise ConfigError(f"strategy 'every_other': offset must be 0 or 1, got {offset!r}", field="offset")
    blocks = eligible_blocks(site_list)
    return _select(site_list, (s for block in blocks[offset::2] for s in block))


@STRATEGIES.register("kernel")
def strategy_kernel(site_list: Sequence[Site], kernel: int) -> list[bool]:
    """Every eligible site with a square `kernel`×`kernel` convolution (e.g. 3 or 1)."""
    available = sorted(
        {s.kernel_size[0] for s in site_list if s.eligible and s.kernel_size[0] == s.kernel_size[1]}
    )
    if kernel not in available:
        raise ConfigError(
            f"strategy 'kernel': no eligible {kernel!r}x{kernel!r} site; "
            f"eligible square kernels: {available}",
            field="kernel",
        )
    return [s.eligible and s.kernel_size == (kernel, kernel) for s in site_list]


@STRATEGIES.register("random")
def strategy_random(site_list: Sequence[Site], p: float, seed: int = 0) -> list[bool]:
    """Each eligible site independently with probability `p` (reproducible from `seed`)."""
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"strategy 'random': p must be a probability in [0, 1], got {p!r}", field="p")
    rng = _random.Random(seed)
    # One draw per site (eligible or not), so a site's draw does not depend on others' eligibility.
    return [rng.random() < p and s.eligible for s in site_list]


@STRATEGIES.register("mask")
def strategy_mask(
    site_list: Sequence[Site], mask: str | Sequence[bool | int], by: str = "site"
) -> list[bool]:
    """An explicit mask: a string of 0/1 or a list of booleans.

    `by="site"` (default): one entry per *eligible* site, in order. `by="block"`: one entry per
    eligible block (see `eligible_blocks`; the searchable form, one boolean per block), setting all
    the block's eligible sites. `by="all"`: one entry per site, eligible or not (the canonical
    bitmask; the only way to place a unit at a non-eligible site).
    """
    bits = _parse_bits(mask, "strategy 'mask'")
    if by == "site":
        chosen = [s for s in site_list if s.eligible]
        _check_length(bits, chosen, [s.name for s in chosen], "mask (by='site', eligible sites)")
        return _select(site_list, (s for s, bit in zip(chosen, bits, strict=True) if bit))
    if by == "block":
        blocks = eligible_blocks(site_list)
        labels = ["[" + " ".join(s.name for s in block) + "]" for block in blocks]
        _check_length(bits, blocks, labels, "mask (by='block', eligible blocks)")
        return _select(site_list, (s for block, bit in zip(blocks, bits, strict=True) if bit for s in block))
    if by == "all":
        _check_length(bits, site_list, [s.name for s in site_list], "mask (by='all', all sites)")
        return list(bits)
    raise UnknownNameError("mask level", by, ["site", "block", "all"])


def make_placement(site_list: Sequence[Site], strategy: str, unit: str = "ic", **args: Any) -> Placement:
    """Place `unit` by a named strategy.

    Args:
        site_list: from `sites(model)`.
        strategy: a key of `STRATEGIES`: none, all, stages (stages=[...]), first_k / last_k (k=...),
            every_other (offset=0), kernel (kernel=3 or 1), random (p=..., seed=0), mask (mask=...,
            by="site" | "block" | "all").
        unit: a key of `icbench.units.UNITS`.
        **args: the strategy's arguments.

    Returns:
        The placement (one bit per site of `site_list`).

    Raises:
        UnknownNameError: unknown strategy or unit (the message lists the valid ones).
        ConfigError: missing, unknown or invalid strategy arguments; a mask of the wrong length (the
            message gives the expected length and the sites).
    """
    fn = STRATEGIES.get(strategy)
    UNITS.get(unit)
    params = list(inspect.signature(fn).parameters.values())[1:]
    accepted = [p.name for p in params]
    unknown = sorted(set(args) - set(accepted))
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in args]
    if unknown or missing:
        problem = f"unknown argument(s) {unknown}" if unknown else f"missing argument(s) {missing}"
        raise ConfigError(
            f"strategy {strategy!r}: {problem}; it takes {accepted or 'no arguments'}", field="strategy"
        )
    return Placement(unit, tuple(bool(b) for b in fn(list(site_list), **args)))


# ---------------------------------------------------------------------------------------------------
# Applying placements and loading basic weights
# ---------------------------------------------------------------------------------------------------
def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def apply(model: nn.Module, placement: Placement, site_list: Sequence[Site] | None = None) -> nn.Module:
    """Replace the convolutions at the placement's sites by its unit, in place, keeping their weights.

    The replaced modules keep their module paths, so the state-dict keys of the convolution weights
    are unchanged (the unit adds keys of its own). Sites outside the placement are left as they are:
    apply a placement to a basic network. A site that already holds the unit is left alone.

    Args:
        model: the network (modified in place).
        placement: which unit at which sites.
        site_list: `sites(model)` if already computed (it is computed otherwise).

    Returns:
        `model`.

    Raises:
        ConfigError: the placement's length differs from the number of sites (the message lists them).
    """
    site_list = sites(model) if site_list is None else site_list
    names = [s.name for s in site_list]
    _check_length(placement.mask, site_list, names, f"placement {placement.canonical!r}")
    UNITS.get(placement.unit)
    for site, bit in zip(site_list, placement.mask, strict=True):
        if not bit:
            continue
        try:
            conv = model.get_submodule(site.name)
        except AttributeError:
            raise UnknownNameError("site", site.name, [n for n, _ in model.named_modules()]) from None
        if not isinstance(conv, nn.Conv2d):
            raise ConfigError(f"site {site.name!r} is a {type(conv).__name__}, not an nn.Conv2d")
        if unit_name(conv) != placement.unit:
            _set_submodule(model, site.name, make_unit(placement.unit, conv))
    return model


def unit_keys(model: nn.Module) -> set[str]:
    """State-dict keys that belong to the units themselves (everything of a unit but weight and bias)."""
    keys: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, UnitConv2d):
            prefix = f"{name}." if name else ""
            keys.update(prefix + k for k in module.state_dict() if k not in ("weight", "bias"))
    return keys


def load_basic_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor] | str | Path) -> nn.Module:
    """Load a basic network's weights into a placement of the same family and size.

    Every key of the model except the units' own parameters must be in `state_dict` with the same
    shape, and nothing else may be (strict). The units' own parameters are not touched: fresh from
    `apply` they are at their identity values, so the model then computes the basic network's logits.

    Args:
        model: a network with units placed (modified in place).
        state_dict: the basic network's state dict, or a local file holding one.

    Returns:
        `model`.

    Raises:
        CheckpointError: unreadable file, or missing / unexpected / mis-shaped keys (named).
    """
    source = ""
    if isinstance(state_dict, (str, Path)):
        source = str(state_dict)
        state_dict = read_state_dict(state_dict)
    own = unit_keys(model)
    check_state_dict(model, state_dict, ignore=own, source=source or "the basic state dict")
    result = model.load_state_dict(dict(state_dict), strict=False)
    if set(result.missing_keys) != own or result.unexpected_keys:  # pragma: no cover - checked above
        raise CheckpointError(f"unexpected load result: {result}")
    return model


# ---------------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------------
def format_site_table(site_list: Sequence[Site], placement: Placement | None = None) -> str:
    """A Markdown table of the sites (and, given a placement, the unit at each site).

    Columns: index, site, stage, block, kernel, in->out channels, stride, groups, MMac (per image),
    share of the model's MACs (%), eligible, and unit.
    """
    if placement is not None:
        _check_length(
            placement.mask, site_list, [s.name for s in site_list], f"placement {placement.canonical!r}"
        )
    header = [
        "#",
        "site",
        "stage",
        "block",
        "kernel",
        "in->out",
        "stride",
        "groups",
        "MMac",
        "share %",
        "eligible",
    ]
    if placement is not None:
        header.append("unit")
    rows = []
    for i, s in enumerate(site_list):
        row = [
            str(s.index),
            s.name,
            str(s.stage),
            str(s.block),
            f"{s.kernel_size[0]}x{s.kernel_size[1]}",
            f"{s.in_channels}->{s.out_channels}",
            f"{s.stride[0]}" if s.stride[0] == s.stride[1] else f"{s.stride[0]}x{s.stride[1]}",
            str(s.groups),
            f"{s.macs / 1e6:.3f}",
            f"{100 * s.macs_share:.2f}",
            "yes" if s.eligible else "no",
        ]
        if placement is not None:
            row.append(placement.unit if placement.mask[i] else "conv")
        rows.append(row)
    widths = [max(len(h), *(len(r[c]) for r in rows)) if rows else len(h) for c, h in enumerate(header)]
    numeric = {0, 2, 3, 7, 8, 9}

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if j in numeric else c.ljust(w)
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if j in numeric else "-" * (w + 2) for j, w in enumerate(widths))
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


__all__ = [
    "STRATEGIES",
    "Placement",
    "Site",
    "apply",
    "eligible_blocks",
    "format_site_table",
    "load_basic_weights",
    "make_placement",
    "sites",
    "unit_keys",
]

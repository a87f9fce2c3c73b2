"""Sites, strategies, canonical strings, apply and load_basic_weights, on every tiny family and unit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from icbench.errors import CheckpointError, ConfigError, UnknownNameError
from icbench.families import FAMILIES, build_model, tiny_size
from icbench.placement import (
    STRATEGIES,
    Placement,
    Site,
    apply,
    eligible_blocks,
    format_site_table,
    load_basic_weights,
    make_placement,
    sites,
    unit_keys,
)
from icbench.units import UNITS, unit_name

FAMILY_NAMES = FAMILIES.keys()
UNIT_NAMES = [u for u in UNITS if u != "conv"]


def tiny(family: str, **kwargs) -> nn.Module:
    return build_model(family, tiny_size(family), **kwargs)


def _alternating(n: int) -> str:
    return "".join("10"[i % 2] for i in range(n))


def expected_sites(site_list: list[Site], strategy: str, args: dict) -> set[str]:
    """What each strategy should select, computed from the site metadata directly."""
    eligible = [s for s in site_list if s.eligible]
    block_ids = sorted({s.block for s in eligible})
    if strategy == "none":
        return set()
    if strategy == "all":
        return {s.name for s in eligible}
    if strategy == "stages":
        return {s.name for s in eligible if s.stage in args["stages"]}
    if strategy == "first_k":
        return {s.name for s in eligible if s.block in block_ids[: args["k"]]}
    if strategy == "last_k":
        return {s.name for s in eligible if s.block in block_ids[-args["k"] :]}
    if strategy == "every_other":
        return {s.name for s in eligible if s.block in block_ids[args.get("offset", 0) :: 2]}
    if strategy == "kernel":
        return {s.name for s in eligible if s.kernel_size == (args["kernel"],) * 2}
    if strategy == "mask":
        bits = [c == "1" for c in args["mask"]]
        by = args.get("by", "site")
        if by == "site":
            return {s.name for s, b in zip(eligible, bits, strict=True) if b}
        if by == "block":
            return {s.name for s in eligible if bits[block_ids.index(s.block)]}
        return {s.name for s, b in zip(site_list, bits, strict=True) if b}
    raise AssertionError(strategy)


def strategy_cases(site_list: list[Site]) -> list[tuple[str, dict]]:
    eligible = [s for s in site_list if s.eligible]
    n_blocks = len({s.block for s in eligible})
    stages = sorted({s.stage for s in eligible})
    kernels = sorted({s.kernel_size[0] for s in eligible if s.kernel_size[0] == s.kernel_size[1]})
    return [
        ("none", {}),
        ("all", {}),
        ("stages", {"stages": stages[-1:]}),
        ("stages", {"stages": stages[:2]}),
        ("first_k", {"k": 1}),
        ("first_k", {"k": n_blocks}),
        ("last_k", {"k": 2}),
        ("every_other", {}),
        ("every_other", {"offset": 1}),
        *[("kernel", {"kernel": k}) for k in kernels],
        ("mask", {"mask": _alternating(len(eligible))}),
        ("mask", {"mask": _alternating(n_blocks), "by": "block"}),
        ("mask", {"mask": "1" + "0" * (len(site_list) - 1), "by": "all"}),
    ]


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family_sites(request):
    model = tiny(request.param)
    return request.param, model, sites(model)


def test_every_strategy_is_tested():
    assert set(STRATEGIES.keys()) == {
        "none",
        "all",
        "stages",
        "first_k",
        "last_k",
        "every_other",
        "kernel",
        "random",
        "mask",
    }


def test_strategies_replace_exactly_the_named_sites(family_sites):
    family, basic, site_list = family_sites
    for strategy, args in strategy_cases(site_list):
        placement = make_placement(site_list, strategy, "ic", **args)
        want = expected_sites(site_list, strategy, args)
        assert set(placement.site_names(site_list)) == want, (family, strategy, args)
        model = apply(copy.deepcopy(basic), placement, site_list)
        got = {s.name: unit_name(model.get_submodule(s.name)) for s in site_list}
        assert got == {s.name: ("ic" if s.name in want else "conv") for s in site_list}, (strategy, args)
        # Strategies other than an explicit mask over all sites never touch non-eligible sites.
        if args.get("by") != "all":
            assert all(s.eligible for s in site_list if s.name in want)
        assert Placement.parse(placement.canonical) == placement


def test_random_strategy(family_sites):
    _, _, site_list = family_sites
    a = make_placement(site_list, "random", p=0.5, seed=3)
    assert a == make_placement(site_list, "random", p=0.5, seed=3)
    assert set(a.site_names(site_list)) <= {s.name for s in site_list if s.eligible}
    assert make_placement(site_list, "random", p=0.0).n_units == 0
    assert make_placement(site_list, "random", p=1.0) == make_placement(site_list, "all")
    draws = {make_placement(site_list, "random", p=0.5, seed=s).canonical for s in range(8)}
    assert len(draws) > 1


@pytest.mark.parametrize("unit", UNIT_NAMES)
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_ic_network_computes_the_basic_logits(family, unit):
    torch.manual_seed(0)
    basic = tiny(family)
    # Train briefly-like perturbation of BN statistics and affine parameters, so they matter.
    with torch.no_grad():
        for m in basic.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    basic.eval()
    torch.manual_seed(1)
    placed = tiny(family)  # different random init: everything must come from the basic weights
    site_list = sites(placed)
    apply(placed, make_placement(site_list, "all", unit), site_list)
    conv_keys = [f"{s.name}.weight" for s in site_list]
    assert set(conv_keys) <= set(placed.state_dict())
    load_basic_weights(placed, basic.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(placed.eval()(x), basic(x), rtol=1e-5, atol=1e-5)
    assert sum(unit_name(placed.get_submodule(s.name)) == unit for s in site_list) == sum(
        s.eligible for s in site_list
    )


def test_apply_keeps_weights_and_keys():
    basic = tiny("resnet_cifar")
    placed = copy.deepcopy(basic)
    site_list = sites(placed)
    apply(placed, make_placement(site_list, "all", "ic_dual"), site_list)
    before, after = basic.state_dict(), placed.state_dict()
    assert set(before) <= set(after)
    for key, value in before.items():
        assert torch.equal(after[key], value)
    assert set(after) - set(before) == unit_keys(placed)
    assert all(k.endswith(("ic_r", "ic_theta_in")) for k in unit_keys(placed))


def test_none_gives_the_basic_model():
    basic = tiny("resnet")
    placed = copy.deepcopy(basic)
    apply(placed, make_placement(sites(placed), "none", "ic"))
    assert [type(m) for m in placed.modules()] == [type(m) for m in basic.modules()]
    assert placed.state_dict().keys() == basic.state_dict().keys()
    for key, value in basic.state_dict().items():
        assert torch.equal(placed.state_dict()[key], value)
    assert make_placement(sites(placed), "none").is_basic


def test_load_basic_weights_errors(tmp_path):
    basic = tiny("resnet_cifar")
    placed = tiny("resnet_cifar")
    apply(placed, make_placement(sites(placed), "all", "ic"))
    state = basic.state_dict()
    missing = {k: v for k, v in state.items() if k != "layer1.0.bn1.running_mean"}
    with pytest.raises(CheckpointError, match=r"missing keys: layer1\.0\.bn1\.running_mean"):
        load_basic_weights(placed, missing)
    with pytest.raises(CheckpointError, match="unexpected keys: extra.weight"):
        load_basic_weights(placed, {**state, "extra.weight": torch.zeros(1)})
    other = build_model("resnet_cifar", "resnet8", num_classes=3).state_dict()
    with pytest.raises(CheckpointError, match=r"shape mismatch.*fc\.weight"):
        load_basic_weights(placed, other)
    torch.save(state, tmp_path / "basic.pt")
    load_basic_weights(placed, tmp_path / "basic.pt")
    with pytest.raises(CheckpointError, match="nothing.pt does not exist"):
        load_basic_weights(placed, tmp_path / "nothing.pt")


def test_canonical_strings():
    p = Placement("ic", (False, True, True, False))
    assert p.canonical == "ic:0110" == str(p)
    assert Placement.parse("ic:0110") == p
    assert Placement.parse("se:") == Placement("se", ())
    assert p.n_units == 2 and not p.is_basic
    assert Placement("conv", (True,)).is_basic
    with pytest.raises(ConfigError, match="'<unit>:<bits>'"):
        Placement.parse("ic0110")
    with pytest.raises(ConfigError, match="only '0' and '1'"):
        Placement.parse("ic:01x0")
    with pytest.raises(UnknownNameError, match="ic_dual"):
        Placement.parse("icc:0110")


def test_bad_strategy_input_lists_choices():
    site_list = sites(tiny("resnet_cifar"))
    with pytest.raises(UnknownNameError, match="every_other") as info:
        make_placement(site_list, "evry_other")
    assert "did you mean 'every_other'" in str(info.value)
    with pytest.raises(UnknownNameError, match="ic_dual"):
        make_placement(site_list, "all", unit="ic_duel")
    with pytest.raises(ConfigError, match=r"missing argument\(s\) \['k'\]"):
        make_placement(site_list, "first_k")
    with pytest.raises(ConfigError, match=r"unknown argument\(s\) \['kk'\]; it takes \['k'\]"):
        make_placement(site_list, "first_k", k=1, kk=2)
    with pytest.raises(ConfigError, match=r"0\.\.3"):
        make_placement(site_list, "first_k", k=4)
    with pytest.raises(ConfigError, match=r"stages with eligible sites: \[1, 2, 3\]"):
        make_placement(site_list, "stages", stages=[0])
    with pytest.raises(ConfigError, match=r"eligible square kernels: \[3\]"):
        make_placement(site_list, "kernel", kernel=1)
    with pytest.raises(ConfigError, match="probability"):
        make_placement(site_list, "random", p=1.5)
    with pytest.raises(UnknownNameError, match="block"):
        make_placement(site_list, "mask", mask="1", by="stage")


def test_mask_of_wrong_length_names_the_sites():
    site_list = sites(tiny("resnet_cifar"))  # resnet8: 7 sites, 6 eligible, 3 eligible blocks
    with pytest.raises(ConfigError, match="has 5 entries, expected 6") as info:
        make_placement(site_list, "mask", mask="10101")
    assert "layer1.0.conv1" in str(info.value) and "layer3.0.conv2" in str(info.value)
    with pytest.raises(ConfigError, match=r"expected 3.*\[layer1\.0\.conv1 layer1\.0\.conv2\]"):
        make_placement(site_list, "mask", mask=[True, False], by="block")
    with pytest.raises(ConfigError, match="expected 7"):
        make_placement(site_list, "mask", mask="1", by="all")
    with pytest.raises(ConfigError, match="only booleans"):
        make_placement(site_list, "mask", mask=[2, 0, 0, 0, 0, 0])
    placement = make_placement(site_list, "mask", mask=[True, False, 1, 0, 0, 1])
    assert placement.canonical == "ic:0101001"
    with pytest.raises(ConfigError, match="expected 7"):
        apply(tiny("resnet_cifar"), Placement("ic", (True,) * 5))


def test_eligibility_overrides():
    model = build_model("resnet_cifar", "resnet8", shortcut="B")
    default = sites(model)
    assert [s.name for s in default if not s.eligible] == [
        "conv1",
        "layer2.0.shortcut.0",
        "layer3.0.shortcut.0",
    ]
    with_stem = sites(model, include=["conv1"])
    assert (
        with_stem[0].eligible and sum(s.eligible for s in with_stem) == sum(s.eligible for s in default) + 1
    )
    no_layer3 = sites(model, exclude=["layer3.*"])
    assert not any(s.eligible for s in no_layer3 if s.name.startswith("layer3"))
    only = sites(model, eligible=["layer1.0.conv1", "*.shortcut.0"])
    assert [s.name for s in only if s.eligible] == [
        "layer1.0.conv1",
        "layer2.0.shortcut.0",
        "layer3.0.shortcut.0",
    ]
    three_by_three = sites(model, eligible=lambda s: s.kernel_size == (3, 3))
    assert sum(s.eligible for s in three_by_three) == 7
    with pytest.raises(UnknownNameError, match="layer1.0.conv1") as info:
        sites(model, include=["layer1.0.conv9"])
    assert "did you mean 'layer1.0.conv" in str(info.value) and "known sites: conv1, " in str(info.value)
    with pytest.raises(UnknownNameError):
        sites(model, exclude=["nothing*"])
    with pytest.raises(UnknownNameError, match="resnet_cifar"):
        sites(model, family="resnet_cifa")


def test_site_metadata_and_shares():
    model = build_model("resnet_cifar", "resnet20")
    site_list = sites(model)
    assert [s.index for s in site_list] == list(range(19))
    s = site_list[7]
    assert (s.name, s.stage, s.block, s.kernel_size, s.in_channels, s.out_channels, s.stride, s.groups) == (
        "layer2.0.conv1",
        2,
        4,
        (3, 3),
        16,
        32,
        (2, 2),
        1,
    )
    assert s.macs == 16 * 16 * 32 * 16 * 9
    # Convolutions are all but the linear head's MACs (650 = 64 × 10 + 10 bias).
    assert sum(x.macs_share for x in site_list) == pytest.approx(1 - 650 / 40_551_050, abs=1e-9)
    assert len(eligible_blocks(site_list)) == 9


def test_sites_follow_forward_order_not_module_order():
    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Conv2d(4, 4, 3, padding=1)
            self.a = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return self.b(self.a(x))

    model = Reversed()
    assert [s.name for s in sites(model, (3, 8, 8))] == ["a", "b"]
    placed = apply(model, Placement("ic", (False, True)), sites(model, (3, 8, 8)))
    assert unit_name(placed.b) == "ic" and unit_name(placed.a) == "conv"


def test_format_site_table():
    model = build_model("resnet_cifar", "resnet8")
    site_list = sites(model)
    table = format_site_table(site_list, make_placement(site_list, "last_k", "ic_dual", k=1))
    lines = table.splitlines()
    assert len(lines) == 2 + len(site_list)
    assert "MMac" in lines[0] and "share %" in lines[0] and "unit" in lines[0]
    assert "| layer3.0.conv2 " in table and lines[-1].rstrip().endswith("| ic_dual |")
    assert "| conv1 " in lines[2] and "| no " in lines[2]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "unit" not in format_site_table(site_list).splitlines()[0]

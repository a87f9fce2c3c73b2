"""MACs against torchvision's published numbers and FlopCounterMode; params; latency; failure modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from icbench.cost import Cost, CostError, count_macs, count_params, measure_cost, measure_latency
from icbench.families import FAMILIES, build_model, tiny_size
from icbench.placement import apply, make_placement, sites
from icbench.units import UNITS

FAMILY_NAMES = FAMILIES.keys()


def flop_counter_macs(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """FlopCounterMode's total / 2, plus one MAC per biased output (ptflops counts bias additions)."""
    bias_outputs = 0

    def count_bias(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal bias_outputs
        bias_outputs += output[0].numel()  # batch of one

    handles = [
        m.register_forward_hook(count_bias)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None
    ]
    counter = FlopCounterMode(display=False)
    # On meta tensors (shapes only), like count_macs' default pass: fast, and the counts do not depend
    # on values (test_meta_and_real_passes_agree checks that for count_macs).
    meta = {
        k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]
    }
    try:
        with counter, torch.no_grad():
            torch.func.functional_call(model.eval(), meta, (torch.zeros(1, *shape, device="meta"),))
    finally:
        for h in handles:
            h.remove()
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2 + bias_outputs


@pytest.mark.parametrize("unit", UNITS.keys())
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_macs_agree_with_flop_counter(family, unit):
    model = build_model(family, tiny_size(family))
    site_list = sites(model)
    apply(model, make_placement(site_list, "all", unit), site_list)
    assert count_macs(model, (3, 32, 32)) == flop_counter_macs(model, (3, 32, 32))


@pytest.mark.parametrize("unit", UNITS.keys())
def test_meta_and_real_passes_agree(unit):
    model = build_model("resnet", "resnet_tiny")
    site_list = sites(model)
    apply(model, make_placement(site_list, "all", unit), site_list)
    assert count_macs(model, (3, 32, 32)) == count_macs(model, (3, 32, 32), on_meta=False)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_ic_dual_adds_exactly_the_convolutions_it_doubles(family):
    basic = build_model(family, tiny_size(family))
    site_list = sites(basic)
    base = count_macs(basic, (3, 32, 32))
    for strategy, args in [("last_k", {"k": 2}), ("all", {})]:
        for unit in ("ic", "ic_dual"):
            model = build_model(family, tiny_size(family))
            placement = make_placement(site_list, strategy, unit, **args)
            apply(model, placement, site_list)
            extra = count_macs(model, (3, 32, 32)) - base
            doubled = sum(s.macs for s, bit in zip(site_list, placement.mask, strict=True) if bit)
            assert extra == (doubled if unit == "ic_dual" else 0), (strategy, unit)


# torchvision's published numbers ("GFLOPS" in its docs are MACs) at 224×224, 1000 classes.
PUBLISHED = [
    ("resnet", "resnet18", 1.81, 11.69),
    ("resnet", "resnet50", 4.09, 25.56),
    ("mobilenet_v2", "mobilenet_v2", 0.30, 3.50),
    ("vgg", "vgg16", 15.47, 138.36),
]


@pytest.mark.slow
@pytest.mark.parametrize(("family", "size", "gmac", "mparams"), PUBLISHED)
def test_published_macs_and_params(family, size, gmac, mparams):
    model = build_model(family, size, num_classes=1000, image_size=224)
    assert count_macs(model, (3, 224, 224)) / 1e9 == pytest.approx(gmac, rel=0.005)
    assert count_params(model)[1] / 1e6 == pytest.approx(mparams, rel=0.005)


def test_resnet18_macs_at_224_exactly():
    """A fast check in the default suite: resnet18 at 224 (large-image stem) has torchvision's 1.814 GMac."""
    model = build_model("resnet", "resnet18", num_classes=1000, image_size=224)
    assert count_macs(model, (3, 224, 224)) == 1_814_074_344


def test_count_macs_restores_modes_and_leaves_no_hooks():
    model = build_model("resnet_cifar", "resnet8")
    model.train()
    model.layer2.eval()
    hooks_before = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    count_macs(model, (3, 32, 32))
    count_macs(model, (3, 32, 32), on_meta=False)
    assert model.training and not model.layer2.training and model.layer2[0].bn1.training is False
    assert model.layer1.training and model.layer1[0].bn1.training
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()] == hooks_before
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_data_dependent_model_is_counted_on_real_tensors():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)

        def forward(self, x):
            y = self.conv(x)
            return y if float(y.sum()) >= 0 else -y  # needs real values: the meta pass fails

    assert count_macs(Branchy(), (3, 8, 8)) == 4 * 8 * 8 * 3 * 9


def test_failure_is_an_exception_not_none():
    model = build_model("resnet_cifar", "resnet8")  # 3 input channels
    with pytest.raises(CostError, match=r"input shape \(1, 32, 32\)") as info:
        count_macs(model, (1, 32, 32))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_count_params_trainable_and_total():
    model = build_model("resnet_cifar", "resnet8")
    total = sum(p.numel() for p in model.parameters())
    model.fc.weight.requires_grad_(False)
    assert count_params(model) == (total - model.fc.weight.numel(), total)


def test_measure_cost_and_latency():
    model = build_model("resnet_cifar", "resnet8")
    model.train()
    ms = measure_latency(model, (3, 32, 32), batch_size=2, warmup=1, reps=3)
    assert ms > 0 and model.training
    cost = measure_cost(model, (3, 32, 32), batch_size=2, warmup=0, reps=1)
    assert isinstance(cost, Cost) and cost.latency_ms is not None and cost.latency_ms > 0
    assert cost.macs == count_macs(model, (3, 32, 32))
    assert (cost.params_trainable, cost.params) == count_params(model)
    no_latency = measure_cost(model, (3, 32, 32), latency=False)
    assert no_latency.as_dict() == {
        "macs": cost.macs,
        "params": cost.params,
        "params_trainable": cost.params_trainable,
        "latency_ms": None,
    }
    with pytest.raises(ValueError, match="reps"):
        measure_latency(model, (3, 32, 32), reps=0)

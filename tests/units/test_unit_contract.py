"""The contract every registered unit keeps (DESIGN.md §3), checked for each key of `UNITS`.

A unit registered later is tested here without touching this file.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from icbench.errors import IcbenchError, UnknownNameError
from icbench.units import UNITS, UnitConv2d, make_unit, unit_name

UNIT_KEYS = UNITS.keys()

# nn.Conv2d keyword arguments: dense, strided, depthwise, 1×1, grouped with asymmetric kernel/stride/padding,
# dilated, padding="same" (also dilated and grouped), "valid", and a non-zero padding mode.
CONFIGS: dict[str, dict[str, Any]] = {
    "3x3": dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
    "3x3_stride2_nobias": dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=1, bias=False),
    "depthwise": dict(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=6, bias=False),
    "depthwise_mult2_stride2": dict(
        in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=1, groups=4
    ),
    "1x1": dict(in_channels=8, out_channels=4, kernel_size=1),
    "grouped_asym": dict(
        in_channels=4, out_channels=6, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), groups=2
    ),
    "dilated": dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2),
    "same": dict(in_channels=4, out_channels=6, kernel_size=3, padding="same"),
    "same_dilated_grouped": dict(
        in_channels=4, out_channels=6, kernel_size=4, padding="same", dilation=2, groups=2, bias=False
    ),
    "valid_5x5": dict(in_channels=3, out_channels=5, kernel_size=5, padding="valid"),
    "reflect": dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, padding_mode="reflect"),
}
INPUT_HW = (9, 8)  # odd/even and non-square, to catch any spatial-dimension mix-up


def _input(cfg: dict[str, Any], batch: int = 2, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, cfg["in_channels"], *INPUT_HW, generator=gen)


def _own_param_names(cls: type[nn.Module]) -> set[str]:
    return set(getattr(cls, "unit_param_names", ()))


def _move_off_init(unit: nn.Module, seed: int = 0) -> None:
    """Set the unit's own parameters to random values away from the identity."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(unit.named_parameters())
    with torch.no_grad():
        for name in _own_param_names(type(unit)):
            p = params[name]
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("key", UNIT_KEYS)
def test_unit_is_a_conv2d_subclass(key: str) -> None:
    cls = UNITS.get(key)
    assert issubclass(cls, nn.Conv2d)
    assert key == "conv" or issubclass(cls, UnitConv2d)


@pytest.mark.parametrize("key", UNIT_KEYS)
def test_unit_param_names_are_exactly_the_added_parameters(key: str) -> None:
    unit = UNITS.get(key)(**CONFIGS["3x3"])
    added = {name for name, _ in unit.named_parameters()} - {"weight", "bias"}
    assert added == _own_param_names(type(unit))


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("key", UNIT_KEYS)
def test_output_shape_matches_conv2d(key: str, cfg_name: str) -> None:
    cfg = CONFIGS[cfg_name]
    x = _input(cfg)
    expected = nn.Conv2d(**cfg)(x).shape
    unit = UNITS.get(key)(**cfg)
    assert unit(x).shape == expected
    _move_off_init(unit)
    assert unit(x).shape == expected


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("key", UNIT_KEYS)
def test_identity_at_init_with_copied_weights(key: str, cfg_name: str) -> None:
    cfg = CONFIGS[cfg_name]
    torch.manual_seed(0)
    conv = nn.Conv2d(**cfg)
    unit = UNITS.get(key)(**cfg)
    unit.load_state_dict(conv.state_dict(), strict=False)
    x = _input(cfg)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), conv(x), atol=1e-6, rtol=0)
    # Also with autograd recording, which takes a different code path in some units.
    torch.testing.assert_close(unit(x).detach(), conv(x).detach(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("key", UNIT_KEYS)
def test_identity_at_init_via_make_unit(key: str, cfg_name: str) -> None:
    cfg = CONFIGS[cfg_name]
    torch.manual_seed(0)
    conv = nn.Conv2d(**cfg)
    unit = make_unit(key, conv)
    assert type(unit) is UNITS.get(key)
    x = _input(cfg)
    torch.testing.assert_close(unit(x).detach(), conv(x).detach(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("key", UNIT_KEYS)
def test_identity_at_init_in_a_stack(key: str) -> None:
    """Several units in a row (as in a network) still compute the plain network's output."""
    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
        nn.Conv2d(8, 4, 1),
    )  # fmt: skip
    swapped = nn.Sequential(*(make_unit(key, m) if isinstance(m, nn.Conv2d) else m for m in plain))
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(swapped(x).detach(), plain(x).detach(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("key", UNIT_KEYS)
def test_make_unit_keeps_config_dtype_mode_and_requires_grad(key: str) -> None:
    conv = nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(1, 2), groups=2, bias=False, dtype=torch.float64)
    conv.eval()
    conv.weight.requires_grad_(False)
    unit = make_unit(key, conv)
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(unit, attr) == getattr(conv, attr), attr
    assert unit.padding_mode == conv.padding_mode
    assert unit.bias is None
    assert unit.weight.dtype == torch.float64
    assert not unit.training
    assert not unit.weight.requires_grad
    assert torch.equal(unit.weight, conv.weight)
    assert unit.weight.data_ptr() != conv.weight.data_ptr()  # a copy, not shared storage
    assert unit_name(unit) == key


@pytest.mark.parametrize("key", UNIT_KEYS)
def test_conv_state_dict_loads_with_only_the_units_own_keys_missing(key: str) -> None:
    cfg = CONFIGS["3x3"]
    conv = nn.Conv2d(**cfg)
    unit = UNITS.get(key)(**cfg)
    result = unit.load_state_dict(conv.state_dict(), strict=False)
    assert set(result.missing_keys) == _own_param_names(type(unit))
    assert result.unexpected_keys == []
    assert torch.equal(unit.weight, conv.weight)
    assert torch.equal(unit.bias, conv.bias)
    # The unit's state dict keys are the conv's plus its own: nothing renamed.
    assert set(unit.state_dict()) == set(conv.state_dict()) | _own_param_names(type(unit))


@pytest.mark.parametrize("cfg_name", ["3x3", "depthwise", "grouped_asym", "same"])
@pytest.mark.parametrize("key", UNIT_KEYS)
def test_every_parameter_gets_a_gradient_off_init(key: str, cfg_name: str) -> None:
    cfg = CONFIGS[cfg_name]
    torch.manual_seed(0)
    unit = UNITS.get(key)(**cfg)
    _move_off_init(unit)
    x = _input(cfg).requires_grad_()
    y = unit(x)
    # A random upstream gradient: y.sum() would hide sign and scale mistakes.
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(2)))
    for name, p in [*unit.named_parameters(), ("input", x)]:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("key", UNIT_KEYS)
def test_eval_mode_and_inference_mode(key: str) -> None:
    cfg = CONFIGS["3x3_stride2_nobias"]
    unit = UNITS.get(key)(**cfg)
    _move_off_init(unit)
    x = _input(cfg)
    y_train = unit(x).detach()
    unit.eval()
    with torch.no_grad():
        y_eval = unit(x)
    with torch.inference_mode():
        y_inf = unit(x)
    torch.testing.assert_close(y_eval, y_train)
    torch.testing.assert_close(y_inf, y_train)


@pytest.mark.parametrize("key", UNIT_KEYS)
def test_channels_last_input(key: str) -> None:
    cfg = CONFIGS["3x3"]
    unit = UNITS.get(key)(**cfg)
    _move_off_init(unit)
    x = _input(cfg)
    x_cl = x.to(memory_format=torch.channels_last).requires_grad_()
    x = x.requires_grad_()
    y, y_cl = unit(x), unit(x_cl)
    torch.testing.assert_close(y_cl, y)
    grads = torch.autograd.grad(y.square().sum(), [x, *unit.parameters()])
    grads_cl = torch.autograd.grad(y_cl.square().sum(), [x_cl, *unit.parameters()])
    for g, g_cl in zip(grads, grads_cl, strict=True):
        torch.testing.assert_close(g_cl, g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key", UNIT_KEYS)
def test_bfloat16_autocast_keeps_parameter_gradients_in_float32(key: str) -> None:
    cfg = CONFIGS["3x3"]
    unit = UNITS.get(key)(**cfg)
    _move_off_init(unit)
    x = _input(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = unit(x)
    y.float().square().sum().backward()
    for name, p in unit.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name


BAD_ARGS: dict[str, dict[str, Any]] = {
    "groups_not_dividing_in": dict(in_channels=4, out_channels=6, kernel_size=3, groups=3),
    "groups_not_dividing_out": dict(in_channels=6, out_channels=4, kernel_size=3, groups=3),
    "groups_zero": dict(in_channels=4, out_channels=4, kernel_size=3, groups=0),
    "same_with_stride2": dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding="same"),
    "unknown_padding_string": dict(in_channels=4, out_channels=4, kernel_size=3, padding="full"),
    "bad_padding_mode": dict(in_channels=4, out_channels=4, kernel_size=3, padding_mode="mirror"),
}


@pytest.mark.parametrize("case", BAD_ARGS)
@pytest.mark.parametrize("key", UNIT_KEYS)
def test_invalid_arguments_raise_what_conv2d_raises(key: str, case: str) -> None:
    kwargs = BAD_ARGS[case]
    with pytest.raises(Exception) as conv_err:  # noqa: B017 - whatever nn.Conv2d raises is the contract
        nn.Conv2d(**kwargs)
    with pytest.raises(type(conv_err.value)) as unit_err:
        UNITS.get(key)(**kwargs)
    assert type(unit_err.value) is type(conv_err.value)
    assert str(unit_err.value) == str(conv_err.value)


@pytest.mark.parametrize("key", UNIT_KEYS)
def test_wrong_input_channels_raise_what_conv2d_raises(key: str) -> None:
    cfg = CONFIGS["3x3"]
    x = torch.randn(2, cfg["in_channels"] + 1, 8, 8)
    with pytest.raises(RuntimeError) as conv_err:
        nn.Conv2d(**cfg)(x)
    with pytest.raises(RuntimeError) as unit_err:
        UNITS.get(key)(**cfg)(x)
    assert str(unit_err.value) == str(conv_err.value)


def test_unknown_unit_name_lists_registered_units() -> None:
    conv = nn.Conv2d(4, 4, 3)
    with pytest.raises(UnknownNameError) as err:
        make_unit("ic_duel", conv)
    assert isinstance(err.value, IcbenchError)
    assert isinstance(err.value, KeyError)
    message = str(err.value)
    assert "unit" in message and "'ic_duel'" in message
    for key in UNIT_KEYS:
        assert key in message
    assert "did you mean 'ic_dual'" in message


def test_unit_name() -> None:
    assert unit_name(nn.Conv2d(2, 2, 1)) == "conv"
    assert unit_name(nn.Linear(2, 2)) is None
    for key in UNIT_KEYS:
        assert unit_name(UNITS.get(key)(2, 2, 1)) == key


@pytest.mark.slow
@pytest.mark.parametrize("key", UNIT_KEYS)
def test_torch_compile_matches_eager(key: str) -> None:
    torch._dynamo.reset()
    cfg = CONFIGS["3x3_stride2_nobias"]
    torch.manual_seed(0)
    unit = UNITS.get(key)(**cfg)
    _move_off_init(unit)
    compiled = torch.compile(unit, fullgraph=True)  # no graph breaks either
    x = _input(cfg)
    x_eager, x_comp = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_eager, y_comp = unit(x_eager), compiled(x_comp)
    torch.testing.assert_close(y_comp, y_eager, rtol=1e-4, atol=1e-5)
    params = list(unit.parameters())
    upstream = torch.randn(y_eager.shape, generator=torch.Generator().manual_seed(3))
    g_eager = torch.autograd.grad(y_eager, [x_eager, *params], upstream)
    g_comp = torch.autograd.grad(y_comp, [x_comp, *params], upstream)
    for g_c, g_e in zip(g_comp, g_eager, strict=True):
        torch.testing.assert_close(g_c, g_e, rtol=1e-4, atol=1e-5)
    unit.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), unit(x), rtol=1e-4, atol=1e-5)

"""Each unit computes the formula of DESIGN.md §3, values and gradients, whatever its fast path does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from icbench.units.ic import CollisionTail, ICConv2d, collision_reference
from icbench.units.ic_dual import ICDualConv2d
from icbench.units.se import SEConv2d


def _ic_formula(m: ICConv2d, x: torch.Tensor) -> torch.Tensor:
    u = m._conv_forward(x, m.weight, m.bias)
    tau = 2 * torch.sigmoid(m.ic_a).view(1, -1, 1, 1)
    return u + (tau - 1) * F.relu(u - m.ic_theta.view(1, -1, 1, 1))


def _ic_dual_formula(m: ICDualConv2d, x: torch.Tensor) -> torch.Tensor:
    rho = torch.tanh(m.ic_r).view(1, -1, 1, 1)
    v = F.relu(x - m.ic_theta_in.view(1, -1, 1, 1))
    return m._conv_forward(x, m.weight, m.bias) + rho * m._conv_forward(v, m.weight, None)


def _se_formula(m: SEConv2d, x: torch.Tensor) -> torch.Tensor:
    u = m._conv_forward(x, m.weight, m.bias)
    s = F.adaptive_avg_pool2d(u, 1).flatten(1)
    gate = 2 * torch.sigmoid(m.se_fc2(F.relu(m.se_fc1(s))))
    return u * gate.view(*gate.shape, 1, 1)


FORMULAS = {ICConv2d: _ic_formula, ICDualConv2d: _ic_dual_formula, SEConv2d: _se_formula}
SHAPES = {
    "dense": dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
    "depthwise_stride2": dict(in_channels=6, out_channels=6, kernel_size=3, stride=2, padding=1, groups=6),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", FORMULAS, ids=lambda c: c.__name__)
def test_unit_matches_its_formula_in_double(cls: type[nn.Conv2d], shape: str) -> None:
    torch.manual_seed(0)
    unit = cls(**SHAPES[shape], dtype=torch.float64)
    with torch.no_grad():
        for name in unit.unit_param_names:
            p = unit.get_parameter(name)
            p.copy_(0.5 * torch.randn_like(p))
    x = torch.randn(3, unit.in_channels, 7, 6, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn_like(unit(x))
    wrt = [x, *unit.parameters()]
    y = unit(x)
    y_ref = FORMULAS[cls](unit, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(y, wrt, upstream)
    grads_ref = torch.autograd.grad(y_ref, wrt, upstream)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


def _tail_inputs(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(2, 3, 4, 5, generator=gen, dtype=dtype)
    gain = torch.tanh(torch.randn(3, generator=gen, dtype=dtype))
    theta = 0.5 * torch.randn(3, generator=gen, dtype=dtype)
    return u, gain, theta


def test_collision_tail_gradcheck() -> None:
    u, gain, theta = (t.requires_grad_() for t in _tail_inputs())

    # CollisionTail writes into its first input, so gradcheck's inputs are cloned first.
    def tail(u: torch.Tensor, gain: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return CollisionTail.apply(u.clone(), gain, theta)

    assert torch.autograd.gradcheck(tail, (u, gain, theta), eps=1e-6, atol=1e-7)


def test_collision_tail_matches_reference_and_writes_in_place() -> None:
    u, gain, theta = _tail_inputs()
    expected = collision_reference(u, gain, theta)
    buf = u.clone()
    out = CollisionTail.apply(buf, gain, theta)
    assert out.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_collision_tail_is_exact_identity_at_zero_gain() -> None:
    u, _, theta = _tail_inputs(torch.float32)
    out = CollisionTail.apply(u.clone(), torch.zeros(3), theta)
    assert torch.equal(out, u)


def test_collision_tail_refuses_double_backward() -> None:
    u, gain, theta = (t.requires_grad_() for t in _tail_inputs())
    y = CollisionTail.apply(u.clone(), gain, theta)
    (g,) = torch.autograd.grad(y.square().sum(), gain, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()


def test_ic_gradients_at_init_are_those_of_the_formula() -> None:
    """At init the threshold's gradient is exactly zero and the gain's is Σ grad·ReLU(u)."""
    torch.manual_seed(0)
    unit = ICConv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 8, 8)
    y = unit(x)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    assert torch.equal(unit.ic_theta.grad, torch.zeros(6))
    u = unit.conv(x).detach()
    # d tanh(a/2)/da at a = 0 is 1/2.
    expected = 0.5 * (upstream * F.relu(u)).sum((0, 2, 3))
    torch.testing.assert_close(unit.ic_a.grad, expected)


@pytest.mark.parametrize("frozen", ["conv", "ic_a", "ic_theta", "ic_a+ic_theta"])
def test_ic_gradients_with_some_parameters_frozen(frozen: str) -> None:
    """The backward skips the gradients nobody asked for and still gets the others right."""
    torch.manual_seed(0)
    unit = ICConv2d(4, 6, 3, padding=1, dtype=torch.float64)
    with torch.no_grad():
        unit.ic_a.normal_(0, 0.5)
        unit.ic_theta.normal_(0, 0.5)
    names = {"conv": ["weight", "bias"], "ic_a": ["ic_a"], "ic_theta": ["ic_theta"]}
    for part in frozen.split("+"):
        for name in names[part]:
            unit.get_parameter(name).requires_grad_(False)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    trainable = [p for p in unit.parameters() if p.requires_grad]
    upstream = torch.randn_like(unit(x))
    grads = torch.autograd.grad(unit(x), trainable, upstream)
    grads_ref = torch.autograd.grad(_ic_formula(unit, x), trainable, upstream)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)

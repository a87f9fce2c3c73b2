"""Weak logit distillation: the loss, its schedule and the objective (DESIGN.md §4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from icbench.errors import ConfigError
from icbench.training import WLDConfig, WLDObjective, wld_lambda, wld_loss
from icbench.training.config import LAMBDA_SCHEDULES


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(16, 10, generator=g) * 3
    teacher = torch.randn(16, 10, generator=g) * 3
    labels = torch.randint(0, 10, (16,), generator=g)
    return student, teacher, labels


def _manual_kl(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """KL(softmax(z_t/T) || softmax(z_s/T)) per sample, written out."""
    p_t = torch.softmax(teacher / t, dim=1)
    return (p_t * (torch.log(p_t) - torch.log_softmax(student / t, dim=1))).sum(dim=1)


def test_lambda_zero_is_exactly_cross_entropy(batch):
    s, t, y = batch
    assert torch.equal(wld_loss(s, t, y, lam=0.0, temperature=4.0), F.cross_entropy(s, y))
    assert torch.equal(
        wld_loss(s, None, y, lam=0.0, temperature=4.0, label_smoothing=0.1),
        F.cross_entropy(s, y, label_smoothing=0.1),
    )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kl_term_has_t_squared_and_batchmean(batch, temperature):
    s, t, y = batch
    kl = _manual_kl(s, t, temperature)
    # λ = 1: only the soft term, T²·(sum over the batch)/N
    torch.testing.assert_close(
        wld_loss(s, t, y, lam=1.0, temperature=temperature), temperature**2 * kl.sum() / len(y)
    )
    lam = 0.3
    expected = (1 - lam) * F.cross_entropy(s, y) + lam * temperature**2 * kl.mean()
    torch.testing.assert_close(wld_loss(s, t, y, lam=lam, temperature=temperature), expected)


def test_identical_logits_leave_only_the_hard_term(batch):
    s, _, y = batch
    torch.testing.assert_close(
        wld_loss(s, s.clone(), y, lam=0.5, temperature=4.0), 0.5 * F.cross_entropy(s, y)
    )


def test_only_correct_masks_samples_the_teacher_gets_wrong(batch):
    s, t, y = batch
    y = t.argmax(dim=1).clone()
    y[::2] = (y[::2] + 1) % 10  # the teacher is wrong on even samples
    right = (t.argmax(dim=1) == y).float()
    kl = _manual_kl(s, t, 2.0)
    expected = 4.0 * (kl * right).sum() / len(y)  # still divided by the whole batch
    torch.testing.assert_close(wld_loss(s, t, y, lam=1.0, temperature=2.0, only_correct=True), expected)
    assert wld_loss(s, t, y, lam=1.0, temperature=2.0, only_correct=True) < wld_loss(
        s, t, y, lam=1.0, temperature=2.0
    )


@pytest.mark.parametrize("schedule", ["linear", "cosine", "step"])
def test_decaying_schedules_start_at_lambda0_and_reach_zero_at_end(schedule):
    kw = {"lambda0": 0.5, "schedule": schedule, "end": 0.5}
    assert wld_lambda(0.0, **kw) == 0.5  # start
    assert wld_lambda(0.5, **kw) == 0.0  # `end`
    assert wld_lambda(0.9, **kw) == 0.0  # last epoch of 10 (progress 0.9..1.0)
    assert wld_lambda(1.0, **kw) == 0.0
    values = [wld_lambda(p / 100, **kw) for p in range(101)]
    assert values == sorted(values, reverse=True)  # never increases


def test_schedule_shapes_in_the_middle():
    assert wld_lambda(0.25, lambda0=0.5, schedule="linear", end=0.5) == pytest.approx(0.25)
    assert wld_lambda(0.25, lambda0=0.5, schedule="cosine", end=0.5) == pytest.approx(0.25)
    assert wld_lambda(0.1, lambda0=0.5, schedule="cosine", end=0.5) > wld_lambda(
        0.1, lambda0=0.5, schedule="linear", end=0.5
    )
    assert wld_lambda(0.49, lambda0=0.5, schedule="step", end=0.5) == 0.5
    assert wld_lambda(0.8, lambda0=0.7, schedule="linear", end=1.0) == pytest.approx(0.14)


def test_constant_schedule_ignores_end():
    assert all(wld_lambda(p, lambda0=0.3, schedule="constant", end=0.5) == 0.3 for p in (0.0, 0.5, 0.99, 1.0))


def test_every_configured_schedule_is_implemented():
    for schedule in LAMBDA_SCHEDULES:
        assert wld_lambda(0.0, lambda0=0.4, schedule=schedule) == 0.4
    with pytest.raises(ValueError):
        wld_lambda(0.0, lambda0=0.4, schedule="exp")
    with pytest.raises(ConfigError, match="linear"):
        WLDConfig(schedule="exp")


class _CountingTeacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls = 0
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.modes.append(self.training)
        return self.fc(x)


def test_objective_runs_teacher_without_grad_in_eval_mode_and_skips_it_at_lambda_zero():
    teacher = _CountingTeacher().train()
    student = nn.Linear(4, 3)
    obj = WLDObjective(teacher, WLDConfig(enabled=True, lambda0=0.5, end=0.5))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    loss = obj(student(x), x, y, 0.1)
    loss.backward()
    assert teacher.calls == 1 and teacher.modes == [False]
    assert all(p.grad is None for p in teacher.parameters())
    assert student.weight.grad is not None
    # past `end` λ is 0: the teacher is not run and the loss is plain cross-entropy
    logits = student(x)
    assert torch.equal(obj(logits, x, y, 0.6), F.cross_entropy(logits, y))
    assert teacher.calls == 1

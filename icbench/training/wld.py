"""Weak logit distillation (DESIGN.md §4): the loss, its λ schedule, and the training objective.

L = (1 − λ_t)·CE(z_s, y) + λ_t·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), the KL averaged over the batch
("batchmean"). The T² keeps the gradient of the soft term on the scale of the hard one as T changes
(Hinton et al. 2015). The teacher is weak (the student should surpass it), so λ_t decays from λ₀ to 0
by a fraction `end` of training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from icbench.training.config import LAMBDA_SCHEDULES, WLDConfig

__all__ = ["WLDObjective", "wld_lambda", "wld_loss"]


def wld_lambda(progress: float, *, lambda0: float, schedule: str = "linear", end: float = 0.5) -> float:
    """λ at `progress` (fraction of training done, 0 at the first step).

    Schedules: "linear" λ0·(1 − p/end); "cosine" λ0·(1 + cos(π·p/end))/2; "step" λ0 while p < end;
    all three are 0 from p = end on. "constant" is λ0 throughout (`end` is ignored).

    Raises:
        ValueError: unknown schedule.
    """
    if schedule == "constant":
        return lambda0
    if schedule not in LAMBDA_SCHEDULES:
        raise ValueError(f"unknown λ schedule {schedule!r}; valid: {', '.join(LAMBDA_SCHEDULES)}")
    if progress >= end:
        return 0.0
    t = max(0.0, progress) / end
    if schedule == "linear":
        return lambda0 * (1.0 - t)
    if schedule == "cosine":
        return lambda0 * 0.5 * (1.0 + math.cos(math.pi * t))
    return lambda0  # step


def wld_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    lam: float,
    temperature: float,
    label_smoothing: float = 0.0,
    only_correct: bool = False,
) -> torch.Tensor:
    """The WLD loss of one batch.

    Args:
        student_logits, teacher_logits: (N, K) logits; the teacher's may be None when `lam` is 0.
        labels: (N,) class indices.
        lam: weight λ of the distillation term; exactly 0 returns the cross-entropy alone.
        temperature: T.
        label_smoothing: applied to the cross-entropy term.
        only_correct: distil only on samples the teacher classifies correctly; the KL is still
            divided by the whole batch size, so the term shrinks with the teacher's error rate.

    Returns:
        The scalar loss.
    """
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if lam == 0.0:
        return ce
    if teacher_logits is None:
        raise ValueError("teacher logits are needed when lam > 0")
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    if only_correct:
        per_sample = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(dim=1)
        right = teacher_logits.argmax(dim=1) == labels
        kl = torch.where(right, per_sample, torch.zeros_like(per_sample)).sum() / student_logits.shape[0]
    else:
        kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return (1.0 - lam) * ce + lam * temperature**2 * kl


class WLDObjective:
    """The training objective `fit` calls: teacher logits (no grad, eval mode) and the WLD loss.

    Once λ has reached 0 the teacher is not run at all.
    """

    def __init__(self, teacher: nn.Module, config: WLDConfig, *, label_smoothing: float = 0.0) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.config = config
        self.label_smoothing = label_smoothing

    def __call__(
        self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, progress: float
    ) -> torch.Tensor:
        c = self.config
        lam = wld_lambda(progress, lambda0=c.lambda0, schedule=c.schedule, end=c.end)
        teacher_logits = None
        if lam > 0.0:
            self.teacher.eval()  # stays in eval mode even if someone called .train() on a parent module
            with torch.no_grad():
                teacher_logits = self.teacher(x).float()
        return wld_loss(
            logits,
            teacher_logits,
            y,
            lam=lam,
            temperature=c.temperature,
            label_smoothing=self.label_smoothing,
            only_correct=c.only_correct,
        )

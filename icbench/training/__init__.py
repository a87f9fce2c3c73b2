"""Training: one loop for everything, weak logit distillation, the teacher cache, and `train_candidate`.

- `config`: `CandidateConfig` and `WLDConfig` (dataclasses with defaults; `from_dict`).
- `loop`: `fit`, the training loop (SGD + Nesterov, cosine with warm-up, bf16/channels_last on CUDA).
- `wld`: the WLD loss, its λ schedule and the objective `fit` runs with a teacher.
- `teacher`: the cached or checkpointed basic network.
- `candidate`: `train_candidate` (the entry point a search trial calls) and `build_candidate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from icbench.training.config import CandidateConfig, TrainConfig, WLDConfig
from icbench.training.loop import FitResult, evaluate, fit
from icbench.training.wld import WLDObjective, wld_lambda, wld_loss

if TYPE_CHECKING:
    from icbench.training.candidate import METRIC_KEYS, build_candidate, train_candidate

__all__ = [
    "METRIC_KEYS",
    "CandidateConfig",
    "FitResult",
    "TrainConfig",
    "WLDConfig",
    "WLDObjective",
    "build_candidate",
    "evaluate",
    "fit",
    "train_candidate",
    "wld_lambda",
    "wld_loss",
]


def __getattr__(name: str) -> Any:
    # `candidate` pulls in the families, placement and cost modules; import it only when asked for,
    # so the loop and the loss can be used (and tested) on their own.
    if name in ("train_candidate", "build_candidate", "METRIC_KEYS"):
        from icbench.training import candidate

        return getattr(candidate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

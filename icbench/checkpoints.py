"""Reading and checking weight files: the one place icbench calls `torch.load`.

Every read is `weights_only=True`, so a checkpoint can never run code; every problem is a one-line
`CheckpointError`, never a pickle traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from icbench.errors import CheckpointError


def read_state_dict(path: str | os.PathLike[str], *, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Read a state dict with `torch.load(weights_only=True)` onto the CPU.

    A dict holding the weights under "state_dict", "model" or "model_state_dict" is unwrapped, and a
    "module." prefix on every key (DataParallel) is removed.

    Raises:
        CheckpointError: missing, unreadable, unsafe (needs arbitrary unpickling) or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many unrelated types here; all mean "not a usable checkpoint"
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"cannot read {what} {path}: not a weights-only PyTorch checkpoint "
            f"({type(e).__name__}: {first_line})"
        ) from None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{what} {path} does not hold a state dict (a mapping of names to tensors)")
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _key_list(keys: Sequence[str] | set[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    ignore: set[str] | frozenset[str] = frozenset(),
    source: str = "the state dict",
) -> None:
    """Raise `CheckpointError` naming the keys unless `state_dict` matches `model` exactly.

    Keys in `ignore` are model keys the state dict may lack (an IC unit's own parameters).
    """
    own = model.state_dict()
    expected = set(own) - set(ignore)
    given = set(state_dict)
    missing, unexpected = expected - given, given - expected
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(expected & given)
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_key_list(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatch (checkpoint vs model): {_key_list(wrong_shape)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match the model (check family, size, width, classes and channels): "
            + "; ".join(problems)
        )

"""The machine a computation ran on, as a plain JSON-ready dict (recorded with every trial, shown in reports).

The same seed gives slightly different numbers on two CPU models, two GPUs, or with cuDNN's autotuner on
and off, so a result is only reproducible together with this description. torch is imported inside the
functions that need it: `import icbench.machine` stays light.
"""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["MACHINE_KEYS", "cpu_model", "cudnn_version", "describe_machine", "precision", "usable_cores"]

#: The keys of `describe_machine`'s dict, in display order.
MACHINE_KEYS = (
    "cpu",
    "arch",
    "cores",
    "torch_threads",
    "os",
    "device",
    "gpu",
    "cuda",
    "cudnn",
    "cudnn_benchmark",
    "precision",
    "torch",
    "python",
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("model name"), else what `platform` knows."""
    name = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or name
    except OSError:
        pass
    return name


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), which can be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def cudnn_version(raw: int | None) -> str | None:
    """torch's integer cuDNN version as text: 91002 -> "9.10.2" (cuDNN 9), 8902 -> "8.9.2" (cuDNN 8)."""
    if not raw:
        return None
    if raw >= 90000:  # cuDNN 9 encodes major * 10000 + minor * 100 + patch
        return f"{raw // 10000}.{raw % 10000 // 100}.{raw % 100}"
    return f"{raw // 1000}.{raw % 1000 // 100}.{raw % 100}"


def precision(device: str | torch.device) -> str:
    """The arithmetic the training loop uses on `device` (`icbench.training.loop._autocast`):
    bf16 autocast on CUDA, float32 elsewhere."""
    import torch

    return "bf16 autocast" if torch.device(device).type == "cuda" else "fp32"


def describe_machine(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Describe this machine as used for work on `device`, now.

    GPU name, CUDA and cuDNN versions and the cuDNN benchmark flag are those of the CUDA device used
    (None when the work ran on the CPU). Call it after the work, inside the thread setting it ran
    with: the torch thread count and the cuDNN flag are read as they are at the call.

    Args:
        device: the device the work ran on ("cpu", "cuda", "cuda:1", ...).

    Returns:
        A dict with exactly the keys of `MACHINE_KEYS`.
    """
    import torch

    dev = torch.device(device)
    on_cuda = dev.type == "cuda" and torch.cuda.is_available()
    index = (dev.index if dev.index is not None else torch.cuda.current_device()) if on_cuda else None
    out: dict[str, Any] = {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "os": f"{platform.system()} {platform.release()}".strip(),
        "device": f"cuda:{index}" if on_cuda else dev.type,
        "gpu": torch.cuda.get_device_name(index) if on_cuda else None,
        "cuda": torch.version.cuda if on_cuda else None,
        "cudnn": cudnn_version(torch.backends.cudnn.version()) if on_cuda else None,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if on_cuda else None,
        "precision": precision(dev if on_cuda else "cpu"),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    assert tuple(out) == MACHINE_KEYS
    return out

"""The machines trials ran on, as recorded by each trial (`icbench.machine.describe_machine`), for reports.

A trial stores its machine as the `machine` user attribute: a dict, or its JSON text (Ray Tune flattens
nested dicts in results, so it travels as text). Reports group trials by the whole description, so two
machines differing only in, say, the cuDNN version or the torch thread count are listed apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: (key, column title) of the machine table in summary.md, in order.
MACHINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cpu", "CPU"),
    ("cores", "Cores"),
    ("torch_threads", "Torch threads"),
    ("gpu", "GPU"),
    ("cuda", "CUDA"),
    ("cudnn", "cuDNN"),
    ("cudnn_benchmark", "cuDNN benchmark"),
    ("precision", "Precision"),
    ("torch", "torch"),
    ("os", "OS"),
)


def parse_machine(value: Any) -> dict[str, Any] | None:
    """A trial's recorded machine as a dict (from a dict or its JSON text); None when not recorded."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return dict(value) if isinstance(value, Mapping) and value else None


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def machine_label(machine: Mapping[str, Any]) -> str:
    """One line naming a machine: GPU (with CUDA, cuDNN and its benchmark flag) if one was used, CPU
    model and architecture, usable cores, torch threads, precision, OS, torch and Python.

    Distinct descriptions give distinct labels (every recorded field is in the text)."""
    parts = []
    if machine.get("gpu"):
        gpu = f"{machine['gpu']} ({machine.get('device', 'cuda')})"
        gpu += f", CUDA {_cell(machine.get('cuda'))}, cuDNN {_cell(machine.get('cudnn'))}"
        gpu += f", cudnn.benchmark {_cell(machine.get('cudnn_benchmark'))}"
        parts.append(gpu)
    cpu = str(machine.get("cpu", "unknown CPU"))
    if machine.get("arch"):
        cpu += f" ({machine['arch']})"
    parts.append(cpu)
    parts.append(f"{_cell(machine.get('cores'))} cores")
    parts.append(f"{_cell(machine.get('torch_threads'))} torch threads")
    parts.append(_cell(machine.get("precision")))
    parts.append(_cell(machine.get("os")))
    parts.append(f"torch {_cell(machine.get('torch'))}, Python {_cell(machine.get('python'))}")
    known = {"gpu", "device", "cuda", "cudnn", "cudnn_benchmark", "cpu", "arch", "cores", "torch_threads",
             "precision", "os", "torch", "python"}  # fmt: skip
    parts += [f"{k} {_cell(machine[k])}" for k in sorted(set(machine) - known)]
    return "; ".join(parts)


def machine_rows(machines: Mapping[str, Mapping[str, Any]], counts: Mapping[str, int]) -> list[list[str]]:
    """Rows of the machine table: one per distinct machine, most trials first.

    Args:
        machines: label -> recorded description.
        counts: label -> trials that recorded it.
    """
    order = sorted(machines, key=lambda label: (-counts.get(label, 0), label))
    return [
        [f"M{i}", *(_cell(machines[label].get(key)) for key, _ in MACHINE_COLUMNS), str(counts.get(label, 0))]
        for i, label in enumerate(order, 1)
    ]

"""Preloading trial modules in local Ray workers (`PRELOAD_MODULES`, off by default): only locally."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from search_helpers import write_study

from icbench.search.executors import ray_tune
from icbench.search.schema import load_study

STUDY = """
dataset: {name: synthetic, kwargs: {n: 120, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 1}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
"""


def test_every_preloadable_module_exists() -> None:
    """Ray only logs a module it cannot import: a renamed module would silently stop preloading."""
    candidates = ray_tune.PRELOAD_CANDIDATES
    assert "torch" in candidates and "icbench.search.trainable" in candidates
    assert set(ray_tune.PRELOAD_MODULES) <= set(candidates)
    for name in candidates:
        assert importlib.util.find_spec(name) is not None, name


@pytest.mark.parametrize("address", [None, "auto"])
def test_local_ray_preloads_and_a_cluster_is_left_as_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, address: str | None
) -> None:
    """With modules to preload (none by default: measured slower), a local Ray gets them, a cluster not."""
    import ray

    monkeypatch.setattr(ray_tune, "PRELOAD_MODULES", ray_tune.PRELOAD_CANDIDATES)

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setenv("PYTHONPATH", "")  # init_ray sets it for the workers; monkeypatch restores it
    extra = f"execution: {{address: {address}, storage_path: {tmp_path}}}\n" if address else ""
    loaded = load_study(write_study(tmp_path, STUDY + extra, SPACE))
    assert ray_tune.init_ray(loaded) is True
    (kwargs,) = calls
    if address is None:
        assert kwargs["_system_config"]["preload_python_modules"] == list(ray_tune.PRELOAD_MODULES)
    else:
        assert "_system_config" not in kwargs and kwargs["address"] == "auto"

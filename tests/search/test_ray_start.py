"""A local Ray's workers serve Ray Tune's trial actors warm: Tune's actors take Ray's pre-started workers
(`share_prestarted_workers`), which can import what a trial imports as Ray starts them (`preload_modules`,
off as shipped); a cluster is left as `ray start` set it up."""

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
    assert {"torch", "torch._dynamo", "ray.tune", "icbench.search.trainable"} <= set(candidates)
    for name in candidates:
        assert importlib.util.find_spec(name) is not None, name


@pytest.mark.parametrize(
    ("address", "cpus", "concurrent", "preloads"),
    [(None, 2, 1, True), (None, 4, 2, True), (None, 8, 2, False), ("auto", 2, 1, False)],
)
def test_local_ray_shares_and_preloads_its_workers_and_a_cluster_is_left_as_started(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    address: str | None,
    cpus: int,
    concurrent: int,
    preloads: bool,
) -> None:
    """Locally Tune's actors get no environment of their own (its variables go to the driver's, which
    the workers inherit) and, with preloading on, the workers preload when at most half of them would
    idle; a cluster: neither."""
    import ray
    from ray.tune.execution import class_cache

    assert ray_tune.PRELOAD is False  # measured no faster: off as shipped
    monkeypatch.setattr(ray_tune, "PRELOAD", True)
    tune_defaults = dict(class_cache.DEFAULT_ENV_VARS)
    assert tune_defaults, "Ray Tune gives its actors no variables any more: share_prestarted_workers is moot"
    for k, v in tune_defaults.items():
        monkeypatch.setenv(k, v)  # restored after the test; init_ray sets them for the workers
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setenv("PYTHONPATH", "")  # init_ray sets it for the workers; monkeypatch restores it
    where = f"address: {address}, storage_path: {tmp_path}, " if address else ""
    extra = f"execution: {{{where}num_cpus: {cpus}, max_concurrent: {concurrent}}}\n"
    loaded = load_study(write_study(tmp_path, STUDY + extra, SPACE))
    try:
        assert ray_tune.init_ray(loaded) is True
        (kwargs,) = calls
        if preloads:
            assert kwargs["_system_config"]["preload_python_modules"] == list(ray_tune.PRELOAD_CANDIDATES)
        else:
            assert "_system_config" not in kwargs
        if address is None:
            assert class_cache.DEFAULT_ENV_VARS == {}  # Tune's actors ask for no runtime_env
        else:
            assert tune_defaults == class_cache.DEFAULT_ENV_VARS and kwargs["address"] == "auto"
    finally:
        ray_tune.share_prestarted_workers(False)
    assert tune_defaults == class_cache.DEFAULT_ENV_VARS

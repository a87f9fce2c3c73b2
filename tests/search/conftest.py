"""Fixtures for the search tests: one local Ray for the whole session, and study files in tmp folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A 2-CPU local Ray shared by the end-to-end tests (the runner leaves a Ray it did not start alone)."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import ray

    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])])}},
    )
    yield
    ray.shutdown()

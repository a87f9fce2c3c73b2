"""Shared fixtures of the training tests."""

from __future__ import annotations

import pytest

from icbench.training.loop import num_threads


@pytest.fixture(autouse=True)
def _one_thread():
    # These tests train small networks: one thread is as fast, and on a loaded machine several
    # threads spinning on busy cores make each run many times slower.
    with num_threads(1):
        yield

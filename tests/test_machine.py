"""`icbench.machine`: the description of the machine every trial records."""

from __future__ import annotations

import json
import os
import platform
import warnings

import pytest
import torch

from icbench import machine
from icbench.training import loop


def test_describe_machine_on_the_cpu_names_cpu_cores_threads_and_precision() -> None:
    with loop.num_threads(1):
        m = machine.describe_machine("cpu")
    assert tuple(m) == machine.MACHINE_KEYS
    json.dumps(m)  # stored as a trial attribute: JSON only
    assert m["cpu"] == machine.cpu_model() and m["cpu"]
    assert m["arch"] == platform.machine()
    assert m["cores"] == len(os.sched_getaffinity(0))
    assert m["torch_threads"] == 1
    assert m["device"] == "cpu" and m["precision"] == "fp32"
    assert m["gpu"] is None and m["cuda"] is None and m["cudnn"] is None and m["cudnn_benchmark"] is None
    assert m["torch"] == torch.__version__ and m["python"] == platform.python_version()


def test_cpu_model_reads_proc_cpuinfo() -> None:
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo here")
    with open("/proc/cpuinfo") as f:
        names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    if not names:
        pytest.skip("/proc/cpuinfo has no model name on this architecture")
    assert machine.cpu_model() == names[0]


def test_cpu_model_falls_back_to_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(*args: object, **kwargs: object) -> None:
        raise OSError("no /proc here")

    monkeypatch.setattr(machine, "open", unreadable, raising=False)
    assert machine.cpu_model() == (platform.processor() or platform.machine() or "unknown CPU")


def test_usable_cores_follow_the_affinity_mask() -> None:
    assert machine.usable_cores() == len(os.sched_getaffinity(0)) <= (os.cpu_count() or 1)


def test_cudnn_version_as_text() -> None:
    assert machine.cudnn_version(91002) == "9.10.2"
    assert machine.cudnn_version(90100) == "9.1.0"
    assert machine.cudnn_version(8902) == "8.9.2"
    assert machine.cudnn_version(None) is None and machine.cudnn_version(0) is None


def test_precision_is_what_the_training_loop_uses() -> None:
    assert isinstance(loop._autocast(torch.device("cpu")), type(loop.contextlib.nullcontext()))
    assert machine.precision("cpu") == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available" on a machine without one
        ctx = loop._autocast(torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    assert machine.precision("cuda") == machine.precision("cuda:0") == "bf16 autocast"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_describe_machine_on_cuda_names_gpu_cuda_cudnn_and_the_benchmark_flag() -> None:
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        m = machine.describe_machine("cuda")
    finally:
        torch.backends.cudnn.benchmark = old
    assert m["device"] == f"cuda:{torch.cuda.current_device()}"
    assert m["gpu"] == torch.cuda.get_device_name(torch.cuda.current_device())
    assert m["cuda"] == torch.version.cuda and m["cudnn"] == machine.cudnn_version(
        torch.backends.cudnn.version()
    )
    assert m["cudnn_benchmark"] is True and m["precision"] == "bf16 autocast"

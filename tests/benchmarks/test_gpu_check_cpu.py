"""benchmarks/gpu_check.py on a machine without CUDA: it runs in its reduced mode, says what it skipped,
keeps going past a failing section, and prints its summary table last, where every part that could not run
(each section's CUDA part) is SKIP with the reason and never OK."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

needs_cpu_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the CPU fallback; a CUDA machine runs the full check"
)


def load_gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def summary_rows(output: str) -> dict[str, list[str]]:
    """part (`<section>/<part>`) -> the words of its row in the summary table (the last table printed)."""
    tail = output.rsplit("## summary", 1)[1].splitlines()
    rule = next(i for i, line in enumerate(tail) if line.startswith("---"))
    rows = {}
    for line in tail[rule + 1 :]:
        words = line.split()
        if not words or line.startswith("total"):
            break
        rows[words[0]] = words[1:]
    return rows


@needs_cpu_only
@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # its study section starts a local Ray: not beside the other Ray tests
def test_quick_mode_on_cpu_runs_every_section_and_skips_cuda_parts() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.splitlines()[0].startswith("device: cpu -- no CUDA device"), out[:300]
    assert "torch 2." in out and "CPUs" in out  # the machine header
    # Every section ran, in order, and the summary comes last with each of them OK.
    positions = [
        out.index(f"## {name}") for name in ("correctness", "timing", "throughput", "study", "summary")
    ]
    assert positions == sorted(positions)
    rows = summary_rows(out)
    sections = ("correctness", "timing", "throughput", "study")
    assert [part for part in rows if part.endswith("/cpu")] == [f"{s}/cpu" for s in sections]
    # What ran on the CPU passed; every CUDA part is its own row, SKIP with the reason, never OK.
    assert all(rows[f"{s}/cpu"][0] == "OK" for s in sections), rows
    for s in sections:
        assert rows[f"{s}/cuda"][0] == "SKIP" and "no CUDA device" in " ".join(rows[f"{s}/cuda"]), rows
    assert rows["timing/cpu-compiled"][0] == "SKIP"
    assert not [p for p, words in rows.items() if words[0] == "OK" and not p.endswith("/cpu")], rows
    # The CUDA-only parts say that they were skipped and why.
    assert "CPU quick mode: no CUDA device; CUDA parts skipped" in out
    assert "SKIP: torch.compile timings skipped" in out
    assert "SKIP: fractional-GPU study skipped (no CUDA device)" in out
    assert "CUDA part skipped: no CUDA device" in out
    # The correctness table lists every unit in both dtypes.
    from icbench.units import UNITS

    for unit in UNITS:
        assert f"\n{unit} " in out
    assert "fp32 (contiguous)" in out and "bf16 (channels_last, autocast)" in out


@needs_cpu_only
def test_a_failing_section_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu_check = load_gpu_check()

    def broken(ctx: object) -> object:
        raise RuntimeError("simulated breakage")

    def fine(ctx: object) -> object:
        return gpu_check.Outcome(figure="all good")

    monkeypatch.setattr(gpu_check, "CHECKS", {"correctness": broken, "timing": fine})
    threads = torch.get_num_threads()
    try:
        status = gpu_check.main(["--sections", "correctness,timing"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL correctness" in out and "RuntimeError: simulated breakage" in out
    assert "OK timing" in out
    rows = summary_rows(out)
    assert rows["correctness/cpu"][0] == "FAIL" and rows["timing/cpu"][0] == "OK"
    assert rows["correctness/cuda"][0] == rows["timing/cuda"][0] == "SKIP"


@needs_cpu_only
def test_no_part_whose_cuda_part_did_not_run_says_ok(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the sections report, without CUDA every CUDA row is SKIP with why, and the only OK rows
    are the CPU parts that ran; a section left out by the time budget is one SKIP row."""
    gpu_check = load_gpu_check()

    def fine(ctx: object) -> object:
        assert not ctx.cuda  # type: ignore[attr-defined]
        return gpu_check.Outcome(figure="ran on the CPU")

    monkeypatch.setattr(gpu_check, "CHECKS", {name: fine for name in gpu_check.SECTIONS})
    threads = torch.get_num_threads()
    try:
        assert gpu_check.main(["--sections", "correctness,timing,throughput", "--budget-s", "1e9"]) == 0
        assert gpu_check.main(["--sections", "correctness,study", "--budget-s", "-1"]) == 0
    finally:
        torch.set_num_threads(threads)
    first, second = capsys.readouterr().out.split("## summary", 2)[1:]
    rows = summary_rows("## summary" + first)
    assert list(rows) == [
        "correctness/cpu", "correctness/cuda", "timing/cpu", "timing/cuda", "throughput/cpu", "throughput/cuda",
    ]  # fmt: skip
    for part, words in rows.items():
        if part.endswith("/cuda"):
            assert words[0] == "SKIP" and "no CUDA device:" in " ".join(words)
        else:
            assert words[0] == "OK"
    budget_rows = summary_rows("## summary" + second)
    assert budget_rows["correctness"][0] == budget_rows["study"][0] == "SKIP"
    assert budget_rows["study/cuda"][0] == "SKIP"
    assert not [words for words in budget_rows.values() if words[0] == "OK"]


def test_unknown_section_is_refused_with_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    gpu_check = load_gpu_check()
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--sections", "correctnes"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown section 'correctnes'" in err and "correctness, timing, throughput, study" in err

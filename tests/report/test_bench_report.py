"""The table report (`icbench.report.bench`) on a hand-made table whose answers are known.

The table: 4 sites (site 0 the stem, never eligible), units ic and ic_dual at every non-empty mask of
sites 1-3, WLD off and on, 5 seeds, plus the basic network with and without WLD. Every row is
0.90 + a seed effect shared by all candidates + the candidate's designed effect + noise with mean
exactly zero over the 5 seeds, so each paired mean difference is the designed one (up to rounding):

- ic at site 2 alone adds +2 points; ic at sites 1 or 3 alone, and ic_dual at any single site, add 0.
- WLD adds +1 point to every ic placement, 0 to ic_dual, -1 to the basic network.
- Front (mean val acc up, MACs down): basic (100 MACs), ic:0010 +WLD (110, +3), ic:0111 +WLD (130, +4).
- Three off-front candidates sit 0.1 points under their front member with 1-point noise
  (indistinguishable); every other one is at least 0.5 points under with 0.1-point noise.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from icbench.errors import IcbenchError
from icbench.report import bench, stats
from icbench.report.table import COLUMNS, read_table, write_frame

HERE = Path(__file__).resolve()
SEEDS = [0, 1, 2, 3, 4]
SEED_EFFECT = [0.0, 0.8, -0.5, 0.6, -1.1]  # points, shared by every candidate of a seed
PATTERN = [1.0, -1.0, 0.5, -0.5, 0.0]  # mean exactly zero over the seeds; rotated per candidate
MASKS = ["0100", "0010", "0001", "0110", "0101", "0011", "0111"]
MACS_PER_SITE = {"ic": 10.0, "ic_dual": 20.0}
#: Designed effect (points) of each unit's masks without WLD, and WLD's added effect per unit.
EFFECT = {
    "ic": {"0100": 0.0, "0010": 2.0, "0001": 0.0, "0110": 1.0, "0101": 0.3, "0011": 1.9, "0111": 3.0},
    "ic_dual": {"0100": 0.0, "0010": 0.0, "0001": 0.0, "0110": 0.2, "0101": 0.4, "0011": 0.6, "0111": 3.9},
}
WLD_EFFECT = {"ic": 1.0, "ic_dual": 0.0, "conv": -1.0}
#: Candidates with 1-point noise (all others: 0.1 points); each is 0.1 points under its front member.
NOISY = {("ic:0011", True), ("ic_dual:0111", False), ("ic_dual:0111", True)}
FRONT = {("conv:0000", False), ("ic:0010", True), ("ic:0111", True)}
#: A diverged row: its candidate keeps 4 seeds.
DIVERGED = ("ic_dual:0101", False, 4)


def _row(placement: str, wld: bool, seed: int, val: float | None, macs: float, trial: int) -> dict[str, Any]:
    unit, bits = placement.split(":")
    status = "complete" if val is not None else "diverged"
    return {
        "row": f'{{"placement": "{placement}", "seed": {seed}, "wld": {str(wld).lower()}}}',
        "placement": placement, "unit": unit, "wld": wld, "seed": seed,
        "param_unit": unit, "param_wld": wld, "status": status, "val_acc": val,
        "test_acc": None if val is None else val - 0.01, "test_evaluated": "end of training",
        "macs": macs, "params": macs * 10, "params_trainable": macs * 10, "latency_ms": 1.0,
        "family": "resnet_cifar", "size": "tiny", "n_sites": 4, "n_unit_sites": bits.count("1"),
        "unit_delta": 0.1 if bits.count("1") else None,
        "unit_deltas": '{"layer1.0.conv1": 0.1}' if bits.count("1") else None,
        "teacher_val_acc": 0.9 if wld else None, "epochs": 3,
        "val_acc_curve": [0.5, 0.8, val if val is not None else math.nan],
        "train_loss_curve": [1.0, 0.5, 0.3], "epoch_time_s_curve": [1.0, 1.0, 1.0], "train_time_s": 3.0,
        "wall_time_s": 4.0, "start_time": "2026-12-01 00:00:00",
        "machine": '{"cores": 2, "cpu": "Hand CPU", "gpu": null, "precision": "fp32"}',
        "versions": "{}", "trial": trial,
    }  # fmt: skip


def make_table(path: Path, *, with_basic: bool = True) -> Path:
    rows: list[dict[str, Any]] = []
    designs: list[tuple[str, bool, float, float, float]] = []  # placement, wld, effect, noise, macs
    if with_basic:
        designs += [
            ("conv:0000", False, 0.0, 0.1, 100.0),
            ("conv:0000", True, WLD_EFFECT["conv"], 0.1, 100.0),
        ]
    for unit, effects in EFFECT.items():
        for mask, effect in effects.items():
            macs = 100.0 + MACS_PER_SITE[unit] * mask.count("1")
            for wld in (False, True):
                p = f"{unit}:{mask}"
                noise = 1.0 if (p, wld) in NOISY else 0.1
                designs.append((p, wld, effect + (WLD_EFFECT[unit] if wld else 0.0), noise, macs))
    for k, (placement, wld, effect, noise, macs) in enumerate(designs):
        for s in SEEDS:
            points = 90.0 + SEED_EFFECT[s] + effect + noise * PATTERN[(k + s) % 5]
            val = None if (placement, wld, s) == DIVERGED else points / 100
            rows.append(_row(placement, wld, s, val, macs, len(rows)))
    frame = pd.DataFrame(rows)
    columns = [*list(COLUMNS)[:5], "param_unit", "param_wld", *list(COLUMNS)[5:]]
    assert set(frame.columns) == set(columns)
    shared = {
        "study": "hand",
        "fingerprint": {},
        "experiment": {"dataset": "mnist5k", "family": "resnet_cifar", "size": "tiny", "width": 0.5,
                       "epochs": 3, "lr": 0.1, "wld": {"lambda0": 0.5, "temperature": 4.0}},
    }  # fmt: skip
    write_frame(frame[columns], shared, path)
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(tmp_path_factory.mktemp("bench") / "hand_table.parquet")


@pytest.fixture(scope="module")
def report(table: Path) -> bench.BenchReport:
    return bench.bench_report(pd.read_parquet(table))


def _effect(effects: list[bench.Effect], unit: str, wld: str, where: str) -> bench.Effect:
    (hit,) = [e for e in effects if (e.unit, e.wld, e.where) == (unit, wld, where)]
    return hit


def _contains(row: stats.Paired, value: float) -> bool:
    # Two candidates can share a noise pattern: then the interval has zero width at the true value up to
    # rounding, hence the 1e-12 slack.
    return row.diff.low - 1e-12 <= value <= row.diff.high + 1e-12


def test_candidates_skip_failed_rows(report: bench.BenchReport) -> None:
    cands = report.candidates
    assert len(cands) == 2 + 2 * 7 * 2
    assert sorted(cands[("ic_dual:0101", False)].val) == [0, 1, 2, 3]
    assert bench.eligible_sites(cands) == [1, 2, 3]
    assert bench.basic_key(cands) == ("conv:0000", False)
    assert bench.basic_key(cands, wld=True) == ("conv:0000", True)


@pytest.mark.parametrize(
    ("unit", "wld", "where", "true_pts", "detected"),
    [
        ("ic", "off", "site 2", 2.0, True),
        ("ic", "off", "site 1", 0.0, False),
        ("ic", "off", "site 3", 0.0, False),
        ("ic", "on", "site 2", 3.0, True),
        ("ic", "on", "site 1", 1.0, True),
        ("ic", "off", "all eligible sites", 3.0, True),
        ("ic", "on", "all eligible sites", 4.0, True),
        ("ic_dual", "off", "site 1", 0.0, False),
        ("ic_dual", "off", "site 2", 0.0, False),
        ("ic_dual", "on", "site 3", 0.0, False),
    ],
)
def test_single_site_effects(
    report: bench.BenchReport, unit: str, wld: str, where: str, true_pts: float, detected: bool
) -> None:
    e = _effect(report.single, unit, wld, where)
    assert e.val.reference == "the basic network"
    assert e.val.n == 5
    assert e.val.diff.mean * 100 == pytest.approx(true_pts, abs=1e-9)
    assert _contains(e.val, true_pts / 100)
    # The test column is validation - 1 point on every row: the same differences.
    assert e.test.diff.mean * 100 == pytest.approx(true_pts, abs=1e-9)
    assert e.val.significant() is detected
    text = stats.verdict(e.val, factor=100)
    if detected:
        assert text.startswith("better than the basic network by")
    else:
        assert text.startswith("no detectable difference")
        assert "the smallest difference 5 seeds could detect" in text


def test_single_site_table_is_complete_and_holm_adjusted(report: bench.BenchReport) -> None:
    # 2 units x 2 WLD settings x (3 single sites + all sites).
    assert len(report.single) == 16
    raw = [e.val.p for e in report.single]
    assert [e.val.p_adjusted for e in report.single] == pytest.approx(stats.holm(raw))
    assert all(e.val.p_adjusted >= e.val.p for e in report.single)
    assert any(e.val.p_adjusted > e.val.p + 1e-12 for e in report.single)
    raw_test = [e.test.p for e in report.single]
    assert [e.test.p_adjusted for e in report.single] == pytest.approx(stats.holm(raw_test))


def test_wld_effects(report: bench.BenchReport) -> None:
    ic = _effect(report.wld, "ic", "on - off", "7 placements")
    assert ic.val.n == 5 and ic.n_placements == 7
    assert ic.val.diff.mean * 100 == pytest.approx(1.0, abs=1e-9)
    assert _contains(ic.val, 0.01) and ic.val.significant()
    dual = _effect(report.wld, "ic_dual", "on - off", "7 placements")
    # Not exactly 0: the diverged row drops ic_dual:0101 from seed 4's mean, so its noise no longer cancels.
    assert dual.val.diff.mean * 100 == pytest.approx(0.0, abs=0.05)
    assert not dual.val.significant()
    basic = _effect(report.wld, "conv", "on - off", "basic network")
    assert basic.val.diff.mean * 100 == pytest.approx(-1.0, abs=1e-9)
    assert basic.val.significant() and stats.verdict(basic.val, factor=100).startswith("worse")
    assert [e.val.p_adjusted for e in report.wld] == pytest.approx(stats.holm([e.val.p for e in report.wld]))


def test_wld_average_is_per_seed_over_the_same_placements() -> None:
    # One placement has both settings at seeds 0-2; another only WLD off: it must not enter the mean.
    def cand(p: str, wld: bool, vals: list[float]) -> bench.Candidate:
        return bench.Candidate(p, wld, 1.0, 1.0, dict(enumerate(vals)), dict(enumerate(vals)))

    cands = {
        ("conv:00", False): cand("conv:00", False, [0.5, 0.5, 0.5]),
        ("ic:01", False): cand("ic:01", False, [0.5, 0.6, 0.7]),
        ("ic:01", True): cand("ic:01", True, [0.52, 0.61, 0.73]),
    }
    (e,) = bench.wld_effects(cands)
    assert e.n_placements == 1
    assert e.val.diff.mean == pytest.approx(0.02)


def test_front_and_indistinguishable(report: bench.BenchReport) -> None:
    front = {(e.candidate.placement, e.candidate.wld) for e in report.front if e.on_front}
    assert front == FRONT
    status = {(e.candidate.placement, e.candidate.wld): e.status for e in report.front}
    indistinguishable = {k for k, s in status.items() if s == "indistinguishable"}
    assert indistinguishable == NOISY
    assert all(s == "differs" for k, s in status.items() if k not in FRONT | NOISY)
    by_key = {(e.candidate.placement, e.candidate.wld): e for e in report.front}
    # The member compared against: highest mean accuracy among front members with no more MACs.
    assert by_key[("ic:0011", True)].against.label == "ic:0010 +WLD"  # type: ignore[union-attr]
    assert by_key[("ic_dual:0111", False)].against.label == "ic:0111 +WLD"  # type: ignore[union-attr]
    assert by_key[("conv:0000", True)].against.label == "conv:0000"  # type: ignore[union-attr]
    d = by_key[("ic:0011", True)].diff
    assert d is not None and d.diff.mean * 100 == pytest.approx(-0.1, abs=1e-9)


def test_build_writes_files_and_key_sentences(table: Path, tmp_path: Path) -> None:
    md = bench.build_bench_report(table, tmp_path / "out")
    assert md == tmp_path / "out" / "bench.md"
    for name in bench.BENCH_FILES:
        assert (tmp_path / "out" / name).is_file(), name
    assert (tmp_path / "out" / "bench_front.png").read_bytes()[:4] == b"\x89PNG"
    text = md.read_text()
    assert "hand_table" in text and "seeds [0, 1, 2, 3, 4]" in text
    assert "Hand CPU" in text and "mnist5k" in text and "`lr`: 0.1" in text
    assert "evaluated once at the end of each row's training" in text
    assert "nothing here selects on the test split" in text
    assert "Left out (not complete): 1 diverged" in text
    assert "## Single-site effects" in text and "## WLD effect" in text
    assert "better than the basic network by +2.00 points" in text
    assert "no detectable difference" in text and "smallest difference this design detects" in text
    assert "**3 of 27 off-front candidates are statistically indistinguishable from the front**" in text
    assert "the table cannot tell 3 candidates apart from the front with 5 seeds" in text
    assert not list((tmp_path / "out").glob(".*")), "temporary files left behind"

    effects = pd.read_csv(tmp_path / "out" / "bench_effects.csv")
    assert len(effects) == 16 + 3
    row = effects[(effects["unit"] == "ic") & (effects["wld"] == "off") & (effects["where"] == "site 2")]
    assert row["val_diff_pts"].iloc[0] == pytest.approx(2.0, abs=1e-6)
    assert bool(row["val_significant"].iloc[0])
    assert {"val_p_holm", "test_diff_pts", "test_ci_low_pts", "val_detectable_pts"} <= set(effects.columns)
    front = pd.read_csv(tmp_path / "out" / "bench_front.csv")
    assert len(front) == 30 and int(front["on_front"].sum()) == 3
    assert int((front["status"] == "indistinguishable").sum()) == 3


def test_without_basic_network_says_so(tmp_path: Path) -> None:
    table = make_table(tmp_path / "nobasic.parquet", with_basic=False)
    text = bench.build_bench_report(table, tmp_path / "out").read_text()
    assert "The table has no basic network" in text
    assert "No single-site row in the table." in text


def _cli() -> Any:
    spec = importlib.util.spec_from_file_location("run_study_cli", HERE.parents[2] / "run_study.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_report_of_a_table(
    table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main = _cli().main
    out = tmp_path / "given"
    assert main(["report", str(table), "--out", str(out)]) == 0
    assert (out / "bench.md").is_file() and str(out) in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(table)]) == 0
    assert (tmp_path / "reports" / "hand_table" / "bench.md").is_file()


def test_cli_rejects_a_non_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = _cli().main
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    assert main(["report", str(fake), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o")]) == 2
    assert "table not found" in capsys.readouterr().err
    with pytest.raises(IcbenchError):
        bench.build_bench_report(fake, tmp_path / "o2")
    plain = tmp_path / "plain.parquet"  # a Parquet file that is not an icbench table
    pd.DataFrame({"a": [1]}).to_parquet(plain)
    assert main(["report", str(plain), "--out", str(tmp_path / "o")]) == 2
    assert "not an icbench table" in capsys.readouterr().err


def test_unit_liveness_is_stated(table: Path, tmp_path: Path) -> None:
    """Rows that record δ get a per unit and WLD summary; a table made before δ existed (no such columns)
    gets a warning in the short answer that its units were inert."""
    text = bench.build_bench_report(table, tmp_path / "out").read_text()
    assert "## Unit liveness" in text and "| ic | off |" in text
    assert "- Unit liveness: median δ 0.100 over" in text and "0 of them inert" in text
    frame, shared = read_table(table)
    old = tmp_path / "old.parquet"
    write_frame(frame.drop(columns=["unit_delta", "unit_deltas"]), shared, old)
    old_text = bench.build_bench_report(old, tmp_path / "old").read_text()
    assert "not recorded, and the units were trained the legacy way" in old_text
    assert "compares the plain convolution with (almost) itself" in old_text

"""Report folders built from fixture studies: every file, documented columns, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
from report_fixtures import SEARCH_FRONT, SEARCH_ROWS, make_grid_study, make_search_study

from icbench.report import REPORT_FILES, build_report, compare_studies
from icbench.report.tables import ABLATION_COLUMNS, PARETO_COLUMNS, PARETO_CSV_COLUMNS

PNG = b"\x89PNG\r\n\x1a\n"


def table_headers(markdown: str) -> list[list[str]]:
    """Header rows of every Markdown table in a document."""
    lines = markdown.splitlines()
    heads = []
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|( :?-+:? \|)+", lines[i + 1]):
            heads.append([c.strip() for c in line.strip("|").split(" | ")])
    return heads


def documented(columns: tuple[str, ...], macs: str = "MMac", params: str = "K") -> list[str]:
    return [c.format(macs=macs, params=params) for c in columns]


@pytest.fixture(scope="module")
def search_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built once for the module: the tests below only read the files.
    tmp = tmp_path_factory.mktemp("search_report")
    url = f"sqlite:///{tmp / 'study.db'}"
    make_search_study(url)
    report = build_report(url, "search", tmp / "reports" / "search")
    assert not report.notes
    return report.out_dir


def test_every_file_written(search_report: Path) -> None:
    for name in REPORT_FILES:
        path = search_report / name
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == PNG
    summary = (search_report / "summary.md").read_text()
    for name in REPORT_FILES[1:]:
        assert f"]({name})" in summary


def test_trials_files(search_report: Path) -> None:
    csv = pd.read_csv(search_report / "trials.csv")
    parquet = pd.read_parquet(search_report / "trials.parquet")
    assert len(csv) == len(parquet) == len(SEARCH_ROWS)
    for col in (
        "state",
        "placement",
        "unit",
        "val_acc",
        "test_acc",
        "macs",
        "params",
        "latency_ms",
        "reason",
    ):
        assert col in csv.columns and col in parquet.columns
    assert csv["curve"].iloc[0].startswith("[{")


def test_pareto_tables(search_report: Path) -> None:
    md = (search_report / "pareto.md").read_text()
    (headers,) = table_headers(md)
    assert headers == documented(PARETO_COLUMNS)
    assert "FLOPs = 2 x MACs" in md
    csv = pd.read_csv(search_report / "pareto.csv")
    assert list(csv.columns) == list(PARETO_CSV_COLUMNS)
    # The front plus the basic network (#0, dominated) as the reference row, sorted by MACs.
    assert sorted(csv.loc[csv["on_front"], "number"]) == sorted(SEARCH_FRONT)
    assert csv.loc[~csv["on_front"], "number"].tolist() == [0]
    assert csv.loc[csv["number"] == 0, "is_basic"].item()
    assert csv["macs"].is_monotonic_increasing
    assert "| 0 | resnet_cifar | resnet8 | conv | `conv:000000` | 90.00 | 89.00 | - | 10.00 |" in md
    tex = (search_report / "pareto.tex").read_text()
    assert r"\begin{tabular}" in tex and r"resnet\_cifar" in tex and r"Val acc (\%)" in tex
    assert tex.count(r" \\") == len(csv) + 1


def test_hypervolume_csv_states_reference(search_report: Path) -> None:
    hv = pd.read_csv(search_report / "hypervolume.csv")
    # Just worse than the worst COMPLETE values (0.90 - 0.1 x 0.07; 1.1 x 20M), stated in summary.md.
    assert hv["ref_macs"].eq(22e6).all() and hv["ref_val_acc"].sub(0.893).abs().lt(1e-9).all()
    assert hv["hypervolume"].iloc[-1] == pytest.approx(0.037 * 2e6 + 0.047 * 3e6 + 0.057 * 5e6 + 0.077 * 2e6)
    summary = (search_report / "summary.md").read_text()
    assert "reference point: val acc 0.893" in summary and "the lowest COMPLETE val acc less 0.1" in summary


def test_placements_and_ablation_tables(search_report: Path) -> None:
    md = (search_report / "placements.md").read_text()
    heads = table_headers(md)
    assert [h[:5] for h in heads[:3]] == [
        ["Strategy", "Trials", "Complete", "Pruned", "Failed"],
        ["Unit", "Trials", "Complete", "Pruned", "Failed"],
        ["Strategy", "Unit", "Trials", "Complete", "Pruned"],
    ]
    assert heads[0][-3:] == ["Best val acc (%), no limit", "Best trial", "Median δ"]
    assert "MACs ≤ 10.00 MMac (1.00x)" in heads[0][5]
    assert heads[3] == [
        "Strategy",
        "Unit",
        "Placement",
        "WLD",
        "Seeds",
        "Val acc (%) mean ± std",
        "MACs (MMac)",
        "Median δ",
    ]
    assert "| all | ic | `ic:111111` | True | 2 | 93.00 ± 0.00 | 10.00 | - |" in md
    # These hand-made trials predate unit liveness: the report says δ is unknown, in words.
    assert "recorded δ (they were made before liveness was measured)" in md
    ab = (search_report / "ablation.md").read_text()
    (headers,) = table_headers(ab)
    assert headers == ["unit", *documented(ABLATION_COLUMNS)]
    assert "Not a grid study" in ab


def test_grid_ablation(grid_url: str, tmp_path: Path) -> None:
    report = build_report(grid_url, "grid", tmp_path / "grid", target_acc=0.898)
    ab = (report.out_dir / "ablation.md").read_text()
    headers = table_headers(ab)[0]  # the paired comparisons follow as a second table
    assert headers == ["unit", "wld", *documented(ABLATION_COLUMNS)]
    assert "Grid study" in ab and "89.80 %" in ab
    # ic + WLD, seeds 0..2: val 0.94, 0.945, 0.95; curves rise linearly from 0.85 + (val - 0.85) / 4 to val:
    # epoch 2 gives 0.895, 0.8975, 0.9, so 0.898 is reached after 3, 3 and 2 epochs.
    assert "| ic | True | 3 | 3 | 94.50 ± 0.50 | 92.50 ± 0.50 | 10.00 | 78.50 | 2.7 ± 0.6 | 3/3 |" in ab
    # conv without WLD (curves from 0.4): the target is reached only after the last of 4 epochs.
    assert "| conv | False | 3 | 3 | 90.50 ± 0.50 | 88.50 ± 0.50 | 10.00 | 78.00 | 4.0 ± 0.0 | 3/3 |" in ab
    assert (report.out_dir / "curves.png").read_bytes()[:8] == PNG


def test_no_complete_trial(db_url: str, tmp_path: Path) -> None:
    study = optuna.create_study(study_name="empty", storage=db_url, directions=["maximize", "minimize"])
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            user_attrs={"status": "rejected", "rejected": True, "reason": "MACs"},
        )
    )
    report = build_report(db_url, "empty", tmp_path / "empty")
    assert set(report.files) == {"trials.csv", "trials.parquet", "summary.md"}
    summary = (tmp_path / "empty" / "summary.md").read_text()
    assert "no COMPLETE trial" in summary
    assert "| rejected | 1 |" in summary
    assert len(pd.read_csv(tmp_path / "empty" / "trials.csv")) == 1


def test_empty_study(db_url: str, tmp_path: Path) -> None:
    optuna.create_study(study_name="new", storage=db_url, directions=["maximize", "minimize"])
    report = build_report(db_url, "new", tmp_path / "new")
    assert "no COMPLETE trial" in (report.out_dir / "summary.md").read_text()


def test_compare_studies(search_url: str, tmp_path: Path) -> None:
    make_grid_study(search_url)
    report = compare_studies(search_url, "search", search_url, "grid", tmp_path / "cmp")
    md = (tmp_path / "cmp" / "compare.md").read_text()
    headers = table_headers(md)[0]  # paired comparisons follow as further tables
    assert headers[:2] == ["Study", "Trial"] and "MACs (MMac)" in headers
    assert "| search | 2 |" in md and "| grid | 11 |" in md
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:8] == PNG
    assert set(report.files) == {"compare.md", "compare.png"}

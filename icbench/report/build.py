"""Build a study's report folder, and compare two studies.

`build_report` reads the storage once (see `load.py` for why that never disturbs a running study),
then writes every table and figure from that snapshot. It never trains. A study without a COMPLETE
trial gets its trials table and a summary saying so; every other file needs at least one COMPLETE
trial.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icbench.errors import IcbenchError
from icbench.files import publish
from icbench.places import folder_problem
from icbench.redact import redact
from icbench.report import aggregate, evaluation, pareto, plots, tables
from icbench.report.environment import MACHINE_COLUMNS, machine_rows
from icbench.report.liveness import liveness_markdown
from icbench.report.load import StudyData, curve_to_json, load_study

if TYPE_CHECKING:
    import pandas as pd

    from icbench.report.load import StorageLike

#: How the default hypervolume reference point is chosen (`pareto.default_reference`), as the report says it.
REFERENCE_RULE = (
    f"the lowest COMPLETE val acc less {pareto.DEFAULT_ACC_MARGIN:g} x the range of val acc, and "
    f"{pareto.DEFAULT_MACS_MARGIN:g} x the largest COMPLETE MACs"
)
#: The same, short enough for a figure title.
REFERENCE_RULE_SHORT = (
    f"worst val acc less {pareto.DEFAULT_ACC_MARGIN:g} x its range; {pareto.DEFAULT_MACS_MARGIN:g} x the largest MACs"
)

#: Files of a full report, in the order summary.md lists them.
REPORT_FILES: tuple[str, ...] = (
    "summary.md",
    "trials.csv",
    "trials.parquet",
    "pareto.md",
    "pareto.csv",
    "pareto.tex",
    "pareto.png",
    "hypervolume.csv",
    "hypervolume.png",
    "placements.md",
    "ablation.md",
    "curves.png",
)

_DESCRIPTIONS = {
    "trials.csv": "every trial, one row each (state, parameters, placement, metrics, failure reason, machine); "
    "test_acc only for trials evaluated on the test split, with how (test_evaluated) and when",
    "trials.parquet": "the same table as Parquet",
    "pareto.md": "Pareto-optimal COMPLETE trials, basic networks as reference, test accuracy where evaluated",
    "pareto.csv": "the same rows with raw numbers",
    "pareto.tex": "the same table for LaTeX (booktabs)",
    "pareto.png": "validation accuracy against MACs, front as a step line",
    "hypervolume.csv": "(val acc, MACs) hypervolume by trial and by wall-clock, with its reference point",
    "hypervolume.png": "the hypervolume by trial and by wall-clock",
    "placements.md": "per strategy and unit: counts and best accuracy within MACs budgets; seed repeats and "
    "their paired comparisons against the basic network",
    "ablation.md": "factor cells with mean ± std over seeds, epochs to target, paired comparisons against the "
    "basic cell (95% t intervals, Holm-corrected)",
    "curves.png": "validation accuracy per epoch per cell",
}


@dataclass
class Report:
    """What a report build wrote.

    Attributes:
        out_dir: The report folder.
        files: File name -> path, for every file written.
        counts: Trial counts (see `aggregate.state_counts`).
        notes: Plain-language notes on what could not be written and why (also in summary.md).
    """

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# File writing


def _atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """Write through a temporary file in the same folder, then rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        publish(tmp, path)  # 0644 under umask 022, as `open()` would make it (mkstemp makes 0600)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def tabular(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials table made file-friendly: curves as JSON text, mixed-type columns as text."""
    out = trials.copy()
    out["curve"] = out["curve"].map(curve_to_json)
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {
                type(v) for v in out[col] if v is not None and not (isinstance(v, float) and math.isnan(v))
            }
            if len(kinds) > 1:  # Parquet needs one type per column
                out[col] = out[col].map(lambda v: None if v is None else str(v))
    return out


def _write_trials(trials: pd.DataFrame, out_dir: Path, report: Report) -> None:
    flat = tabular(trials)
    report.files["trials.csv"] = _atomic(out_dir / "trials.csv", lambda p: flat.to_csv(p, index=False))
    try:
        report.files["trials.parquet"] = _atomic(
            out_dir / "trials.parquet", lambda p: flat.to_parquet(p, index=False)
        )
    except Exception as exc:  # a missing or failing Parquet engine must not cost the rest of the report
        report.notes.append(f"trials.parquet not written: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------------
# Summary


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _study_file_line(study_file: str | None, out_dir: Path) -> str:
    if not study_file:
        return "Study file: not recorded."
    path = Path(study_file)
    if path.is_file():
        rel = os.path.relpath(path.resolve(), out_dir.resolve())
        return f"Study file: [`{study_file}`]({Path(rel).as_posix()})"
    return f"Study file: `{study_file}`"


def summary_markdown(
    data: StudyData,
    report: Report,
    out_dir: Path,
    study_file: str | None,
    extra: Sequence[str] = (),
) -> str:
    """summary.md: links to every file written, the study, its environment, time and trial counts."""
    trials = data.trials
    assert trials is not None
    attrs = data.user_attrs
    c = report.counts
    lines = [f"# Report: {data.name}\n"]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(
        f"Generated {generated} from storage `{data.storage}`. {_study_file_line(study_file, out_dir)}\n"
    )
    objs = ", ".join(f"{d} `{n}`" for n, d in data.objectives) or "(none recorded)"
    sampler = attrs.get("sampler", "not recorded")
    lines.append(f"Objectives: {objs}. Sampler: {sampler}, seed {attrs.get('seed', 'not recorded')}.")
    if attrs.get("max_macs") is not None:
        lines.append(f"MACs ceiling: {float(attrs['max_macs']):,.0f} MACs per image.")
    seeded = attrs.get("seeded_by")
    if isinstance(seeded, dict):
        lines.append(
            f"Seeded by the estimator `{seeded.get('estimator')}` (seed {seeded.get('seed')}): it scored "
            f"{seeded.get('candidates_scored')} candidates in {float(seeded.get('seconds') or 0):.1f} s (part of "
            f"the study's wall time) and its top {len(seeded.get('enqueued') or [])} were trained first "
            "(trials with `proposed_by: estimator:...`)."
        )
    planned = attrs.get("n_trials")
    finished = c["COMPLETE"] + c["PRUNED"] + c["FAIL"]
    if c["RUNNING"] or c["WAITING"] or (isinstance(planned, int) and finished < planned):
        lines.append(
            f"\n**Study in progress**: {finished} trials finished"
            + (f" of {planned} planned" if planned else "")
            + f", {c['RUNNING']} running. This report is a snapshot."
        )
    if (warning := _missing_reference(attrs, trials)) is not None:
        lines.append(f"\n**Warning**: {warning}")
    lines.append("")
    for note in report.notes:
        lines.append(f"**Note:** {note}\n")

    lines.append("## Trials\n")
    rows = [
        ["COMPLETE", str(c["COMPLETE"]), "full budget; the only trials on fronts and in hypervolumes"],
        ["PRUNED", str(c["PRUNED"]), "stopped early by the scheduler"],
        [
            "FAIL",
            str(c["FAIL"]),
            f"{c['FAIL'] - c['rejected'] - c['duplicate']} failed (raised, out of memory or diverged; "
            f"{c['diverged']} diverged), and the rejected and duplicate trials below",
        ],
        ["rejected", str(c["rejected"]), "FAIL before training: over the MACs ceiling (counted in FAIL)"],
        [
            "duplicate",
            str(c["duplicate"]),
            "FAIL before training: parameters already evaluated (counted in FAIL)",
        ],
        ["RUNNING", str(c["RUNNING"]), "not finished when this report was read"],
        ["total", str(c["total"]), ""],
    ]
    lines.append(tables.markdown_table(["State", "Trials", "Meaning"], rows, "lrl"))
    starts = trials["start_time"].dropna()
    ends = trials["end_time"].dropna()
    span = (ends.max() - starts.min()).total_seconds() if len(starts) and len(ends) else math.nan
    busy = float(trials["wall_time_s"].fillna(0).sum())
    lines.append(
        f"Time spent: {_duration(span)} wall-clock from the first trial's start to the last trial's end; "
        f"{_duration(busy)} of trial time summed over trials (larger when trials ran in parallel).\n"
    )
    lines.append(evaluation.statement_on_test(trials, evaluation.evaluation_setting(attrs)) + "\n")
    lines += list(extra)

    lines.append("## Files\n")
    for name in REPORT_FILES:
        if name == "summary.md":
            continue
        if name in report.files:
            lines.append(f"- [{name}]({name}): {_DESCRIPTIONS[name]}")
        else:
            lines.append(f"- {name}: not written (see the notes above)")
    if "pareto.png" in report.files:
        lines.append("\n![Validation accuracy against MACs](pareto.png)\n")
    else:
        lines.append("")

    lines.append("## Environment\n")
    lines += _machines_section(data)
    lines.append(
        f"Driver (the process that ran the search and any test evaluation after it): device "
        f"{attrs.get('device', 'not recorded')}; {attrs.get('platform', 'platform not recorded')}.\n"
    )
    versions = attrs.get("versions")
    if isinstance(versions, dict) and versions:
        lines.append(
            tables.markdown_table(
                ["Package", "Version"], [[str(k), str(v)] for k, v in sorted(versions.items())]
            )
        )
    else:
        lines.append("Package versions: not recorded by the study.\n")
    lines.append(f"Report built with Python {platform.python_version()}.\n")

    yaml_text = attrs.get("study_yaml")
    if yaml_text:
        lines.append("## Study file contents\n")
        lines.append(
            "<details><summary>study YAML as run</summary>\n\n```yaml\n"
            + redact(str(yaml_text)).rstrip()  # stored masked; older studies may hold a password
            + "\n```\n\n</details>\n"
        )
    return "\n".join(lines)


def _missing_reference(attrs: dict[str, Any], trials: pd.DataFrame) -> str | None:
    """A warning when the study file enqueues a basic network (`enqueue:` with `unit: conv`) and no
    basic network is COMPLETE: the reference row every comparison needs is missing."""
    import yaml

    try:
        enqueue = (yaml.safe_load(attrs.get("study_yaml") or "") or {}).get("enqueue") or []
    except (yaml.YAMLError, AttributeError):
        return None
    if not any(isinstance(p, dict) and p.get("unit") == "conv" for p in enqueue):
        return None
    done = trials["state"] == "COMPLETE"
    basic = trials["is_basic"].fillna(False).astype(bool) if "is_basic" in trials else done & False
    if bool((done & basic).any()):
        return None
    return (
        "the study's reference network (the basic network its `enqueue:` names) has no COMPLETE trial; "
        "comparisons with it are missing. Run the study again: an interrupted enqueued point is queued again."
    )


def _machines_section(data: StudyData) -> list[str]:
    """The machines the trials ran on: one row per distinct recorded description, with its trial count."""
    trials = data.trials
    assert trials is not None
    counts = trials["machine"].dropna().value_counts().to_dict()
    recorded = int(sum(counts.values()))
    unrecorded = len(trials) - recorded
    missing = (
        f" {unrecorded} trial(s) recorded no machine (never trained: rejected or duplicate candidates; or "
        "recorded before trials described their machine)."
        if unrecorded
        else ""
    )
    if not recorded:
        return ["Machines: no trial recorded its machine.\n"]
    n = len(data.machines)
    lines = [
        f"Trials ran on {n} distinct machine{'s' if n > 1 else ''} (as each trial described it: CPU model, "
        "usable cores and torch threads, GPU with CUDA and cuDNN versions and the cuDNN benchmark flag, "
        f"precision).{missing} Full descriptions are the `machine` column of trials.csv.\n"
    ]
    headers = ["Machine", *(title for _, title in MACHINE_COLUMNS), "Trials"]
    rows = machine_rows(data.machines, counts)
    lines.append(tables.markdown_table(headers, rows, "l" * (len(headers) - 1) + "r"))
    return lines


# --------------------------------------------------------------------------------------------------
# Report


def _front_objectives(data: StudyData, trials: pd.DataFrame) -> list[tuple[str, str]]:
    """The study's objectives when the table has them all, else (val_acc max, MACs min)."""
    return evaluation.front_objectives(data.objectives, trials)


def _budgets(trials: pd.DataFrame, data: StudyData, macs_budgets: Sequence[float] | None) -> tuple[list, str]:
    if macs_budgets:
        budgets = [aggregate.Budget(f"{m:,.0f}", float(m)) for m in sorted(macs_budgets)]
        budgets.append(aggregate.Budget("no limit", math.inf))
        return budgets, "MACs budgets given by the caller, and no limit"
    ceiling = data.user_attrs.get("max_macs")
    return aggregate.default_budgets(trials, max_macs=float(ceiling) if ceiling is not None else None)


def check_out_dir(out_dir: str | os.PathLike[str]) -> None:
    """Refuse a report folder that cannot be written (under a regular file, read-only), before any work.

    Raises:
        IcbenchError: naming the folder, what is wrong and the option that picks another (`--out`).
    """
    problem = folder_problem(out_dir)
    if problem:
        raise IcbenchError(f"the report folder cannot be written (option --out picks another): {problem}")


def build_report(
    storage: StorageLike,
    study_name: str,
    out_dir: str | os.PathLike[str],
    study_file: str | None = None,
    *,
    reference: tuple[float, float] | None = None,
    macs_budgets: Sequence[float] | None = None,
    target_acc: float | None = None,
) -> Report:
    """Write the report folder of one study.

    Args:
        storage: Storage URL ("sqlite:///runs/<study>/study.db"), SQLite or journal file path, or an
            Optuna storage object.
        study_name: The study's name in that storage.
        out_dir: The report folder itself (conventionally `reports/<study>`); created if missing.
        study_file: Study file to link from summary.md (default: the one the study recorded).
        reference: (accuracy, MACs) hypervolume reference point; default `pareto.default_reference`:
            just worse than the worst values among COMPLETE trials (`REFERENCE_RULE`).
        macs_budgets: Absolute MACs budgets for placements.md; default 1.0x, 1.1x and 1.5x the basic
            network's MACs, the study's MACs ceiling and no limit.
        target_acc: Epochs-to-target accuracy for ablation.md, on the stored scale; default 0.99 x the
            lowest cell's mean final validation accuracy.

    Returns:
        What was written (see `Report`).

    Raises:
        StudyNotFoundError: The storage has no such study (the message lists those it has).
        StorageError: The storage cannot be opened or read.
    """
    check_out_dir(out_dir)
    data = load_study(storage, study_name)
    trials = data.trials
    assert trials is not None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir=out, counts=aggregate.state_counts(trials))
    study_file = study_file or data.user_attrs.get("study_file")
    _write_trials(trials, out, report)

    complete = pareto.candidates(trials, ["val_acc"])
    if complete.empty:
        report.notes.append(
            f"study {study_name!r} has no COMPLETE trial with a validation accuracy yet "
            f"({report.counts['total']} trials in all), so only the trials table and this summary were "
            "written; the other files need at least one COMPLETE trial."
        )
        report.files["summary.md"] = _write_text(
            out / "summary.md", summary_markdown(data, report, out, study_file)
        )
        return report

    acc_values = trials["val_acc"]
    extra: list[str] = []

    # Pareto tables over the study's objectives.
    objectives = _front_objectives(data, trials)
    front = pareto.pareto_front(trials, objectives)
    rows = tables.pareto_rows(front, trials)
    report.files["pareto.csv"] = _atomic(out / "pareto.csv", lambda p: rows.to_csv(p, index=False))
    setting = evaluation.evaluation_setting(data.user_attrs)
    test_text = evaluation.statement_on_test(trials, setting)
    report.files["pareto.md"] = _write_text(
        out / "pareto.md", tables.pareto_markdown(rows, acc_values, study_name, objectives, test_text)
    )
    report.files["pareto.tex"] = _write_text(
        out / "pareto.tex",
        tables.pareto_latex(
            rows, acc_values, study_name, evaluation.statement_on_test(trials, setting, short=True)
        ),
    )

    # (val_acc, MACs) figure and hypervolume.
    cand = pareto.candidates(trials, ["val_acc", "macs"])
    if cand.empty:
        report.notes.append(
            "no COMPLETE trial recorded MACs, so pareto.png and the hypervolume were not written"
        )
    else:
        front2d = pareto.pareto_front(trials, pareto.HV_OBJECTIVES)
        c = report.counts
        # The names and counts of summary.md and the progress lines: rejected (over the MACs ceiling) and
        # duplicate (an earlier trial's candidate) are FAIL trials never trained; failed is the rest of FAIL.
        failed = c["FAIL"] - c["rejected"] - c["duplicate"]
        excluded = (
            f"{len(cand)} COMPLETE shown; not shown: {c['PRUNED']} PRUNED, {failed} failed, "
            f"{c['rejected']} rejected, {c['duplicate']} duplicate"
        )
        report.files["pareto.png"] = _atomic(
            out / "pareto.png",
            lambda p: plots.plot_pareto(
                cand, front2d, p, title=f"{study_name}: validation accuracy vs MACs", excluded=excluded
            ),
        )
        history, ref = pareto.hypervolume_history(trials, reference)
        report.files["hypervolume.csv"] = _atomic(
            out / "hypervolume.csv", lambda p: history.to_csv(p, index=False)
        )
        report.files["hypervolume.png"] = _atomic(
            out / "hypervolume.png",
            lambda p: plots.plot_hypervolume(
                history, ref, p, title=f"{study_name}: hypervolume of (val acc, MACs)",
                rule=REFERENCE_RULE_SHORT if reference is None else "given by the caller",
            ),
        )
        last = history.iloc[-1]
        mname, mscale = tables.macs_unit([ref[1]])
        extra.append(
            f"Hypervolume of (max val acc, min MACs) after all trials: {last['hypervolume']:.6g} "
            f"({last['hypervolume_norm']:.4f} of the box between the reference point and the best values seen); "
            f"reference point: val acc {ref[0]:g}, MACs {tables.fmt_num(ref[1], mscale)} {mname}"
            f"{' (' + REFERENCE_RULE + ')' if reference is None else ''}. Pareto front: {len(front2d)} trials.\n"
        )
    best = complete.loc[complete["val_acc"].idxmax()]
    bname, bscale = tables.macs_unit(complete["macs"])
    factor = tables.acc_factor(acc_values)
    extra.insert(
        0,
        f"Best validation accuracy (one trial: one run with one seed): "
        f"{tables.fmt_fixed(best['val_acc'], 2, factor)} % "
        f"(trial #{int(best['number'])}, "
        f"unit {tables.fmt_text(best['unit'])}, MACs {tables.fmt_num(best['macs'], bscale)} {bname}).\n",
    )

    # Placements and units.
    budgets, budget_text = _budgets(trials, data, macs_budgets)
    by_strategy = aggregate.placement_stats(trials, ["strategy"], budgets)
    by_unit = aggregate.placement_stats(trials, ["unit"], budgets)
    by_both = aggregate.placement_stats(trials, ["strategy", "unit"], budgets)
    repeats = aggregate.seed_repeats(trials)
    report.files["placements.md"] = _write_text(
        out / "placements.md",
        tables.placements_markdown(
            by_strategy,
            by_unit,
            by_both,
            repeats,
            budgets,
            budget_text,
            acc_values,
            study_name,
            aggregate.repeats_paired(trials),
        )
        + "\n"
        + liveness_markdown(trials),
    )

    # Ablation cells and learning curves.
    factors = aggregate.ablation_factors(trials, data.is_grid)
    if target_acc is None:
        target = aggregate.default_target(trials, factors)
        fraction = aggregate.DEFAULT_TARGET_FRACTION
        target_text = f"default: {fraction:g} x the lowest cell's mean final validation accuracy"
    else:
        target, target_text = float(target_acc), "given by the caller"
    cells = aggregate.ablation_cells(trials, factors, target)
    report.files["ablation.md"] = _write_text(
        out / "ablation.md",
        tables.ablation_markdown(
            cells,
            factors,
            target,
            acc_values,
            study_name,
            data.is_grid,
            target_text,
            test_text,
            aggregate.ablation_paired(trials, factors),
        )
        + "\n"
        + liveness_markdown(trials),
    )
    curves = aggregate.cell_curves(trials, factors)
    report.files["curves.png"] = _atomic(
        out / "curves.png",
        lambda p: plots.plot_curves(
            curves,
            p,
            title=f"{study_name}: validation accuracy per epoch",
            target=target,
            acc_values=acc_values,
        ),
    )

    extra.append(liveness_markdown(trials, heading="### Unit liveness"))
    report.files["summary.md"] = _write_text(
        out / "summary.md", summary_markdown(data, report, out, study_file, extra)
    )
    return report


# --------------------------------------------------------------------------------------------------
# Comparison


#: Columns of compare.md.
COMPARE_COLUMNS: tuple[str, ...] = (
    "Study",
    "Trial",
    "Unit",
    "Placement",
    "Val acc (%)",
    "Test acc (%)",
    "MACs ({macs})",
    "Params ({params})",
    "Basic",
)


def compare_studies(
    storage_a: StorageLike,
    name_a: str,
    storage_b: StorageLike,
    name_b: str,
    out_dir: str | os.PathLike[str],
    *,
    labels: tuple[str, str] | None = None,
) -> Report:
    """Overlay two studies' (val acc, MACs) fronts in compare.png and list them in compare.md.

    Both hypervolumes use one reference point (accuracy 0, 1.1 x the largest MACs over both studies),
    so they can be compared.

    Args:
        storage_a: Storage of the first study (see `build_report`).
        name_a: Name of the first study.
        storage_b: Storage of the second study (may be the same storage).
        name_b: Name of the second study.
        out_dir: Folder for compare.md and compare.png; created if missing.
        labels: Legend labels; default the study names (suffixed A/B when equal).

    Returns:
        What was written.

    Raises:
        StudyNotFoundError: Either study does not exist.
        StorageError: A storage cannot be opened or read.
    """
    import pandas as pd

    check_out_dir(out_dir)
    studies = [load_study(storage_a, name_a), load_study(storage_b, name_b)]
    if labels is None:
        labels = (name_a, name_b) if name_a != name_b else (f"{name_a} (A)", f"{name_b} (B)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir=out)
    cands = [pareto.candidates(s.trials, ["val_acc", "macs"]) for s in studies]
    fronts = [pareto.pareto_front(s.trials, pareto.HV_OBJECTIVES) for s in studies]
    every = pd.concat(cands)
    ref = pareto.default_reference(pd.concat([s.trials for s in studies]))
    # The box between the common reference and the best values either study reached.
    box = (
        (float(every["val_acc"].max()) - ref[0]) * (ref[1] - float(every["macs"].min())) if len(every) else math.nan
    )
    factor = tables.acc_factor(every["val_acc"]) if len(every) else 100.0
    mname, mscale = tables.macs_unit(every["macs"]) if len(every) else ("MMac", 1e6)
    pname, pscale = tables.params_unit(every["params"]) if len(every) else ("M", 1e6)

    lines = [f"# Comparison: {labels[0]} vs {labels[1]}\n"]
    for label, study, cand, front in zip(labels, studies, cands, fronts, strict=True):
        counts = aggregate.state_counts(study.trials)
        hv = (
            pareto.hypervolume_2d(cand[["val_acc", "macs"]].to_numpy(float), ["maximize", "minimize"], ref)
            if len(cand)
            else 0.0
        )
        best = tables.fmt_fixed(cand["val_acc"].max(), 2, factor) if len(cand) else "-"
        lines.append(
            f"- **{label}** (storage `{study.storage}`): {counts['COMPLETE']} COMPLETE, "
            f"{counts['PRUNED']} PRUNED, "
            f"{counts['FAIL']} FAIL; front of {len(front)} trials; best val acc {best} %; hypervolume "
            f"{hv / box if box else math.nan:.4f} of the box between the common reference point and the best values seen."
        )
        if cand.empty:
            report.notes.append(f"{label} has no COMPLETE trial with MACs")
    lines.append(
        f"\nCommon reference point: val acc {ref[0]:g}, MACs {tables.fmt_num(ref[1], mscale)} {mname} (just worse "
        f"than the worst values seen: {REFERENCE_RULE}). "
        f"Fronts: Pareto-optimal COMPLETE trials of (max val acc, min MACs), all rows sorted by MACs. "
        f"{tables.MACS_NOTE}\n"
    )
    headers = [h.format(macs=mname, params=pname) for h in COMPARE_COLUMNS]
    merged = pd.concat(
        [f.assign(study_label=label) for label, f in zip(labels, fronts, strict=True)]
    ).sort_values(["macs", "number"])
    body = [
        [
            r.study_label,
            str(int(r.number)),
            tables.fmt_text(r.unit),
            f"`{r.placement}`" if not tables.missing(r.placement) else "-",
            tables.fmt_fixed(r.val_acc, 2, factor),
            tables.fmt_fixed(r.test_acc, 2, factor),
            tables.fmt_num(r.macs, mscale),
            tables.fmt_num(r.params, pscale),
            "yes" if not tables.missing(r.is_basic) and bool(r.is_basic) else "",
        ]
        for r in merged.itertuples(index=False)
    ]
    lines.append(tables.markdown_table(headers, body, "lrllrrrrl"))
    lines.append(
        "\nEach row above is one trial: one training run with one seed (search-time values). Paired "
        "comparisons over seeds follow.\n"
    )
    cross = aggregate.cross_paired(studies[0].trials, studies[1].trials, labels[0], labels[1])
    lines.append(
        tables.paired_markdown(cross, every["val_acc"] if len(every) else [1.0], "Paired: A against B")
    )
    for label, study in zip(labels, studies, strict=True):
        within = aggregate.repeats_paired(study.trials)
        if within.rows:
            lines.append(
                tables.paired_markdown(
                    within, study.trials["val_acc"], f"Paired within {label}: against its basic network"
                )
            )
    lines.append("\n![Fronts overlaid](compare.png)\n")
    report.files["compare.md"] = _write_text(out / "compare.md", "\n".join(lines))
    report.files["compare.png"] = _atomic(
        out / "compare.png",
        lambda p: plots.plot_compare(
            list(zip(labels, cands, fronts, strict=True)),
            p,
            title=f"{labels[0]} vs {labels[1]}: validation accuracy vs MACs",
        ),
    )
    return report

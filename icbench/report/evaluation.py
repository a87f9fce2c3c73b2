"""Which trials a report shows, which of them were evaluated on the test split, and the words that say so.

Selection uses the validation split. A study's `evaluation.test` setting decides who reads the test split:
`all` (every trial, at the end of its own training), `chosen` (no trial during the search; afterwards the
driver evaluates the trials the report shows from their saved final weights) or `none`. This module
defines how those results are stored and reads them back; it never trains.

Storage: a test accuracy measured by a trial is the trial's `test_acc` user attribute with
`test_evaluated` = "end of training". One measured after the search is a study user attribute
`test_eval:<trial number>` holding {"test_acc", "evaluated", "at", "device", "machine", "reason"}
(Optuna does not let a finished trial's attributes change). The setting in force is the study user
attribute `evaluation` = {"test": setting}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from icbench.report import pareto, tables
from icbench.report.pareto import HV_OBJECTIVES

if TYPE_CHECKING:
    import pandas as pd

#: Study user attribute holding {"test": setting} (the `evaluation` section in force).
EVALUATION_ATTR = "evaluation"
#: Prefix of the study user attribute holding one trial's test evaluation after the search.
TEST_EVAL_PREFIX = "test_eval:"
#: `test_evaluated` of a test accuracy a trial measured itself, right after its training.
END_OF_TRAINING = "end of training"
#: `test_evaluated` of a test accuracy the driver measured after the search, from saved weights.
AFTER_SEARCH = "after the search"


def evaluation_setting(user_attrs: Mapping[str, Any]) -> str | None:
    """The study's recorded `evaluation.test` setting, or None for a study that recorded none."""
    section = user_attrs.get(EVALUATION_ATTR)
    if isinstance(section, Mapping) and isinstance(section.get("test"), str):
        return str(section["test"])
    return None


def after_search_records(user_attrs: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> its after-the-search test evaluation record, from the study's user attributes."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in user_attrs.items():
        if key.startswith(TEST_EVAL_PREFIX) and isinstance(value, Mapping):
            try:
                out[int(key[len(TEST_EVAL_PREFIX) :])] = dict(value)
            except ValueError:
                continue
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def front_objectives(objectives: Sequence[tuple[str, str]], trials: pd.DataFrame) -> list[tuple[str, str]]:
    """The objectives pareto.md's front is taken over: the study's when the table has them all, else
    (val_acc max, MACs min)."""
    objs = list(objectives)
    if objs and all(n in trials.columns and trials[n].notna().any() for n, _ in objs):
        return objs
    return list(HV_OBJECTIVES)


def shown_trials(trials: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> list[int]:
    """Numbers of the trials pareto.md lists: the Pareto front over `objectives` (COMPLETE trials only)
    and the best basic network per family, size and width. These are the trials chosen on validation."""
    if pareto.candidates(trials, ["val_acc"]).empty:
        return []
    front = pareto.pareto_front(trials, front_objectives(objectives, trials))
    return [int(n) for n in tables.pareto_rows(front, trials)["number"]]


def _when(stamps: Sequence[Any]) -> str:
    parsed = [_parse_time(s) for s in stamps]
    # Stamps are written in UTC; one without a zone is read as UTC too.
    times = sorted(
        t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in parsed if t
    )
    if not times:
        return ""
    first, last = (t.strftime("%Y-%m-%d %H:%M UTC") for t in (times[0], times[-1]))
    return f" on {first}" if first == last else f" between {first} and {last}"


def _parse_time(stamp: Any) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def _numbers(values: Sequence[int]) -> str:
    listed = ", ".join(f"#{n}" for n in values[:20])
    return listed + (f" and {len(values) - 20} more" if len(values) > 20 else "")


def statement_on_test(trials: pd.DataFrame, setting: str | None, *, short: bool = False) -> str:
    """Which trials were evaluated on the test split, how and when, in words (from the records, not
    from the setting alone: a report built while the search runs says that nothing was evaluated yet).

    Args:
        trials: the trials table (`test_acc`, `test_evaluated`, `test_evaluated_at` columns).
        setting: the study's recorded `evaluation.test`, or None.
        short: one sentence, for a LaTeX caption.
    """
    named = f" (evaluation.test: {setting})" if setting else ""
    has = trials[trials["test_acc"].notna()] if "test_acc" in trials else trials.iloc[:0]
    how = has["test_evaluated"].map(lambda v: END_OF_TRAINING if _missing(v) else str(v))
    after = has[how == AFTER_SEARCH]
    during = has[how == END_OF_TRAINING]
    n_complete = int((trials["state"] == "COMPLETE").sum())
    if has.empty:
        if setting == "none":
            return f"Test accuracy: not evaluated{named}; no trial read the test split."
        if setting == "chosen":
            if short:
                return "Test accuracy: not evaluated yet (evaluated after the search for the listed trials only)."
            return (
                f"Test accuracy: no trial has been evaluated on the test split yet{named}. No trial reads it "
                "during the search; when the search ends, the trials pareto.md lists (chosen on validation "
                "accuracy) are evaluated on it from their saved final weights."
            )
        return f"Test accuracy: no trial has one{named}."
    parts = []
    if not during.empty:
        k = int((during["state"] == "COMPLETE").sum())
        who = f"every COMPLETE trial ({k})" if k == n_complete else f"{k} of {n_complete} COMPLETE trials"
        if len(during) > k:
            who += f" (and {len(during) - k} trial(s) that did not complete)"
        if short:
            parts.append(f"Test accuracy: evaluated by {who} at the end of its training{named}.")
        else:
            parts.append(
                f"Test accuracy: evaluated by {who} at the end of its own training{named}; "
                "selection used validation accuracy only."
            )
    if not after.empty:
        numbers = sorted(int(n) for n in after["number"])
        when = _when(list(after["test_evaluated_at"]))
        if short:
            parts.append(
                f"Test accuracy: evaluated after the search for the {len(numbers)} listed trials only "
                f"(chosen on validation accuracy){named}."
            )
        else:
            only = "" if not during.empty else " No trial read the test split during the search."
            parts.append(
                f"Test accuracy{'' if during.empty else ' (also)'}: {len(numbers)} trial(s) ({_numbers(numbers)}), "
                f"listed in pareto.md when they were evaluated (the Pareto front and the basic reference networks, "
                f"chosen on validation accuracy), were evaluated on the test split after the search{when}, from each trial's saved "
                f"final weights{named}.{only} Trials without a test accuracy were not evaluated on it."
            )
    return " ".join(parts)

"""The study's `evaluation.test` setting on the search side (see `schema.EvaluationSection`).

What each trial is told (evaluate the test split itself, or save its final weights and keep off the test
split), where the weights go, and the driver's step after the search: evaluate on the test split exactly
the trials the report shows (chosen on validation) from those weights, and record the results.

Results are stored as `icbench.report.evaluation` describes (study user attributes, since Optuna does not
let a finished trial change); the report reads them back from there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from icbench.errors import IcbenchError
from icbench.report.evaluation import AFTER_SEARCH, EVALUATION_ATTR, TEST_EVAL_PREFIX, shown_trials
from icbench.report.load import load_study as read_study
from icbench.search.executors.replay import open_table
from icbench.search.schema import LoadedStudy
from icbench.search.trainable import trial_evaluation, weights_dir, weights_file

__all__ = ["evaluate_chosen", "trial_evaluation", "weights_dir"]


def _from_table(
    loaded: LoadedStudy, study: Any, frozen: dict[int, Any], todo: list[int], echo: Callable[[str], None]
) -> int:
    """A replay's chosen trials: their test accuracy is the table's, measured when the row was trained."""
    table = open_table(loaded)
    done = 0
    for number in todo:
        a = frozen[number].user_attrs
        row = table.row(a.get("placement", ""), bool(a.get("wld")), int(a.get("seed", -1)))
        test_acc = None if row is None else row.get("test_acc")
        record = {
            "evaluated": "from the benchmark table (end of the row's training)",
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights": None,
            "test_acc": None if test_acc is None else float(test_acc),
        }
        study.set_user_attr(f"{TEST_EVAL_PREFIX}{number}", record)
        set_on_trial(study, frozen[number], record)
        done += test_acc is not None
    echo(
        f"test split: {done} trial(s) that the report shows (chosen on validation) take their test accuracy from the table"
    )
    return done


def set_on_trial(study: Any, trial: Any, record: dict[str, Any]) -> bool:
    """Also write an evaluation's `test_acc`, `test_evaluated` and `test_evaluated_at` as the trial's own user
    attributes, so per-trial views (optuna-dashboard, `trials_dataframe()`) show the value instead of the
    null the trial recorded when it ended. The study attribute `test_eval:<n>` stays the record.

    Optuna refuses to change a finished trial through its API, so this writes the trial's user-attribute
    rows of a database storage (SQLite, PostgreSQL, MySQL) directly; with a journal file it writes nothing
    and returns False (the reports read the study attribute either way). An evaluation without an
    accuracy is not written (the trial's null stays).

    Returns:
        Whether the trial's attributes were written.
    """
    if record.get("test_acc") is None:
        return False
    values = {"test_acc": record["test_acc"], "test_evaluated": record.get("evaluated"),
              "test_evaluated_at": record.get("at")}  # fmt: skip
    try:
        import json

        from optuna.storages import RDBStorage
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        storage = getattr(study._storage, "_backend", study._storage)  # Optuna wraps RDBStorage in a cache
        if not isinstance(storage, RDBStorage):
            return False
        with _create_scoped_session(storage.scoped_session, True) as session:
            row = models.TrialModel.find_or_raise_by_id(trial._trial_id, session)
            for key, value in values.items():
                attr = models.TrialUserAttributeModel.find_by_trial_and_key(row, key, session)
                if attr is None:
                    session.add(models.TrialUserAttributeModel(trial_id=row.trial_id, key=key, value_json=json.dumps(value)))
                else:
                    attr.value_json = json.dumps(value)
    except Exception:  # an Optuna without these tables' models: the study attribute still holds the value
        return False
    return True


def _device(setting: str, echo: Callable[[str], None]) -> str:
    import torch

    if setting in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        echo("test split: no CUDA device in the driver; evaluating on the CPU")
    return "cpu"


def evaluate_chosen(loaded: LoadedStudy, url: str, study: Any, echo: Callable[[str], None] = print) -> int:
    """After the search: record the setting and, with `chosen`, evaluate on the test split every trial the
    report shows that has no test accuracy yet, from its saved final weights.

    A trial whose weights are missing or unreadable is recorded with the reason and no accuracy (and tried
    again by the next run); the study and the other trials are unaffected.

    Args:
        loaded: the study.
        url: its storage URL (read as the report reads it, so the chosen trials are the report's).
        study: the open Optuna study (written through its public `set_user_attr`).
        echo: progress lines.

    Returns:
        How many trials were evaluated on the test split by this call.
    """
    setting = loaded.config.evaluation.test
    study.set_user_attr(EVALUATION_ATTR, {"test": setting})
    folder = weights_dir(loaded)
    if setting != "chosen" or folder is None:
        return 0
    try:
        data = read_study(url, loaded.config.name)
    except IcbenchError as e:
        echo(f"test split: not evaluated, the study could not be read ({e}); the next run tries again")
        return 0
    trials = data.trials
    assert trials is not None
    chosen = shown_trials(trials, data.objectives)
    missing = set(trials.loc[trials["test_acc"].isna(), "number"].astype(int))
    todo = [n for n in chosen if n in missing]
    if not todo:
        return 0
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    if loaded.config.execution.backend == "replay":
        return _from_table(loaded, study, frozen, todo, echo)
    from icbench.training.candidate import evaluate_saved

    device = _device(loaded.config.execution.device, echo)
    done = 0
    for number in todo:
        weights = weights_file(folder, number)
        record: dict[str, Any] = {
            "evaluated": AFTER_SEARCH,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights": str(weights),
            "device": device,
        }
        candidate = frozen[number].user_attrs.get("candidate")
        try:
            if not isinstance(candidate, dict):
                raise ValueError("the trial recorded no candidate")
            result = evaluate_saved(candidate, weights, device=device)
        except Exception as e:  # one trial's missing weights must not cost the others their evaluation
            record.update(test_acc=None, reason=f"{type(e).__name__}: {e}")
            echo(f"test split: trial {number} not evaluated ({record['reason']})")
        else:
            record.update(test_acc=result["test_acc"], machine=result["machine"])
            done += 1
        study.set_user_attr(f"{TEST_EVAL_PREFIX}{number}", record)
        set_on_trial(study, frozen[number], record)
    echo(
        f"test split: evaluated {done} trial(s) that the report shows (chosen on validation) and that had no "
        f"test accuracy yet, from their saved final weights on {device}; trials not shown are not evaluated"
    )
    return done

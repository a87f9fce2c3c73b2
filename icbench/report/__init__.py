"""Reports: a study's storage -> tables (Markdown, CSV, LaTeX) and figures (PNG).

Reading never writes to or blocks the study (see `load.py`); everything after loading is a pure
function of the trials table. matplotlib and pandas are imported when a report is built, not here.
"""

from __future__ import annotations

from icbench.report.build import REPORT_FILES, Report, build_report, compare_studies
from icbench.report.load import (
    StorageError,
    StudyData,
    StudyNotFoundError,
    list_studies,
    load_study,
    load_trials,
    open_storage,
)
from icbench.report.pareto import (
    default_reference,
    hypervolume_2d,
    hypervolume_history,
    pareto_front,
    pareto_mask,
)

__all__ = [
    "REPORT_FILES",
    "Report",
    "StorageError",
    "StudyData",
    "StudyNotFoundError",
    "build_report",
    "compare_studies",
    "default_reference",
    "hypervolume_2d",
    "hypervolume_history",
    "list_studies",
    "load_study",
    "load_trials",
    "open_storage",
    "pareto_front",
    "pareto_mask",
]

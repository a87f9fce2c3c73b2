"""Unit formulations (DESIGN.md §3): one file each, registered in `UNITS`.

Adding a formulation: one file here with one `@UNITS.register("name")` class, plus its import below and
its name in `icbench/names.py` (checked before torch loads; tests/test_cli.py keeps the two equal).
"""

from icbench.units import conv, ic, ic_dual, se  # noqa: F401  (registration side effects)
from icbench.units._base import UNITS, UnitConv2d, calibrate_units, make_unit, unit_name, unit_parameters
from icbench.units._liveness import INERT_DELTA, LIVENESS_BATCH, is_inert, median_delta, unit_deltas

DEFAULT_UNIT = "ic"

__all__ = [
    "DEFAULT_UNIT",
    "INERT_DELTA",
    "LIVENESS_BATCH",
    "UNITS",
    "UnitConv2d",
    "calibrate_units",
    "is_inert",
    "make_unit",
    "median_delta",
    "unit_deltas",
    "unit_name",
    "unit_parameters",
]

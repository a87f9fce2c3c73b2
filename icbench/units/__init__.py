"""Unit formulations (DESIGN.md §3): one file each, registered in `UNITS`.

Adding a formulation: one file here with one `@UNITS.register("name")` class, plus its import below.
"""

from icbench.units import conv, ic, ic_dual, se  # noqa: F401  (registration side effects)
from icbench.units._base import UNITS, UnitConv2d, make_unit, unit_name

DEFAULT_UNIT = "ic"

__all__ = ["DEFAULT_UNIT", "UNITS", "UnitConv2d", "make_unit", "unit_name"]

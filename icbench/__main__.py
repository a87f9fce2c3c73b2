"""`python -m icbench ...`: the `icbench` command."""

from icbench.cli import entry

entry(prog="python -m icbench")

"""`python -m icbench ...`: the `icbench` command."""

import sys

from icbench.cli import main

sys.exit(main(prog="python -m icbench"))

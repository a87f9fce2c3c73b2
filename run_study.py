#!/usr/bin/env python
"""The `icbench` command from a checkout: `python run_study.py run studies/quickstart.yaml` is
`icbench run studies/quickstart.yaml` (see `icbench.cli` for every subcommand)."""

from __future__ import annotations

from icbench.cli import exit_now
from icbench.cli import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv, prog="run_study.py")


if __name__ == "__main__":
    exit_now(main())

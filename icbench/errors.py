"""Error types shared across icbench.

Every error a user can cause by a bad file, name or path is an `IcbenchError`, so the CLI can print it
as one paragraph and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class IcbenchError(Exception):
    """Base class of errors caused by user input (names, files, paths, checkpoints)."""


class UnknownNameError(IcbenchError, KeyError):
    """A name looked up in a registry (unit, family, dataset, ...) is not registered."""

    def __init__(self, kind: str, name: object, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(self._message())

    def _message(self) -> str:
        from icbench.names import unknown_message  # a sibling of this layer: one wording, one suggester

        return unknown_message(self.kind, self.name, self.known)

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self._message()


class ConfigError(IcbenchError, ValueError):
    """A study, search-space or other input file is invalid.

    `source` names the file (or other origin) and `field` the dotted path of the offending entry.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        self.detail = message
        where = ", ".join(
            p for p in (f"file {source}" if source else "", f"field {field!r}" if field else "") if p
        )
        super().__init__(f"{where}: {message}" if where else message)


class CheckpointError(IcbenchError):
    """A checkpoint is unreadable, unsafe (needs arbitrary unpickling) or does not match the model."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a study command before it finished (`icbench.search.interrupts`).

    A `KeyboardInterrupt`, so code that lets Ctrl-C through lets it through too. `exit_status` is the
    shell's 128 + signal number: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        self.exit_status = 128 + self.signum
        super().__init__(f"interrupted by {self.signal_name}")

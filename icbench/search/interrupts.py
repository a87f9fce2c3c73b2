"""SIGINT and SIGTERM during a study command: stop it as interrupted, never as finished.

While a study command runs (`handled`), both signals raise `Interrupted` in the driver's main thread.
The exception unwinds the command (Ray is shut down, the study lock released), the CLI says the run was
interrupted and exits 130 (SIGINT) or 143 (SIGTERM), the shell's 128 + signal number. Nothing is marked
"done", no report is written as if the run had finished, and the trials left RUNNING in storage are
continued from their checkpoints (or queued again) by the next run of the same command.

Ray's `ray.init` installs its own SIGTERM handler (`sys.exit`), and Ray Tune its own SIGINT handler
(which ends the experiment as if it were complete): the executor calls `install()` again once Ray is up,
and asks Tune not to install its handler.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from icbench.errors import Interrupted

__all__ = ["Interrupted", "handled", "install"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_active = False
#: The signal last received inside `handled`: Ray turns an exception raised by a signal handler during
#: one of its blocking calls into a plain KeyboardInterrupt, which `handled` turns back into this.
_received: int | None = None


def _raise(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signum
    raise Interrupted(signum)


def install() -> None:
    """(Re)install the handlers, while `handled` is in force in the main thread; otherwise nothing."""
    if not _active or threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _raise)


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` inside this block (main thread only; elsewhere a no-op)."""
    global _active, _received
    if threading.current_thread() is not threading.main_thread() or _active:
        yield
        return
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}
    tune_flag = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    _active, _received = True, None
    try:
        install()
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt as e:  # our handler's exception, re-raised by Ray as a KeyboardInterrupt
        if _received is None:
            raise
        raise Interrupted(_received) from e
    finally:
        _active = False
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if tune_flag is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = tune_flag

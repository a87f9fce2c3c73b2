"""The mode of the files the package writes atomically.

An atomic write goes through `tempfile.mkstemp`, which creates its file with mode 0600 (readable by the
owner only), and `os.replace` keeps that mode: a report, a table or a checkpoint would end up unreadable
by the group and others, unlike every file `open()` creates. `publish` gives the temporary file the mode
`open()` would have given it (0666 less the process's umask: 0644 under the usual umask 022) before it is
renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["new_file_mode", "publish"]


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask sets it, which races with other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode `open()` gives a new file in this process: 0o666 less the umask."""
    return 0o666 & ~_umask()


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Rename the finished temporary file `tmp` to `path` (atomic), with the mode of a file `open()` made."""
    os.chmod(tmp, new_file_mode())
    os.replace(tmp, path)

"""The files and folders a command reads or writes, checked before anything is trained or written, and a
disk that fills while a command writes, told in one line.

Each check returns what is wrong in words (the caller adds the file and field or option that named the
place), or None when the place can work: a study database that is not an SQLite file, a journal with a
line that is not JSON, a directory given where a file belongs, an output under a regular file, a folder
that cannot be written (permissions or a read-only filesystem), a name longer than the filesystem allows.

This module imports nothing of icbench but `icbench.redact`: the search, the reports, the estimators and
the command line all use it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
from pathlib import Path

from icbench.redact import mask_url

__all__ = [
    "SQLITE_HEADER",
    "disk_full",
    "folder_problem",
    "journal_problem",
    "name_problem",
    "note_writing",
    "output_file_problem",
    "sqlite_problem",
]

#: The first 16 bytes of every SQLite 3 database file (https://www.sqlite.org/fileformat.html).
SQLITE_HEADER = b"SQLite format 3\x00"

#: Places a command has opened for writing (storage files, output folders), newest last: where a full
#: disk most likely is when the error does not name a file itself.
_writing: list[str] = []


def _existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing ancestor (what a `mkdir -p` would start from)."""
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def folder_problem(folder: str | Path) -> str | None:
    """Why files cannot be written in `folder` (created on first use with its parents), or None.

    Refused: `folder` or one of its ancestors is a regular file; the existing folder it would be made in
    is on a read-only filesystem or not writable by this user.
    """
    path = Path(folder).expanduser().absolute()
    base = _existing_ancestor(path)
    if not base.is_dir():
        if base == path:
            return f"{folder} is a file, not a folder"
        return f"{folder} cannot be created: {base} is a regular file, not a folder"
    if _read_only_fs(base):
        return f"{folder} cannot be written: {base} is on a read-only filesystem"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{folder} cannot be written: {base} is not writable by this user"
    return None


def output_file_problem(file: str | Path) -> str | None:
    """Why the file `file` cannot be written (a directory there, or its folder cannot be), or None."""
    path = Path(file).expanduser()
    if path.is_dir():
        return f"{file} is a directory; give a file name"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{file} is not writable by this user"
    return folder_problem(path.parent)


def name_problem(folder: str | Path, name: str, what: str = "name") -> str | None:
    """Why `name` cannot be a file or folder name in `folder` (longer than its filesystem's NAME_MAX)."""
    base = _existing_ancestor(Path(folder).expanduser().absolute())
    if not base.is_dir():
        base = base.parent
    try:
        limit = os.pathconf(base, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    size = len(os.fsencode(name))
    if size > limit:
        return f"the {what} is {size} bytes long; the filesystem of {base} allows names of at most {limit}"
    return None


def sqlite_problem(db: str | Path, *, write: bool = True) -> str | None:
    """Why `db` cannot be an SQLite study database (opened, or created with `write`), or None."""
    path = Path(db).expanduser()
    if path.is_dir():
        return f"{db} is a directory, not an SQLite database file"
    if not path.exists():
        return folder_problem(path.parent) if write else f"no study database at {db}"
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        return f"cannot read {db}: {e.strerror or e}"
    if head and head != SQLITE_HEADER:  # an empty file is a valid, empty database to SQLite
        return f"{db} is not an SQLite database (its first bytes are {head[:12]!r}, not {SQLITE_HEADER[:15]!r})"
    if head and len(head) == len(SQLITE_HEADER):
        problem = _sqlite_integrity(path)
        if problem:
            return f"{db} is a damaged SQLite database ({problem})"
    if write and (not os.access(path, os.W_OK) or _read_only_fs(path.parent)):
        return f"{db} cannot be written (read-only)"
    return None


def _sqlite_integrity(path: Path) -> str | None:
    """SQLite's own quick check of the file's header and schema (opened read-only, nothing written)."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as e:
        return str(e)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as e:
        if "locked" in str(e):  # a study being written: not damaged
            return None
        return str(e)
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        con.close()
    return None


def journal_problem(journal: str | Path, *, write: bool = True) -> str | None:
    """Why `journal` cannot be an Optuna journal file (one JSON object per line), or None.

    A last line without its newline is a write cut short (a crash); Optuna skips it, and so does this check.
    """
    path = Path(journal).expanduser()
    if path.is_dir():
        return f"{journal} is a directory, not a journal file"
    if not path.exists():
        return folder_problem(path.parent) if write else f"journal file not found: {journal}"
    try:
        with path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    break
                try:
                    json.loads(line)
                except ValueError:
                    shown = line[:40].decode("utf-8", "replace").rstrip()
                    return f"{journal} is not an Optuna journal: line {number} is not JSON ({shown!r})"
    except OSError as e:
        return f"cannot read {journal}: {e.strerror or e}"
    if write and (not os.access(path, os.W_OK) or _read_only_fs(path.parent)):
        return f"{journal} cannot be written (read-only)"
    return None


def note_writing(place: str | Path) -> None:
    """Record that a command writes at `place` (for the message when the disk fills)."""
    text = mask_url(os.fspath(place))
    if text in _writing:
        _writing.remove(text)
    _writing.append(text)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return seen


def disk_full(exc: BaseException) -> str | None:
    """One line saying which place ran out of space, if `exc` (or what it wraps) is a full disk; else None.

    Recognised: an `OSError` with ENOSPC or EDQUOT (Python's own writes), SQLite's "database or disk is
    full" and torch's failed checkpoint writes that say "No space left on device".
    """
    place: str | None = None
    full = False
    for e in _chain(exc):
        text = str(e)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            full = True
            place = place or (os.fspath(e.filename) if e.filename else None)
        elif "database or disk is full" in text or "No space left on device" in text:
            full = True
    if not full:
        return None
    if place is None and _writing:
        place = _writing[-1]
    where = place or "a file"
    free = ""
    if place and not place.startswith(("postgresql", "mysql", "mariadb")):
        try:
            folder = _existing_ancestor(Path(place).absolute())
            free = f" ({shutil.disk_usage(folder).free // 1024} KiB free there now)"
        except OSError:
            pass
    return (
        f"no space left on the device writing {where}{free}; what was complete is kept: free space and "
        "run the same command again to continue"
    )

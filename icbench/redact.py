"""Secrets kept out of everything icbench prints or writes: a storage URL's password becomes `***`.

A database URL may carry its password (`postgresql://user:PASSWORD@host/db`). The URL itself is needed to
connect; every copy made for a person (progress lines, the dry run, reports, error messages, logs) or
stored for later (the study's attributes, which anyone who can open the study reads) goes through
`mask_url` or `redact` first. A password taken from the environment (`storage_password_env`) is
registered with `add_secret`, so that `redact` hides it wherever it turns up, URL or not.

This module imports nothing of icbench: every layer may use it.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "add_secret", "mask_url", "redact"]

MASK = "***"

#: `scheme://user:password@`: the user part may be empty (`scheme://:password@`); a password holds no
#: `@`, `/` or whitespace (URL syntax percent-encodes them).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@")
_SECRETS: set[str] = set()


def add_secret(value: str) -> None:
    """Hide `value` (a password read from the environment) in every text `redact` sees from now on."""
    if value and value != MASK:
        _SECRETS.add(value)


def mask_url(url: str) -> str:
    """`url` with its password replaced by `***` (`postgresql://user:***@host/db`); unchanged without one."""
    return redact(url)


def redact(text: str) -> str:
    """`text` with every URL password and every registered secret replaced by `***`."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] != MASK else m[0], text)
    for secret in sorted(_SECRETS, key=len, reverse=True):  # the longest first: one may hold another
        text = text.replace(secret, MASK)
    return text

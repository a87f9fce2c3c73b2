"""Database-server storage URLs (PostgreSQL, MySQL): connection timeouts and errors a person can read.

Shared by the search layer (which writes studies) and the report layer (which reads them), so that a
server that is down is refused the same way by both: in seconds, in one line that names the server
(host:port, never the password) and the driver's reason.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONNECT_TIMEOUT_S", "connect_args", "connection_error", "is_server_url", "safe_url"]

#: Seconds a server has to accept a connection (the operating system's own TCP timeout is minutes).
CONNECT_TIMEOUT_S = 5
_SCHEMES = ("postgresql", "mysql", "mariadb")


def is_server_url(url: str) -> bool:
    """Whether `url` names a database server (not a SQLite or journal file)."""
    return url.split(":", 1)[0].split("+", 1)[0] in _SCHEMES


def connect_args(url: str) -> dict[str, Any]:
    """Driver arguments for `url`: a connect timeout for a server, nothing for files."""
    return {"connect_timeout": CONNECT_TIMEOUT_S} if is_server_url(url) else {}


def safe_url(url: str) -> str:
    """`url` with its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@", 1)[-1]


def connection_error(url: str, exc: BaseException) -> str:
    """One line: which server could not be reached, and the driver's first line of why."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    server = f"{u.host or 'localhost'}:{u.port}" if u.port else str(u.host or "localhost")
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    cause = lines[0].removeprefix("connection failed: ") if lines else type(inner).__name__
    return f"cannot connect to the database server {server}: {cause}"

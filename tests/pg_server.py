"""A throwaway PostgreSQL server for tests: initdb in a temporary folder, a free loopback port, its unix
socket in that folder, stopped and deleted at the end.

initdb refuses to run as root, so under root (CI) every server command runs as the unprivileged
`postgres` user that the Debian package creates (or, failing that, `icbench-pg`, created here).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

#: Where Debian's postgresql package puts the server binaries (one folder per major version).
BIN_GLOB = "/usr/lib/postgresql/*/bin"
USER = "icbench"


def server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (newest version), or None when the server is not installed."""
    found = sorted(glob.glob(BIN_GLOB), key=lambda p: int(Path(p).parent.name))
    on_path = shutil.which("pg_ctl")
    if found:
        return Path(found[-1])
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The account the server runs as: None (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "icbench-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "icbench-pg"], check=True)
    return "icbench-pg"


class PostgresServer:
    """One server process; `new_database()` gives each test a database of its own."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.user = _server_user()
        # Short, outside pytest's 0700 tmp folders (the server user must reach it), and a socket path
        # well under the 107-byte limit.
        self.root = Path(tempfile.mkdtemp(prefix="icpg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.log = self.root / "server.log"
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        self.root.chmod(0o755)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def password_user(self, user: str, password: str) -> str:
        """A login role `user` that must give `password` (scram-sha-256 over TCP, as a production server
        asks) and a new database it owns; returns that database's URL, without the password."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={USER} dbname=postgres", autocommit=True
        ) as c:
            c.execute(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'")
            c.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
            hba = self.data / "pg_hba.conf"  # first match wins: this role is asked for its password
            hba.write_text(f"host all {user} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            c.execute("SELECT pg_reload_conf()")
        return f"postgresql://{user}@127.0.0.1:{self.port}/{name}"

    def dump(self, url: str) -> str:
        """Every row of every table of the database `url` names, as text (read as the superuser)."""
        import psycopg

        database = url.rsplit("/", 1)[-1]
        out = []
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={USER} dbname={database}") as c:
            tables = [r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in tables:
                for row in c.execute(f'SELECT * FROM "{table}"'):
                    out.append(f"{table}: {row!r}")
        return "\n".join(out)

    def new_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={USER} dbname=postgres", autocommit=True
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

"""A database password never leaves the URL it was given in: not in any output, file or stored attribute.

Against the session's real PostgreSQL server (`tests/conftest.py`), with a role that must give its
password (scram-sha-256, `PostgresServer.password_user`): a tiny study is validated, run, reported and
tabulated with the password in its `storage` URL; then every byte the commands printed, every file they
wrote (run folder, report folder, table, Ray's session folder) and every row of every table of the study
database is searched for the password. The other ways of giving it (`storage_password_env`, PostgreSQL's
own PGPASSWORD and password file) are checked to connect, and to fail in one line when missing or wrong.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from reliability_helpers import ray_sandbox, run_cli, write_study

from icbench.redact import add_secret, mask_url, redact

pytestmark = [pytest.mark.xdist_group("ray")]

PASSWORD = "Pw-s3cr3t-7431"
USER = "study_writer"

STUDY = """
dataset: {{name: synthetic, kwargs: {{n: 200, image_size: 16, in_chans: 1}}}}
family: {{name: resnet_cifar, size: resnet8, width: 0.25}}
budget: {{epochs: 1}}
n_trials: 2
sampler: {{name: tpe, seed: 0}}
evaluation: {{test: all}}
execution: {{max_concurrent: 2, cpus_per_trial: 1, num_cpus: 2}}
{storage}
"""
#: Two candidates: a run of two trials and a table of two rows.
SPACE = "params:\n  unit: {type: categorical, choices: [conv, ic]}\n"


@pytest.fixture(scope="module")
def password_db(postgres_server: object) -> tuple[object, str]:
    """(server, URL without the password) of a database owned by a role that must give PASSWORD."""
    return postgres_server, postgres_server.password_user(USER, PASSWORD)  # type: ignore[attr-defined]


def _with_password(url: str) -> str:
    return url.replace(f"{USER}@", f"{USER}:{PASSWORD}@", 1)


def _files_holding(root: Path, secret: str) -> list[str]:
    """Every file under `root` whose bytes hold `secret`."""
    needle = secret.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def test_redact_masks_url_passwords_and_registered_secrets() -> None:
    assert mask_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert mask_url("sqlite:////tmp/x/study.db") == "sqlite:////tmp/x/study.db"
    assert redact("storage: mysql://:pw@h/d\nname: x") == "storage: mysql://:***@h/d\nname: x"
    add_secret("from-the-environment-93")
    assert redact("password from-the-environment-93 rejected") == "password *** rejected"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_password_in_the_storage_url_is_found_nowhere(password_db: tuple[object, str], tmp_path: Path) -> None:
    server, url = password_db
    study = write_study(tmp_path, "sec", STUDY.format(storage=f"storage: {_with_password(url)}"), SPACE)
    table = tmp_path / "tables" / "sec_table.parquet"
    commands = [
        ["validate", str(study)],
        ["run", str(study), "--dry-run"],
        ["run", str(study)],
        ["report", str(study)],
        ["tabulate", str(study), "--set", "name=sec_table", "--out", str(table)],
        ["report", str(table), "--out", str(tmp_path / "reports" / "sec_table_bench")],
    ]
    printed = []
    with ray_sandbox() as ray:
        for args in commands:
            done = run_cli(args, ray.env(), timeout=600)
            printed.append(done.stdout + done.stderr)
            assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        ray_files = _files_holding(ray.tmp, PASSWORD)
    output = "\n".join(printed)
    assert "storage postgresql://study_writer:***@127.0.0.1" in output  # the progress line, masked
    assert PASSWORD not in output
    assert ray_files == []
    assert (tmp_path / "reports" / "sec" / "summary.md").is_file() and table.is_file()
    assert _files_holding(tmp_path, PASSWORD) == [str(study)]  # only the file the user wrote it in
    stored = server.dump(url)  # type: ignore[attr-defined]
    assert "study_yaml" in stored and "sec_table" in stored  # the attributes are there, and read
    assert PASSWORD not in stored


def _quick_run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with ray_sandbox() as ray:
        return run_cli(args, ray.env(ICBENCH_STOP_BEFORE_TRAINING="1", **env), timeout=300)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_password_from_the_environment(password_db: tuple[object, str], tmp_path: Path) -> None:
    """`storage_password_env`: the study file holds no password; `run` connects with the variable's value
    (up to the first trial) and stores the study without it; a missing variable is one line naming the
    field and the variable, never a value."""
    server, url = password_db
    body = STUDY.format(storage=f"storage: {url}\nstorage_password_env: ICBENCH_TEST_DB_PASSWORD")
    study = write_study(tmp_path, "env", body, SPACE)
    done = _quick_run(["run", str(study)], {"ICBENCH_TEST_DB_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "stopped before training" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    stored = server.dump(url)  # type: ignore[attr-defined]
    assert "storage_password_env" in stored and PASSWORD not in stored

    missing = _quick_run(["validate", str(study)], {})  # the variable is not set
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(lines) == 1, missing.stderr
    assert "field 'storage_password_env'" in lines[0] and "ICBENCH_TEST_DB_PASSWORD is not set" in lines[0]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("how", ["PGPASSWORD", "PGPASSFILE", "wrong", "none"])
def test_postgresql_own_password_sources(
    how: str, password_db: tuple[object, str], tmp_path: Path
) -> None:
    """A URL without a password leaves it to libpq, which reads PGPASSWORD or the password file
    (~/.pgpass, or PGPASSFILE): `validate` connects. A wrong or missing one: one line, exit 2, the
    server named, no password shown."""
    _, url = password_db
    study = write_study(tmp_path, "pg", STUDY.format(storage=f"storage: {url}"), SPACE)
    env = {"PGPASSWORD": "", "PGPASSFILE": str(tmp_path / "no_such_pgpass")}
    if how == "PGPASSWORD":
        env["PGPASSWORD"] = PASSWORD
    elif how == "PGPASSFILE":
        port = url.split(":")[-1].split("/")[0]
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"127.0.0.1:{port}:*:{USER}:{PASSWORD}\n")
        pgpass.chmod(0o600)  # libpq ignores a password file others can read
        env["PGPASSFILE"] = str(pgpass)
    elif how == "wrong":
        env["PGPASSWORD"] = "not-the-password-5510"
    if not env["PGPASSWORD"]:
        del env["PGPASSWORD"]
    done = _quick_run(["validate", str(study)], env)
    if how in ("PGPASSWORD", "PGPASSFILE"):
        assert done.returncode == 0, done.stderr
        return
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "field 'storage'" in lines[0] and "127.0.0.1" in lines[0], lines[0]
    assert ("password authentication failed" if how == "wrong" else "password") in lines[0], lines[0]
    assert PASSWORD not in done.stderr and "not-the-password-5510" not in done.stderr

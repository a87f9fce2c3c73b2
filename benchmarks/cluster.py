"""Cluster versus local, PostgreSQL versus SQLite, side by side in one run.

Usage:
    .venv/bin/python benchmarks/cluster.py [--trials 6] [--epochs 1] [--storage-trials 40] [--smoke]

`--smoke`: the local study (2 trials) and the storage timing (5 trials, SQLite and, if installed,
PostgreSQL); the two-node cluster is not started (said in the output).

1. Per-trial overhead: one tiny study (synthetic data, ResNet-8 x0.25, no WLD, two trials at a time) run
   through `run_study.py run` locally (`num_cpus: 2`) and on a two-node Ray cluster on this host (two
   `ray start` nodes of one CPU each, token authentication, `execution.address`), SQLite storage both.
   From the stored trials: W = first trial start to last trial end, T = sum of the trials' own training
   time (`train_time_s`); with c trials at a time the overhead per trial is (c*W - T) / N.
2. Storage time per trial: Optuna ask, ten user attributes, tell with two values, on a SQLite file (WAL,
   as icbench opens it) and on a PostgreSQL server started for the run; milliseconds per trial.

The cluster and the server are the test suite's (`tests/cluster/cluster_helpers.py`, `tests/pg_server.py`):
every process is killed by pid at the end, and `ray stop` is never called. PostgreSQL needs the server
package (`apt-get install postgresql`) and `pip install -e ".[postgres]"`. About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests"), str(REPO / "tests" / "cluster"), str(REPO)]

from _common import add_smoke_options, smoke_dir  # noqa: E402
from cluster_helpers import Cluster  # noqa: E402
from pg_server import PostgresServer, server_bin  # noqa: E402

STUDY = """
dataset: {{name: synthetic, kwargs: {{n: 600, image_size: 16, in_chans: 1}}}}
family: {{name: resnet_cifar, size: resnet8, width: 0.25}}
training: {{batch_size: 64}}
budget: {{epochs: {epochs}}}
n_trials: {trials}
sampler: {{name: random, seed: 0}}
wld: {{enabled: false}}
execution: {execution}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, ic_dual, se, conv]}
  lr: {type: float, low: 0.03, high: 0.3, log: true}
"""


def overhead(study: Path, env: dict[str, str], concurrency: int) -> dict[str, float]:
    """Run the study to completion; (wall, training, overhead per trial) from its stored trials."""
    import optuna

    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "run_study.py"), "run", str(study), "--no-report"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"{study.stem} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    total = time.perf_counter() - t0
    db = study.parent / "runs" / study.stem / "study.db"
    trials = optuna.load_study(study_name=study.stem, storage=f"sqlite:///{db}").get_trials()
    trials = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    wall = (end - start).total_seconds()
    train = sum(float(t.user_attrs.get("train_time_s", 0.0)) for t in trials)
    return {
        "n": len(trials),
        "command_s": total,
        "wall_s": wall,
        "train_s": train,
        "overhead_s": (concurrency * wall - train) / len(trials),
    }


def storage_time(url: str, n: int) -> float:
    """Milliseconds per trial: ask, ten user attributes, tell with two objective values."""
    import optuna

    from icbench.search.storage import make_storage

    storage = make_storage(url)
    study = optuna.create_study(storage=storage, study_name="bench", directions=["maximize", "minimize"])
    t0 = time.perf_counter()
    for i in range(n):
        trial = study.ask()
        for k in range(10):
            trial.set_user_attr(f"attr{k}", i * k)
        study.tell(trial, [0.5, float(i)])
    ms = (time.perf_counter() - t0) * 1000 / n
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.engine.dispose()
    return ms


class _NoCluster(Exception):
    """A smoke run stops before the cluster part."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--storage-trials", type=int, default=40)
    add_smoke_options(ap, "the local study and the storage timing; no cluster is started")
    args = ap.parse_args()
    if args.smoke:
        args.trials, args.epochs, args.storage_trials = 2, 1, 5
    import optuna

    from icbench.search.schema import write_study_files

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = smoke_dir(args) if args.smoke else Path(tempfile.mkdtemp(prefix="icbench-cluster-bench-"))
    results: dict[str, Any] = {}

    cluster = None if args.smoke else Cluster(cpus_per_node=1)
    try:
        local_exec = "{num_cpus: 2, cpus_per_trial: 1, max_concurrent: 2}"
        cluster_exec = (
            f'{{address: "{cluster.address if cluster else None}", storage_path: {folder / "shared"}, cpus_per_trial: 1, '
            "max_concurrent: 2}"
        )
        local = write_study_files(
            folder / "local",
            "local",
            STUDY.format(epochs=args.epochs, trials=args.trials, execution=local_exec),
            SPACE,
        )
        remote = write_study_files(
            folder / "cluster",
            "cluster",
            STUDY.format(epochs=args.epochs, trials=args.trials, execution=cluster_exec),
            SPACE,
        )
        if cluster is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
            env["PYTHONPATH"] = str(REPO)
            # Ray's socket paths are limited to 107 bytes: keep its temporary root short.
            env["RAY_TMPDIR"] = os.environ.get("RAY_TMPDIR", "/tmp")
            results["local"] = overhead(local, env, 2)
            raise _NoCluster
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            RAY_TMPDIR=str(cluster.root / "local"),
            PYTHONPATH=str(REPO),
            **{"ICBENCH_TEST_RAY_NODE": f"{cluster.root}:driver"},
        )
        results["local"] = overhead(local, env, 2)
        t0 = time.perf_counter()
        cluster.start_node("head")
        cluster.start_node("worker1")
        cluster.wait_for_nodes(2)
        results["cluster_start_s"] = time.perf_counter() - t0
        results["cluster"] = overhead(remote, cluster.env("driver"), 2)
    except _NoCluster:
        print("smoke run: the two-node cluster is not started (SKIPPED: cluster start and its study)")
    finally:
        if cluster is not None:
            cluster.close()

    sqlite_url = f"sqlite:///{folder / 'storage.db'}"
    results["sqlite_ms"] = storage_time(sqlite_url, args.storage_trials)
    bin_dir = server_bin()
    if bin_dir is None:
        results["postgres_ms"] = None
    else:
        server = PostgresServer(bin_dir)
        try:
            server.start()
            results["postgres_ms"] = storage_time(server.new_database(), args.storage_trials)
        finally:
            server.stop()

    if not args.smoke:
        shutil.rmtree(folder, ignore_errors=True)
    nan = float("nan")
    loc = results["local"]
    clu = results.get("cluster") or {k: nan for k in loc}
    results.setdefault("cluster_start_s", nan)
    print(
        f"{args.trials} trials x {args.epochs} epoch(s), 2 at a time; storage: {args.storage_trials} trials"
    )
    print(f"{'':28s} {'local':>10s} {'2-node cluster':>15s}")
    for key, label in (
        ("command_s", "run_study.py run (s)"),
        ("wall_s", "first start to last end (s)"),
        ("train_s", "sum of training (s)"),
        ("overhead_s", "overhead per trial (s)"),
    ):
        print(f"{label:28s} {loc[key]:10.2f} {clu[key]:15.2f}")
    print(f"{'cluster start (2 nodes, s)':28s} {'':10s} {results['cluster_start_s']:15.2f}")
    print(f"{'':28s} {'SQLite':>10s} {'PostgreSQL':>15s}")
    pg = results["postgres_ms"]
    pg_text = f"{pg:15.1f}" if pg is not None else f"{'not installed':>15s}"
    print(f"{'storage per trial (ms)':28s} {results['sqlite_ms']:10.1f} {pg_text}")
    if pg is not None:
        print(
            f"ratios: cluster/local overhead {clu['overhead_s'] / loc['overhead_s']:.2f}x, "
            f"PostgreSQL/SQLite storage {pg / results['sqlite_ms']:.2f}x"
        )


if __name__ == "__main__":
    main()

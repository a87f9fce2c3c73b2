"""The cluster page's script (docs/cluster.md), run verbatim: start the head, start a worker, run, report,
stop.

The script is taken from docs/cluster.md between its `<!-- cluster-script -->` markers and run unchanged with
bash, with its settings (`SHARED`, `PORT`, `DB`) in the environment. It runs in a PID namespace of its own
(`unshare --pid --mount-proc`): its `ray stop` then sees, and stops, only the Ray processes it started,
not other Ray instances on this host, and whatever is left when it ends is killed with the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from cluster_helpers import REPO, free_port

from icbench.search.storage import resolve_url

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

TIMEOUT_S = 420
BEGIN, END = "<!-- cluster-script -->", "<!-- /cluster-script -->"


def readme_script() -> str:
    text = (REPO / "docs" / "cluster.md").read_text()
    assert BEGIN in text and END in text, "docs/cluster.md has no cluster script"
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert block.startswith("```bash\n") and block.endswith("```")
    return block[len("```bash\n") : -len("```")]


def _own_pid_namespace() -> list[str]:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to run `ray stop` without touching other Ray instances")
    cmd = ["unshare", "--pid", "--fork", "--mount-proc"]
    if os.geteuid() != 0:
        cmd.insert(1, "--map-root-user")
    if subprocess.run([*cmd, "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow a PID namespace (unshare)")
    return cmd


def test_readme_cluster_script_verbatim(tmp_path: Path, postgres_url: str) -> None:
    namespace = _own_pid_namespace()
    script = tmp_path / "cluster.sh"
    script.write_text("set -euo pipefail\n" + readme_script())
    shared = tmp_path / "shared"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # Ray's session folders away from /tmp/ray, which other Ray instances on this host use.
    ray_tmp = Path(f"/tmp/icr-{os.getpid()}-{free_port()}")
    env.update(SHARED=str(shared), PORT=str(free_port()), DB=postgres_url, RAY_TMPDIR=str(ray_tmp))
    try:
        done = subprocess.run(
            [*namespace, "bash", str(script)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    out = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, out
    assert "Stopped all" in done.stdout + done.stderr, out

    storage = optuna.storages.RDBStorage(resolve_url(postgres_url))
    try:
        trials = optuna.load_study(study_name="cluster_quickstart", storage=storage).get_trials()
    finally:
        storage.engine.dispose()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    nodes = {json.loads(t.user_attrs["machine"]).get("ray_node") for t in complete}
    assert nodes == {"head", "worker1"}, nodes
    report = shared / "reports" / "cluster_quickstart"
    assert {"summary.md", "trials.csv", "pareto.png"} <= {p.name for p in report.iterdir()}
    teachers = list((shared / "ray_results" / ".teachers").glob("*.pt"))
    assert len(teachers) == 1, teachers  # one teacher for the cluster, under the shared storage path

"""A real multi-node Ray cluster on this host: each node its own `ray start` (its own temp folder, CPUs
and custom resource), joined with Ray's token authentication.

Every process a node starts inherits that node's tag in its environment, so one node can be killed on
its own (a lost machine) and everything is killed by pid at the end; `ray stop` is never called here,
because it stops every Ray process on the host, other users' too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
TAG = "ICBENCH_TEST_RAY_NODE"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tagged(tag: str) -> list[int]:
    """Pids of live processes whose environment carries `TAG=tag`."""
    needle = f"{TAG}={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_tagged(tag: str) -> list[int]:
    pids = tagged(tag)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


class Cluster:
    """Head and worker nodes started with `ray start`, each with its own temp folder under `root`."""

    def __init__(self, cpus_per_node: int = 1) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="icc-", dir="/tmp"))  # short: Ray's socket paths
        self.token = self.root / "ray_token"
        self.token.write_text(secrets.token_urlsafe(32))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cpus = cpus_per_node
        self.nodes: list[str] = []

    def env(self, tag: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(self.token),
            RAY_TMPDIR=str(self.root / tag),
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
            TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1",
            **{TAG: f"{self.root}:{tag}"},
            **extra,
        )
        return env

    def start_node(self, name: str) -> None:
        head = not self.nodes
        args = [RAY, "start", f"--node-name={name}", f"--num-cpus={self.cpus}", "--num-gpus=0"]
        args += [f"--resources={json.dumps({f'node_{name}': 1})}", "--disable-usage-stats"]
        args += ["--dashboard-agent-listen-port=0", "--metrics-export-port=0"]
        if head:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false"]
            args += ["--node-ip-address=127.0.0.1"]
        else:
            args += [f"--address={self.address}"]
        (self.root / name).mkdir(exist_ok=True)
        done = subprocess.run(args, env=self.env(name), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"ray start ({name}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        self.nodes.append(name)

    def wait_for_nodes(self, n: int, timeout_s: float = 60) -> None:
        probe = (
            f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        deadline = time.monotonic() + timeout_s
        while True:
            out = subprocess.run(
                [sys.executable, "-c", probe],
                env=self.env("probe"),
                capture_output=True,
                text=True,
                timeout=60,
            )
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            assert time.monotonic() < deadline, f"cluster never had {n} live nodes: {out.stdout} {out.stderr}"
            time.sleep(1)

    def node_processes(self, name: str) -> list[int]:
        return tagged(f"{self.root}:{name}")

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL every process of one node: what losing its machine looks like to the others."""
        return kill_tagged(f"{self.root}:{name}")

    def close(self) -> list[int]:
        """Kill every process of every node, the driver's and probes' included; returns the pids."""
        killed: list[int] = []
        for name in [*self.nodes, "driver", "probe"]:
            killed += kill_tagged(f"{self.root}:{name}")
        shutil.rmtree(self.root, ignore_errors=True)
        return killed

"""Can a study's trials be placed at all? Per-trial CPUs, GPUs and device against what exists.

Ray keeps a trial that asks for more than any node has PENDING forever, without an error; a `device:
cuda` trial on a machine without CUDA fails each time. So a local run compares the request with this
machine before anything is written, a cluster run with the cluster's nodes right after connecting (before
the first trial), and a trial that stays PENDING much longer than a start-up takes is reported while the
study runs (`PendingWatch`).

Ray is imported only by the functions that talk to a running Ray (`check_connected`,
`ray_free`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from icbench.errors import ConfigError
from icbench.search.schema import LoadedStudy

#: A trial PENDING this long is reported; a trial normally starts within a few seconds (DESIGN.md §10:
#: about 2.3 s of overhead per trial slot). Reported again each time its wait doubles.
PENDING_WARN_S = 60.0


@dataclass(frozen=True)
class Capacity:
    """What one place can give a single trial, and where the numbers come from (for messages)."""

    cpus: float
    gpus: float
    #: e.g. "this machine (os.sched_getaffinity, torch.cuda.device_count)".
    source: str
    #: Whether CUDA can be used there at all (a `device: cuda` trial needs it).
    cuda: bool
    #: (CPUs, GPUs) of each node, for a trial of several workers (`workers_per_trial`), whose workers may
    #: sit on different nodes; empty: one node with `cpus` and `gpus`.
    nodes: tuple[tuple[float, float], ...] = ()

    def workers_that_fit(self, cpus: float, gpus: float) -> int:
        """How many workers of `cpus` CPUs and `gpus` GPUs each can be placed at once, over all nodes."""
        total = 0
        for node_cpus, node_gpus in self.nodes or ((self.cpus, self.gpus),):
            by_cpu = int(node_cpus // cpus + 1e-9) if cpus > 0 else 1 << 30
            by_gpu = int(node_gpus // gpus + 1e-9) if gpus > 0 else 1 << 30
            total += min(by_cpu, by_gpu)
        return total


def machine_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which a container or `taskset` narrows)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_gpus() -> int:
    """CUDA devices torch can use here (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def local_capacity(loaded: LoadedStudy) -> Capacity:
    """What a local run can give one trial: this machine, narrowed by `execution.num_cpus/num_gpus`
    (the pool Ray is started with)."""
    ex = loaded.config.execution
    cpus, gpus = machine_cpus(), machine_gpus()
    source = f"this machine has {cpus} CPU(s) (os.sched_getaffinity) and {gpus} CUDA GPU(s) (torch.cuda)"
    if ex.num_cpus is not None and ex.num_cpus < cpus:
        cpus = ex.num_cpus
        source += f"; Ray is given execution.num_cpus = {ex.num_cpus}"
    if ex.num_gpus is not None and ex.num_gpus < gpus:
        gpus = ex.num_gpus
        source += f"; Ray is given execution.num_gpus = {ex.num_gpus}"
    return Capacity(cpus=cpus, gpus=gpus, source=source, cuda=machine_gpus() > 0)


def cluster_capacity(nodes: Iterable[dict[str, Any]], where: str) -> Capacity:
    """What a Ray cluster can give one trial: its largest node (a trial's resources come from one node).

    Args:
        nodes: `ray.nodes()`: dicts with `Alive` and `Resources` ({"CPU": 8.0, "GPU": 1.0, ...}).
        where: the cluster in words, for messages ("the Ray cluster at auto").
    """
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    total_cpu = sum(r.get("CPU", 0.0) for r in alive)
    total_gpu = sum(r.get("GPU", 0.0) for r in alive)
    cpus = max((r.get("CPU", 0.0) for r in alive), default=0.0)
    gpus = max((r.get("GPU", 0.0) for r in alive), default=0.0)
    source = (
        f"{where} has {len(alive)} node(s) with {total_cpu:g} CPU(s) and {total_gpu:g} "
        f"GPU(s) in all, at most {cpus:g} CPU(s) and {gpus:g} GPU(s) on one node"
    )
    nodes_resources = tuple((r.get("CPU", 0.0), r.get("GPU", 0.0)) for r in alive)
    return Capacity(cpus=cpus, gpus=gpus, source=source, cuda=total_gpu > 0, nodes=nodes_resources)


def check_capacity(loaded: LoadedStudy, have: Capacity) -> None:
    """Refuse a study none of whose trials could be placed on `have`.

    Raises:
        ConfigError: naming the study file, the field asked for, the request and what exists.
    """
    ex = loaded.config.execution
    study = str(loaded.study_path)
    if ex.device == "cuda" and not have.cuda:
        raise ConfigError(
            f"device 'cuda' is asked for, but {have.source}: every trial would fail (use device: auto or cpu)",
            source=study,
            field="execution.device",
        )
    for kind, asked, available in (
        ("GPU", ex.gpus_per_trial, have.gpus),
        ("CPU", ex.cpus_per_trial, have.cpus),
    ):
        if asked > available:
            raise ConfigError(
                f"{asked:g} {kind}(s) per trial are asked for, but {have.source}: no trial could ever "
                "start (Ray would keep it PENDING)",
                source=study,
                field=f"execution.{kind.lower()}s_per_trial",
            )
    workers = ex.workers_per_trial
    if workers > 1:
        fit = have.workers_that_fit(ex.cpus_per_trial, ex.gpus_per_trial)
        if workers > fit:
            each = f"{ex.cpus_per_trial:g} CPU(s)" + (
                f" and {ex.gpus_per_trial:g} GPU(s)" if ex.gpus_per_trial else ""
            )
            raise ConfigError(
                f"{workers} workers per trial of {each} each are asked for, but {have.source}: at most "
                f"{fit} such worker(s) fit at once, so no trial could ever start (Ray would keep it PENDING)",
                source=study,
                field="execution.workers_per_trial",
            )


def check_local_resources(loaded: LoadedStudy) -> None:
    """A local run's per-trial CPUs, GPUs and device fit this machine (nothing to check on a cluster
    run before connecting: see `check_capacity` with `cluster_capacity`).

    Raises:
        ConfigError: naming the study file, the field, what was asked and what this machine has.
    """
    if loaded.config.execution.address:
        return
    check_capacity(loaded, local_capacity(loaded))


def check_connected(loaded: LoadedStudy) -> None:
    """After connecting to Ray (a cluster, or a local Ray), before the first trial: its nodes can place
    a trial.

    Raises:
        ConfigError: naming the study file, the field, what was asked and what the cluster has.
    """
    import ray

    address = loaded.config.execution.address
    where = f"the Ray cluster at {address}" if address else "the local Ray"
    check_capacity(loaded, cluster_capacity(ray.nodes(), where))


# ------------------------------------------------------------------------------------ pending trials


@dataclass(frozen=True)
class TrialView:
    """What the watch needs to know of a trial: its id, a name for messages, its status and request."""

    trial_id: str
    name: str
    status: str
    resources: dict[str, float]


class PendingWatch:
    """Reports each trial that stays PENDING longer than `warn_after_s`, and again whenever its wait has
    doubled since, so a trial Ray cannot place is never waited on silently.

    Args:
        echo: where warnings go (the runner's progress output).
        warn_after_s: the first report's delay.
        free: describes what Ray has free now (e.g. "0 of 2 CPUs free"), for the message; optional.
        clock: seconds, monotonic (a test passes a fake one).
    """

    def __init__(
        self,
        echo: Callable[[str], None],
        warn_after_s: float = PENDING_WARN_S,
        free: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.echo = echo
        self.warn_after_s = warn_after_s
        self.free = free
        self.clock = clock
        self._since: dict[str, float] = {}
        self._next: dict[str, float] = {}

    def update(self, trials: Iterable[TrialView]) -> list[str]:
        """Look at the trials once (the executor calls this every step); returns the warnings echoed."""
        now = self.clock()
        out: list[str] = []
        pending = set()
        for t in trials:
            if t.status != "PENDING":
                continue
            pending.add(t.trial_id)
            since = self._since.setdefault(t.trial_id, now)
            waited = now - since
            if waited >= self._next.setdefault(t.trial_id, self.warn_after_s):
                self._next[t.trial_id] = 2 * waited
                out.append(self._message(t, waited))
        for gone in set(self._since) - pending:
            del self._since[gone]
            self._next.pop(gone, None)
        for line in out:
            self.echo(line)
        return out

    def _message(self, t: TrialView, waited: float) -> str:
        asked = ", ".join(f"{v:g} {k}" for k, v in sorted(t.resources.items()) if v) or "no resources"
        free = ""
        if self.free is not None:
            try:
                free = f"; Ray has {self.free()}"
            except Exception:  # a message must not stop the study
                free = ""
        return (
            f"warning: trial {t.name} has been PENDING for {waited:.0f} s, waiting for {asked}{free}. "
            "Another program may hold these resources, or a cluster node may have left; the study waits"
        )


def watch_tune_trials(watch: PendingWatch, trials: Iterable[Any]) -> None:
    """Show Ray Tune's trials to `watch` (the executor's Tune scheduler calls this once per step of Tune's
    loop, in `choose_trial_to_run`).

    Not a Tune `Callback`: any callback makes Tune import its integrations to tag its usage, MLflow's
    among them when installed, ~0.7 s of the driver's set-up while every trial slot waits
    (benchmarks/results/harness.txt)."""
    watch.update(_trial_state(t) for t in trials)


def _trial_state(trial: Any) -> TrialView:
    number = (getattr(trial, "config", None) or {}).get("trial_number")
    name = f"{number} ({trial.trial_id})" if number is not None else str(trial.trial_id)
    try:
        resources = dict(trial.placement_group_factory.required_resources)
    except Exception:  # the request is only for the message
        resources = {}
    return TrialView(str(trial.trial_id), name, str(trial.status), resources)


def ray_free() -> str:
    """What the connected Ray has free now, in words (for the pending warning)."""
    import ray

    free, total = ray.available_resources(), ray.cluster_resources()
    return ", ".join(f"{free.get(k, 0.0):g} of {total[k]:g} {k} free" for k in ("CPU", "GPU") if k in total)

"""Turn an asked Optuna trial into a Tune trial config, in the driver: sample, build, cost, constrain."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import optuna

from icbench.search import space as sp
from icbench.search.records import Checked, Proposal
from icbench.search.schema import LoadedStudy
from icbench.versions import package_versions


def absolute_paths(cand: dict[str, Any]) -> dict[str, Any]:
    """Trials run in their own working directory on a worker: every path they get must be absolute."""
    from icbench.objectstore import is_uri

    for key in ("dataset_root", "cache_dir"):
        if cand.get(key) and not is_uri(cand[key]):
            cand[key] = str(Path(cand[key]).expanduser().resolve())
    wld = cand.get("wld") or {}
    if wld.get("teacher_checkpoint") and not is_uri(wld["teacher_checkpoint"]):
        wld["teacher_checkpoint"] = str(Path(wld["teacher_checkpoint"]).expanduser().resolve())
    return cand


def teacher_cache_dir(loaded: LoadedStudy) -> str:
    """Where trials find the WLD teacher: the study's runs folder, or the `storage_path` (a shared folder
    or an object-storage URI), which every node reads, so the cluster trains one teacher, not one per node."""
    from icbench.objectstore import is_uri, join

    c = loaded.config
    if c.execution.storage_path:
        if is_uri(c.execution.storage_path):
            return join(c.execution.storage_path, ".teachers")
        return str(Path(c.execution.storage_path).expanduser().resolve() / ".teachers")
    return str((Path(c.runs_dir) / ".teachers").resolve())


#: Cost of a network by architecture, and (cost, canonical placement) by placement request: shared by every
#: proposer of the process (a benchmark replays many studies), since both depend on nothing else.
_COSTS: dict[str, dict[str, Any]] = {}
_REQUESTS: dict[str, tuple[dict[str, Any], str]] = {}


class Proposer:
    """Samples a candidate for an asked trial and decides whether it goes to a worker.

    MACs are counted here once per distinct architecture (cached), passed to the trial so the worker does
    not count them again, and checked against the study's MACs ceiling before any training. The basic
    network's sites, found by the same build, go to the trial too (`hand_off_sites`): a worker that had
    to find them would count MACs once more, and its first count costs ~2 s (ptflops' warm-up).
    """

    #: Pass the sites to the trial (`icbench.training.candidate.remember_sites`); off only to measure it.
    hand_off_sites = True

    def __init__(
        self, loaded: LoadedStudy, checked: Checked, known_costs: dict[str, dict[str, Any]] | None = None
    ) -> None:
        """`known_costs`: cost by canonical placement where already measured (a replay's table)."""
        self.loaded = loaded
        self.checked = checked
        self.known_costs = known_costs or {}
        c = loaded.config
        self.base = sp.base_candidate(loaded)
        self.base["cache_dir"] = str(teacher_cache_dir(loaded))
        self.base["num_threads"] = max(1, int(c.execution.cpus_per_trial))
        if c.wld.enabled and not c.wld.teacher_checkpoint:
            # The first trial trains the teacher while the study's other trials wait on it: it may use
            # their CPUs too (capped at its machine's in the trial).
            workers = max(1, int(getattr(c.execution, "workers_per_trial", 1) or 1))
            self.base["teacher_threads"] = self.base["num_threads"] * workers * max(1, c.execution.max_concurrent)
        self.max_macs = c.constraints.max_macs
        self._cost_cache = _COSTS
        self._request_cache = _REQUESTS
        #: Models built so far to count a cost (the rest came from the caches).
        self.builds = 0
        self.versions = package_versions()

    def candidate(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        values = sp.sample(trial, self.loaded.space, self.checked.mask_len)
        return absolute_paths(sp.candidate(self.base, self.loaded.space, values))

    def cost(self, cand: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """(MACs and params, canonical placement) of a candidate.

        Cached by what defines the network (data set and its options, family, size, width, placement
        request), for the whole process, so a network seen before costs a dictionary look-up, not a model
        build: under a tight MACs ceiling
        the sampler proposes many rejected candidates again and again.
        """
        from icbench.cost import measure_cost
        from icbench.placement import Placement
        from icbench.training import build_candidate

        request = json.dumps(
            [cand.get(k) for k in ("dataset", "dataset_root", "dataset_kwargs", "family", "size", "width",
                                   "family_kwargs", "unit", "strategy", "strategy_args", "placement")],
            sort_keys=True, default=str,
        )  # fmt: skip
        if request in self._request_cache:
            return self._request_cache[request]
        model, placement, input_shape = build_candidate(cand)
        self.builds += 1
        arch = json.dumps(
            [cand["dataset"], cand.get("dataset_root"), cand.get("dataset_kwargs"), cand["family"],
             cand.get("size"), cand.get("width"), cand.get("family_kwargs"), placement.canonical],
            sort_keys=True, default=str,
        )  # fmt: skip
        if arch not in self._cost_cache and placement.canonical in self.known_costs:
            self._cost_cache[arch] = dict(self.known_costs[placement.canonical])
        if arch not in self._cost_cache:
            cost = measure_cost(model, input_shape, latency=False)
            self._cost_cache[arch] = {
                "macs": cost.macs,
                "params": cost.params,
                "params_trainable": cost.params_trainable,
            }
        if placement.is_basic:  # conv units anywhere, or no unit: the same basic network
            placement = Placement("conv", (False,) * placement.n_sites)
        self._request_cache[request] = (self._cost_cache[arch], placement.canonical)
        return self._request_cache[request]

    @staticmethod
    def experiment_key(cand: dict[str, Any], canonical: str) -> str:
        """Equal candidates are equal experiments, whatever parameters led to them: the network as built
        (`canonical`: every basic placement is one network) and everything about its training."""
        experiment = {
            k: v for k, v in cand.items() if k not in ("unit", "strategy", "strategy_args", "placement")
        }
        experiment["network"] = canonical
        return hashlib.sha256(json.dumps(experiment, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def __call__(self, trial: optuna.Trial) -> Proposal:
        cand = self.candidate(trial)
        cost, canonical = self.cost(cand)
        attrs: dict[str, Any] = {
            "candidate_key": self.experiment_key(cand, canonical),
            "placement": canonical,
            "unit": canonical.split(":", 1)[0],
            "strategy": cand["strategy"],
            "family": cand["family"],
            "size": cand.get("size"),
            "width": cand.get("width"),
            "seed": cand.get("seed"),
            "wld": bool((cand.get("wld") or {}).get("enabled")),
            "macs": cost["macs"],
            "params": cost["params"],
            "candidate": cand,
            "versions": self.versions,
        }
        if self.max_macs is not None and cost["macs"] > self.max_macs:
            attrs.update(
                status="rejected",
                rejected=True,
                reason=f"{cost['macs'] / 1e6:.2f} MMac is over the ceiling constraints.max_macs = "
                f"{self.max_macs / 1e6:.2f} MMac (not trained)",
            )
            return Proposal(None, attrs)
        attrs["rejected"] = False
        config: dict[str, Any] = {"candidate": cand, "cost": cost, "num_threads": cand["num_threads"]}
        if self.hand_off_sites:
            from icbench.training.candidate import known_sites

            config["sites"] = known_sites(cand)  # found by `cost`'s build: the trial need not count again
        return Proposal(config, attrs)

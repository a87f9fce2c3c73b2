"""Everything checked before any compute: names, targets, references, constraints, checkpoints.

Every problem is a `ConfigError` naming the study or search-space file and the field, raised before Ray
starts and before anything is written to storage.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from icbench.errors import ConfigError, IcbenchError
from icbench.estimators import ESTIMATORS
from icbench.search import space as sp
from icbench.search.executors.replay import check_replay
from icbench.search.propose import Proposer
from icbench.search.records import Checked
from icbench.search.resources import check_local_resources
from icbench.search.samplers import make_sampler
from icbench.search.schema import CategoricalParam, FloatParam, IntParam, LoadedStudy, MaskParam
from icbench.search.space import mask_length
from icbench.search.storage import check_storage, resolve_url, storage_url

__all__ = [
    "N_PROBE", "Checked", "check_data_present", "check_environment", "check_resume", "check_run", "check_study",
    "check_tracking",
    "mask_length",
]  # fmt: skip

#: How many random points of the space are built and costed to validate it (and for the dry run's range).
N_PROBE = 8
#: Most points of a space `seed_with` scores (each is a network to build and score).
MAX_SEED_POINTS = 5000


def _registries() -> dict[str, tuple[str, Any]]:
    from icbench.data import DATASETS
    from icbench.families import FAMILIES
    from icbench.placement import STRATEGIES
    from icbench.units import UNITS

    return {"dataset": ("dataset", DATASETS), "family": ("family", FAMILIES), "unit": ("unit", UNITS),
            "strategy": ("strategy", STRATEGIES)}  # fmt: skip


def _valid_targets() -> tuple[set[str], set[str], set[str]]:
    from icbench.training import CandidateConfig, WLDConfig

    top = {f.name for f in dataclasses.fields(CandidateConfig)}
    wld = {f.name for f in dataclasses.fields(WLDConfig)}
    return top, wld, {"strategy_args", "family_kwargs", "dataset_kwargs"}


def _check_seed_with(loaded: LoadedStudy, mask_len: int | None) -> None:
    """`seed_with` names an estimator that needs no table, over a finite space."""
    sw = loaded.config.seed_with
    if sw is None:
        return
    usable = [n for n in ESTIMATORS if ESTIMATORS.get(n).kind != "training"]
    if sw.estimator not in usable:
        why = " (it reads a benchmark table's curves)" if sw.estimator in ESTIMATORS else ""
        raise ConfigError(
            f"estimator {sw.estimator!r} cannot seed a live search{why}; valid: {', '.join(usable)}",
            source=str(loaded.study_path), field="seed_with.estimator",
        )  # fmt: skip
    for name, p in loaded.space.params.items():
        if isinstance(p, FloatParam) and p.step is None:
            raise ConfigError(
                "seed_with scores every candidate of the space: give this float parameter a `step` (or make "
                "it categorical)", source=str(loaded.space_path), field=f"params.{name}",
            )  # fmt: skip
    try:
        n = len(sp.enumerate_points(loaded.space, mask_len))
    except ValueError as e:
        raise ConfigError(f"seed_with: {e}", source=str(loaded.space_path)) from None
    if n > MAX_SEED_POINTS:
        raise ConfigError(
            f"seed_with would score {n} points of the space (limit {MAX_SEED_POINTS}): narrow the space",
            source=str(loaded.space_path),
        )


def check_study(loaded: LoadedStudy, n_probe: int = N_PROBE) -> Checked:
    n_probe = max(1, n_probe)
    """Validate a loaded study beyond its schema; returns what the run needs to know.

    Raises:
        ConfigError: naming the file and field.
    """
    c = loaded.config
    study_file, space_file = str(loaded.study_path), str(loaded.space_path)
    regs = _registries()

    for fld, value in (("dataset.name", c.dataset.name), ("family.name", c.family.name), ("unit", c.unit),
                       ("strategy", c.strategy)):  # fmt: skip
        kind, reg = regs[fld.split(".")[0]]
        if value not in reg:
            raise ConfigError(_unknown(kind, value, reg), source=study_file, field=fld)
    family = regs["family"][1].get(c.family.name)
    if c.family.size is not None:
        try:
            family.check_size(c.family.size)
        except IcbenchError as e:
            raise ConfigError(str(e), source=study_file, field="family.size") from None

    top, wld, free = _valid_targets()
    masks = [n for n, p in loaded.space.params.items() if isinstance(p, MaskParam)]
    if len(masks) > 1:
        raise ConfigError(
            "at most one mask parameter per search space", source=space_file, field=f"params.{masks[1]}"
        )
    for name, p in loaded.space.params.items():
        target = sp.target_of(name, p)
        head, _, rest = target.partition(".")
        ok = (head in top and not rest and head not in ("wld",) + tuple(free)) or (
            head == "wld" and rest in wld) or (head in free and rest)  # fmt: skip
        if not ok:
            raise ConfigError(
                f"target {target!r} is not a candidate setting; valid targets: {', '.join(sorted(top - {'wld'} - free))}, "
                f"wld.<{'|'.join(sorted(wld))}>, strategy_args.<arg>, family_kwargs.<arg>",
                source=space_file,
                field=f"params.{name}" + ("" if p.target is None else ".target"),
            )
        if isinstance(p, CategoricalParam) and target in ("dataset", "family", "unit", "strategy"):
            kind, reg = regs[target]
            for choice in p.choices:
                if choice not in reg:
                    raise ConfigError(
                        _unknown(kind, choice, reg), source=space_file, field=f"params.{name}.choices"
                    )
        if isinstance(p, CategoricalParam) and target == "size" and not _searched(loaded, {"family"}):
            for choice in p.choices:
                try:
                    family.check_size(choice)
                except IcbenchError as e:
                    raise ConfigError(str(e), source=space_file, field=f"params.{name}.choices") from None
        if isinstance(p, MaskParam) and c.strategy != "mask" and "strategy" not in (p.when or {}):
            raise ConfigError(
                "a mask parameter needs `strategy: mask` in the study file, or a `when: {strategy: [mask]}` "
                "condition on a searched strategy",
                source=space_file,
                field=f"params.{name}",
            )
        if isinstance(p, MaskParam) and any(
            sp.target_of(n, q) in ("size", "family") for n, q in loaded.space.params.items()
        ):
            raise ConfigError(
                "a mask parameter needs a fixed family and size (its length is the number of blocks)",
                source=space_file,
                field=f"params.{name}",
            )

    if c.sampler.name == "grid":
        try:
            n = sp.grid_size(loaded.space, None)
        except ValueError as e:
            raise ConfigError(str(e), source=space_file) from None
        if masks:
            raise ConfigError(
                "grid sampling over a mask parameter is not supported",
                source=space_file,
                field=f"params.{masks[0]}",
            )
        if n > sp.MAX_GRID:
            raise ConfigError(f"the grid has {n} points (limit {sp.MAX_GRID})", source=space_file)

    for i, point in enumerate(c.enqueue):
        for key, value in point.items():
            p = loaded.space.params.get(key)
            if p is None or isinstance(p, MaskParam):
                valid = [n for n, q in loaded.space.params.items() if not isinstance(q, MaskParam)]
                raise ConfigError(
                    f"{key!r} is not a parameter of the search space; valid: {', '.join(valid)}",
                    source=study_file,
                    field=f"enqueue.{i}.{key}",
                )
            problem = _outside(p, value)
            if problem:
                raise ConfigError(problem, source=study_file, field=f"enqueue.{i}.{key}")

    _check_bounds(loaded)
    _check_sampler(loaded)
    _check_dataset(loaded)
    _check_study_placement(loaded)
    _check_teacher(loaded)
    check_storage_path(loaded, reach=False)
    try:
        mask_len = mask_length(loaded)
    except IcbenchError as e:
        raise ConfigError(str(e), source=study_file, field="family") from None
    checked = Checked(mask_len=mask_len)
    _check_seed_with(loaded, mask_len)
    _probe(loaded, checked, n_probe)
    if c.execution.backend == "replay":
        check_replay(loaded, checked)
    return checked


def _outside(p: Any, value: Any) -> str | None:
    """Why an enqueued value is not a point of parameter `p` (Optuna would train it anyway, with only a
    warning), or None if it is one."""
    if isinstance(p, CategoricalParam):
        return None if value in p.choices else f"{value!r} is not one of the choices {p.choices}"
    is_int = isinstance(p, IntParam)
    kind = "an integer" if is_int else "a number"
    if isinstance(value, bool) or not isinstance(value, int if is_int else (int, float)):
        return f"{value!r} is not {kind}: the parameter is {kind} in [{p.low}, {p.high}]"
    if not p.low <= value <= p.high:
        return f"{value!r} is outside the parameter's range [{p.low}, {p.high}]"
    if p.step is not None and not _on_step(value, p.low, p.step):
        return f"{value!r} is not on the parameter's grid: low {p.low} plus a multiple of step {p.step}"
    return None


def _on_step(value: float, low: float, step: float) -> bool:
    k = (value - low) / step
    return abs(k - round(k)) < 1e-8


def _unknown(kind: str, value: Any, reg: Any) -> str:
    from icbench.names import unknown_message

    return unknown_message(kind, value, reg.keys())


def _check_dataset(loaded: LoadedStudy) -> None:
    from icbench.data import DATASETS, dataset_info

    d = loaded.config.dataset
    if d.root is not None and d.name in DATASETS and not getattr(DATASETS.get(d.name), "needs_root", False):
        raise ConfigError(  # set, but nothing would read it: refused, not ignored
            f"dataset {d.name!r} ships its data and reads no directory; remove dataset.root "
            f"(datasets read from disk: {', '.join(sorted(n for n in DATASETS if DATASETS.get(n).needs_root))})",
            source=str(loaded.study_path),
            field="dataset.root",
        )
    try:
        dataset_info(d.name, d.root, **d.kwargs)
    except ConfigError as e:  # an option: its field is `dataset_kwargs.<option>`
        where = (e.field or "").replace("dataset_kwargs", "dataset.kwargs", 1) or "dataset.kwargs"
        raise ConfigError(e.detail, source=str(loaded.study_path), field=where) from None
    except IcbenchError as e:
        raise ConfigError(str(e), source=str(loaded.study_path), field="dataset.root") from None


def check_run(loaded: LoadedStudy) -> list[str]:
    """Every check of the environment a run makes before it trains, in the order the run makes them: the
    dataset's files, the storage (database driver, server, and an existing study's fingerprint) and the
    per-trial resources against this machine. `run` and the dry run (`validate`, `run --dry-run`) both
    call this one function after `check_study`, so they cannot disagree on a study.

    Returns:
        One line per check that was not made here, saying which and why (empty when all were made).

    Raises:
        ConfigError: naming the study file and the field (`dataset.root`, `storage`, `execution.*`).
    """
    skipped = [note for note in (check_data_present(loaded),) if note]
    check_environment(loaded)
    check_resume(loaded, storage_url(loaded))
    check_tracking(loaded)
    if loaded.config.execution.address:
        skipped.append(
            f"the trials' resources on the Ray cluster at {loaded.config.execution.address}: `run` checks "
            "them after connecting (the dry run starts no Ray)"
        )
    return skipped


def check_data_present(loaded: LoadedStudy) -> str | None:
    """A local run's dataset files are where the study says, for datasets read from disk (cifar10,
    cifar100, imagefolder): the expected layout and files, and how to get them, when they are not.

    On a cluster (`execution.address`) the workers read the data, so it is not checked on the driver.

    Returns:
        Why the check was skipped, or None when it was made (or there is nothing to check).

    Raises:
        ConfigError: naming the study file and `dataset.root`.
    """
    from icbench.data import DATASETS

    c = loaded.config
    if c.execution.address:
        return "the dataset files: the cluster's workers read them (execution.address), not this machine"
    if _searched(loaded, {"dataset", "dataset_root"}):
        return "the dataset files: the search space sets the dataset; each trial loads its own"
    dataset = DATASETS.get(c.dataset.name)
    if not getattr(dataset, "needs_root", False):
        return None
    if c.dataset.root is None:
        raise ConfigError(
            f"dataset {c.dataset.name!r} is read from disk: give its directory as dataset.root "
            "(nothing is downloaded)",
            source=str(loaded.study_path),
            field="dataset.root",
        )
    root = Path(c.dataset.root).expanduser()
    try:
        dataset(c.dataset.name).check_present(root)  # names the expected layout and files
        if not root.is_dir():
            raise IcbenchError(
                f"dataset root {c.dataset.root} ({root.resolve()}) does not exist or is not a directory"
            )
    except IcbenchError as e:
        raise ConfigError(str(e), source=str(loaded.study_path), field="dataset.root") from None
    return None


def check_environment(loaded: LoadedStudy) -> None:
    """What a run needs of this machine, checked before anything is written: the storage URL's database
    driver is installed and its server accepts a connection, and a local run's per-trial CPUs, GPUs and
    device exist here. Part of `check_run`; a cluster run's resources are checked after connecting.

    Raises:
        ConfigError: naming the study file and the field (`storage`, `execution.*`).
    """
    check_storage(loaded)  # its files and folders, the password variable, the driver, the server
    check_storage_path(loaded, reach=True)
    check_local_resources(loaded)


def check_storage_path(loaded: LoadedStudy, *, reach: bool) -> None:
    """`execution.storage_path`, when it is an object-storage URI (`s3://bucket/prefix`): well formed, and
    with `reach`, its bucket exists and answers with the credentials in force. Writes nothing.

    Raises:
        ConfigError: naming the study file and `execution.storage_path`.
    """
    from icbench.objectstore import Folder, ObjectStoreError, is_uri, shown

    uri = loaded.config.execution.storage_path
    if not uri or not is_uri(uri):
        return
    where = {"source": str(loaded.study_path), "field": "execution.storage_path"}
    try:
        folder = Folder(uri)
    except ObjectStoreError as e:
        raise ConfigError(f"{e} (expected a local path or s3://BUCKET/PREFIX)", **where) from None
    if reach:
        why = folder.unreachable()
        if why:
            raise ConfigError(
                f"storage {shown(uri)}: {why}; check the bucket name and the AWS_* credential and endpoint "
                "variables (docs/cluster.md)",
                **where,
            )


def check_resume(loaded: LoadedStudy, url: str) -> None:
    """When the study already exists in its storage: its experiment fingerprint is the current one (the
    check `open_study` makes before a resume). Writes nothing: a storage that does not exist yet (no
    SQLite or journal file, no Optuna tables on the server) holds no study to check.

    Raises:
        ConfigError: listing each changed field, as a resume would.
    """
    import optuna

    from icbench.dbserver import is_server_url
    from icbench.search.fingerprint import check_stored
    from icbench.search.storage import make_storage

    url = resolve_url(url)
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix) and not Path(url[len(prefix) :]).exists():
            return
    if is_server_url(url) and not _has_optuna_tables(url):
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(url, create=False)
    name = loaded.config.name
    if name not in optuna.get_all_study_names(storage):
        return
    attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    check_stored(loaded, attrs, url=url)


def check_tracking(loaded: LoadedStudy) -> None:
    """The libraries `execution.tracking` names are installed (tensorboardX, and mlflow when asked for).

    Raises:
        ConfigError: naming the study file, `execution.tracking` and what to install.
    """
    import importlib.util

    extra = {"tensorboard": ("tensorboardX", "icbench"), "mlflow": ("mlflow", "icbench[mlflow]")}
    for name in loaded.config.execution.tracking:
        module, install = extra[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"tracking {name!r} needs the {module} package, which is not installed: pip install '{install}' "
                "(or remove it from execution.tracking)",
                source=str(loaded.study_path),
                field="execution.tracking",
            )


def _has_optuna_tables(url: str) -> bool:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.pool import NullPool

    from icbench.dbserver import connect_args

    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args(url))
    try:
        return bool(inspect(engine).has_table("studies"))
    finally:
        engine.dispose()


def _searched(loaded: LoadedStudy, heads: set[str]) -> bool:
    """Whether the search space sets any of these candidate fields (dotted targets count by their head)."""
    return any(sp.target_of(n, p).partition(".")[0] in heads for n, p in loaded.space.params.items())


def _check_sampler(loaded: LoadedStudy) -> None:
    """Build the sampler once, so bad `sampler.kwargs` fail here and not after the study is created."""
    try:
        make_sampler(loaded.config.sampler, loaded.config.sampler.seed, loaded)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(
            f"invalid sampler arguments: {e}", source=str(loaded.study_path), field="sampler.kwargs"
        ) from None


def _check_study_placement(loaded: LoadedStudy) -> None:
    """The study file's own network and placement build, when the space samples neither.

    Without this a bad `strategy_args` would surface in the probe, attributed to the search space.
    """
    from icbench.training import build_candidate

    c = loaded.config
    arch = {"dataset", "dataset_kwargs", "family", "size", "width", "family_kwargs"}
    # A searched unit does not matter: which sites a strategy picks does not depend on the unit.
    if c.strategy == "mask" or _searched(loaded, arch | {"strategy", "strategy_args", "placement"}):
        return
    base = sp.base_candidate(loaded)
    for what, cand, fld in (
        ("the basic network", {**base, "unit": "conv", "strategy": "none", "strategy_args": {}}, "family"),
        ("the study's placement", base, "strategy_args" if c.strategy_args else "strategy"),
    ):
        try:
            build_candidate(cand)
        except IcbenchError as e:
            raise ConfigError(f"{what}: {e}", source=str(loaded.study_path), field=fld) from None


def _check_teacher(loaded: LoadedStudy) -> None:
    path = loaded.config.wld.teacher_checkpoint
    if not path:
        return
    from icbench.checkpoints import read_state_dict
    from icbench.objectstore import local_copy, shown

    where = {"source": str(loaded.study_path), "field": "wld.teacher_checkpoint"}
    try:
        with local_copy(path) as local:  # a file in object storage (s3://...) is downloaded first
            if local is None:
                raise ConfigError(f"teacher checkpoint not found: {shown(path)}", **where)
            try:
                state = read_state_dict(local)
            except IcbenchError as e:  # named as given, not as its downloaded copy
                raise ConfigError(str(e).replace(str(local), shown(path)), **where) from None
    except OSError as e:  # the object store could not be read
        raise ConfigError(f"cannot read teacher checkpoint {shown(path)}: {e}", **where) from None
    if _searched(loaded, {"dataset", "dataset_kwargs", "family", "size", "width", "family_kwargs"}):
        return  # the basic network differs between trials; each trial checks its own
    from icbench.training import build_candidate
    from icbench.training.teacher import check_state_dict

    base = sp.base_candidate(loaded)
    model, _, _ = build_candidate({**base, "unit": "conv", "strategy": "none", "strategy_args": {}})
    try:
        check_state_dict(model, state, source=f"teacher checkpoint {path}")
    except IcbenchError as e:
        raise ConfigError(str(e), source=str(loaded.study_path), field="wld.teacher_checkpoint") from None


def _check_bounds(loaded: LoadedStudy) -> None:
    """A numeric parameter that sets a recipe value (lr, unit_lr_mult, ...) must give a valid candidate at
    both ends of its range: random probing would almost never draw `low` exactly (e.g. a multiplier of 0)."""
    from icbench.training import CandidateConfig

    base = sp.base_candidate(loaded)
    for name, p in loaded.space.params.items():
        target = sp.target_of(name, p)
        if not isinstance(p, FloatParam | IntParam) or "." in target:
            continue
        for end in ("low", "high"):
            try:
                CandidateConfig.from_dict({**base, target: getattr(p, end)})
            except ConfigError as e:
                raise ConfigError(
                    f"{end} end {getattr(p, end)!r} of the range is not a valid {target}: {e.detail}",
                    source=str(loaded.space_path),
                    field=f"params.{name}.{end}",
                ) from None


def _probe(loaded: LoadedStudy, checked: Checked, n: int) -> None:
    """Build and cost the basic network and `n` random points: catches bad sizes, placement arguments and
    impossible constraints, and gives the dry run its MACs range."""
    import optuna

    proposer = Proposer(loaded, checked)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=loaded.config.sampler.seed))
    points = [(f"random point {i} of the search space", proposer.candidate(probe.ask())) for i in range(n)]
    # The basic network (every site `conv`) of the first point's family and size: the cheapest candidate.
    basic = {**points[0][1], "unit": "conv", "strategy": "none", "strategy_args": {}}
    points.insert(0, ("the basic network", basic))
    checked.basic = basic
    for what, cand in points:
        try:
            cost, canonical = proposer.cost(cand)  # validates the whole candidate config first
        except ConfigError as e:
            raise ConfigError(f"{what}: {e.detail}", source=str(loaded.space_path), field=e.field) from None
        except IcbenchError as e:
            raise ConfigError(f"{what}: {e}", source=str(loaded.space_path)) from None
        checked.probe_macs.append(cost["macs"])
        checked.probe_placements.append(canonical)
        checked.probe_params.append(int(cost.get("params") or 0))
    ceiling = loaded.config.constraints.max_macs
    cheapest = min(checked.probe_macs)
    if ceiling is not None and cheapest > ceiling:
        raise ConfigError(
            f"impossible constraint: the cheapest candidate probed (the basic network included) costs {cheapest / 1e6:.2f} MMac, over the ceiling "
            f"of {ceiling / 1e6:.2f} MMac; every candidate would be rejected",
            source=str(loaded.study_path),
            field="constraints.max_macs",
        )

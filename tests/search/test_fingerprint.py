"""The experiment fingerprint: a resume with any setting that changes what a trial measures is refused,
with each changed field named and the study database left byte for byte as it was."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import optuna
import pytest
from pydantic import BaseModel
from search_helpers import HERE, write_study

from icbench.errors import ConfigError
from icbench.search import confirm, runner, tabulate
from icbench.search import fingerprint as fpr
from icbench.search.executors import ray_tune
from icbench.search.schema import SearchSpace, StudyConfig, load_study
from icbench.search.storage import make_storage, storage_url
from icbench.search.study import open_study

STUDY = """
dataset: {name: synthetic, kwargs: {n: 200, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 1}
training: {batch_size: 64}
n_trials: 2
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
  lr: {type: float, low: 0.01, high: 0.2, log: true}
"""


def _cli() -> Any:
    spec = importlib.util.spec_from_file_location("run_study_cli", HERE.parents[1] / "run_study.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _create(path: Path, overrides: dict[str, Any] | None = None) -> Path:
    """Create the study in its SQLite database, close it as a finished run would; returns the database."""
    loaded = load_study(path, overrides)
    url = storage_url(loaded)
    storage = make_storage(url)
    open_study(loaded, url, storage=storage).ask()  # one trial: the database holds more than a bare study
    storage.engine.dispose()
    return Path(url[len("sqlite:///") :])


def _files(db: Path) -> dict[str, str]:
    """The database and its write-ahead log, by content hash."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (db, db.with_name(db.name + "-wal"))
        if p.exists() and p.stat().st_size
    }


@pytest.fixture
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a refused resume reached Ray, training or the report")

    monkeypatch.setattr(ray_tune, "init_ray", unreachable)
    for command in (runner, confirm, tabulate):  # the study commands, each as it calls them
        monkeypatch.setattr(command, "execute", unreachable)
    for command in (runner, tabulate):
        monkeypatch.setattr(command, "write_report", unreachable)


def _fields(err: str) -> list[str]:
    """The fields an error names (`field 'a, b'`)."""
    return err.split("field '", 1)[1].split("'", 1)[0].split(", ")


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = _cli().main(args)
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# A change to the study file, and what the refusal must say.
FILE_CHANGES = {
    "budget": ("budget: {epochs: 1}", "budget: {epochs: 2}", "budget.epochs was 1, now 2"),
    "training": ("training: {batch_size: 64}", "training: {batch_size: 64, lr: 0.05}", "training.lr was 0.1, now 0.05"),
    "dataset_option": ("n: 200,", "n: 300,", "dataset.kwargs.n was 200, now 300"),
    "family_width": ("width: 0.25", "width: 0.5", "family.width was 0.25, now 0.5"),
    "unit": ("n_trials: 2", "n_trials: 2\nunit: ic_dual", 'unit was "ic", now "ic_dual"'),
    "strategy_args": ("n_trials: 2", "n_trials: 2\nstrategy: last_k\nstrategy_args: {k: 1}", "strategy_args.k was (not set), now 1"),
    "wld": ("n_trials: 2", "n_trials: 2\nwld: {enabled: true, lambda0: 0.3}", "wld.lambda0 was 0.5, now 0.3"),
    "constraints": ("n_trials: 2", "n_trials: 2\nconstraints: {max_macs: 1.0e+9}", "constraints.max_macs was null, now 1000000000.0"),
    "sampler": ("n_trials: 2", "n_trials: 2\nsampler: {name: random, seed: 0}", 'sampler.name was "tpe", now "random"'),
    "asha": ("n_trials: 2", "n_trials: 2\nexecution: {asha: {enabled: true}}", "execution.asha.enabled was false, now true"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FILE_CHANGES))
def test_a_changed_setting_is_refused_on_resume_and_storage_is_unchanged(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_compute: None
) -> None:
    old, new, said = FILE_CHANGES[name]
    path = write_study(tmp_path, STUDY, SPACE)
    db = _create(path)
    before = _files(db)
    path.write_text(path.read_text().replace(old, new, 1))

    err = _refused(["run", str(path)], capsys)

    assert f"file {path}" in err and "already exists" in err and said in err, err
    assert said.split(" was ")[0] in _fields(err), err
    assert _files(db) == before, "the refused resume changed the study database"


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("budget.epochs=3", "budget.epochs was 1, now 3"),
        ("training.weight_decay=0.0", "training.weight_decay was 0.0005, now 0.0"),
        ("dataset.kwargs.image_size=12", "dataset.kwargs.image_size was 16, now 12"),
        ("wld.temperature=2.0", "wld.temperature was 4.0, now 2.0"),
    ],
)
def test_a_set_override_is_refused_on_resume(
    override: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_compute: None
) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    db = _create(path)
    before = _files(db)
    err = _refused(["run", str(path), "--set", override], capsys)
    assert said in err, err
    assert _files(db) == before


def test_an_override_given_at_creation_must_be_given_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_compute: None
) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    db = _create(path, {"budget.epochs": 3})
    before = _files(db)
    err = _refused(["run", str(path)], capsys)
    assert "budget.epochs was 3, now 1" in err
    assert _files(db) == before


def test_one_error_lists_every_changed_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_compute: None
) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    _create(path)
    path.write_text(path.read_text().replace("epochs: 1", "epochs: 2").replace("width: 0.25", "width: 0.5"))
    (tmp_path / "s.space.yaml").write_text(SPACE.replace("high: 0.2", "high: 0.3"))
    err = _refused(["run", str(path)], capsys)
    assert "field 'family.width, search_space.params.lr.high, budget.epochs'" in err, err
    for said in ("family.width was 0.25, now 0.5", "search_space.params.lr.high was 0.2, now 0.3",
                 "budget.epochs was 1, now 2"):  # fmt: skip
        assert said in err


def test_a_search_space_parameter_added_is_named(tmp_path: Path) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    _create(path)
    (tmp_path / "s.space.yaml").write_text(SPACE + "  batch_size: {type: categorical, choices: [32, 64]}\n")
    with pytest.raises(ConfigError) as e:
        open_study(load_study(path), storage_url(load_study(path)))
    assert e.value.field == "search_space.params.batch_size"
    assert "search_space.params.batch_size was (not set), now {" in e.value.detail


@pytest.mark.parametrize(
    "change",
    [
        {"n_trials": 7},
        {"description": "now with a description"},
        {"reports_dir": "elsewhere"},
        {"execution.max_concurrent": 1, "execution.cpus_per_trial": 2, "execution.num_cpus": 4},
        {"execution.max_failures": 0, "execution.max_consecutive_rejections": 3},
    ],
)
def test_settings_that_do_not_change_a_trial_may_change_on_resume(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    _create(path)
    loaded = load_study(path, change)
    study = open_study(loaded, storage_url(loaded))
    assert len(study.trials) == 1


@pytest.mark.parametrize("change", [{"execution.device": "cuda"}, {"execution.gpus_per_trial": 1}])
def test_the_device_trials_train_on_is_fingerprinted(tmp_path: Path, change: dict[str, Any]) -> None:
    """`device: auto` follows `gpus_per_trial`: more GPUs per trial may be a different device."""
    path = write_study(tmp_path, STUDY, SPACE)
    _create(path)
    loaded = load_study(path, change)
    with pytest.raises(ConfigError) as e:
        open_study(loaded, storage_url(loaded))
    assert e.value.field == "execution.device" and 'was "cpu", now "cuda"' in e.value.detail


def test_the_search_space_is_fingerprinted_by_content_not_path(tmp_path: Path) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    _create(path)
    (tmp_path / "moved.yaml").write_text("description: the same space, moved and described\n" + SPACE)
    loaded = load_study(path, {"search_space": "moved.yaml"})
    assert len(open_study(loaded, storage_url(loaded)).trials) == 1


def test_the_teacher_checkpoint_is_fingerprinted_by_content(tmp_path: Path) -> None:
    ckpt = tmp_path / "teacher.pt"
    ckpt.write_bytes(b"first teacher")
    path = write_study(tmp_path, STUDY + f"wld: {{enabled: true, teacher_checkpoint: {ckpt}}}\n", SPACE)
    db = _create(path)
    moved = tmp_path / "moved.pt"
    moved.write_bytes(b"first teacher")
    loaded = load_study(path, {"wld.teacher_checkpoint": str(moved)})
    open_study(loaded, storage_url(loaded))  # same content elsewhere: the same experiment

    ckpt.write_bytes(b"retrained teacher")
    before = _files(db)
    with pytest.raises(ConfigError) as e:
        open_study(load_study(path), storage_url(load_study(path)))
    old, new = (hashlib.sha256(b).hexdigest() for b in (b"first teacher", b"retrained teacher"))
    assert e.value.field == "wld.teacher_checkpoint"
    assert f'was "sha256:{old}", now "sha256:{new}"' in e.value.detail
    assert _files(db) == before


def _legacy_study(path: Path) -> Path:
    """A study as icbench wrote it before experiment fingerprints: only space and objectives recorded."""
    loaded = load_study(path)
    url = storage_url(loaded)
    storage = make_storage(url)
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr(
        "fingerprint",
        {"space": loaded.space.model_dump(mode="json", exclude={"description"}),
         "objectives": [["val_acc", "maximize"], ["macs", "minimize"]]},
    )  # fmt: skip
    study.ask()
    storage.engine.dispose()
    return Path(url[len("sqlite:///") :])


def test_a_study_without_a_fingerprint_is_checked_on_space_and_objectives(tmp_path: Path) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    db = _legacy_study(path)
    before = _files(db)
    (tmp_path / "s.space.yaml").write_text(SPACE.replace("low: 0.01", "low: 0.001"))
    with pytest.raises(ConfigError, match=r"search_space\.params\.lr\.low was 0\.01, now 0\.001"):
        open_study(load_study(path), storage_url(load_study(path)))
    loaded = load_study(path, {"objectives": ["val_acc", "params"]})
    (tmp_path / "s.space.yaml").write_text(SPACE)
    with pytest.raises(ConfigError, match="objectives was"):
        open_study(loaded, storage_url(loaded))
    assert _files(db) == before


def test_a_study_without_a_fingerprint_gets_one_on_its_first_resume(tmp_path: Path) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    _legacy_study(path)
    said: list[str] = []
    loaded = load_study(path, {"budget.epochs": 2})
    study = open_study(loaded, storage_url(loaded), echo=said.append)
    assert study.user_attrs[fpr.FINGERPRINT_ATTR] == fpr.experiment_fingerprint(loaded)
    assert study.user_attrs[fpr.FROM_TRIAL_ATTR] == 1
    assert len(said) == 1 and "from trial 1 on" in said[0]
    with pytest.raises(ConfigError, match="budget.epochs was 2, now 1"):  # from now on it is checked
        open_study(load_study(path), storage_url(load_study(path)))


def test_a_new_study_stores_its_fingerprint(tmp_path: Path) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    loaded = load_study(path)
    study = open_study(loaded, storage_url(loaded))
    fp = fpr.experiment_fingerprint(loaded)
    assert study.user_attrs[fpr.FINGERPRINT_ATTR] == fp
    assert study.user_attrs[fpr.HASH_ATTR] == fpr.fingerprint_hash(fp)
    assert study.user_attrs[fpr.FROM_TRIAL_ATTR] == 0


# ---------------------------------------------------------------- the fingerprint covers the whole schema


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of every setting of a schema model (nested sections expanded)."""
    out: list[str] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        sub = next(
            (
                a
                for a in (ann, *getattr(ann, "__args__", ()))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        path = f"{prefix}{name}"
        out += _leaves(sub, path + ".") if sub is not None and name != "objectives" else [path]
    return out


def _lookup(d: dict[str, Any], dotted: str) -> bool:
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return False
        d = d[key]
    return True


def test_every_setting_not_allowed_to_change_is_fingerprinted(tmp_path: Path) -> None:
    """Built from the schema itself, so a setting added to it is covered without touching this test."""
    path = write_study(tmp_path, STUDY, SPACE)
    fp = fpr.experiment_fingerprint(load_study(path))
    settings = _leaves(StudyConfig) + [f"search_space.{p}" for p in _leaves(SearchSpace)]
    missing = [p for p in settings if p not in fpr.MAY_CHANGE and not _lookup(fp, p)]
    assert missing == []
    leaked = [p for p in fpr.MAY_CHANGE if _lookup(fp, p)]
    assert leaked == []


def test_the_allow_list_names_real_settings() -> None:
    settings = set(_leaves(StudyConfig)) | {f"search_space.{p}" for p in _leaves(SearchSpace)}
    assert set(fpr.MAY_CHANGE) <= settings, set(fpr.MAY_CHANGE) - settings


def test_changes_are_strict_and_name_each_leaf() -> None:
    old = {"a": {"x": 1, "y": [1, 2]}, "b": True, "gone": 3}
    new = {"a": {"x": 1.0, "y": [1, 2], "z": None}, "b": 1}
    assert [str(c) for c in fpr.changes(old, new)] == [
        "a.x was 1, now 1.0",
        "a.z was (not set), now null",
        "b was true, now 1",
        "gone was 3, now (not set)",
    ]
    assert fpr.changes(old, old) == []


def test_a_study_stored_before_the_unit_settings_resumes_only_as_the_legacy_experiment(
    tmp_path: Path,
) -> None:
    """A study made before `unit_lr_mult` and `unit_init` existed trained its units the legacy way: resumed
    under the new defaults it is another experiment (refused, both fields named, with what the old study
    ran as); resumed with the legacy settings written out it is the same experiment."""
    path = write_study(tmp_path, STUDY, SPACE)
    current = fpr.experiment_fingerprint(load_study(path))
    stored = {
        **current,
        "training": {k: v for k, v in current["training"].items() if not k.startswith("unit_")},
    }
    found = fpr.changes(stored, current)
    assert [c.field for c in found] == ["training.unit_lr_mult", "training.unit_init"]
    assert str(found[0]) == "training.unit_lr_mult was (not set: studies of that time ran as 1.0), now 30.0"
    legacy = fpr.experiment_fingerprint(
        load_study(path, {"training.unit_lr_mult": 1.0, "training.unit_init": "zero"})
    )
    assert fpr.changes(stored, legacy) == []
    # A setting added later whose default did not change the behaviour still resumes silently.
    no_ema = {**current, "training": {k: v for k, v in current["training"].items() if k != "ema_decay"}}
    assert fpr.changes(no_ema, current) == []


def test_the_unit_settings_round_trip_through_a_study_file_and_the_fingerprint(tmp_path: Path) -> None:
    set_ = write_study(
        tmp_path,
        STUDY.replace("{batch_size: 64}", "{batch_size: 64, unit_lr_mult: 7.5, unit_init: zero}"),
        SPACE,
        "t",
    )
    fp = fpr.experiment_fingerprint(load_study(set_))
    assert (fp["training"]["unit_lr_mult"], fp["training"]["unit_init"]) == (7.5, "zero")
    from icbench.search.space import base_candidate
    from icbench.training import CandidateConfig

    cand = CandidateConfig.from_dict(base_candidate(load_study(set_)))
    assert (cand.unit_lr_mult, cand.unit_init) == (7.5, "zero")
    recipe = cand.train_config(False)
    assert (recipe.unit_lr_mult, recipe.unit_init) == (7.5, "zero")
    # The teacher (a basic network, no units) does not see them: its cache key is the same either way.
    plain = write_study(tmp_path, STUDY, SPACE, "u")
    from icbench.search.space import teacher_recipe

    assert teacher_recipe(load_study(set_)) == teacher_recipe(load_study(plain))

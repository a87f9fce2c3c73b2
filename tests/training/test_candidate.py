"""`train_candidate` and `build_candidate` end to end on the tiny resnet_cifar variant."""

from __future__ import annotations

import math

import pytest
import torch

from icbench.errors import CheckpointError, ConfigError
from icbench.families import tiny_size
from icbench.training import METRIC_KEYS, CandidateConfig, WLDConfig, build_candidate, train_candidate
from icbench.training import candidate as candidate_mod
from icbench.training import teacher as teacher_mod
from icbench.units import UNITS

TINY = tiny_size("resnet_cifar")
# Small and fast: 16×16 synthetic images, a quarter-width ResNet-8, no latency measurement.
FAST = {
    "dataset": "synthetic",
    "dataset_kwargs": {"n": 240, "image_size": 16, "num_classes": 4},
    "family": "resnet_cifar",
    "size": TINY,
    "width": 0.5,
    "epochs": 2,
    "batch_size": 32,
    "lr": 0.05,
    "latency": False,
}


def _untimed(metrics: dict) -> dict:
    out = {
        k: v for k, v in metrics.items() if k not in ("wall_time_s", "train_time_s", "latency_ms", "curve")
    }
    out["curve"] = [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in metrics["curve"]]
    return out


# ------------------------------------------------------------------------------------------------ config
def test_from_dict_rejects_unknown_keys_and_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        CandidateConfig.from_dict({"epochs": 1, "epoch": 2})
    assert "'epoch'" in str(err.value) and "epochs" in str(err.value) and "batch_size" in str(err.value)
    with pytest.raises(ConfigError, match="temperature"):
        CandidateConfig.from_dict({"wld": {"temp": 2}})


def test_from_dict_reads_nested_and_boolean_wld():
    cfg = CandidateConfig.from_dict({"wld": {"enabled": True, "lambda0": 0.3}})
    assert isinstance(cfg.wld, WLDConfig) and cfg.wld.enabled and cfg.wld.lambda0 == 0.3
    assert CandidateConfig.from_dict({"wld": True}).wld == WLDConfig(enabled=True)
    assert CandidateConfig.from_dict(cfg.to_dict()) == cfg


def test_defaults_are_as_documented():
    cfg = CandidateConfig()
    assert (cfg.dataset, cfg.family, cfg.unit, cfg.strategy, cfg.epochs) == (
        "mnist5k",
        "resnet_cifar",
        "ic",
        "all",
        2,
    )
    assert (cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay) == (0.1, 0.9, True, 5e-4)
    w = cfg.wld
    assert (w.enabled, w.lambda0, w.temperature, w.schedule, w.end, w.warm_start) == (
        False,
        0.5,
        4.0,
        "linear",
        0.5,
        True,
    )


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"lr": -1}, {"label_smoothing": 1.5}, {"wld": {"end": 0}}])
def test_invalid_values_name_the_field(bad):
    with pytest.raises(ConfigError):
        CandidateConfig.from_dict(bad)


# ------------------------------------------------------------------------------------------------- build
def test_build_candidate_applies_the_placement():
    model, placement, shape = build_candidate({**FAST, "strategy": "every_other"})
    assert shape == (3, 16, 16)
    assert placement.unit == "ic" and 0 < placement.n_units < placement.n_sites
    assert sum(type(m).__name__ == "ICConv2d" for m in model.modules()) == placement.n_units


def test_placement_string_overrides_strategy_and_is_checked():
    _, p, _ = build_candidate({**FAST, "strategy": "all"})
    bits = "0" + "1" + "0" * (p.n_sites - 2)
    _, p2, _ = build_candidate({**FAST, "placement": f"ic_dual:{bits}"})
    assert p2.canonical == f"ic_dual:{bits}"
    with pytest.raises(ConfigError, match="sites"):
        build_candidate({**FAST, "placement": "ic:01"})


@pytest.mark.parametrize("unit", sorted(UNITS.keys()))
def test_warm_started_student_equals_teacher_at_step_zero(unit):
    torch.manual_seed(0)
    teacher, basic, shape = build_candidate({**FAST, "strategy": "none"})
    assert basic.is_basic
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            teacher(torch.randn(16, *shape) * 2 + 0.5)
    teacher.eval()
    student, placement, _ = build_candidate(
        {**FAST, "unit": unit, "strategy": "random", "strategy_args": {"p": 0.5, "seed": 1}, "seed": 7},
        basic_state_dict=teacher.state_dict(),
    )
    assert 0 < placement.n_units < placement.n_sites  # a non-trivial placement
    student.eval()
    x = torch.randn(8, *shape)
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------- train
def test_metrics_have_exactly_the_agreed_keys():
    seen = []
    m = train_candidate(FAST, callback=seen.append)
    assert tuple(m) == METRIC_KEYS
    assert m["epochs_done"] == m["epochs_target"] == 2 and len(m["curve"]) == 2 == len(seen)
    assert not m["diverged"] and m["stop_reason"] is None
    assert m["macs"] > 0 and m["params"] >= m["params_trainable"] > 0 and m["latency_ms"] is None
    assert m["placement"].startswith("ic:") and m["n_unit_sites"] == m["placement"].count("1")
    assert m["n_sites"] == len(m["placement"]) - 3 and m["size"] == TINY
    assert m["wld"] is False and m["teacher_key"] is None and m["teacher_val_acc"] is None
    assert 0 <= m["val_acc"] <= 1 and 0 <= m["test_acc"] <= 1 and m["wall_time_s"] >= m["train_time_s"] > 0


def test_same_seed_gives_identical_metrics_and_another_seed_does_not():
    a = train_candidate({**FAST, "seed": 3})
    b = train_candidate({**FAST, "seed": 3})
    c = train_candidate({**FAST, "seed": 4})
    assert _untimed(a) == _untimed(b)
    assert [e["train_loss"] for e in a["curve"]] != [e["train_loss"] for e in c["curve"]]


def test_given_cost_is_not_counted_again(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("cost counted again")

    monkeypatch.setattr(candidate_mod, "measure_cost", fail)
    m = train_candidate({**FAST, "epochs": 1}, cost={"macs": 123, "params": 45, "params_trainable": 44})
    assert (m["macs"], m["params"], m["params_trainable"], m["latency_ms"]) == (123, 45, 44, None)


def test_huge_learning_rate_diverges_without_raising():
    m = train_candidate({**FAST, "lr": 1e30, "weight_decay": 0.0})
    assert m["diverged"] and m["stop_reason"] == "diverged"
    assert math.isnan(m["val_acc"]) and math.isnan(m["test_acc"])
    assert m["epochs_done"] < m["epochs_target"]


def test_time_budget_stops_training():
    m = train_candidate({**FAST, "epochs": 30, "time_budget_s": 1e-6})
    assert m["stop_reason"] == "time_budget" and m["epochs_done"] < 30 and not m["diverged"]


def test_wld_trains_the_teacher_once_and_reuses_it(tmp_path, monkeypatch):
    calls = []
    real = teacher_mod.train_teacher

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_mod, "train_teacher", counting)
    cfg = {**FAST, "cache_dir": str(tmp_path), "wld": {"enabled": True, "teacher_epochs": 1}}
    first = train_candidate(cfg)
    second = train_candidate({**cfg, "seed": 1, "strategy": "every_other"})  # another trial, same teacher
    assert len(calls) == 1
    assert first["wld"] and first["teacher_key"] == second["teacher_key"] is not None
    assert first["teacher_val_acc"] == second["teacher_val_acc"] is not None
    assert len(list(tmp_path.glob("*.pt"))) == 1
    # another teacher recipe is another cache entry
    train_candidate({**cfg, "wld": {"enabled": True, "teacher_epochs": 2}, "epochs": 1})
    assert len(calls) == 2


def test_teacher_trains_with_teacher_threads_and_the_student_with_num_threads(tmp_path, monkeypatch):
    """A search gives the trial that trains the teacher the CPUs of the trials waiting on it
    (`fit` sets torch's threads from its recipe's `num_threads`)."""
    threads: dict[str, list[int | None]] = {"teacher": [], "student": []}
    real_teacher_fit, real_fit = teacher_mod.fit, candidate_mod.fit

    def teacher_fit(model, splits, recipe, **kwargs):
        threads["teacher"].append(recipe.num_threads)
        return real_teacher_fit(model, splits, recipe, **kwargs)

    def student_fit(model, splits, recipe, **kwargs):
        threads["student"].append(recipe.num_threads)
        return real_fit(model, splits, recipe, **kwargs)

    monkeypatch.setattr(teacher_mod, "fit", teacher_fit)
    monkeypatch.setattr(candidate_mod, "fit", student_fit)
    monkeypatch.setattr("icbench.training.config.usable_cores", lambda: 3)
    cfg = {**FAST, "epochs": 1, "cache_dir": str(tmp_path), "wld": {"enabled": True, "teacher_epochs": 1}}
    train_candidate({**cfg, "num_threads": 1, "teacher_threads": 2})
    assert threads == {"teacher": [2], "student": [1]}
    # capped at the machine's CPUs; without teacher_threads the teacher uses num_threads
    assert CandidateConfig.from_dict({**cfg, "teacher_threads": 8}).teacher_train_config(False).num_threads == 3
    assert CandidateConfig.from_dict({**cfg, "num_threads": 1}).teacher_train_config(False).num_threads == 1
    with pytest.raises(ConfigError, match="teacher_threads"):
        CandidateConfig.from_dict({**cfg, "teacher_threads": 0})


def test_pinned_teacher_recipe_serves_candidates_with_other_learning_rates(tmp_path):
    wld = {"enabled": True, "teacher_recipe": {"epochs": 1, "lr": 0.05}}
    cfg = {**FAST, "epochs": 1, "cache_dir": str(tmp_path), "wld": wld}
    a = train_candidate({**cfg, "lr": 0.02})
    b = train_candidate({**cfg, "lr": 0.2, "seed": 1})
    assert a["teacher_key"] == b["teacher_key"]
    unpinned = {**cfg, "wld": {"enabled": True, "teacher_epochs": 1}}
    c = train_candidate({**unpinned, "lr": 0.02})
    d = train_candidate({**unpinned, "lr": 0.2})
    assert c["teacher_key"] != d["teacher_key"]  # by default the teacher follows the candidate's recipe


def test_bad_teacher_recipe_is_a_config_error():
    with pytest.raises(ConfigError, match="momentum"):
        CandidateConfig.from_dict({"wld": {"teacher_recipe": {"mom": 0.9}}})
    with pytest.raises(ConfigError, match="once"):
        CandidateConfig.from_dict({"wld": {"teacher_recipe": {"epochs": 2}, "teacher_epochs": 3}})
    with pytest.raises(ConfigError) as err:
        CandidateConfig.from_dict({"wld": {"teacher_recipe": {"lr": -1}}})
    assert err.value.field == "wld.teacher_recipe.lr"


def test_wld_with_a_teacher_checkpoint(tmp_path):
    teacher, _, _ = build_candidate({**FAST, "strategy": "none"})
    path = tmp_path / "basic.pt"
    torch.save(teacher.state_dict(), path)
    m = train_candidate({**FAST, "epochs": 1, "wld": {"enabled": True, "teacher_checkpoint": str(path)}})
    assert m["teacher_key"].startswith("checkpoint:") and 0 <= m["teacher_val_acc"] <= 1


def test_corrupt_teacher_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x00\x01 definitely not torch")
    with pytest.raises(CheckpointError, match="broken.pt"):
        train_candidate({**FAST, "wld": {"enabled": True, "teacher_checkpoint": str(path)}})


def test_teacher_checkpoint_of_another_size_names_the_mismatching_keys(tmp_path):
    other, _, _ = build_candidate({**FAST, "strategy": "none", "width": 1.0})
    path = tmp_path / "wider.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*conv1\.weight"):
        train_candidate({**FAST, "wld": {"enabled": True, "teacher_checkpoint": str(path)}})


@pytest.mark.slow
def test_tiny_resnet_learns_mnist5k_in_two_epochs():
    m = train_candidate(
        {
            "dataset": "mnist5k",
            "family": "resnet_cifar",
            "size": TINY,
            "epochs": 2,
            "batch_size": 32,
            "latency": False,
        }
    )
    assert not m["diverged"] and m["val_acc"] > 0.8, m["curve"]

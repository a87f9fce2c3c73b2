"""Estimators (`icbench.estimators`) on hand-made tables with a planted ordering."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from icbench.errors import IcbenchError, UnknownNameError
from icbench.estimators import ESTIMATORS, EstimateContext
from icbench.estimators.evaluate import ALL, EstimateError, evaluate, measure, table_candidates, truth
from icbench.estimators.run import estimate
from icbench.report.table import write_frame

SEEDS = [0, 1, 2]
#: ResNet-8 has 7 sites; the stem (site 0) never holds a unit.
MASKS = [format(i, "06b") for i in range(1, 64)]
EXPERIMENT = {
    "family": "resnet_cifar", "size": "resnet8", "width": 0.25, "family_kwargs": {},
    "dataset": "synthetic", "dataset_kwargs": {"n": 300, "image_size": 16, "in_chans": 1},
    "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "unit_lr_mult": 30.0, "unit_init": "data", "epochs": 2,
}  # fmt: skip


def _rows(n_masks: int = 20, noise: float = 0.0, units: tuple[str, ...] = ("ic", "se")) -> pd.DataFrame:
    """Candidates whose true accuracy rises with their index k; params, curves and losses all follow k."""
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    k = 0
    for unit in units:
        for mask in MASKS[:n_masks]:
            k += 1
            for s in SEEDS:
                acc = 0.5 + 0.004 * k + noise * rng.normal()
                rows.append({
                    "placement": f"{unit}:0{mask}", "unit": unit, "wld": False, "seed": s, "status": "complete",
                    "val_acc": acc, "test_acc": acc, "macs": 1000.0, "params": 100.0 + k,
                    "n_unit_sites": mask.count("1"), "val_acc_curve": [acc - 0.2, acc - 0.1, acc],
                    "train_loss_curve": [2.0 - acc, 1.5 - acc, 1.0 - acc], "epoch_time_s_curve": [1.0, 1.0, 1.0],
                    "train_time_s": 3.0, "wall_time_s": 4.0,
                })  # fmt: skip
    return pd.DataFrame(rows)


def _measured(frame: pd.DataFrame, names: list[str]) -> dict[tuple[str, str], list[dict[str, float]]]:
    out: dict[tuple[str, str], list[dict[str, float]]] = {}
    for m in evaluate(frame, {"experiment": EXPERIMENT}, names, repeats=3):
        out.setdefault((m.estimator, m.scope), []).append(m.metrics)
    return out


def test_an_estimator_that_reads_the_planted_ordering_gets_tau_one() -> None:
    res = _measured(_rows(), ["params", "val_acc_e1", "val_acc_e2", "sotl", "final"])
    for name in ("params", "val_acc_e1", "val_acc_e2", "sotl", "final"):
        for scope in (ALL, "ic, WLD off", "se, WLD off"):
            for m in res[(name, scope)]:
                assert m["kendall"] == pytest.approx(1.0) and m["spearman"] == pytest.approx(1.0), (
                    name,
                    scope,
                )
                assert m["regret"] == pytest.approx(0.0) and m["top_precision"] == 1.0


def test_random_is_near_zero_and_a_constant_score_ranks_nothing() -> None:
    res = _measured(_rows(n_masks=63), ["random", "macs"])
    taus = [m["kendall"] for m in res[("random", ALL)]]
    assert abs(float(np.mean(taus))) < 0.15 and len(set(taus)) == 3  # drawn anew per repeat
    assert all(math.isnan(m["kendall"]) for m in res[("macs", ALL)])  # every candidate has the same MACs


def test_truth_holds_out_the_repeats_seed() -> None:
    frame = _rows(n_masks=2)
    frame.loc[frame["seed"] == 0, "val_acc"] = 0.0
    cands = table_candidates(frame)
    assert all(v > 0.4 for v in truth(cands, 0).values())
    assert all(v < 0.4 for v in truth(cands, 1).values())


def test_measure_by_hand() -> None:
    true = {("a", False): 0.9, ("b", False): 0.8, ("c", False): 0.7, ("d", False): 0.6}
    inverted = {k: -v for k, v in true.items()}
    m = measure(inverted, true)
    assert (
        m["kendall"] == pytest.approx(-1.0)
        and m["regret"] == pytest.approx(30.0)
        and m["top_precision"] == 0.0
    )


@pytest.mark.parametrize("name", ["grad_norm", "snip", "synflow", "nwot", "jacob_cov"])
def test_zero_cost_proxies_see_the_unit_after_the_warm_start(name: str) -> None:
    """At initialisation every placement is the plain network; after the warm start the placements score
    differently, every score is finite, the same repeat scores alike and the cost is counted."""
    frame = _rows(n_masks=3, units=("ic",))
    cands = table_candidates(frame)
    ctx = EstimateContext(EXPERIMENT, (0, 1, 2))
    sc = ESTIMATORS.get(name)().score(cands, ctx, 0)
    vals = list(sc.values.values())
    assert all(math.isfinite(v) for v in vals)
    assert len({round(v, 9) for v in vals}) == len(vals), vals
    assert sc.per_candidate_s > 0
    again = ESTIMATORS.get(name)().score(cands, EstimateContext(EXPERIMENT, (0, 1, 2)), 0)
    assert again.values == pytest.approx(sc.values, rel=1e-6)  # the same repeat gives the same scores


def _table(tmp_path: Path, frame: pd.DataFrame, experiment: dict[str, Any] | None = EXPERIMENT) -> Path:
    from icbench.report.table import COLUMNS

    for col in COLUMNS:
        if col not in frame:
            frame[col] = None
    frame["row"] = [f"r{i}" for i in range(len(frame))]
    frame["trial"] = range(len(frame))
    path = tmp_path / "t.parquet"
    write_frame(frame, {"study": "t", "experiment": experiment} if experiment else {"study": "t"}, path)
    return path


def test_estimate_writes_its_report(tmp_path: Path) -> None:
    md = estimate(_table(tmp_path, _rows()), ["random", "params", "final"], repeats=2, out_dir=tmp_path / "out",
                  echo=lambda _: None)  # fmt: skip
    text = md.read_text()
    assert "## All candidates (40 candidates)" in text and "## Ic, WLD off" in text
    assert "Noise ceiling of the table here" in text
    csv = pd.read_csv(tmp_path / "out" / "estimators.csv")
    assert set(csv["estimator"]) == {"random", "params", "final"} and (csv["repeats"] == 2).all()
    assert (tmp_path / "out" / "estimators.png").stat().st_size > 0


def test_estimate_refuses_a_table_without_seeds_or_networks(tmp_path: Path) -> None:
    one_seed = _rows()
    one_seed = one_seed[one_seed["seed"] == 0].copy()
    with pytest.raises(EstimateError, match="1 seed"):
        estimate(_table(tmp_path, one_seed), ["params"], out_dir=tmp_path / "o")
    with pytest.raises(EstimateError, match="no family or dataset"):
        estimate(_table(tmp_path, _rows(), experiment=None), ["synflow"], out_dir=tmp_path / "o")
    with pytest.raises(UnknownNameError, match="estimator"):
        estimate(_table(tmp_path, _rows()), ["no_such"], out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
    assert issubclass(EstimateError, IcbenchError)


def test_the_command_gives_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from icbench.cli import main

    one_seed = _rows()
    assert main(["estimate", str(_table(tmp_path, one_seed[one_seed["seed"] == 0].copy()))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs at least 2" in err[0]


def test_supernet_mask_switching_and_recalibration_leave_the_weights_unchanged() -> None:
    import torch

    from icbench.estimators.supernet import Supernet, score_candidate, train_supernet

    cands = table_candidates(_rows(n_masks=3, units=("ic",)))
    ctx = EstimateContext(EXPERIMENT, (0, 1, 2))
    net = Supernet.build(cands, ctx, seed=0)
    assert sorted(net.sites) == sorted({i for c in cands for i, b in enumerate(c.bits) if b == "1"})
    train_supernet(net, ctx, seed=0)
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    a = score_candidate(net, cands[0].bits, ctx, seed=0)
    score_candidate(net, cands[1].bits, ctx, seed=0)
    after = net.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "shared weights and buffers restored"
    assert score_candidate(net, cands[0].bits, ctx, seed=0) == a  # the same candidate scores alike
    # a switched-off site runs its plain convolution: with every site off the units' parameters are unused
    x = ctx.splits().val.x[:8]
    with net.candidate("0" * 7) as model:
        model.eval()
        y0 = model(x)
        for m in net.sites.values():
            for p in m.unit_parameters():
                p.data.add_(1.0)
        assert torch.equal(y0, model(x))
    assert all(torch.equal(before[k], v) for k, v in net.model.state_dict().items())


def test_supernet_scores_every_candidate() -> None:
    cands = table_candidates(_rows(n_masks=3, units=("ic", "se")))
    sc = ESTIMATORS.get("supernet")().score(cands, EstimateContext(EXPERIMENT, (0, 1, 2)), 0)
    assert set(sc.values) == {c.key for c in cands}
    assert all(0.0 <= v <= 1.0 for v in sc.values.values()) and sc.setup_s > 0


def test_workers_change_no_score_and_wld_twins_are_scored_once() -> None:
    """`evaluate(workers=2)` (processes of one thread each) measures what the serial run measures; a
    proxy gives a placement's WLD twin the same score."""
    base = _rows(n_masks=3)
    frame = pd.concat([base, base.assign(wld=True)], ignore_index=True)
    names = ["random", "params", "final", "grad_norm", "supernet"]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' threads: float sums, and so the trained networks, depend on them
    try:
        serial = evaluate(frame, {"experiment": EXPERIMENT}, names, repeats=2)
    finally:
        torch.set_num_threads(threads)
    parallel = evaluate(frame, {"experiment": EXPERIMENT}, names, repeats=2, workers=2)
    assert [(m.estimator, m.scope, m.repeat) for m in serial] == [
        (m.estimator, m.scope, m.repeat) for m in parallel
    ]
    for a, b in zip(serial, parallel, strict=True):
        for k, v in a.metrics.items():
            assert (math.isnan(v) and math.isnan(b.metrics[k])) or v == pytest.approx(
                b.metrics[k], abs=1e-9
            ), (a, k)
    cands = table_candidates(frame)
    ctx = EstimateContext(EXPERIMENT, tuple(SEEDS))
    for name in ("grad_norm", "supernet"):
        values = ESTIMATORS.get(name)().score(cands, ctx, 0).values
        for c in cands:
            assert values[(c.placement, True)] == values[(c.placement, False)], name

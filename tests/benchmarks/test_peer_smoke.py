"""benchmarks/peer.py in its smoke mode: it runs the shared peer script and an icbench study side by
side and prints both rows, then the per-candidate recipe table; a second run resumes the recipe cells."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "peer.py"
PEER = ROOT.parent / "shared" / "peer" / "raw_optuna_ray.py"


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
@pytest.mark.skipif(not PEER.is_file(), reason=f"the peer script {PEER} is not beside this checkout")
def test_smoke_runs_both_sides_and_resumes_the_recipe_cells(tmp_path: Path) -> None:
    results = tmp_path / "recipe.jsonl"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--previous", "--results", str(results)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    table = [ln.split() for ln in out.stdout.splitlines() if ln.startswith(("peer ", "icbench "))]
    rows = {
        w[0]: w for w in table if len(w) == 10 and w[1].isdigit()
    }  # side, seed, trials, wall, "N %" outside training (command), "N %" (search), best, HV
    assert set(rows) == {"peer", "icbench"}
    for words in rows.values():
        assert words[2] == "2" and 0.0 <= float(words[-1]) <= 1.0  # 2 trials; a normalised hypervolume
        assert 0.0 <= float(words[4]) <= 100.0 and 0.0 <= float(words[6]) <= 100.0
    ic_wld = [w for w in table if w[:2] == ["icbench", "IC+WLD"]]  # icbench's IC + WLD study, 2 trials
    assert len(ic_wld) == 1 and ic_wld[0][3] == "2" and ic_wld[0][-1] == "-"
    assert "icbench IC+WLD: outside training" in out.stdout
    # The split of icbench's in-search share adds up to the table's "in the search" column.
    for side, words in (("icbench seed 0", rows["icbench"]), ("icbench IC+WLD seed 0", ic_wld[0])):
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith(f"  {side}: of "))
        parts = [float(x) for x in re.findall(r"([0-9.]+) %\)", line)]
        in_search = float(words[6] if side == "icbench seed 0" else words[7])
        assert len(parts) == 3 and abs(sum(parts) - in_search) < 0.25, (line, in_search)
    assert "icbench / peer" in out.stdout
    cells = [json.loads(ln) for ln in results.read_text().splitlines()]
    assert sorted(c["key"][-1] for c in cells) == ["icbench", "icbench, previous default", "peer"]
    assert all(0.0 <= c["val_acc"] <= 1.0 for c in cells)
    again = subprocess.run([*cmd, "--part", "recipe"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(results.read_text().splitlines()) == len(cells)  # nothing retrained
    assert "icbench - peer" in again.stdout

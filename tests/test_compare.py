"""``hiwm eval --compare``: several checkpoints on the same seeds in the real physics, the paired
table of differences against the first."""

from __future__ import annotations

import csv
import json

import pytest
from test_policy import TINY_ACT
from test_policy_server import TINY

from hiwm.cli.main import main
from hiwm.policy import build_model, save_checkpoint
from hiwm.stats import mcnemar_exact


def outcomes(folder) -> dict[int, bool]:
    return {int(r["seed"]): r["success"] == "True" for r in csv.DictReader((folder / "episodes.csv").open())}


def test_eval_compare_prints_the_paired_table_of_checkpoints_on_the_same_seeds(tmp_path, capsys):
    act = save_checkpoint(tmp_path / "act", build_model("act", TINY_ACT))
    dp = save_checkpoint(tmp_path / "dp", build_model("diffusion", TINY))
    out = tmp_path / "cmp"
    argv = ["eval", "--policy", str(act), "--compare", str(dp), str(act), "--seeds", "100000:100004",
            "--workers", "1", "--max-steps", "5", "--videos", "0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "real world, 4 seeds" in printed and f"paired differences vs {act}" in printed and "McNemar" in printed
    result = json.loads((out / "comparison.json").read_text())
    assert result["seeds"] == [100000, 100001, 100002, 100003]
    folders = [out / f"{i}-{name}" / "real" for i, name in enumerate(("act", "dp", "act"))]
    first = outcomes(folders[0])
    assert sorted(first) == result["seeds"]  # every checkpoint on exactly these seeds
    for folder, row, line in zip(folders[1:], result["paired"], printed.splitlines()[-3:-1], strict=True):
        mine = outcomes(folder)
        assert sorted(mine) == result["seeds"] and row["vs"] == str(act)
        d = row["real"]
        only_a = sum(mine[s] and not first[s] for s in first)
        only_b = sum(first[s] and not mine[s] for s in first)
        assert (d["only_a"], d["only_b"], d["n"]) == (only_a, only_b, 4)
        assert d["diff"] == pytest.approx(100 * (sum(mine.values()) - sum(first.values())) / 4)
        assert d["p"] == mcnemar_exact(only_a, only_b) and not d["significant"]  # 4 seeds cannot tell
        assert line.startswith(row["policy"]) and f"{d['diff']:+6.1f}" in line
    itself = result["paired"][1]["real"]  # the first checkpoint again, same policy seed: the same outcomes
    assert (itself["diff"], itself["ci"], itself["p"]) == (0.0, [0.0, 0.0], 1.0)
    summary = json.loads((folders[1] / "summary.json").read_text())
    assert [e["seed"] for e in summary["per_seed"]] == result["seeds"]


@pytest.mark.probe("hiwm eval --compare on seeds that repeat a seed, or --both without a world model",
                   "one-line error, exit 2, before any episode runs")  # fmt: skip
def test_eval_compare_refuses_what_it_cannot_pair(tmp_path, capsys):
    missing = str(tmp_path / "not_a_checkpoint")  # never loaded: the refusal comes first
    assert main(["eval", "--policy", missing, "--compare", missing, "--seeds", "3,4,3", "--workers", "1"]) == 2
    assert "repeat a seed" in capsys.readouterr().err
    assert main(["eval", "--policy", missing, "--compare", missing, "--both"]) == 2
    assert "--both needs --world-model" in capsys.readouterr().err

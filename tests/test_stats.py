"""Statistics of evaluations (Wilson, Pearson, paired bootstrap, McNemar) and the experiment report's
paired differences and headline file, from known tables and a small results dict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hiwm.experiment.profiles import PROFILES
from hiwm.experiment.report import write_report
from hiwm.stats import mcnemar_exact, outcomes_by_seed, paired_bootstrap, paired_difference, pearson, wilson


def test_pearson_and_its_interval():
    x = np.array([0.1, 0.4, 0.5, 0.9, 0.3])
    got = pearson(x, 2 * x + 0.05)
    assert got["r"] == pytest.approx(1.0) and got["n"] == 5
    got = pearson(np.array([0.2, 0.5, 0.6, 0.9]), np.array([0.3, 0.4, 0.8, 0.7]))
    assert got["ci_low"] < got["r"] < got["ci_high"]
    assert pearson(np.ones(4), x[:4])["r"] is None  # no variation: undefined, not NaN
    assert pearson(x[:2], x[:2])["r"] is None  # two points always line up: undefined, not 1
    with pytest.raises(ValueError):
        pearson(x, x[:3])


def test_mcnemar_exact_on_known_tables():
    assert mcnemar_exact(10, 0) == 2 * 0.5**10 == mcnemar_exact(0, 10)
    assert mcnemar_exact(3, 7) == pytest.approx(2 * (1 + 10 + 45 + 120) / 1024)  # 0.34375
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(1, 0) == 1.0  # capped at 1
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pair: no evidence either way
    assert mcnemar_exact(40, 60) == pytest.approx(0.056888, abs=1e-6)  # scipy's binomtest(40, 100)
    assert mcnemar_exact(600, 400) < 1e-9  # large counts stay exact (integers, no overflow)
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact(-1, 3)


def test_paired_bootstrap_is_deterministic_and_covers_the_true_difference():
    rng = np.random.default_rng(7)
    covered, widths = 0, []
    for _ in range(40):  # 40 experiments of 200 seeds; each seed solved by a with 0.6, by b with 0.45
        u = rng.random(200)  # one difficulty per seed, shared by both: the pairing that narrows the interval
        a, b = u < 0.6, u < 0.45
        low, high = paired_bootstrap(a, b, resamples=2000)
        covered += low <= 0.15 <= high
        widths.append(high - low)
        assert low <= np.mean(a) - np.mean(b) <= high
    assert covered >= 34  # a 95 % interval: ~38 of 40 expected
    # the same seeds solved in step (one difficulty each): far narrower than the unpaired interval of
    # a difference of two independent rates (their Wilson widths combined)
    (lo_a, hi_a), (lo_b, hi_b) = wilson(120, 200), wilson(90, 200)
    assert np.mean(widths) < 0.75 * np.hypot(hi_a - lo_a, hi_b - lo_b)
    a, b = rng.random(50) < 0.5, rng.random(50) < 0.5
    first = paired_bootstrap(a, b)
    np.random.seed(123)  # whatever else drew random numbers in between
    np.random.random(10)
    assert paired_bootstrap(a, b) == first  # its own fixed RNG seed: the same interval on every run
    with pytest.raises(ValueError, match="non-empty"):
        paired_bootstrap(np.array([]), np.array([]))


def test_paired_difference_on_known_outcomes():
    a = {s: s < 120 for s in range(200)}  # 60 %
    b = {s: s < 100 for s in range(200)}  # 50 %, every seed b solves a solves too
    d = paired_difference(a, b)
    assert d["diff"] == 10.0 and d["n"] == 200 and (d["only_a"], d["only_b"]) == (20, 0)
    assert d["p"] == 2 * 0.5**20 and d["significant"] and 0 < d["ci"][0] < 10 < d["ci"][1]
    assert paired_difference(b, a)["diff"] == -10.0 and paired_difference(b, a)["ci"] == [-d["ci"][1], -d["ci"][0]]
    same = paired_difference(a, a)
    assert same["diff"] == 0 and same["ci"] == [0, 0] and same["p"] == 1.0 and not same["significant"]
    # 3 of 4 discordant seeds one way: the interval may exclude 0 but McNemar does not: not significant
    small = paired_difference({0: 1, 1: 1, 2: 1, 3: 0}, {0: 0, 1: 0, 2: 0, 3: 1})
    assert small["p"] == 0.625 and not small["significant"]
    part = paired_difference(a, {s: b[s] for s in range(150)})
    assert part["n"] == 150 and part["missing"] == 50
    with pytest.raises(ValueError, match="no seed"):
        paired_difference({1: True}, {2: True})
    assert outcomes_by_seed([{"seed": 4, "success": 1}, {"seed": 9, "success": False}]) == {4: True, 9: False}
    with pytest.raises(ValueError, match="twice"):
        outcomes_by_seed([{"seed": 4, "success": True}, {"seed": 4, "success": False}])


def fake_row(backbone: str, method: str, real: np.ndarray, model: np.ndarray | None) -> dict:
    def world(outcomes: np.ndarray | None, n: int) -> dict:
        if outcomes is None:  # a row written before rows kept each seed
            return {"success_rate": 0.5, "success_ci95": [0.4, 0.6], "mean_max_coverage": 0.5, "episodes": n}
        k = int(outcomes.sum())
        return {
            "success_rate": k / len(outcomes),
            "success_ci95": list(wilson(k, len(outcomes))),
            "mean_max_coverage": 0.5,
            "episodes": len(outcomes),
            "per_seed": [{"seed": 1000 + i, "success": bool(x), "max_coverage": 0.5} for i, x in enumerate(outcomes)],
        }

    return {"backbone": backbone, "method": method, "checkpoint": f"ckpt/{backbone}/{method}",
            "real": world(real, len(real)), "model": world(model, len(real))}  # fmt: skip


def test_the_report_pairs_the_last_round_and_writes_the_headline(tmp_path):
    n = 200
    seeds = np.arange(n)
    solved = lambda k: seeds < k  # noqa: E731  (the first k seeds)
    rows = [
        fake_row("act", "base", solved(80), solved(60)),
        fake_row("act", "hiwm_r1", solved(140), solved(70)),  # the best round, but not the last
        fake_row("act", "hiwm_r2", solved(100), solved(90)),
        fake_row("act", "baseline", solved(96), solved(80)),
        fake_row("act", "oracle_r1", solved(150), None),  # the oracle is its last round too
        fake_row("act", "oracle_r2", solved(130), None),
        fake_row("diffusion", "base", solved(90), solved(50)),
        fake_row("diffusion", "hiwm_r1", solved(70), solved(40)),
        fake_row("diffusion", "baseline", solved(90), solved(45)),  # no oracle for this backbone
    ]
    result = write_report(tmp_path, PROFILES["smoke"], rows, {}, {"eval act base": 1.0}, 60.0)
    head = json.loads((tmp_path / "headline.json").read_text())
    assert head == result["headline"] == json.loads((tmp_path / "results.json").read_text())["headline"]
    assert set(head) == {"act", "diffusion", "pearson_r"}
    assert set(head["act"]) == {"hiwm_vs_base", "hiwm_vs_baseline", "oracle_vs_base"}
    assert set(head["diffusion"]) == {"hiwm_vs_base", "hiwm_vs_baseline"}
    for pairs in (head["act"], head["diffusion"]):
        for entry in pairs.values():
            assert set(entry) == {"diff", "ci", "p", "significant", "n"} and entry["n"] == n
            assert entry["ci"][0] <= entry["diff"] <= entry["ci"][1]
    # Hi-WM is its last round: +10 points over the base (20 seeds one way: p = 2 * 0.5 ** 20)
    assert head["act"]["hiwm_vs_base"]["diff"] == 10.0 and head["act"]["hiwm_vs_base"]["p"] == 2 * 0.5**20
    assert head["act"]["hiwm_vs_base"]["significant"]
    assert head["act"]["hiwm_vs_baseline"]["diff"] == 2.0 and not head["act"]["hiwm_vs_baseline"]["significant"]
    assert head["act"]["oracle_vs_base"]["diff"] == 25.0
    assert head["diffusion"]["hiwm_vs_base"]["diff"] == -10.0 and head["diffusion"]["hiwm_vs_base"]["significant"]
    assert head["pearson_r"]["checkpoints"] == len(rows) and -1 <= head["pearson_r"]["r"] <= 1
    lo, hi = head["pearson_r"]["ci"]
    assert lo < head["pearson_r"]["r"] < hi

    paired = result["paired"]
    assert paired["act"]["hiwm_vs_base"]["a"] == "hiwm_r2" and paired["act"]["oracle_vs_base"]["a"] == "oracle_r2"
    assert paired["act"]["oracle_vs_base"]["model"] is None
    assert paired["act"]["hiwm_vs_base"]["model"]["diff"] == 15.0  # world-model success, paired as well
    report = (tmp_path / "report.md").read_text()
    assert "| act | hiwm_r2 vs base | real | 200 | +10.0 |" in report
    assert "| act | oracle_r2 vs base | model | - | no per-seed outcomes |" in report
    assert "McNemar" in report and "| diffusion | hiwm_r1 vs baseline | real |" in report


def test_majority_rate_is_what_a_constant_answer_agrees_with():
    from hiwm.stats import majority_rate

    assert majority_rate(15, 20) == 0.75 and majority_rate(4, 20) == 0.8 and majority_rate(10, 20) == 0.5
    assert majority_rate(0, 0) == 0.0

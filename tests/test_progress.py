"""The progress bar of budgeted work (a fake clock: no sleeping) and the experiment's stage lines."""

from __future__ import annotations

import io

import pytest

from hiwm.experiment.pipeline import Experiment
from hiwm.experiment.profiles import PROFILES
from hiwm.progress import BudgetBar, redraw_interval


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def last_line(out: io.StringIO) -> str:
    return [part for part in out.getvalue().replace("\n", "\r").split("\r") if part.strip()][-1]


def test_a_time_budget_with_a_huge_step_limit_follows_the_time_and_ends_at_100():
    clock, out = Clock(), io.StringIO()
    bar = BudgetBar("train act", steps=1_000_000, minutes=2.5, clock=clock, file=out, interval=0)
    for step in range(1, 31):
        clock.now += 2.0
        bar.update(loss=1.0 / step)
    line = last_line(out)
    assert "40%" in line and "1.0/2.5 min" in line and "1.5 min left" in line
    assert "step 30," in line and "1000000" not in line and "loss 0.03333" in line
    assert not bar.out_of_time() and not bar.done
    clock.now += 90.0
    assert bar.out_of_time() and bar.done
    bar.close()
    assert "100%" in last_line(out) and "2.5/2.5 min, 0.0 min left" in last_line(out)


def test_a_step_limit_that_runs_out_first_sets_the_remaining_time():
    clock, out = Clock(), io.StringIO()
    bar = BudgetBar("world model", steps=100, minutes=10.0, initial=20, clock=clock, file=out, interval=0)
    clock.now += 60.0
    bar.update(50, pixel=0.25, ae=None)  # 30 steps in this run's minute: 50 more take 100 s
    line = last_line(out)
    assert "50%" in line and "step 50/100" in line and "1.7 min left" in line and "pixel 0.25" in line
    clock.now += 100.0
    bar.update(100)
    assert bar.done and not bar.out_of_time()
    bar.close()
    assert "100%" in last_line(out)


def test_stopped_early_the_bar_shows_how_far_it_got():
    clock, out = Clock(), io.StringIO()
    bar = BudgetBar("probe", steps=200, clock=clock, file=out, interval=0)
    bar.update(50)
    bar.close()
    assert " 25%" in last_line(out) and "step 50/200" in last_line(out)


def test_off_a_terminal_the_bar_redraws_a_few_times_not_every_step():
    clock, out = Clock(), io.StringIO()  # StringIO is no terminal
    bar = BudgetBar("train diffusion", steps=10**6, minutes=4.0, clock=clock, file=out)
    for _ in range(24_000):  # 100 steps a second for the whole budget
        clock.now += 0.01
        bar.update(loss=0.5)
    bar.close()
    draws = out.getvalue().count("\r")
    assert 10 <= draws <= 30 and "100%" in last_line(out)
    # bars that count work (episodes, sessions) use the same pace as tqdm's mininterval
    assert redraw_interval(io.StringIO()) == 30.0 and redraw_interval(io.StringIO(), 600.0) == 30.0
    assert redraw_interval(io.StringIO(), 60.0) == 10.0


def test_a_disabled_bar_still_keeps_time():
    clock, out = Clock(), io.StringIO()
    bar = BudgetBar("train act", minutes=1.0, disable=True, clock=clock, file=out)
    clock.now += 61
    bar.update(loss=0.1)
    assert bar.out_of_time() and bar.fraction() == 1.0
    bar.close()
    assert out.getvalue() == ""
    with pytest.raises(ValueError):
        BudgetBar("x", steps=-1)


def test_the_experiment_counts_its_stages_and_estimates_the_rest(tmp_path):
    exp = Experiment(PROFILES["quick"], tmp_path, progress=False)
    names = [name for name, _, _ in exp.stages()]
    assert names == [
        "collect", "world model", "train base act", "hi-wm rollouts act r1", "post-train act r1",
        "baseline rollouts act", "baseline fine-tune act", "eval act base", "eval act hiwm_r1", "eval act baseline",
    ]  # fmt: skip
    # before anything ran: the training budgets of the stages after it, rollouts and evals unknown
    assert exp.stage_line("train base act") == (
        "[stage 3/10] train base act (budget 2.5 min); the rest: ~3.0 min + 5 stages not yet timed"
    )
    # measured: a stage done counts nothing, the others of a measured kind its mean duration
    exp.timings = {"collect": 30.0, "world model": 400.0, "train base act": 200.0, "hi-wm rollouts act r1": 120.0}
    minutes, unknown = exp.forecast(names.index("post-train act r1"))
    assert unknown == 4 and minutes == pytest.approx(1.5)  # the baseline fine-tune's budget
    exp.timings |= {"post-train act r1": 150.0, "baseline rollouts act": 60.0, "eval act base": 90.0}
    minutes, unknown = exp.forecast(names.index("baseline rollouts act"))
    assert unknown == 0 and minutes == pytest.approx((150 + 90 + 90) / 60)
    assert exp.stage_line("eval act baseline") == "[stage 10/10] eval act baseline"


def test_stages_follow_the_profile(tmp_path):
    full = Experiment(PROFILES["full"], tmp_path / "full", progress=False)
    names = [name for name, _, _ in full.stages()]
    # collect, world model; per backbone its base, three rounds in each world, the baseline, eight evaluations
    assert len(names) == 1 + 1 + 2 * (1 + 3 * 2 + 2 + 3 * 2 + 8)
    assert names.index("oracle fine-tune diffusion r3") < names.index("eval diffusion oracle_r3")
    assert names.index("train base diffusion") < names.index("eval diffusion oracle_r3") < names.index("train base act")
    given = PROFILES["smoke"].replace(base_policies={"act": "runs/act"}, world_model="runs/wm")
    names = [name for name, _, _ in Experiment(given, tmp_path / "given", progress=False).stages()]
    assert "train base act" not in names and "takeover sessions act" not in names

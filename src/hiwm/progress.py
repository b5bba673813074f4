"""Progress of budgeted work: one tqdm bar against a step limit, a wall-clock budget, or both.

Every training loop (policy, world model and its phases, the state probe) draws its bar with
``BudgetBar``: the share of the budget used, elapsed and remaining minutes, steps done and the loss,
following whichever limit runs out first, so a 2.5-minute run with a step limit of a million ends at
100 % after 2.5 minutes rather than at 31/1000000. Off a terminal (CI logs) the bar is redrawn a few
dozen times at most.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from tqdm import tqdm

_TOTAL = 1000  # the bar counts thousandths of the budget


def redraw_interval(file: IO[str] | None = None, budget_s: float = 0.0) -> float:
    """Seconds between redrawings of a bar on ``file`` (stderr): 0.2 on a terminal; off one (a CI
    log, where every redrawing is a line) a twentieth of ``budget_s``, 10 s at least, 30 s with no
    budget. Also tqdm's ``mininterval`` for bars that count work (episodes, sessions)."""
    file = file if file is not None else sys.stderr
    if getattr(file, "isatty", lambda: False)():
        return 0.2
    return max(10.0, budget_s / 20) if budget_s else 30.0


class _Bar(tqdm):
    """tqdm with a ``{status}`` field for the bar format (its ``{postfix}`` starts with a comma)."""

    def __init__(self, *args: Any, status: str = "", **kwargs: Any) -> None:
        self.status = status  # before tqdm's first drawing, in its __init__
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        return {**super().format_dict, "status": self.status}


class BudgetBar:
    """A bar for work that stops after ``steps`` steps or ``minutes`` of wall time, whichever comes
    first (0: no such limit). ``initial``: steps already done (a resumed run); the remaining time is
    projected from this run's rate. ``clock`` (seconds) is injectable for tests. It redraws at most
    every ``interval`` seconds (default: ``redraw_interval`` for its file and time budget)."""

    def __init__(
        self,
        desc: str,
        steps: int = 0,
        minutes: float = 0.0,
        initial: int = 0,
        disable: bool = False,
        leave: bool = True,
        file: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float | None = None,
    ) -> None:
        if steps < 0 or minutes < 0:
            raise ValueError(f"steps and minutes must be >= 0, got {steps}, {minutes}")
        self.steps, self.budget = steps, 60.0 * minutes
        self.step = self.initial = initial
        self.loss: float | None = None
        self.extra: dict[str, Any] = {}
        self._clock, self._t0 = clock, clock()
        file = file if file is not None else sys.stderr
        tty = bool(getattr(file, "isatty", lambda: False)())
        if interval is None:
            interval = redraw_interval(file, self.budget)
        self.interval, self._drawn = interval, self._t0
        self._bar = _Bar(
            status=self.status(),
            total=_TOTAL,
            desc=desc,
            file=file,
            disable=disable,
            leave=leave,
            dynamic_ncols=tty,
            mininterval=0,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {status}",
        )

    # -- where the work stands ---------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds since the bar started."""
        return self._clock() - self._t0

    @property
    def elapsed_minutes(self) -> float:
        return self.elapsed / 60

    def out_of_time(self) -> bool:
        return self.budget > 0 and self.elapsed >= self.budget

    @property
    def done(self) -> bool:
        """Either limit reached."""
        return self.out_of_time() or (self.steps > 0 and self.step >= self.steps)

    def fraction(self) -> float:
        """The share of the budget used: the larger of the steps' and the time's (at most 1)."""
        parts = [0.0]
        if self.steps:
            parts.append(self.step / self.steps)
        if self.budget:
            parts.append(self.elapsed / self.budget)
        return min(1.0, max(parts))

    def _remaining(self) -> tuple[float | None, bool]:
        """(seconds left or None when unknown, whether the step limit runs out first)."""
        by_time = max(0.0, self.budget - self.elapsed) if self.budget else None
        by_steps = None
        if self.steps and self.step > self.initial:
            by_steps = max(0, self.steps - self.step) * self.elapsed / (self.step - self.initial)
        if by_steps is not None and (by_time is None or by_steps < by_time):
            return by_steps, True
        return by_time, by_time is None and self.steps > 0

    def status(self) -> str:
        """The text after the bar: minutes against the budget, minutes left, steps, loss."""
        used = self.elapsed_minutes
        left, steps_first = self._remaining()
        text = f"{used:.1f}/{self.budget / 60:g} min" if self.budget else f"{used:.1f} min"
        text += f", {left / 60:.1f} min left" if left is not None else ", ? min left"
        text += f", step {self.step}" + (f"/{self.steps}" if steps_first else "")
        if self.loss is not None:
            text += f", loss {self.loss:.4g}"
        for key, value in self.extra.items():
            text += f", {key} {value:.4g}" if isinstance(value, float) else f", {key} {value}"
        return text

    # -- drawing -----------------------------------------------------------------
    def update(self, step: int | None = None, loss: float | None = None, **extra: Any) -> None:
        """Record the steps done (one more unless given), the latest loss and other figures (kept
        until replaced); redraws when the last drawing is ``interval`` seconds old."""
        self.step = self.step + 1 if step is None else step
        if loss is not None:
            self.loss = float(loss)
        self.extra.update({k: v for k, v in extra.items() if v is not None})
        if self._clock() - self._drawn >= self.interval:
            self._draw()

    def _draw(self, refresh: bool = True) -> None:
        self._drawn = self._clock()
        if self._bar.disable:
            return
        self._bar.n = round(_TOTAL * self.fraction())
        self._bar.status = self.status()
        if refresh:
            self._bar.refresh()

    def close(self) -> None:
        """The last drawing (tqdm's, when it leaves the bar): at 100 % when a limit was reached."""
        self._draw(refresh=False)
        if self.done:
            self._bar.n = _TOTAL
        self._bar.close()

    def __enter__(self) -> BudgetBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Action chunks of any task: validated rows in, ``hiwm_msgs/ActionChunk`` out.

A chunk is ``horizon`` rows of the task's ``action_dim`` absolute targets. One with a NaN or infinite
value, or the wrong shape, is refused whole (:class:`BadCommand`); values outside the action space's
limits are clamped, one warning per clamped row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hiwm.comm.interfaces import new_message
from hiwm.tasks.base import ActionSpace
from hiwm.tasks.contract import header

#: A robot core's clocks: ``lockstep`` runs a command's rows at once, one step each (the caller sets
#: the pace); ``realtime`` queues them and steps at the control rate, holding the last target.
CLOCKS = ("lockstep", "realtime")


class BadCommand(ValueError):
    """A command refused whole (nothing of it runs): a chunk here, or a trajectory, a forward command,
    a step after the episode ended at a robot core; ``kind`` names the problem and keys the
    throttled log."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def parse_chunk(space: ActionSpace, horizon: int, action_dim: int, data: object) -> tuple[np.ndarray, list[str]]:
    """The chunk's rows (horizon x dim, float64) clamped into the action space, and warnings; or BadCommand."""
    if action_dim != space.dim:
        raise BadCommand("action_dim", f"action_dim must be {space.dim} ({', '.join(space.names)}), got {action_dim}")
    if horizon < 1:
        raise BadCommand("horizon", f"horizon must be >= 1, got {horizon}")
    flat = np.asarray(data, dtype=np.float64).reshape(-1)
    if flat.size != horizon * action_dim:
        raise BadCommand("length", f"data has {flat.size} values, expected horizon*action_dim = {horizon}*{action_dim}")
    rows = flat.reshape(horizon, action_dim)
    if not np.all(np.isfinite(rows)):
        bad = sorted({int(k) for k in np.flatnonzero(~np.all(np.isfinite(rows), axis=1))})
        raise BadCommand("value", f"rows {bad}: actions must be finite (NaN or infinity); chunk refused")
    clean = np.clip(rows, space.low, space.high)
    warnings = [
        f"row {k}: action {rows[k].tolist()} outside the action space; clamped to {clean[k].tolist()}"
        for k in np.flatnonzero(np.any(clean != rows, axis=1))
    ]
    return clean, warnings


def chunk_message(
    rows: np.ndarray, stamp_ns: int, source: int, source_id: str = "", dt: float = 0.1, frame_id: str = "world"
) -> Any:
    """An ActionChunk carrying ``rows`` (horizon x action_dim; a 1-D array is one row)."""
    rows = np.asarray(rows, dtype=np.float32)
    rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
    return new_message(
        "hiwm_msgs/msg/ActionChunk",
        header=header(stamp_ns, frame_id),
        source=int(source),
        source_id=source_id,
        horizon=rows.shape[0],
        action_dim=rows.shape[1],
        dt=float(dt),
        data=rows.reshape(-1),
    )

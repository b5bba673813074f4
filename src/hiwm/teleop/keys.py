"""Key states from a client: ``{"w": 0|1, ...}`` over the task's jog keys (:class:`hiwm.tasks.jog.Jogger`)."""

from __future__ import annotations

from collections.abc import Collection


def parse_keys(keys: object, allowed: Collection[str]) -> dict[str, bool]:
    """Validate a ``{"w": 0|1, ...}`` mapping over ``allowed`` keys; raises ValueError naming the problem."""
    if not isinstance(keys, dict):
        raise ValueError(f"action must be an object of keys, got {type(keys).__name__}")
    out = {}
    for key, value in keys.items():
        if key not in allowed:
            raise ValueError(f"unknown key {repr(key)[:40]}; keys are {''.join(allowed)}")
        if value not in (0, 1, True, False):
            raise ValueError(f"key {key!r} must be 0 or 1, got {repr(value)[:40]}")
        out[key] = bool(value)
    return out


def pressed(keys: dict[str, bool]) -> list[str]:
    """The keys held down, in the client's order."""
    return [k for k, down in keys.items() if down]

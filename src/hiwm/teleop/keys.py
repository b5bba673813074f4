"""Operator keys -> motion: WASD moves arm 1, IJKL arm 2 (the Hi-WM playground's layout).

Screen axes: x right, y down (Push-T's image rows grow with y), so W moves up (-y).
"""

from __future__ import annotations

import numpy as np

KEYS = ("w", "a", "s", "d", "i", "j", "k", "l", "q", "e", "u", "o")
ARM_KEYS = {1: ("w", "a", "s", "d"), 2: ("i", "j", "k", "l")}


def parse_keys(keys: object) -> dict[str, bool]:
    """Validate a ``{"w": 0|1, ...}`` mapping from a client; raises ValueError naming the problem."""
    if not isinstance(keys, dict):
        raise ValueError(f"action must be an object of keys, got {type(keys).__name__}")
    out = {}
    for key, value in keys.items():
        if key not in KEYS:
            raise ValueError(f"unknown key {key!r}; keys are {''.join(KEYS)}")
        if value not in (0, 1, True, False):
            raise ValueError(f"key {key!r} must be 0 or 1, got {value!r}")
        out[key] = bool(value)
    return out


def direction(keys: dict[str, bool], arm: int = 1) -> np.ndarray:
    """Unit-free direction (x, y) in {-1, 0, 1}^2 of one arm from its four keys."""
    up, left, down, right = ARM_KEYS[arm]
    return np.array(
        [
            float(keys.get(right, False)) - float(keys.get(left, False)),
            float(keys.get(down, False)) - float(keys.get(up, False)),
        ]
    )


def moving(keys: dict[str, bool]) -> bool:
    return any(keys.get(k, False) for k in ARM_KEYS[1] + ARM_KEYS[2])

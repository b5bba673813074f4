"""Where hiwm's shared files (config, launch, msgs) are, in a checkout or installed."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path


class ShareNotFound(FileNotFoundError):
    """hiwm's share folder (config/, launch/, msgs/) could not be located."""


def _candidates() -> list[Path]:
    found = []
    if env := os.environ.get("HIWM_SHARE_DIR"):
        found.append(Path(env))
    found.append(Path(__file__).resolve().parents[2])  # source checkout / editable install
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            found.append(Path(prefix) / "share" / "hiwm")
    found.append(Path(sys.prefix) / "share" / "hiwm")  # pip install (setup.py data_files)
    return found


@functools.cache
def share_dir() -> Path:
    """The first folder holding ``config/``, ``launch/`` and ``msgs/``."""
    tried = _candidates()
    for path in tried:
        if all((path / sub).is_dir() for sub in ("config", "launch", "msgs")):
            return path
    raise ShareNotFound(f"hiwm share folder not found; looked in {[str(p) for p in tried]} (set HIWM_SHARE_DIR)")


def share_path(*parts: str) -> Path:
    """A path under the share folder, e.g. ``share_path("config", "dds", "localhost.xml")``."""
    return share_dir().joinpath(*parts)


MODELS = "models"  # share/hiwm/models/<task>/<kind>/: the trained models hiwm ships


def shipped_model(task: str, kind: str) -> Path | None:
    """The trained model hiwm ships for ``task``, or None where it ships none. ``kind`` is
    ``world_model`` (with its state probe and success detector) or a policy backbone (``act``,
    ``diffusion``). Each is a checkpoint folder with a ``MODEL_CARD.md`` (its data, the command
    that trained it, its figures)."""
    try:
        path = share_path(MODELS, task, kind)
    except ShareNotFound:
        return None
    return path if (path / "config.json").is_file() else None

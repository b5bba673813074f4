"""Which Cyclone DDS configuration and domain a process uses, from the ROS 2 environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hiwm.paths import share_path


@dataclass(frozen=True)
class DdsSettings:
    domain_id: int
    scope: str  # "localhost", "network" or "custom"
    config_uri: str | None  # file:// URI of a shipped config, or None to let CYCLONEDDS_URI speak


def _domain_id(env: dict[str, str]) -> int:
    raw = env.get("ROS_DOMAIN_ID", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID must be an integer 0-232, got {raw!r}") from None
    if not 0 <= value <= 232:
        raise ValueError(f"ROS_DOMAIN_ID must be in 0-232, got {value}")
    return value


def _wants_network(env: dict[str, str]) -> bool:
    if env.get("HIWM_DDS_NETWORK", "").strip() in ("1", "true", "yes"):
        return True
    discovery_range = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper()
    if discovery_range in ("SUBNET", "SYSTEM_DEFAULT"):
        return True
    if discovery_range in ("LOCALHOST", "OFF"):
        return False
    # Unlike ROS 2, an unset variable means loopback: opening up is an explicit choice.
    return env.get("ROS_LOCALHOST_ONLY", "").strip() == "0"


def dds_settings(env: dict[str, str] | None = None) -> DdsSettings:
    """Settings for this process: ``CYCLONEDDS_URI`` wins, else loopback unless opened up."""
    env = dict(os.environ if env is None else env)
    domain_id = _domain_id(env)
    if env.get("CYCLONEDDS_URI", "").strip():
        return DdsSettings(domain_id, "custom", None)
    scope = "network" if _wants_network(env) else "localhost"
    path = share_path("config", "dds", f"{scope}.xml")
    if not path.is_file():
        raise FileNotFoundError(f"shipped DDS config {path} is missing")
    return DdsSettings(domain_id, scope, path.resolve().as_uri())

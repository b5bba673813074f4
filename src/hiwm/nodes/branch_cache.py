"""The branch cache node: records every world-model state, serves rollback, forks, labels and export.

Topics (relative, so namespaces and remaps apply):
  in  ``world_model/state``    hiwm_msgs/StateHandle, keep-all: one per world-model step
  in  ``world_model/snapshot`` hiwm_msgs/StateSnapshot, keep-all: the bytes of each state (same snapshot_id)
Services served (the world-model node is a client of none of them):
  ``branch_cache/list``     hiwm_msgs/List: what = sessions | branches (session_id) | nodes | trajectory
                            (branch_id) | node | children (node id in branch_id); details_json per id
  ``branch_cache/rollback`` hiwm_msgs/Rollback: node_id, or steps back from the session's cursor;
                            restores the world model through ``world_model/restore`` first
  ``branch_cache/fork``     hiwm_msgs/Fork: a new branch at node_id (restores the world model there)
  ``branch_cache/label``    hiwm_msgs/Label: labels on a branch (b..) or node (n..)
  ``branch_cache/export``   hiwm_msgs/Export: branches -> LeRobot v3 episodes in output_dir, a new or empty
                            folder under ``export_root`` (or a dataset exported there before; branches
                            it already holds are skipped, so a repeated export adds nothing)
Client: ``world_model/restore`` hiwm_msgs/Restore.

The store (``db``) is durable per append; the CLI (``hiwm branches``) reads it while the node runs.
Bad messages and requests are refused with a throttled warning or ``success=False``; the node keeps running.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass

import numpy as np

from hiwm.branch_cache.core import BadInput, BranchCacheCore, as_handle, details
from hiwm.branch_cache.export import DEFAULT_INSTRUCTION
from hiwm.branch_cache.store import BranchCacheError, BranchStore
from hiwm.comm import Node, ServiceCallError, new_message
from hiwm.comm.qos import KEEP_ALL
from hiwm.comm.runner import run_node
from hiwm.tasks import DEFAULT_TASK, get_task

SERVICE_GRACE = 0.5  # seconds for a world model's restore service to show up on the graph


@dataclass
class BranchCacheConfig:
    db: str = "branch_cache.db"
    synchronous: str = "NORMAL"  # FULL: survive power loss too, at one fsync per state
    snapshot_hash: str = "sha256"  # how the world model computes snapshot_id (hashlib name), fixed per store
    restore_timeout: float = 5.0
    fork_restores: bool = True  # a fork puts the world model at the fork point, so the next steps go there
    pending_timeout: float = 30.0  # seconds a StateHandle waits for its snapshot or parent
    resume_after: float = 2.0  # seconds before a state whose parent never came re-anchors its session
    export_fps: int = 0  # 0: the task's control rate
    task: str = DEFAULT_TASK  # the registered task (hiwm tasks) the sessions act in: the exports' layout
    instruction: str = DEFAULT_INSTRUCTION  # the exported episodes' language task; "": the task world's
    export_root: str = ""  # the only folder exports go under; "": ``exports`` next to the store file

    def __post_init__(self) -> None:
        if self.synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {self.synchronous!r}")
        if not self.restore_timeout > 0 or not self.pending_timeout > 0:
            raise ValueError("restore_timeout and pending_timeout must be > 0")
        if not 0 <= self.resume_after < self.pending_timeout:
            raise ValueError("resume_after must be >= 0 and below pending_timeout")
        if self.export_fps < 0:
            raise ValueError(f"export_fps must be >= 0 (0: the task's control rate), got {self.export_fps}")
        get_task(self.task)  # ValueError naming the known tasks


class BranchCacheNode:
    def __init__(self, node: Node, cfg: BranchCacheConfig) -> None:
        self.node, self.cfg = node, cfg
        try:
            self.store = BranchStore(cfg.db, synchronous=cfg.synchronous, hash_name=cfg.snapshot_hash)
        except BranchCacheError as exc:
            raise ValueError(str(exc)) from exc  # a configuration error: exit 2 with the report
        self.restore_client = node.create_client("hiwm_msgs/srv/Restore", "world_model/restore")
        self.core = BranchCacheCore(
            self.store, self.restore, pending_timeout=cfg.pending_timeout, resume_after=cfg.resume_after,
            fork_restores=cfg.fork_restores,
            export_fps=cfg.export_fps, task=cfg.task, instruction=cfg.instruction,
            export_root=cfg.export_root or None,
            log=node.bad_input.warning,
        )  # fmt: skip
        node.create_subscription("hiwm_msgs/msg/StateSnapshot", "world_model/snapshot", self.on_snapshot, KEEP_ALL)
        node.create_subscription("hiwm_msgs/msg/StateHandle", "world_model/state", self.on_state, KEEP_ALL)
        for name, handler in (
            ("List", self.on_list),
            ("Rollback", self.on_rollback),
            ("Fork", self.on_fork),
            ("Label", self.on_label),
            ("Export", self.on_export),
        ):
            node.create_service(f"hiwm_msgs/srv/{name}", f"branch_cache/{name.lower()}", self.guard(name, handler))
        node.create_timer(0.5, self.on_timer)  # expiry, and re-anchoring when no new message comes
        atexit.register(self.store.close)  # a last checkpoint; committed states are safe without it
        s = self.store.stats()
        node.logger.info(f"store {cfg.db}: {s['sessions']} sessions, {s['branches']} branches, {s['nodes']} nodes")

    def restore(self, snapshot_id: str) -> tuple[bool, str]:
        # the bytes travel with the request: a restarted world model can restore any state the cache holds
        data = np.frombuffer(self.store.blob(snapshot_id, f"snapshot {snapshot_id[:12]}"), np.uint8)
        request = new_message("hiwm_msgs/srv/Restore_Request", snapshot_id=snapshot_id, data=data)
        if not self.restore_client.wait_for_service(SERVICE_GRACE):  # say so now, not after restore_timeout
            raise BranchCacheError(
                f"no world model serves {self.restore_client.service} (is it running, in this namespace and "
                "ROS_DOMAIN_ID?): nothing was restored or changed"
            )
        try:
            response = self.restore_client.call(request, timeout=self.cfg.restore_timeout)
        except ServiceCallError as exc:
            return False, str(exc)
        return bool(response.success), str(response.message)

    # -- topics --------------------------------------------------------------
    def on_snapshot(self, msg: object) -> None:
        try:
            self.core.on_snapshot(msg.session_id, msg.snapshot_id, bytes(memoryview(msg.data)), msg.observation_state)
        except (BadInput, BranchCacheError) as exc:
            self.node.bad_input.warning("snapshot", f"refused StateSnapshot: {exc}")
        except Exception:  # a store failure (disk full, say) must not take the node down
            self.node.logger.exception("recording a StateSnapshot failed")

    def on_state(self, msg: object) -> None:
        try:
            self.core.on_state(as_handle(msg))
        except (BadInput, BranchCacheError) as exc:
            self.node.bad_input.warning("state", f"refused StateHandle: {exc}")
        except Exception:
            self.node.logger.exception("recording a StateHandle failed")

    def on_timer(self) -> None:
        try:
            self.core.drain()
        except Exception:
            self.node.logger.exception("recording waiting states failed")

    # -- services ------------------------------------------------------------
    def guard(self, name: str, handler):
        """Answer ``success=False`` with the error for refused requests (unknown ids, bad arguments)."""
        response_type = f"hiwm_msgs/srv/{name}_Response"

        def serve(request: object) -> object:
            try:
                return new_message(response_type, success=True, **handler(request))
            except (BranchCacheError, ValueError) as exc:
                self.node.bad_input.warning(f"srv.{name}", f"{name} refused: {exc}")
                return new_message(response_type, success=False, message=str(exc))

        return serve

    def on_list(self, req: object) -> dict:
        ids, items = self.core.list(req.what, req.session_id, req.branch_id)
        return {"ids": ids, "details_json": details(items), "message": f"{len(ids)} {req.what}"}

    def on_rollback(self, req: object) -> dict:
        node = self.core.rollback(req.session_id, req.node_id, int(req.steps))
        return {"node_id": node.id, "snapshot_id": node.snapshot, "message": f"at {node.id} (step {node.step})"}

    def on_fork(self, req: object) -> dict:
        branch = self.core.fork(req.node_id, req.label)
        return {"branch_id": branch, "message": f"branch {branch} from {req.node_id}"}

    def on_label(self, req: object) -> dict:
        labels = self.core.label(req.branch_id, list(req.labels))
        return {"message": f"{req.branch_id}: {', '.join(labels)}"}

    def on_export(self, req: object) -> dict:
        episodes, frames, skipped = self.core.export(list(req.branch_ids), req.output_dir)
        message = f"{episodes} episodes, {frames} frames"
        if skipped:
            message += f"; already exported there: {', '.join(skipped)}"
        return {"episodes": episodes, "frames": frames, "message": message}


def wire(node: Node) -> BranchCacheNode:
    return BranchCacheNode(node, node.load_config(BranchCacheConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("branch_cache", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())

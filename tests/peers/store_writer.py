"""Test peer: appends states to a branch cache store forever, printing each node id once committed.

Usage: ``python -m tests.peers.store_writer DB SEED``. Every printed line is ``<node id> <snapshot id>``,
written (and flushed) only after ``append`` returned, i.e. after the commit. Now and then it rolls
back a few steps or forks, so kills land in every kind of transaction.
"""

from __future__ import annotations

import os
import random
import sys

from hiwm.branch_cache.store import BranchStore


def main() -> int:
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    store = BranchStore(path)
    session = f"s{seed}"
    out = sys.stdout
    node = store.append(session, os.urandom(64), step=0)
    out.write(f"{node.id} {node.snapshot}\n")
    out.flush()
    while True:
        r = rng.random()
        if r < 0.05 and node.step > 3:
            node, _ = store.rollback(session_id=session, steps=rng.randint(1, 3))
        elif r < 0.08:
            store.fork(node.id, "corrected")
        snapshot = os.urandom(rng.randint(256, 16384))
        node = store.append(
            session, snapshot, parent=node.id, step=node.step + 1, action=[rng.random(), rng.random()],
            source=rng.randint(0, 2), frame=os.urandom(512),
        )  # fmt: skip
        out.write(f"{node.id} {node.snapshot}\n")
        out.flush()


if __name__ == "__main__":
    raise SystemExit(main())

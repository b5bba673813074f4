"""``hiwm branches`` on a real store file: ls, show, tree (text and PNG), export, check, errors."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from hiwm.branch_cache.store import SOURCE_HUMAN, SOURCE_POLICY, BranchStore
from hiwm.data.lerobot import LeRobotDataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from test_branch_export import add, encode_png, frame  # noqa: E402


def hiwm(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
    return subprocess.run(
        [sys.executable, "-m", "hiwm.cli.main", "branches", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "cache.db"
    with BranchStore(path) as store:
        node = store.append("s", b"state 0", frame=encode_png(frame(0)), state=[0.0, 0.0])
        main = [node]
        for step in range(1, 8):
            main.append(add(store, main[-1], step, SOURCE_POLICY, [float(step), 1.0]))
        store.label(main[0].branch, ["failure-prone", "failure"])
        fork = store.fork(main[4].id, "corrected")
        node = main[4]
        for step in range(5, 8):
            node = add(store, node, step, SOURCE_HUMAN, [float(step), 5.0])
        store.label(fork.id, ["success"])
    return path


def test_ls_show_tree_export_check(db, tmp_path):
    r = hiwm("ls", "--db", str(db))
    assert r.returncode == 0 and "s " in r.stdout and " 11 " in r.stdout, r.stdout + r.stderr
    r = hiwm("ls", "s", "--db", str(db))
    assert r.returncode == 0 and "b2       b1       n5" in r.stdout and "corrected, success" in r.stdout, r.stdout
    r = hiwm("show", "b2", "--db", str(db))
    assert r.returncode == 0 and '"ancestry": [\n    "b2",\n    "b1"' in r.stdout, r.stdout
    r = hiwm("show", "n5", "--db", str(db))
    assert r.returncode == 0 and '"children": [\n    "n6",\n    "n9"' in r.stdout, r.stdout
    png = tmp_path / "tree.png"
    r = hiwm("tree", "s", "--db", str(db), "-o", str(png))
    assert r.returncode == 0 and "b2: fork of b1 at n5, 3 nodes, to step 7 [corrected, success]" in r.stdout, r.stdout
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 500
    # the success branch is drawn in green, the failure branch in red, human nodes in orange
    for rgb in ((0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28), (0xFF, 0x7F, 0x0E)):
        assert (np.abs(pixels.astype(int) - rgb).sum(-1) < 30).sum() > 20, rgb
    out = tmp_path / "ds"
    r = hiwm("export", "b1", "b2", "--db", str(db), "-o", str(out))
    assert r.returncode == 0 and "wrote 2 episodes, 14 frames" in r.stdout, r.stdout + r.stderr
    ds = LeRobotDataset(out)
    assert ds.episode(1, videos=False)["intervention"].tolist() == [False] * 4 + [True] * 3
    r = hiwm("check", "--db", str(db), "--full")
    assert r.returncode == 0 and r.stdout.strip().endswith(": ok"), r.stdout


def test_errors_are_clear(db, tmp_path):
    r = hiwm("show", "n99", "--db", str(db))
    assert r.returncode == 2 and "no node n99" in r.stderr
    r = hiwm("ls", "--db", str(tmp_path / "absent.db"))
    assert r.returncode == 2 and "no branch cache store" in r.stderr
    r = hiwm("export", "b1", "--db", str(db), "-o", str(tmp_path / "ds"), "--fps", "10")
    assert r.returncode == 0
    snapshot = BranchStore(db, readonly=True).get("n3").snapshot
    con = sqlite3.connect(db)
    con.execute("DELETE FROM blobs WHERE id=?", (snapshot,))
    con.commit()
    con.close()
    r = hiwm("check", "--db", str(db))
    assert r.returncode == 1 and f"node n3 : snapshot blob {snapshot} is missing" in r.stdout, r.stdout
    r = hiwm("ls", "--db", str(db))
    assert r.returncode == 2 and "integrity check failed" in r.stderr and "n3" in r.stderr

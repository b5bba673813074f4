"""Atomic file writes: the old file or the new one, never half of one, and no leftovers."""

from __future__ import annotations

import json

import pytest

from hiwm.files import atomic_write_json, atomic_write_text, is_tmp, replacing, tmp_name


def test_a_write_replaces_the_file_and_a_failed_one_keeps_the_old(tmp_path):
    path = tmp_path / "sub" / "doc.json"
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    atomic_write_text(path, '{"a": 2}')
    assert json.loads(path.read_text()) == {"a": 2}
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text('{"a": ')  # half written, then the writer dies
        raise RuntimeError("crash")
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["doc.json"]
    assert is_tmp(tmp_name(path)) and not is_tmp(path) and tmp_name(path).parent == path.parent


def test_a_symlink_is_replaced_in_one_step(tmp_path):
    a, b, link = tmp_path / "a", tmp_path / "b", tmp_path / "link"
    a.write_text("a")
    b.write_text("b")
    for target in (a, b):
        with replacing(link) as tmp:
            tmp.symlink_to(target)
        assert link.read_text() == target.read_text()

"""Files written atomically: a crash leaves the old file or the new one, never half of one.

Each write goes to a temporary name beside its target (same folder, so the same file system) and
is renamed over it (``os.replace``, atomic on POSIX). Temporary names carry :data:`TMP_MARK`, so a
reader or a clean-up can tell a crashed writer's leftovers from real files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def tmp_name(path: Path) -> Path:
    """The temporary name this process writes ``path`` under before renaming it into place."""
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


def is_tmp(path: Path) -> bool:
    """Whether ``path`` is a temporary name (a write in progress or a crashed writer's leftover)."""
    return TMP_MARK in path.name


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to (a file, or a symlink); on leaving the
    block it replaces ``path``. On an error ``path`` is untouched and the temporary name removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    tmp.unlink(missing_ok=True)  # a crashed writer's with the same pid
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, doc: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(doc, indent=indent) + "\n")

"""The branch cache store: a durable tree of world-model states in one SQLite file.

Model::

    session  one world-model episode (the world model's ``session_id``); has a root branch and a cursor
    branch   a line of nodes; forked from a ``base`` node of a parent branch (the root branch has none)
    node     one world-model state: parent, step, snapshot and frame (content-addressed blobs), the action
             that led here and who produced it (policy / human / scripted), time, labels

The cursor (node + branch) of a session is where the world model is: ``append`` puts the next state
under it, ``rollback`` and ``fork`` move it. Appending under a node whose branch already goes on
creates a new branch automatically (a rollback followed by a different action is a branch), and
appending a state the branch already holds there (same parent, same snapshot) returns the existing
node, so replaying after a rollback reproduces the same nodes instead of duplicating them.

Durability: SQLite in WAL mode, one transaction per append (node, blobs, branch head and cursor
together), ``synchronous=NORMAL`` by default. In WAL mode a transaction is in the WAL file when
``commit`` returns, so a process killed at any moment (kill -9, a crash) loses no committed node
and leaves a database that opens clean; only an OS crash or power loss can undo the last commits
(never corrupt the file). ``synchronous=FULL`` closes that gap too at one fsync per append (about
4 ms on this machine's disk, versus 0.1 ms): pick it with ``synchronous="FULL"``.

Blobs live in the same file (table ``blobs``, id = hex hash of the bytes: sha256 unless the store
was created with another ``hash_name``, kept in ``meta``), so a node and its snapshot
commit atomically and there are no orphan files to sweep; reads check the hash. Readers open the
file read-only and run concurrently with the one writer (WAL). Opening checks integrity
(``PRAGMA quick_check`` plus missing blobs, dangling parents and heads) and raises
:class:`CorruptStoreError` with a report naming every problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DEFAULT_HASH = "sha256"
PAGE_SIZE = 2048
SOURCE_POLICY, SOURCE_HUMAN, SOURCE_SCRIPTED = 0, 1, 2
SOURCES = {SOURCE_POLICY: "policy", SOURCE_HUMAN: "human", SOURCE_SCRIPTED: "scripted"}
#: Labels with a meaning elsewhere (colours, export weights); any other ``[a-z0-9_.:-]`` label is allowed too.
KNOWN_LABELS = ("failure-prone", "corrected", "success", "failure", "gap", "detector:success", "detector:failure")
GAP_LABEL = "gap"  # on a node whose real parent was never recorded: it hangs under the last state the store had
#: The success detector's verdict on a branch; an operator's ``success``/``failure`` overrides it.
DETECTOR_SUCCESS, DETECTOR_FAILURE = "detector:success", "detector:failure"
MAX_BLOB = 1 << 20  # snapshots are <= 64 KiB by contract; refuse anything absurd
_LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs(id TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(
    id TEXT PRIMARY KEY, created REAL NOT NULL, root_branch INTEGER NOT NULL,
    cursor_node INTEGER, cursor_branch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS branches(
    id INTEGER PRIMARY KEY, session TEXT NOT NULL, parent_branch INTEGER, base_node INTEGER,
    head_node INTEGER, created REAL NOT NULL, labels TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS nodes(
    id INTEGER PRIMARY KEY, parent INTEGER, session TEXT NOT NULL, branch INTEGER NOT NULL,
    step INTEGER NOT NULL, snapshot TEXT NOT NULL, frame TEXT, action TEXT NOT NULL DEFAULT '[]',
    source INTEGER NOT NULL DEFAULT 0, time REAL NOT NULL, state TEXT NOT NULL DEFAULT '[]',
    labels TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent);
CREATE INDEX IF NOT EXISTS nodes_branch ON nodes(branch, id);
CREATE INDEX IF NOT EXISTS nodes_session_snapshot ON nodes(session, snapshot);
CREATE INDEX IF NOT EXISTS branches_session ON branches(session, id);
"""


class BranchCacheError(RuntimeError):
    """Base of every store error; the message says what and where."""


class UnknownIdError(BranchCacheError, LookupError):
    """A node, branch, session or blob id the store does not hold (or a malformed id)."""


class BlobMissingError(BranchCacheError):
    """A node refers to a snapshot or frame blob that is not in the store (deleted or never written)."""


class CorruptStoreError(BranchCacheError):
    """The file is not a store, is damaged, or holds inconsistent references (see ``problems``)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message + "".join(f"\n  - {p}" for p in problems))
        self.problems = list(problems)


class InvalidInputError(BranchCacheError, ValueError):
    """An argument the store refuses (bad action, label, source, step, blob)."""


def blob_id(data: bytes, hash_name: str = DEFAULT_HASH) -> str:
    """Content address of snapshot/frame bytes: hex digest (the world model's ``snapshot_id``)."""
    return hashlib.new(hash_name, data).hexdigest()


def check_hash_name(hash_name: str) -> str:
    if hash_name not in hashlib.algorithms_guaranteed or hash_name.startswith("shake"):
        raise InvalidInputError(f"unknown content hash {hash_name!r}; use e.g. sha256, blake2b, sha1")
    return hash_name


def node_key(node_id: int) -> str:
    return f"n{node_id}"


def branch_key(branch_id: int) -> str:
    return f"b{branch_id}"


def parse_id(text: str | int, prefix: str) -> int:
    """``"n12"`` -> 12 for prefix ``n`` (nodes) or ``b`` (branches); ints pass through."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    kind = {"n": "node", "b": "branch"}[prefix]
    if isinstance(text, str) and len(text) > 1 and text[0] == prefix and text[1:].isdigit():
        return int(text[1:])
    raise UnknownIdError(f"malformed {kind} id {text!r} (expected {prefix}<number>, e.g. {prefix}12)")


@dataclass(frozen=True)
class TreeNode:
    """One state in a session's tree: its parent, branch, step, action and who took it."""

    id: str
    parent: str | None
    session: str
    branch: str
    step: int
    snapshot: str
    frame: str | None
    action: list[float]
    source: int
    time: float
    state: list[float]
    labels: list[str]

    @property
    def source_name(self) -> str:
        return SOURCES.get(self.source, str(self.source))

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "source_name": self.source_name}


@dataclass(frozen=True)
class Branch:
    id: str
    session: str
    parent_branch: str | None
    base_node: str | None
    head_node: str | None
    created: float
    labels: list[str]
    length: int = 0  # nodes owned by this branch

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StoredSession:
    """A session as the store keeps it: its root branch and where its cursor stands."""

    id: str
    created: float
    root_branch: str
    cursor_node: str | None
    cursor_branch: str
    branches: int = 0
    nodes: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class IntegrityReport:
    path: str
    problems: list[str] = field(default_factory=list)
    nodes: int = 0
    branches: int = 0
    sessions: int = 0
    blobs: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (
            f"{self.path}: {self.sessions} sessions, {self.branches} branches, {self.nodes} nodes, {self.blobs} blobs"
        )
        if self.ok:
            return head + ": ok"
        return head + f": {len(self.problems)} problem(s)" + "".join(f"\n  - {p}" for p in self.problems)


def _labels(values: Iterable[str]) -> list[str]:
    out = []
    for value in values:
        label = str(value).strip().lower()
        if not _LABEL_RE.match(label):
            raise InvalidInputError(f"invalid label {value!r}: use 1-64 of [a-z0-9_.:-], e.g. {KNOWN_LABELS}")
        out.append(label)
    return out


def branch_verdict(labels: Sequence[str]) -> tuple[bool | None, str]:
    """A branch's final verdict from its labels: (success, where it came from). An operator's
    ``success``/``failure`` label wins over the detector's ``detector:*`` one; (None, "none") if neither.
    An operator's two labels at once (a change of mind, both kept) count as failure: the cautious one."""
    if "success" in labels or "failure" in labels:
        return "failure" not in labels, "operator"
    if DETECTOR_SUCCESS in labels or DETECTOR_FAILURE in labels:
        return DETECTOR_FAILURE not in labels, "detector"
    return None, "none"


def _floats(values: Sequence[float] | None, what: str) -> list[float]:
    out = [float(v) for v in (values if values is not None else [])]
    if not all(math.isfinite(v) for v in out):
        raise InvalidInputError(f"{what} has NaN or infinite values: {out}")
    return out


class BranchStore:
    """One store file. ``readonly=True`` for readers (CLI, export from another process).

    ``check`` on open: ``"quick"`` (SQLite quick_check + references), ``"refs"`` (references only,
    fast at any size), ``"full"`` (integrity_check + references + every blob rehashed) or None.

    Not thread-safe: one store object per thread. One writing process at a time (SQLite
    serialises writers anyway; a second one waits up to ``busy_timeout`` seconds).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        readonly: bool = False,
        check: str | None = "quick",
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
        background_checkpoint: bool = True,
        hash_name: str = DEFAULT_HASH,
    ) -> None:
        self.path = Path(path)
        check_hash_name(hash_name)
        self.readonly = readonly
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise InvalidInputError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        if readonly and not self.path.exists():
            raise UnknownIdError(f"{self.path}: no branch cache store here")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        try:
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout)
            self.db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            if not readonly:
                # 2 KiB pages: blobs of a few KiB waste ~16 % in overflow pages instead of ~40 % with 4 KiB
                # (measured by bench/branch_cache.py); only settable before the first table exists
                self.db.execute(f"PRAGMA page_size={PAGE_SIZE}")
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
                self.db.executescript(_SCHEMA)
                self.db.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('hash', ?)", (hash_name,))
            version = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            stored_hash = self.db.execute("SELECT value FROM meta WHERE key='hash'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CorruptStoreError(f"{self.path}: not a readable branch cache store ({exc})") from exc
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise CorruptStoreError(f"{self.path}: schema version {version and version[0]}, expected {SCHEMA_VERSION}")
        # the file's content hash wins: ids already stored were made with it
        self.hash_name = check_hash_name(stored_hash[0]) if stored_hash else DEFAULT_HASH
        if not readonly and self.hash_name != hash_name:
            self.db.close()
            raise InvalidInputError(f"{self.path}: store addresses blobs by {self.hash_name}, not {hash_name}")
        if check not in (None, "refs", "quick", "full"):
            raise InvalidInputError(f"check must be None, 'refs', 'quick' or 'full', got {check!r}")
        if check:
            report = self.check(full=check == "full", sqlite_check=check != "refs")
            if not report.ok:
                self.db.close()
                raise CorruptStoreError(f"{self.path}: integrity check failed", report.problems)
        # Checkpoints fsync the database file: run them off the append path so appends stay sub-ms.
        self._checkpointer: _Checkpointer | None = None
        if not readonly and background_checkpoint:
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(self.path, busy_timeout)

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.db.close()

    def __enter__(self) -> BranchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self):
        if self.readonly:
            raise BranchCacheError(f"{self.path}: opened read-only")
        return _Txn(self.db, self._checkpointer)

    # -- integrity -----------------------------------------------------------
    def check(self, full: bool = False, sqlite_check: bool = True) -> IntegrityReport:
        """SQLite's own check (every page: seconds at 100,000 states) plus referential checks
        (indexed: milliseconds); ``full`` runs ``integrity_check`` and rehashes every blob."""
        report = IntegrityReport(str(self.path))
        if sqlite_check:
            pragma = "integrity_check" if full else "quick_check"
            try:
                rows = [r[0] for r in self.db.execute(f"PRAGMA {pragma}(20)")]
            except sqlite3.DatabaseError as exc:
                report.problems.append(f"sqlite {pragma} could not run: {exc}")
                return report
            if rows != ["ok"]:
                report.problems += [f"sqlite: {r}" for r in rows]
                return report
        q = self.db.execute
        report.nodes = q("SELECT count(*) FROM nodes").fetchone()[0]
        report.branches = q("SELECT count(*) FROM branches").fetchone()[0]
        report.sessions = q("SELECT count(*) FROM sessions").fetchone()[0]
        report.blobs = q("SELECT count(*) FROM blobs").fetchone()[0]
        checks = [
            ("SELECT n.id, n.snapshot FROM nodes n WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = n.snapshot)",
             "node n{} : snapshot blob {} is missing"),
            ("SELECT n.id, n.frame FROM nodes n WHERE n.frame IS NOT NULL "
             "AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = n.frame)",
             "node n{} : frame blob {} is missing"),
            ("SELECT n.id, n.parent FROM nodes n WHERE n.parent IS NOT NULL "
             "AND NOT EXISTS (SELECT 1 FROM nodes p WHERE p.id = n.parent)",
             "node n{} : parent n{} does not exist (dangling parent)"),
            ("SELECT n.id, n.branch FROM nodes n WHERE NOT EXISTS (SELECT 1 FROM branches b WHERE b.id = n.branch)",
             "node n{} : branch b{} does not exist"),
            ("SELECT b.id, b.head_node FROM branches b WHERE b.head_node IS NOT NULL "
             "AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = b.head_node)",
             "branch b{} : head node n{} does not exist"),
            ("SELECT b.id, b.base_node FROM branches b WHERE b.base_node IS NOT NULL "
             "AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = b.base_node)",
             "branch b{} : base node n{} does not exist"),
            ("SELECT s.id, s.cursor_node FROM sessions s WHERE s.cursor_node IS NOT NULL "
             "AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = s.cursor_node)",
             "session {} : cursor node n{} does not exist"),
        ]  # fmt: skip
        for sql, text in checks:
            for row in q(sql + " LIMIT 50"):
                report.problems.append(text.format(*row))
        if full:
            for bid, data in q("SELECT id, data FROM blobs"):
                if self.blob_id(bytes(data)) != bid:
                    report.problems.append(f"blob {bid}: content does not match its hash (corrupt)")
        return report

    # -- blobs ---------------------------------------------------------------
    def blob_id(self, data: bytes) -> str:
        """The content address of ``data`` in this store (its hash, ``meta.hash``)."""
        return blob_id(data, self.hash_name)

    def _put_blob(self, data: bytes, expect_id: str | None = None) -> str:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"blob must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) > MAX_BLOB:
            raise InvalidInputError(f"blob of {len(data)} bytes exceeds {MAX_BLOB}")
        bid = self.blob_id(data)
        if expect_id is not None and expect_id != bid:
            raise InvalidInputError(
                f"snapshot id {expect_id!r} is not the {self.hash_name} of its {len(data)} bytes ({bid})"
            )
        self.db.execute("INSERT OR IGNORE INTO blobs(id, size, data) VALUES (?, ?, ?)", (bid, len(data), data))
        return bid

    def put_blob(self, data: bytes, expect_id: str | None = None) -> str:
        """Store bytes under their sha256 (idempotent); ``expect_id`` must match when given."""
        with self._write():
            return self._put_blob(data, expect_id)

    def has_blob(self, bid: str) -> bool:
        return self.db.execute("SELECT 1 FROM blobs WHERE id=?", (bid,)).fetchone() is not None

    def blob(self, bid: str, owner: str = "") -> bytes:
        """The bytes of a blob, checked against their hash."""
        row = self.db.execute("SELECT data FROM blobs WHERE id=?", (bid,)).fetchone()
        if row is None:
            raise BlobMissingError(f"{self.path}: blob {bid}{' of ' + owner if owner else ''} is missing")
        data = bytes(row[0])
        if self.blob_id(data) != bid:
            raise CorruptStoreError(f"{self.path}: blob {bid}{' of ' + owner if owner else ''} is corrupt (hash)")
        return data

    def snapshot(self, node_id: str | int) -> bytes:
        node = self.get(node_id)
        return self.blob(node.snapshot, f"node {node.id} (snapshot)")

    def frame(self, node_id: str | int) -> bytes | None:
        node = self.get(node_id)
        return None if node.frame is None else self.blob(node.frame, f"node {node.id} (frame)")

    # -- rows ----------------------------------------------------------------
    _NODE_COLS = "id, parent, session, branch, step, snapshot, frame, action, source, time, state, labels"

    @staticmethod
    def _node(row: tuple) -> TreeNode:
        nid, parent, session, branch, step, snap, frame, action, source, t, state, labels = row
        return TreeNode(
            node_key(nid),
            None if parent is None else node_key(parent),
            session,
            branch_key(branch),
            step,
            snap,
            frame,
            json.loads(action),
            source,
            t,
            json.loads(state),
            json.loads(labels),
        )

    def _node_row(self, nid: int) -> tuple:
        row = self.db.execute(f"SELECT {self._NODE_COLS} FROM nodes WHERE id=?", (nid,)).fetchone()
        if row is None:
            raise UnknownIdError(f"{self.path}: no node {node_key(nid)}")
        return row

    def get(self, node_id: str | int) -> TreeNode:
        return self._node(self._node_row(parse_id(node_id, "n")))

    def _branch_row(self, bid: int) -> tuple:
        row = self.db.execute(
            "SELECT id, session, parent_branch, base_node, head_node, created, labels FROM branches WHERE id=?", (bid,)
        ).fetchone()
        if row is None:
            raise UnknownIdError(f"{self.path}: no branch {branch_key(bid)}")
        return row

    def branch(self, branch_id: str | int) -> Branch:
        bid = parse_id(branch_id, "b")
        row = self._branch_row(bid)
        length = self.db.execute("SELECT count(*) FROM nodes WHERE branch=?", (bid,)).fetchone()[0]
        return self._branch(row, length)

    @staticmethod
    def _branch(row: tuple, length: int = 0) -> Branch:
        bid, session, parent, base, head, created, labels = row
        return Branch(
            branch_key(bid),
            session,
            None if parent is None else branch_key(parent),
            None if base is None else node_key(base),
            None if head is None else node_key(head),
            created,
            json.loads(labels),
            length,
        )

    def _session_row(self, session_id: str) -> tuple:
        row = self.db.execute(
            "SELECT id, created, root_branch, cursor_node, cursor_branch FROM sessions WHERE id=?", (session_id,)
        ).fetchone()
        if row is None:
            raise UnknownIdError(f"{self.path}: no session {session_id!r}")
        return row

    def session(self, session_id: str) -> StoredSession:
        sid, created, root, cursor, cbranch = self._session_row(session_id)
        nb = self.db.execute("SELECT count(*) FROM branches WHERE session=?", (sid,)).fetchone()[0]
        nn = self.db.execute("SELECT count(*) FROM nodes WHERE session=?", (sid,)).fetchone()[0]
        return StoredSession(
            sid, created, branch_key(root), None if cursor is None else node_key(cursor), branch_key(cbranch), nb, nn
        )

    # -- listing -------------------------------------------------------------
    def sessions(self) -> list[StoredSession]:
        return [self.session(r[0]) for r in self.db.execute("SELECT id FROM sessions ORDER BY created, id")]

    def branches(self, session_id: str | None = None) -> list[Branch]:
        if session_id is not None:
            self._session_row(session_id)
        sql = "SELECT id, session, parent_branch, base_node, head_node, created, labels FROM branches"
        rows = self.db.execute(
            sql + (" WHERE session=? ORDER BY id" if session_id is not None else " ORDER BY id"),
            (session_id,) if session_id is not None else (),
        ).fetchall()
        counts = dict(
            self.db.execute(
                "SELECT branch, count(*) FROM nodes" + (" WHERE session=?" if session_id is not None else "")
                + " GROUP BY branch",
                (session_id,) if session_id is not None else (),
            ).fetchall()
        )  # fmt: skip
        return [self._branch(r, counts.get(r[0], 0)) for r in rows]

    def nodes(self, branch_id: str | int) -> list[TreeNode]:
        """The nodes a branch owns (appended on it), oldest first."""
        bid = parse_id(branch_id, "b")
        self._branch_row(bid)
        rows = self.db.execute(f"SELECT {self._NODE_COLS} FROM nodes WHERE branch=? ORDER BY id", (bid,))
        return [self._node(r) for r in rows]

    def children(self, node_id: str | int) -> list[TreeNode]:
        nid = parse_id(node_id, "n")
        self._node_row(nid)
        rows = self.db.execute(f"SELECT {self._NODE_COLS} FROM nodes WHERE parent=? ORDER BY id", (nid,))
        return [self._node(r) for r in rows]

    def path_to_root(self, node_id: str | int, limit: int | None = None) -> list[TreeNode]:
        """``node`` and its ancestors, newest first (at most ``limit`` nodes)."""
        nid = parse_id(node_id, "n")
        self._node_row(nid)
        rows = self.db.execute(
            f"WITH RECURSIVE up(i, d) AS (SELECT ?, 0 UNION ALL "
            f"SELECT nodes.parent, up.d + 1 FROM nodes JOIN up ON nodes.id = up.i "
            f"WHERE nodes.parent IS NOT NULL AND up.d + 1 < ?) "
            f"SELECT {', '.join('n.' + c.strip() for c in self._NODE_COLS.split(','))} "
            f"FROM up JOIN nodes n ON n.id = up.i ORDER BY up.d",
            (nid, limit if limit is not None else 1 << 62),
        )
        return [self._node(r) for r in rows]

    def trajectory(self, branch_id: str | int) -> list[TreeNode]:
        """A branch's whole episode: from the session's first state to the branch head, oldest first."""
        branch = self.branch(branch_id)
        return [] if branch.head_node is None else self.path_to_root(branch.head_node)[::-1]

    def all_nodes(self, session_id: str) -> list[TreeNode]:
        self._session_row(session_id)
        rows = self.db.execute(f"SELECT {self._NODE_COLS} FROM nodes WHERE session=? ORDER BY id", (session_id,))
        return [self._node(r) for r in rows]

    def find_parent(self, session_id: str, snapshot_id: str) -> TreeNode | None:
        """The node holding ``snapshot_id`` in a session: the cursor if it does, else the newest; None if none."""
        row = self.db.execute(
            f"SELECT {', '.join('n.' + c.strip() for c in self._NODE_COLS.split(','))} FROM sessions s "
            "JOIN nodes n ON n.id = s.cursor_node WHERE s.id=? AND n.snapshot=?",
            (session_id, snapshot_id),
        ).fetchone()
        if row is None:
            row = self.db.execute(
                f"SELECT {self._NODE_COLS} FROM nodes WHERE session=? AND snapshot=? ORDER BY id DESC LIMIT 1",
                (session_id, snapshot_id),
            ).fetchone()
        return None if row is None else self._node(row)

    # -- writing -------------------------------------------------------------
    def append(
        self,
        session_id: str,
        snapshot: bytes,
        *,
        parent: str | int | None = None,
        step: int = 0,
        action: Sequence[float] | None = None,
        source: int = SOURCE_POLICY,
        frame: bytes | None = None,
        state: Sequence[float] | None = None,
        snapshot_id: str | None = None,
        stamp: float | None = None,
        gap: bool = False,
    ) -> TreeNode:
        """Record one world-model state under ``parent`` (None: the session's first state).

        Returns the new node, or the existing one when the cursor's branch already has this
        state under ``parent`` (a replay). Committed when this returns. ``gap``: the state's real
        parent was never recorded; the new node is labelled :data:`GAP_LABEL`.
        """
        if not session_id or not isinstance(session_id, str):
            raise InvalidInputError(f"session id must be a non-empty string, got {session_id!r}")
        if source not in SOURCES:
            raise InvalidInputError(f"action source must be one of {SOURCES}, got {source!r}")
        if not 0 <= int(step) < 1 << 31:
            raise InvalidInputError(f"step must be in [0, 2^31), got {step}")
        action_l, state_l = _floats(action, "action"), _floats(state, "state")
        now = time.time() if stamp is None else float(stamp)
        with self._write():
            snap = self._put_blob(snapshot, snapshot_id)
            fid = self._put_blob(frame) if frame else None
            srow = self.db.execute(
                "SELECT cursor_node, cursor_branch FROM sessions WHERE id=?", (session_id,)
            ).fetchone()
            if srow is not None and srow[0] is not None:
                cur = self.db.execute(f"SELECT {self._NODE_COLS} FROM nodes WHERE id=?", (srow[0],)).fetchone()
                if cur is not None and cur[5] == snap:  # the world model re-announces where it is (a restore)
                    return self._node(cur)  # the cursor stays, on a fresh fork too
            if parent is None:
                if srow is not None:
                    root = self.db.execute(
                        f"SELECT {self._NODE_COLS} FROM nodes WHERE session=? AND parent IS NULL", (session_id,)
                    ).fetchone()
                    if root is not None and root[5] == snap:  # the same first state again: a replay
                        self.db.execute(
                            "UPDATE sessions SET cursor_node=?, cursor_branch=? WHERE id=?",
                            (root[0], root[3], session_id),
                        )
                        return self._node(root)
                    raise InvalidInputError(f"session {session_id!r} already has a first state; give a parent")
                cur = self.db.execute("INSERT INTO branches(session, created) VALUES (?, ?)", (session_id, now))
                bid = cur.lastrowid
                self.db.execute(
                    "INSERT INTO sessions(id, created, root_branch, cursor_node, cursor_branch) VALUES (?,?,?,NULL,?)",
                    (session_id, now, bid, bid),
                )
                pid = None
            else:
                pid = parse_id(parent, "n")
                prow = self._node_row(pid)
                if prow[2] != session_id:
                    raise InvalidInputError(
                        f"parent {node_key(pid)} belongs to session {prow[2]!r}, not {session_id!r}"
                    )
                cursor_node, cursor_branch = srow
                bid = cursor_branch if cursor_node == pid else prow[3]
                head = self.db.execute("SELECT head_node FROM branches WHERE id=?", (bid,)).fetchone()[0]
                if head != pid:
                    same = self.db.execute(
                        f"SELECT {self._NODE_COLS} FROM nodes WHERE parent=? AND branch=? AND snapshot=? LIMIT 1",
                        (pid, bid, snap),
                    ).fetchone()
                    if same is not None:  # replay of a state this branch already holds
                        self.db.execute(
                            "UPDATE sessions SET cursor_node=?, cursor_branch=? WHERE id=?", (same[0], bid, session_id)
                        )
                        return self._node(same)
                    # the branch already goes on past the parent: this is a new branch
                    bid = self.db.execute(
                        "INSERT INTO branches(session, parent_branch, base_node, head_node, created) "
                        "VALUES (?,?,?,?,?)",
                        (session_id, bid, pid, pid, now),
                    ).lastrowid
            labels = [GAP_LABEL] if gap else []
            nid = self.db.execute(
                "INSERT INTO nodes(parent, session, branch, step, snapshot, frame, action, source, time, state, "
                "labels) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (pid, session_id, bid, int(step), snap, fid, json.dumps(action_l), int(source), now,
                 json.dumps(state_l), json.dumps(labels)),
            ).lastrowid  # fmt: skip
            self.db.execute("UPDATE branches SET head_node=? WHERE id=?", (nid, bid))
            self.db.execute("UPDATE sessions SET cursor_node=?, cursor_branch=? WHERE id=?", (nid, bid, session_id))
        return TreeNode(
            node_key(nid), None if pid is None else node_key(pid), session_id, branch_key(bid), int(step), snap, fid,
            action_l, int(source), now, state_l, labels,
        )  # fmt: skip

    def rollback_target(
        self,
        *,
        session_id: str | None = None,
        branch_id: str | int | None = None,
        node_id: str | int | None = None,
        steps: int = 0,
    ) -> TreeNode:
        """The node a rollback goes to: ``node_id``, or ``steps`` back from the session cursor / branch head."""
        if node_id not in (None, ""):
            node = self.get(node_id)
            if session_id and node.session != session_id:
                raise InvalidInputError(f"node {node.id} belongs to session {node.session!r}, not {session_id!r}")
            return node
        if steps < 0:
            raise InvalidInputError(f"steps must be >= 0, got {steps}")
        if branch_id not in (None, ""):
            start = self.branch(branch_id).head_node
            where = f"branch {branch_id}"
        elif session_id:
            start = self.session(session_id).cursor_node
            where = f"session {session_id!r}"
        else:
            raise InvalidInputError("rollback needs a node id, a branch id or a session id")
        if start is None:
            raise InvalidInputError(f"{where} has no state to roll back to")
        path = self.path_to_root(start, limit=steps + 1)
        if len(path) <= steps:
            raise InvalidInputError(f"{where}: cannot go back {steps} steps, only {len(path) - 1} before {start}")
        return path[steps]

    def move_cursor(self, node_id: str | int, branch_id: str | int | None = None) -> None:
        """Put the session cursor on a node (the world model is now in its state)."""
        nid = parse_id(node_id, "n")
        with self._write():
            row = self._node_row(nid)
            session = row[2]
            cursor_branch = self._session_row(session)[4]
            if branch_id is not None:
                bid = parse_id(branch_id, "b")
            else:
                # stay on the cursor's branch when the node is its fork point (a fresh fork)
                base = self.db.execute("SELECT base_node FROM branches WHERE id=?", (cursor_branch,)).fetchone()[0]
                bid = cursor_branch if base == nid else row[3]
            self.db.execute("UPDATE sessions SET cursor_node=?, cursor_branch=? WHERE id=?", (nid, bid, session))

    def rollback(
        self,
        *,
        session_id: str | None = None,
        branch_id: str | int | None = None,
        node_id: str | int | None = None,
        steps: int = 0,
    ) -> tuple[TreeNode, bytes]:
        """Move the session cursor back to a node; returns it and its snapshot bytes."""
        node = self.rollback_target(session_id=session_id, branch_id=branch_id, node_id=node_id, steps=steps)
        data = self.blob(node.snapshot, f"node {node.id} (snapshot)")
        self.move_cursor(node.id)
        return node, data

    def fork(self, node_id: str | int, label: str = "") -> Branch:
        """A new (empty) branch based at ``node``; the session cursor moves onto it."""
        nid = parse_id(node_id, "n")
        labels = _labels([label]) if label else []
        with self._write():
            row = self._node_row(nid)
            now = time.time()
            bid = self.db.execute(
                "INSERT INTO branches(session, parent_branch, base_node, head_node, created, labels) "
                "VALUES (?,?,?,?,?,?)",
                (row[2], row[3], nid, nid, now, json.dumps(labels)),
            ).lastrowid
            self.db.execute("UPDATE sessions SET cursor_node=?, cursor_branch=? WHERE id=?", (nid, bid, row[2]))
        return Branch(branch_key(bid), row[2], branch_key(row[3]), node_key(nid), node_key(nid), now, labels, 0)

    def label(self, target_id: str, labels: Iterable[str], remove: bool = False) -> list[str]:
        """Add (or remove) labels on a branch (``b..``) or a node (``n..``); returns the new set."""
        new = _labels(labels)
        is_branch = isinstance(target_id, str) and target_id.startswith("b")
        table, key = ("branches", parse_id(target_id, "b")) if is_branch else ("nodes", parse_id(target_id, "n"))
        with self._write():
            row = self.db.execute(f"SELECT labels FROM {table} WHERE id=?", (key,)).fetchone()
            if row is None:
                raise UnknownIdError(f"{self.path}: no {'branch' if is_branch else 'node'} {target_id}")
            have = json.loads(row[0])
            result = sorted(set(have) - set(new)) if remove else sorted(set(have) | set(new))
            self.db.execute(f"UPDATE {table} SET labels=? WHERE id=?", (json.dumps(result), key))
        return result

    # -- export helpers ------------------------------------------------------
    def lineage(self, branch_id: str | int) -> list[Branch]:
        """The branch and its ancestors (parent branches), newest first."""
        out = [self.branch(branch_id)]
        while out[-1].parent_branch is not None:
            out.append(self.branch(out[-1].parent_branch))
        return out

    def stats(self) -> dict[str, int]:
        q = self.db.execute
        return {
            "sessions": q("SELECT count(*) FROM sessions").fetchone()[0],
            "branches": q("SELECT count(*) FROM branches").fetchone()[0],
            "nodes": q("SELECT count(*) FROM nodes").fetchone()[0],
            "blobs": q("SELECT count(*) FROM blobs").fetchone()[0],
            "blob_bytes": q("SELECT coalesce(sum(size), 0) FROM blobs").fetchone()[0],
        }


class _Txn:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error); pokes the checkpointer after commits."""

    def __init__(self, db: sqlite3.Connection, checkpointer: _Checkpointer | None) -> None:
        self.db, self.checkpointer = db, checkpointer

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
            if self.checkpointer is not None:
                self.checkpointer.poke()
        else:
            self.db.execute("ROLLBACK")


class _Checkpointer:
    """A thread with its own connection running PASSIVE WAL checkpoints every ``every`` commits."""

    def __init__(self, path: Path, busy_timeout: float, every: int = 256) -> None:
        self.path, self.every, self.count = path, every, 0
        self.event, self.stopping = threading.Event(), False
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout, check_same_thread=False)
        self.thread = threading.Thread(target=self.run, name="branch-cache-checkpoint", daemon=True)
        self.thread.start()

    def poke(self) -> None:
        self.count += 1
        if self.count % self.every == 0:
            self.event.set()

    def run(self) -> None:
        while not self.stopping:
            self.event.wait()
            self.event.clear()
            with contextlib.suppress(sqlite3.Error):  # busy or closing: the next poke retries
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def stop(self) -> None:
        self.stopping = True
        self.event.set()
        self.thread.join(5)
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()

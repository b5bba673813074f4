"""LeRobot v3.0 datasets: a crash-safe writer and a reader, with pyarrow and PyAV only.

Layout (as LeRobot writes it)::

    meta/info.json  meta/stats.json  meta/tasks.parquet
    meta/episodes/chunk-CCC/file-FFF.parquet     one row per episode
    data/chunk-CCC/file-FFF.parquet              one row per frame, many episodes per file
    videos/<key>/chunk-CCC/file-FFF.mp4          the frames of a video feature, episodes back to back

Crash safety: every flush writes *new* files (never appends to a committed one) under
temporary names, renames them into place, then commits metadata: the flush's episodes
parquet, stats.json and, last, ``info.json``, whose ``total_episodes`` is the commit
record. A process killed at any moment leaves either the old or the new dataset; what
an interrupted flush left (temp files, unreferenced data/video files, an episodes file
beyond ``total_episodes``) is ignored by readers and removed when a writer next opens
the dataset. One writer at a time (an exclusive lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hiwm.data import stats as st
from hiwm.data.video import INFO_CODEC, VideoEncoder, decode_frames
from hiwm.files import atomic_write_json, is_tmp, replacing, tmp_name

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
LOCK_NAME = ".writer.lock"
CHUNK_FILE_RE = re.compile(r"chunk-(\d{3,})/file-(\d{3,})\.(parquet|mp4)$")

#: Columns LeRobot adds to every dataset.
DEFAULT_FEATURES: dict[str, dict] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

_ARROW = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
#: Action-source codes (``action.source``), the same as hiwm_msgs/ActionChunk's SOURCE_*.
SOURCE_POLICY, SOURCE_HUMAN, SOURCE_SCRIPTED = 0, 1, 2


class DatasetError(RuntimeError):
    """A dataset that cannot be opened or written; the message names the file."""


# ---------------------------------------------------------------------------- files


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    with replacing(path) as tmp:
        pq.write_table(table, tmp)


def chunk_path(template: str, flush: int, chunks_size: int, **kw: Any) -> str:
    chunk_index, file_index = divmod(flush, chunks_size)
    return template.format(chunk_index=chunk_index, file_index=file_index, **kw)


# ---------------------------------------------------------------------------- schema


def arrow_type(feature: dict) -> pa.DataType:
    """The parquet column type LeRobot uses: a scalar for shape [1], a fixed-size list otherwise."""
    dtype, shape = feature["dtype"], list(feature["shape"])
    if dtype not in _ARROW:
        raise DatasetError(f"unsupported feature dtype {dtype!r} (known: video, {', '.join(_ARROW)})")
    if len(shape) != 1:
        raise DatasetError(f"non-video features must be 1-D, got shape {shape}")
    return _ARROW[dtype] if shape == [1] else pa.list_(_ARROW[dtype], shape[0])


def data_schema(features: dict[str, dict]) -> pa.Schema:
    """Arrow schema of the data parquet files (every non-video feature, in order)."""
    return pa.schema([(k, arrow_type(f)) for k, f in features.items() if f["dtype"] != "video"])


def video_keys(features: dict[str, dict]) -> list[str]:
    return [k for k, f in features.items() if f["dtype"] == "video"]


def _column(feature: dict, values: np.ndarray | list) -> pa.Array:
    kind = arrow_type(feature)
    if feature["dtype"] == "string":
        return pa.array(list(values), type=kind)
    flat = pa.array(np.asarray(values).reshape(-1), type=_ARROW[feature["dtype"]])
    return flat if feature["shape"] == [1] else pa.FixedSizeListArray.from_arrays(flat, feature["shape"][0])


def column_to_numpy(column: pa.ChunkedArray | pa.Array, feature: dict) -> np.ndarray:
    """A parquet column as (N,) for scalar features or (N, D) for vector ones."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if feature["dtype"] == "string":
        return np.array(array.to_pylist(), dtype=object)
    if isinstance(array.type, (pa.FixedSizeListType, pa.ListType)):
        flat = array.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(array), -1)
    return array.to_numpy(zero_copy_only=False)


def _tasks_table(tasks: list[str]) -> pa.Table:
    # pandas metadata makes `pd.read_parquet` index the table by task string, as LeRobot expects.
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64"},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object"},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


# ---------------------------------------------------------------------------- metadata


def read_info(root: Path) -> dict:
    path = root / INFO_PATH
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing (not a LeRobot dataset)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: not a JSON object")
    missing = [k for k in ("codebase_version", "fps", "features", "total_episodes", "total_frames") if k not in info]
    if missing:
        raise DatasetError(f"{path}: missing keys {missing}")
    if info["codebase_version"] != CODEBASE_VERSION:
        raise DatasetError(f"{path}: codebase_version {info['codebase_version']!r}, expected {CODEBASE_VERSION!r}")
    return info


def read_tasks(root: Path) -> list[str]:
    path = root / TASKS_PATH
    if not path.exists():
        return []
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DatasetError(f"{path}: unreadable parquet ({exc})") from exc
    if "task" not in table.column_names:
        table = table.rename_columns([c if c != "__index_level_0__" else "task" for c in table.column_names])
    indices = table.column("task_index").to_pylist()
    texts = table.column("task").to_pylist()
    if sorted(indices) != list(range(len(indices))):
        raise DatasetError(f"{path}: task_index must be 0..{len(indices) - 1}, got {indices}")
    out = [""] * len(indices)
    for i, text in zip(indices, texts, strict=True):
        out[i] = text
    return out


@dataclass
class EpisodeFiles:
    """The committed episodes (rows of meta/episodes) and what an interrupted flush left."""

    rows: list[dict]
    uncommitted: list[Path] = field(default_factory=list)


def episode_meta_files(root: Path) -> list[Path]:
    base = root / "meta" / "episodes"
    return sorted(p for p in base.glob("chunk-*/file-*.parquet") if not is_tmp(p)) if base.exists() else []


def read_episodes(root: Path, info: dict) -> EpisodeFiles:
    """Episode rows with ``episode_index < total_episodes``, sorted; files wholly beyond are uncommitted."""
    total = int(info["total_episodes"])
    rows: list[dict] = []
    uncommitted: list[Path] = []
    for path in episode_meta_files(root):
        try:
            file_rows = pq.read_table(path).to_pylist()
        except Exception as exc:
            raise DatasetError(f"{path}: unreadable parquet ({exc})") from exc
        indices = [int(r["episode_index"]) for r in file_rows]
        if indices and min(indices) >= total:
            uncommitted.append(path)
        elif indices and max(indices) >= total:
            raise DatasetError(f"{path}: episodes {indices} straddle info.json total_episodes={total}")
        else:
            rows.extend(file_rows)
    rows.sort(key=lambda r: int(r["episode_index"]))
    return EpisodeFiles(rows, uncommitted)


def episode_stats(row: dict, features: dict[str, dict]) -> dict[str, dict[str, np.ndarray]]:
    """Per-feature stats of one episode row, reshaped to the stats.json layout."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, feature in features.items():
        if feature["dtype"] == "string" or f"stats/{key}/mean" not in row:
            continue
        shape = (feature["shape"][-1], 1, 1) if feature["dtype"] == "video" else (-1,)
        out[key] = {
            s: np.asarray(row[f"stats/{key}/{s}"]).reshape(shape if s != "count" else (1,)) for s in st.STAT_KEYS
        }
    return out


# ---------------------------------------------------------------------------- writer


class LeRobotDatasetWriter:
    """Create or append to a LeRobot v3.0 dataset, one whole episode at a time.

    ``add_frame(dict)`` buffers a frame (keys: every feature; optional ``timestamp``);
    ``save_episode(task)`` encodes it into the open batch; every ``flush_every`` saved
    episodes (and on :meth:`close`) the batch is committed atomically. Episodes saved but
    not yet flushed are lost if the process dies, never half-written.
    """

    def __init__(
        self,
        root: str | Path,
        fps: int | None = None,
        features: dict[str, dict] | None = None,
        robot_type: str | None = None,  # hiwm writes the task's name; None: unknown
        *,
        vcodec: str = "h264",
        pix_fmt: str = "yuv420p",
        crf: int = 18,
        gop: int = 2,
        flush_every: int = 1,
        chunks_size: int = 1000,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = (self.root / LOCK_NAME).open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise DatasetError(f"{self.root}: another writer has this dataset open") from None
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.flush_every = flush_every
        self.video_options = {"codec": vcodec, "pix_fmt": pix_fmt, "crf": crf, "gop": gop}
        if (self.root / INFO_PATH).exists():
            self._open_existing(fps, features)
        else:
            if fps is None or features is None:
                raise DatasetError(f"{self.root}: no dataset here; creating one needs fps and features")
            self._create(int(fps), features, robot_type, chunks_size)
        self._buffer: list[dict] = []
        self._batch: _Batch | None = None

    # -- setup ---------------------------------------------------------------
    def _create(self, fps: int, features: dict[str, dict], robot_type: str | None, chunks_size: int) -> None:
        user = {k: _normalize_feature(k, f) for k, f in features.items() if k not in DEFAULT_FEATURES}
        for key, feature in user.items():
            if feature["dtype"] == "video":
                h, w, c = feature["shape"]
                codec = self.video_options["codec"]
                feature["info"] = {
                    "video.height": h,
                    "video.width": w,
                    "video.codec": INFO_CODEC.get(codec, codec),
                    "video.pix_fmt": self.video_options["pix_fmt"],
                    "video.is_depth_map": False,
                    "video.fps": fps,
                    "video.channels": c,
                    "has_audio": False,
                }
            else:
                arrow_type(feature)  # reject unsupported dtypes and shapes now
                if key in ("task",):
                    raise DatasetError("'task' is reserved (pass it to save_episode)")
        self.info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": chunks_size,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": fps,
            "splits": {},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if any(f["dtype"] == "video" for f in user.values()) else None,
            "features": {**user, **DEFAULT_FEATURES},
        }
        self.tasks: list[str] = []
        self._episode_stats: list[dict] = []
        self._next_flush = 0
        atomic_write_json(self.root / INFO_PATH, self.info)

    def _open_existing(self, fps: int | None, features: dict[str, dict] | None) -> None:
        self.info = read_info(self.root)
        if fps is not None and int(fps) != int(self.info["fps"]):
            raise DatasetError(f"{self.root}: dataset fps is {self.info['fps']}, writer asked for {fps}")
        if features is not None:
            want = {k: _normalize_feature(k, f) for k, f in features.items() if k not in DEFAULT_FEATURES}
            have = {k: f for k, f in self.info["features"].items() if k not in DEFAULT_FEATURES}
            if {k: (f["dtype"], list(f["shape"])) for k, f in want.items()} != {
                k: (f["dtype"], list(f["shape"])) for k, f in have.items()
            }:
                raise DatasetError(f"{self.root}: features differ from the existing dataset's {sorted(have)}")
        vids = video_keys(self.info["features"])
        if vids:
            codec = self.info["features"][vids[0]].get("info", {}).get("video.codec")
            if codec:
                self.video_options["codec"] = "libsvtav1" if codec == "av1" else codec
        self.tasks = read_tasks(self.root)
        episodes = read_episodes(self.root, self.info)
        removed = recover(self.root, self.info, episodes)
        self._episode_stats = [episode_stats(r, self.info["features"]) for r in episodes.rows]
        if removed:  # stats.json may have counted the interrupted flush's episodes
            self._write_stats(self._episode_stats)
        self._next_flush = 1 + max((_flush_number(r, self.info["chunks_size"]) for r in episodes.rows), default=-1)

    def _write_stats(self, all_stats: list[dict]) -> None:
        keys = [k for k in self.features if all_stats and all(k in s for s in all_stats)]
        doc = st.to_json({k: st.aggregate([s[k] for s in all_stats]) for k in keys})
        atomic_write_json(self.root / STATS_PATH, doc)

    # -- properties ----------------------------------------------------------
    @property
    def features(self) -> dict[str, dict]:
        return self.info["features"]

    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def user_features(self) -> dict[str, dict]:
        return {k: f for k, f in self.features.items() if k not in DEFAULT_FEATURES}

    @property
    def num_episodes(self) -> int:
        """Episodes saved so far (committed and in the open batch)."""
        return int(self.info["total_episodes"]) + (len(self._batch.rows) if self._batch else 0)

    @property
    def buffered_frames(self) -> int:
        return len(self._buffer)

    # -- frames and episodes -------------------------------------------------
    def add_frame(self, frame: dict[str, Any]) -> None:
        """Buffer one frame; values are checked against the feature's shape and converted to its dtype."""
        user = self.user_features
        missing = [k for k in user if k not in frame]
        extra = [k for k in frame if k not in user and k != "timestamp"]
        if missing or extra:
            raise ValueError(f"frame keys do not match the features: missing {missing}, unexpected {extra}")
        row: dict[str, Any] = {}
        for key, feature in user.items():
            row[key] = _check_value(key, feature, frame[key])
        if "timestamp" in frame:
            row["timestamp"] = float(frame["timestamp"])
        self._buffer.append(row)

    def clear_episode(self) -> None:
        """Drop the frames buffered since the last :meth:`save_episode`."""
        self._buffer.clear()

    def save_episode(self, task: str = "") -> int:
        """Encode the buffered frames as the next episode; returns its episode_index."""
        if not self._buffer:
            raise ValueError("save_episode: no frames buffered")
        frames, self._buffer = self._buffer, []
        if task not in self.tasks:
            self.tasks.append(task)
        if self._batch is None:
            self._batch = _Batch(self, self._next_flush)
        self._batch.add_episode(frames, task)
        if len(self._batch.rows) >= self.flush_every:
            self.flush()
        return self.num_episodes - 1

    def flush(self) -> None:
        """Commit the episodes saved so far (no-op when there are none)."""
        batch, self._batch = self._batch, None
        if batch is None:
            return
        try:
            batch.commit()
        except BaseException:
            batch.abort()
            raise
        self._next_flush += 1

    def close(self) -> None:
        """Commit saved episodes; frames of an unsaved episode are dropped."""
        if self._lock.closed:
            return
        try:
            self.flush()
        finally:
            self._buffer.clear()
            self._lock.close()

    def abort(self) -> None:
        """Drop the open batch and the buffer without committing (the dataset stays as it was)."""
        if self._batch is not None:
            self._batch.abort()
            self._batch = None
        self._buffer.clear()
        if not self._lock.closed:
            self._lock.close()

    def __enter__(self) -> LeRobotDatasetWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is KeyboardInterrupt or exc_type is SystemExit or exc_type is None:
            self.close()  # episodes saved before Ctrl-C are whole: keep them
        else:
            self.abort()


def _normalize_feature(key: str, feature: dict) -> dict:
    if "dtype" not in feature or "shape" not in feature:
        raise DatasetError(f"feature {key!r} needs 'dtype' and 'shape'")
    out = {"dtype": feature["dtype"], "shape": [int(s) for s in feature["shape"]], "names": feature.get("names")}
    if out["dtype"] == "video" and (len(out["shape"]) != 3 or out["shape"][2] != 3):
        raise DatasetError(f"video feature {key!r} must have shape [height, width, 3], got {out['shape']}")
    return out


def _check_value(key: str, feature: dict, value: Any) -> Any:
    dtype, shape = feature["dtype"], tuple(feature["shape"])
    if dtype == "string":
        return str(value)
    if dtype == "video":
        array = np.array(value, copy=True)
        if array.shape != shape or array.dtype != np.uint8:
            raise ValueError(f"{key}: expected a {shape} uint8 image, got {array.shape} {array.dtype}")
        return array
    array = np.asarray(value)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{key}: expected shape {list(shape)}, got {list(array.shape)}")
    if dtype != "bool" and array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        raise ValueError(f"{key}: non-finite value {array.tolist()}")
    return array.astype(dtype).reshape(shape)


def _flush_number(row: dict, chunks_size: int) -> int:
    return int(row["data/chunk_index"]) * chunks_size + int(row["data/file_index"])


class _Batch:
    """The files of one flush, written under temp names until :meth:`commit`."""

    def __init__(self, writer: LeRobotDatasetWriter, flush: int) -> None:
        self.writer = writer
        self.flush = flush
        info = writer.info
        size = int(info["chunks_size"])
        self.chunk_index, self.file_index = divmod(flush, size)
        root = writer.root
        self.data_path = root / chunk_path(DATA_PATH, flush, size)
        self.meta_path = root / chunk_path(EPISODES_PATH, flush, size)
        self.video_paths = {
            k: root / chunk_path(VIDEO_PATH, flush, size, video_key=k) for k in video_keys(info["features"])
        }
        self.frames_before = int(info["total_frames"])
        self.first_episode = int(info["total_episodes"])
        self.schema = data_schema(info["features"])
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet = pq.ParquetWriter(tmp_name(self.data_path), self.schema)
        self._videos: dict[str, VideoEncoder] = {}
        for key, path in self.video_paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            h, w, _ = info["features"][key]["shape"]
            self._videos[key] = VideoEncoder(tmp_name(path), writer.fps, h, w, **writer.video_options)
        self.rows: list[dict] = []
        self.stats: list[dict] = []
        self.frames = 0

    def add_episode(self, frames: list[dict], task: str) -> None:
        writer, features = self.writer, self.writer.features
        n = len(frames)
        episode_index = self.first_episode + len(self.rows)
        start = self.frames_before + self.frames
        fps = writer.fps
        columns: dict[str, Any] = {}
        for key, feature in writer.user_features.items():
            values = [f[key] for f in frames]
            columns[key] = values if feature["dtype"] == "string" else np.stack(values)
        columns["frame_index"] = np.arange(n, dtype=np.int64)
        columns["timestamp"] = np.array([f.get("timestamp", i / fps) for i, f in enumerate(frames)], dtype=np.float32)
        columns["episode_index"] = np.full(n, episode_index, dtype=np.int64)
        columns["index"] = np.arange(start, start + n, dtype=np.int64)
        columns["task_index"] = np.full(n, writer.tasks.index(task), dtype=np.int64)
        table = pa.table([_column(features[name], columns[name]) for name in self.schema.names], schema=self.schema)
        row: dict[str, Any] = {
            "episode_index": episode_index,
            "tasks": [task],
            "length": n,
            "data/chunk_index": self.chunk_index,
            "data/file_index": self.file_index,
            "dataset_from_index": start,
            "dataset_to_index": start + n,
        }
        for key, encoder in self._videos.items():
            first = encoder.frames
            for image in columns[key]:
                encoder.add(image)
            row[f"videos/{key}/chunk_index"] = self.chunk_index
            row[f"videos/{key}/file_index"] = self.file_index
            row[f"videos/{key}/from_timestamp"] = first / fps
            row[f"videos/{key}/to_timestamp"] = (first + n) / fps
        self._parquet.write_table(table)
        row["meta/episodes/chunk_index"] = self.chunk_index
        row["meta/episodes/file_index"] = self.file_index
        ep_stats = {}
        for key, feature in features.items():
            if feature["dtype"] == "string":
                continue
            ep_stats[key] = st.feature_stats(np.asarray(columns[key]), is_image=feature["dtype"] == "video")
            for s, value in ep_stats[key].items():
                row[f"stats/{key}/{s}"] = np.asarray(value).reshape(-1).tolist()
        self.rows.append(row)
        self.stats.append(ep_stats)
        self.frames += n

    def commit(self) -> None:
        writer, info = self.writer, self.writer.info
        self._parquet.close()
        for encoder in self._videos.values():
            encoder.close()
        # 1. payload files under their final names (unreferenced until info.json says otherwise)
        os.replace(tmp_name(self.data_path), self.data_path)
        for path in self.video_paths.values():
            os.replace(tmp_name(path), path)
        # 2. tasks (a superset is harmless), the flush's episodes, stats
        atomic_write_parquet(writer.root / TASKS_PATH, _tasks_table(writer.tasks))
        atomic_write_parquet(self.meta_path, pa.Table.from_pylist(self.rows))
        all_stats = writer._episode_stats + self.stats
        writer._write_stats(all_stats)
        # 3. the commit record
        new_info = dict(info)
        new_info["total_episodes"] = self.first_episode + len(self.rows)
        new_info["total_frames"] = self.frames_before + self.frames
        new_info["total_tasks"] = len(writer.tasks)
        new_info["splits"] = {"train": f"0:{new_info['total_episodes']}"}
        atomic_write_json(writer.root / INFO_PATH, new_info)
        writer.info = new_info
        writer._episode_stats = all_stats

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._parquet.close()
        for encoder in self._videos.values():
            with contextlib.suppress(Exception):
                encoder.close()
        for path in [self.data_path, *self.video_paths.values()]:
            tmp_name(path).unlink(missing_ok=True)


def referenced_files(root: Path, info: dict, rows: list[dict]) -> set[Path]:
    """Data and video files that committed episodes point to."""
    out: set[Path] = set()
    for row in rows:
        out.add(root / DATA_PATH.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]))
        for key in video_keys(info["features"]):
            out.add(
                root
                / VIDEO_PATH.format(
                    video_key=key,
                    chunk_index=row[f"videos/{key}/chunk_index"],
                    file_index=row[f"videos/{key}/file_index"],
                )
            )
    return out


def leftovers(root: Path, info: dict, episodes: EpisodeFiles) -> list[Path]:
    """Files an interrupted flush left: temp files, uncommitted episodes files, unreferenced payload."""
    keep = referenced_files(root, info, episodes.rows)
    out = list(episodes.uncommitted)
    for sub in ("meta", "data", "videos"):
        base = root / sub
        if not base.exists():
            continue
        for path in base.rglob("*"):
            if not path.is_file():
                continue
            if is_tmp(path) or (sub != "meta" and CHUNK_FILE_RE.search(path.as_posix()) and path not in keep):
                out.append(path)
    return sorted(set(out))


def recover(root: Path, info: dict, episodes: EpisodeFiles) -> list[Path]:
    """Remove what interrupted flushes left (call with the writer lock held)."""
    removed = leftovers(root, info, episodes)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


# ---------------------------------------------------------------------------- reader


class LeRobotDataset:
    """Read a LeRobot v3.0 dataset: metadata, episodes as numpy, video frames via PyAV."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.info = read_info(self.root)
        self.tasks = read_tasks(self.root)
        self.episodes = read_episodes(self.root, self.info).rows
        self._tables: dict[Path, pa.Table] = {}

    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def features(self) -> dict[str, dict]:
        return self.info["features"]

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return int(sum(int(r["length"]) for r in self.episodes))

    def __len__(self) -> int:
        return self.num_episodes

    def stats(self) -> dict:
        path = self.root / STATS_PATH
        return json.loads(path.read_text()) if path.exists() else {}

    def data_file(self, episode: int) -> Path:
        row = self.episodes[episode]
        return self.root / DATA_PATH.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])

    def video_file(self, key: str, episode: int) -> Path:
        row = self.episodes[episode]
        return self.root / VIDEO_PATH.format(
            video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"]
        )

    def _table(self, path: Path) -> pa.Table:
        if path not in self._tables:
            try:
                self._tables[path] = pq.read_table(path)
            except Exception as exc:
                raise DatasetError(f"{path}: unreadable parquet ({exc})") from exc
        return self._tables[path]

    def episode_table(self, episode: int) -> pa.Table:
        """The data parquet rows of one episode."""
        row = self.episodes[episode]
        table = self._table(self.data_file(episode))
        index = table.column("index").to_numpy()
        first = int(np.searchsorted(index, int(row["dataset_from_index"])))
        return table.slice(first, int(row["length"]))

    def video(self, key: str, episode: int) -> np.ndarray:
        """An episode's frames of a video feature, (T, H, W, 3) uint8."""
        row = self.episodes[episode]
        start = round(float(row[f"videos/{key}/from_timestamp"]) * self.fps)
        return decode_frames(self.video_file(key, episode), start, start + int(row["length"]), fps=self.fps)

    def episode(self, episode: int, videos: bool = True) -> dict[str, np.ndarray]:
        """Every feature of one episode as numpy arrays (T, ...); videos decoded unless ``videos=False``."""
        table = self.episode_table(episode)
        out = {name: column_to_numpy(table.column(name), self.features[name]) for name in table.column_names}
        if videos:
            for key in video_keys(self.features):
                out[key] = self.video(key, episode)
        return out

    def iter_episodes(self, videos: bool = True) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.num_episodes):
            yield self.episode(i, videos)

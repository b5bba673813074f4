"""``verify(root)``: check a LeRobot v3.0 dataset file by file, naming each problem.

Checks the schema (info.json features against the parquet columns), frame and episode
counts (info.json, episodes metadata, data rows), index continuity (episode_index,
index, frame_index, dataset_from/to_index), parquet readability, video decodability and
frame counts, tasks and stats.json. Leftovers of an interrupted write are warnings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from hiwm.data.lerobot import (
    DATA_PATH,
    DEFAULT_FEATURES,
    STATS_PATH,
    VIDEO_PATH,
    DatasetError,
    column_to_numpy,
    data_schema,
    leftovers,
    read_episodes,
    read_info,
    read_tasks,
    video_keys,
)
from hiwm.data.video import VideoError, decode_frames, video_info


@dataclass
class VerifyReport:
    root: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    episodes: int = 0
    frames: int = 0
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self) -> str:
        head = "OK" if self.ok else f"INVALID ({len(self.errors)} error(s))"
        lines = [f"{self.root}: {head}: {self.episodes} episodes, {self.frames} frames, {self.files_checked} files"]
        lines += [f"  ERROR: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def verify(
    root: str | Path, decode_video: bool = True, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Check a dataset; ``decode_video=False`` only opens the videos (fast)."""
    root = Path(root)
    report = VerifyReport(root)
    try:
        info = read_info(root)
        tasks = read_tasks(root)
        episodes = read_episodes(root, info)
    except DatasetError as exc:
        report.errors.append(str(exc))
        return report
    features = info["features"]
    fps = int(info["fps"])
    rows = episodes.rows
    report.episodes, report.frames = len(rows), int(info["total_frames"])
    for key in DEFAULT_FEATURES:
        if key not in features:
            report.errors.append(f"meta/info.json: default feature {key!r} missing")
    try:
        schema = data_schema(features)
    except DatasetError as exc:
        report.errors.append(f"meta/info.json: {exc}")
        return report
    for path in leftovers(root, info, episodes):
        report.warnings.append(
            f"{path.relative_to(root)}: left by an interrupted write; ignored (removed on next append)"
        )

    # episodes metadata against info.json
    indices = [int(r["episode_index"]) for r in rows]
    if indices != list(range(len(indices))):
        report.errors.append(f"meta/episodes: episode_index not contiguous from 0: {indices[:10]}...")
    if len(rows) != int(info["total_episodes"]):
        report.errors.append(
            f"meta/info.json: total_episodes={info['total_episodes']} but meta/episodes lists {len(rows)}"
        )
    total = sum(int(r["length"]) for r in rows)
    if total != int(info["total_frames"]):
        report.errors.append(f"meta/info.json: total_frames={info['total_frames']} but episode lengths sum to {total}")
    expect = 0
    for r in rows:
        if int(r["dataset_from_index"]) != expect or int(r["dataset_to_index"]) - expect != int(r["length"]):
            report.errors.append(
                f"meta/episodes: episode {r['episode_index']} spans [{r['dataset_from_index']}, "
                f"{r['dataset_to_index']}) with length {r['length']}, expected to start at {expect}"
            )
        expect = int(r["dataset_to_index"])
        for task in r.get("tasks") or []:
            if task not in tasks:
                report.errors.append(f"meta/tasks.parquet: task {task!r} of episode {r['episode_index']} missing")

    # data files
    by_data: dict[Path, list[dict]] = {}
    for r in rows:
        path = root / DATA_PATH.format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
        by_data.setdefault(path, []).append(r)
    done = 0
    steps = len(by_data) + len(rows) * len(video_keys(features))
    for path, eps in by_data.items():
        report.files_checked += 1
        _check_data_file(report, root, path, eps, schema, features, len(tasks))
        done += 1
        if progress:
            progress(done, steps)

    # videos
    for key in video_keys(features):
        h, w, _ = features[key]["shape"]
        seen: dict[Path, dict | None] = {}
        for r in rows:
            path = root / VIDEO_PATH.format(
                video_key=key, chunk_index=r[f"videos/{key}/chunk_index"], file_index=r[f"videos/{key}/file_index"]
            )
            rel = path.relative_to(root)
            if path not in seen:
                report.files_checked += 1
                if not path.exists():
                    report.errors.append(f"{rel}: video file missing (episode {r['episode_index']})")
                    seen[path] = None
                else:
                    try:
                        seen[path] = video_info(path)
                    except VideoError as exc:
                        report.errors.append(f"{rel}: {_short(exc, path)}")
                        seen[path] = None
                    meta = seen[path]
                    if meta and (meta["height"], meta["width"]) != (h, w):
                        report.errors.append(f"{rel}: video is {meta['height']}x{meta['width']}, feature says {h}x{w}")
            if seen[path] is not None and decode_video:
                start = round(float(r[f"videos/{key}/from_timestamp"]) * fps)
                try:
                    frames = decode_frames(path, start, start + int(r["length"]), fps=fps)
                    if frames.shape[1:] != (h, w, 3):
                        report.errors.append(f"{rel}: decoded frames are {frames.shape[1:]}, expected {(h, w, 3)}")
                except VideoError as exc:
                    report.errors.append(f"{rel}: episode {r['episode_index']}: {_short(exc, path)}")
            done += 1
            if progress:
                progress(done, steps)

    _check_stats(report, root, features)
    return report


def _short(exc: Exception, path: Path) -> str:
    return str(exc).removeprefix(f"{path}: ")


def _check_data_file(
    report: VerifyReport,
    root: Path,
    path: Path,
    eps: list[dict],
    schema: object,
    features: dict,
    n_tasks: int,
) -> None:
    rel = path.relative_to(root)
    if not path.exists():
        report.errors.append(f"{rel}: data file missing (episodes {[int(r['episode_index']) for r in eps]})")
        return
    try:
        table = pq.read_table(path)
    except Exception as exc:
        report.errors.append(f"{rel}: unreadable parquet ({exc})")
        return
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        report.errors.append(f"{rel}: columns differ from info.json features: missing {missing}, extra {extra}")
        return
    for name in schema.names:
        if not table.schema.field(name).type.equals(schema.field(name).type):
            report.errors.append(
                f"{rel}: column {name!r} is {table.schema.field(name).type}, info.json says {schema.field(name).type}"
            )
    want = sum(int(r["length"]) for r in eps)
    if table.num_rows != want:
        report.errors.append(f"{rel}: {table.num_rows} rows, episodes metadata expects {want}")
        return
    col = {n: column_to_numpy(table.column(n), features[n]) for n in DEFAULT_FEATURES}
    offset = 0
    for r in eps:
        n, e = int(r["length"]), int(r["episode_index"])
        sl = slice(offset, offset + n)
        offset += n
        problems = []
        if not np.all(col["episode_index"][sl] == e):
            problems.append("episode_index")
        if not np.array_equal(col["index"][sl], np.arange(int(r["dataset_from_index"]), int(r["dataset_to_index"]))):
            problems.append("index not continuous")
        if not np.array_equal(col["frame_index"][sl], np.arange(n)):
            problems.append("frame_index not 0..length-1")
        ts = col["timestamp"][sl]
        if n > 1 and not np.all(np.diff(ts) > 0):
            problems.append("timestamps not increasing")
        tidx = col["task_index"][sl]
        if n and (tidx.min() < 0 or tidx.max() >= n_tasks):
            problems.append(f"task_index outside 0..{n_tasks - 1}")
        if problems:
            report.errors.append(f"{rel}: episode {e}: {', '.join(problems)}")


def _check_stats(report: VerifyReport, root: Path, features: dict) -> None:
    path = root / STATS_PATH
    if report.episodes == 0:
        return
    try:
        stats = json.loads(path.read_text())
    except FileNotFoundError:
        report.errors.append(f"{STATS_PATH}: missing")
        return
    except (OSError, json.JSONDecodeError) as exc:
        report.errors.append(f"{STATS_PATH}: unreadable ({exc})")
        return
    for key, feature in features.items():
        if feature["dtype"] == "string":
            continue
        entry = stats.get(key)
        if not isinstance(entry, dict) or not {"min", "max", "mean", "std", "count"} <= set(entry):
            report.errors.append(f"{STATS_PATH}: {key!r} lacks min/max/mean/std/count")
            continue
        width = feature["shape"][-1] if feature["dtype"] == "video" else int(np.prod(feature["shape"]))
        for s in ("min", "max", "mean", "std"):
            value = np.asarray(entry[s], dtype=np.float64)
            if value.size != width or not np.all(np.isfinite(value)):
                report.errors.append(f"{STATS_PATH}: {key}/{s} must be {width} finite values, got {entry[s]}")

"""MP4 video for image features: encode with PyAV, decode frames by index or timestamp.

Frames are numbered from 0 in each file (pts = frame number in a 1/fps time base),
so an episode's frames are ``[from_timestamp * fps, to_timestamp * fps)``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: Encoder per codec name accepted by LeRobot (``h264``, ``hevc``, ``libsvtav1``).
ENCODERS = {"h264": "libx264", "hevc": "libx265", "libsvtav1": "libsvtav1", "av1": "libsvtav1"}
#: Codec names as LeRobot writes them in info.json.
INFO_CODEC = {"libx264": "h264", "libx265": "hevc", "libsvtav1": "av1"}


class VideoError(RuntimeError):
    """A video file that cannot be written or decoded; the message names the file."""


class VideoEncoder:
    """Appends RGB frames (HxWx3 uint8) to one MP4 file, numbering them from 0."""

    def __init__(
        self,
        path: str | Path,
        fps: int,
        height: int,
        width: int,
        codec: str = "h264",
        pix_fmt: str = "yuv420p",
        crf: int = 18,
        gop: int = 2,
    ) -> None:
        encoder = ENCODERS.get(codec, codec)
        if pix_fmt == "yuv420p" and (height % 2 or width % 2):
            raise VideoError(f"{path}: {encoder} with yuv420p needs even image sizes, got {height}x{width}")
        self.path, self.height, self.width = Path(path), height, width
        self.frames = 0
        # mp4 muxer needs the extension; callers pass temp names like 'x.mp4.tmp', so force the format.
        self._container = av.open(str(self.path), "w", format="mp4")
        try:
            stream = self._container.add_stream(encoder, rate=fps)
        except Exception as exc:
            self._container.close()
            raise VideoError(f"{path}: encoder {encoder!r} is not available in this PyAV build ({exc})") from exc
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = Fraction(1, fps)
        options = {"crf": str(crf), "g": str(gop)}
        if encoder == "libx264":
            options["preset"] = "veryfast"
        elif encoder == "libsvtav1":
            options["preset"] = "8"
            options["svtav1-params"] = "log-level=1"
        stream.options = options
        self.codec = stream.codec_context.name
        self._stream = stream

    def add(self, image: np.ndarray) -> None:
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise VideoError(
                f"{self.path}: frame must be {self.height}x{self.width}x3 uint8, got {image.shape} {image.dtype}"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def video_info(path: str | Path) -> dict:
    """Codec, size, pixel format and frame count of a video file's first stream."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            return {
                "codec": ctx.name,
                "width": ctx.width,
                "height": ctx.height,
                "pix_fmt": ctx.pix_fmt,
                "frames": stream.frames,
            }
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise VideoError(f"{path}: cannot open video ({exc})") from exc


def decode_frames(path: str | Path, start: int = 0, stop: int | None = None, fps: int | None = None) -> np.ndarray:
    """Frames ``[start, stop)`` of a file as an (N, H, W, 3) uint8 array.

    ``fps`` (the dataset's) maps frame numbers to timestamps, so decoding seeks to
    ``start``; without it frames are counted from the beginning of the file. Raises :class:`VideoError` when the
    file is unreadable, corrupt or holds fewer frames than asked for.
    """
    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if fps and start > 0:
                container.seek(int(Fraction(start, fps) / stream.time_base), stream=stream, backward=True)
            for count, frame in enumerate(container.decode(stream)):
                index = round(frame.pts * stream.time_base * fps) if fps and frame.pts is not None else count
                if index < start:
                    continue
                if stop is not None and index >= stop:
                    break
                out.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: cannot decode video ({exc})") from exc
    if stop is not None and len(out) != stop - start:
        raise VideoError(f"{path}: expected frames {start}..{stop - 1}, decoded {len(out)}")
    if not out:
        raise VideoError(f"{path}: no frames decoded")
    return np.stack(out)

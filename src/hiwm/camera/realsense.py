"""Intel RealSense: frames (numpy arrays as pyrealsense2 returns them) to ROS messages, and the device.

Conversion is plain numpy and needs no library, so it is tested with synthetic frames; the device side
imports ``pyrealsense2`` lazily (``pip install hiwm[realsense]``) and says clearly when the library or a
camera is missing. Topic names follow realsense-ros (``camera/camera/...``), so either driver can feed
the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hiwm.comm.images import numpy_to_image
from hiwm.comm.interfaces import InterfaceError, new_message

COLOR_TOPIC = "camera/camera/color/image_raw"
COLOR_INFO_TOPIC = "camera/camera/color/camera_info"
DEPTH_TOPIC = "camera/camera/aligned_depth_to_color/image_raw"
DEPTH_INFO_TOPIC = "camera/camera/aligned_depth_to_color/camera_info"
TOPICS = {
    COLOR_TOPIC: "sensor_msgs/msg/Image",
    COLOR_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
    DEPTH_TOPIC: "sensor_msgs/msg/Image",
    DEPTH_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
}


def named_topic(topic: str, camera_name: str) -> str:
    """One of :data:`TOPICS` for a camera launched as realsense-ros's ``camera_name:=<camera_name>``
    (``camera/<camera_name>/...``; the default name is ``camera``)."""
    if not camera_name or "/" in camera_name or not camera_name.replace("_", "").isalnum():
        raise ValueError(f"camera_name must be letters, digits and underscores, got {camera_name!r}")
    namespace, _, rest = topic.split("/", 2)
    return f"{namespace}/{camera_name}/{rest}"


#: librealsense distortion models -> ROS names, as realsense-ros maps them.
DISTORTION = {
    "brown_conrady": "plumb_bob",
    "inverse_brown_conrady": "plumb_bob",
    "modified_brown_conrady": "plumb_bob",
    "none": "plumb_bob",
    "kannala_brandt4": "equidistant",
}


class CameraUnavailable(ValueError):
    """No usable camera: the library is missing or no device is attached (the node exits non-zero)."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics with the fields of ``pyrealsense2.intrinsics``."""

    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float
    model: str = "brown_conrady"
    coeffs: tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0, 0.0))

    @classmethod
    def from_rs(cls, intr: Any) -> Intrinsics:
        model = str(intr.model).rsplit(".", 1)[-1]
        return cls(intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy, model, tuple(intr.coeffs))


def camera_info(intr: Intrinsics, header: Any) -> Any:
    """``sensor_msgs/CameraInfo`` of an undistorted-rectified-equal camera (a RealSense color stream)."""
    k = [intr.fx, 0.0, intr.ppx, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 1.0]
    p = [intr.fx, 0.0, intr.ppx, 0.0, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return new_message(
        "sensor_msgs/msg/CameraInfo",
        header=header,
        height=intr.height,
        width=intr.width,
        distortion_model=DISTORTION.get(intr.model, "plumb_bob"),
        d=np.asarray(intr.coeffs, dtype=np.float64),
        k=np.asarray(k, dtype=np.float64),
        r=np.eye(3).reshape(-1),
        p=np.asarray(p, dtype=np.float64),
    )


def depth_image(depth: np.ndarray, header: Any) -> Any:
    """A ``16UC1`` image (millimetres for a depth scale of 0.001, as realsense-ros publishes) from HxW uint16."""
    depth = np.asarray(depth)
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise InterfaceError(f"depth must be an HxW uint16 array, got {depth.dtype} {depth.shape}")
    h, w = depth.shape
    data = np.ascontiguousarray(depth, dtype="<u2").view(np.uint8).reshape(-1)
    return new_message(
        "sensor_msgs/msg/Image",
        header=header,
        height=h,
        width=w,
        encoding="16UC1",
        is_bigendian=0,
        step=w * 2,
        data=data,
    )


def depth_to_numpy(msg: Any) -> np.ndarray:
    """HxW uint16 from a ``16UC1`` (or ``mono16``) image message."""
    if msg.encoding not in ("16UC1", "mono16"):
        raise InterfaceError(f"expected a 16UC1 depth image, got {msg.encoding!r}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if step < 2 * w or len(msg.data) != h * step:
        raise InterfaceError(f"depth image {w}x{h}: step {step} and {len(msg.data)} bytes do not match")
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(h, step)[:, : 2 * w]
    return rows.copy().view(">u2" if msg.is_bigendian else "<u2").reshape(h, w).astype(np.uint16)


def frame_messages(
    color: np.ndarray,
    intr: Intrinsics,
    header: Any,
    depth: np.ndarray | None = None,
    color_format: str = "rgb8",
) -> dict[str, Any]:
    """Messages by topic for one frame set: color as rgb8, camera_info, and aligned depth if given.

    ``color`` is HxWx3 uint8 in ``color_format`` (rgb8 or bgr8, as the stream was enabled); ``depth``
    is HxW uint16 already aligned to color, so it must have the color image's size.
    """
    color = np.asarray(color)
    if color.shape != (intr.height, intr.width, 3) or color.dtype != np.uint8:
        raise InterfaceError(
            f"color frame {color.dtype} {color.shape} does not match the intrinsics {intr.height}x{intr.width}x3 uint8"
        )
    if color_format == "bgr8":
        color = color[:, :, ::-1]
    elif color_format != "rgb8":
        raise InterfaceError(f"color format must be rgb8 or bgr8, got {color_format!r}")
    info = camera_info(intr, header)
    out = {COLOR_TOPIC: numpy_to_image(color, header, "rgb8"), COLOR_INFO_TOPIC: info}
    if depth is not None:
        if np.shape(depth) != (intr.height, intr.width):
            raise InterfaceError(f"aligned depth {np.shape(depth)} must match color {intr.height}x{intr.width}")
        out[DEPTH_TOPIC] = depth_image(depth, header)
        out[DEPTH_INFO_TOPIC] = info
    return out


def import_pyrealsense2() -> Any:
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise CameraUnavailable(
            f"pyrealsense2 cannot be loaded ({exc}); install it with `pip install hiwm[realsense]` "
            "(and libusb-1.0), or run realsense-ros, whose topics hiwm reads as well"
        ) from exc
    return rs


class RealSense:
    """One camera through pyrealsense2: color (rgb8) and, optionally, depth aligned to color.

    With ``playback`` (a recording by librealsense: RealSense Viewer or ``rs.recorder``) the same pipeline
    plays the file in real time instead of opening a device: lab sessions can be replayed into the graph.
    """

    def __init__(
        self,
        serial: str = "",
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        depth: bool = True,
        playback: str = "",
        repeat: bool = True,
    ) -> None:
        rs = import_pyrealsense2()
        config = rs.config()
        if playback:
            if not Path(playback).is_file():
                raise CameraUnavailable(f"playback file {playback!r} does not exist")
            config.enable_device_from_file(playback, repeat_playback=repeat)  # the file's streams, as recorded
        else:
            devices = rs.context().query_devices()
            serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
            if not serials:
                raise CameraUnavailable(
                    "no RealSense camera attached (librealsense found no device): check the USB 3 cable"
                )
            if serial and serial not in serials:
                raise CameraUnavailable(f"no RealSense camera with serial {serial!r}; attached: {serials}")
            if serial:
                config.enable_device(serial)
            config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
            if depth:
                config.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        self.pipeline = rs.pipeline()
        source = f"recording {playback!r}" if playback else "the RealSense camera"
        try:
            profile = self.pipeline.start(config)
        except RuntimeError as exc:
            raise CameraUnavailable(f"{source} refused {width}x{height} at {fps} fps: {exc}") from exc
        streams = {s.stream_type(): s for s in profile.get_streams()}
        if rs.stream.color not in streams:
            self.pipeline.stop()
            raise CameraUnavailable(f"{source} has no color stream")
        color = streams[rs.stream.color].as_video_stream_profile()
        if color.format() not in (rs.format.rgb8, rs.format.bgr8):
            self.pipeline.stop()
            raise CameraUnavailable(f"{source}: color format {color.format()} is not rgb8 or bgr8")
        self.color_format = "rgb8" if color.format() == rs.format.rgb8 else "bgr8"
        self.intrinsics = Intrinsics.from_rs(color.get_intrinsics())
        self.depth_enabled = depth and rs.stream.depth in streams
        self.align = rs.align(rs.stream.color) if self.depth_enabled else None

    def poll(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The newest frame set (color, aligned depth) or None if none arrived since the last call."""
        frames = self.pipeline.poll_for_frames()
        if not frames:
            return None
        if self.align is not None:
            frames = self.align.process(frames)
        color = frames.get_color_frame()
        if not color:
            return None
        depth = frames.get_depth_frame() if self.align is not None else None
        return np.asanyarray(color.get_data()), (np.asanyarray(depth.get_data()) if depth else None)

    def close(self) -> None:
        self.pipeline.stop()

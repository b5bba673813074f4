"""sensor_msgs/Image <-> numpy, with the checks a camera topic needs."""

from __future__ import annotations

from typing import Any

import numpy as np

from hiwm.comm.interfaces import InterfaceError, new_message

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def image_to_numpy(msg: Any, expect: tuple[int, int] | None = None) -> np.ndarray:
    """An ``HxWxC`` uint8 view of an 8-bit image message.

    Raises :class:`InterfaceError` for unsupported encodings, inconsistent sizes, or a
    size other than ``expect=(height, width)``.
    """
    channels = CHANNELS.get(msg.encoding)
    if channels is None:
        raise InterfaceError(f"unsupported image encoding {msg.encoding!r}; expected one of {sorted(CHANNELS)}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if step < w * channels or len(msg.data) != h * step:
        raise InterfaceError(f"image {w}x{h} {msg.encoding}: step {step} and {len(msg.data)} data bytes do not match")
    if expect is not None and (h, w) != tuple(expect):
        raise InterfaceError(f"image is {w}x{h}, expected {expect[1]}x{expect[0]}")
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(h, step)
    return rows[:, : w * channels].reshape(h, w, channels)


def numpy_to_image(array: np.ndarray, header: Any | None = None, encoding: str = "rgb8") -> Any:
    """An image message from an ``HxWxC`` (or ``HxW`` for mono8) uint8 array."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise InterfaceError(f"image data must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    channels = CHANNELS.get(encoding)
    if channels is None or array.ndim != 3 or array.shape[2] != channels:
        raise InterfaceError(f"array of shape {array.shape} does not fit encoding {encoding!r}")
    h, w, c = array.shape
    fields: dict[str, Any] = {"height": h, "width": w, "encoding": encoding, "step": w * c}
    if header is not None:
        fields["header"] = header
    return new_message("sensor_msgs/msg/Image", data=np.ascontiguousarray(array).reshape(-1), **fields)

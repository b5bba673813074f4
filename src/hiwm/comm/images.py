"""sensor_msgs/Image <-> numpy, with the checks a camera topic needs."""

from __future__ import annotations

from typing import Any

import numpy as np

from hiwm.comm.interfaces import InterfaceError, new_message

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
MAX_SIDE = 16384  # pixels; larger is no camera this project serves (and a 0-row image is none either)


def image_to_numpy(msg: Any, expect: tuple[int, int] | None = None) -> np.ndarray:
    """An ``HxWxC`` uint8 view of an 8-bit image message.

    Raises :class:`InterfaceError` for unsupported encodings, an empty or absurd size
    (a side of 0 or over :data:`MAX_SIDE`), a step or data length that does not match
    height, width and encoding, or a size other than ``expect=(height, width)``.
    """
    channels = CHANNELS.get(msg.encoding)
    if channels is None:
        raise InterfaceError(f"unsupported image encoding {msg.encoding!r}; expected one of {sorted(CHANNELS)}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise InterfaceError(f"image {w}x{h}: each side must be in [1, {MAX_SIDE}]")
    if step < w * channels or len(msg.data) != h * step:
        raise InterfaceError(
            f"image {w}x{h} {msg.encoding}: step {step} and {len(msg.data)} data bytes do not match "
            f"(expected step >= {w * channels} and {h} rows of step bytes)"
        )
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


def encode_png(image: np.ndarray, compression: int = 1) -> bytes:
    """PNG bytes of an ``HxWx3`` RGB uint8 image (fast compression: frames are small and many)."""
    import cv2

    array = np.asarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3 or not array.shape[0] or not array.shape[1]:
        raise InterfaceError(f"PNG frames are HxWx3 RGB with at least one pixel, got shape {array.shape}")
    ok, png = cv2.imencode(".png", cv2.cvtColor(array, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise InterfaceError("PNG encoding failed")
    return png.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """An ``HxWx3`` RGB uint8 image from PNG bytes; InterfaceError if they are not a readable image."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if len(data) else None
    if image is None:
        raise InterfaceError("not a readable PNG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

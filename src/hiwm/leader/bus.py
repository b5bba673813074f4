"""A servo bus on a serial port (pyserial): sync reads of Present Position, with clear errors.

:class:`ServoBus` does one transaction at a time and raises; :class:`LeaderArmReader` keeps a leader arm
readable: it retries checksum errors (counted), counts timeouts, declares the bus disconnected after
``max_timeouts`` silent reads in a row (servo power off) or an OS error (USB unplugged), and reopens
the port with exponential backoff until the servos answer again.
"""

from __future__ import annotations

import contextlib
import logging
import termios
import time
from dataclasses import dataclass

import serial

from hiwm.leader.calibration import Calibration
from hiwm.leader.protocol import Protocol, make_protocol


class BusError(RuntimeError):
    pass


class ChecksumError(BusError):
    pass


class BusTimeout(BusError):
    pass


class BusDisconnected(BusError):
    pass


class ServoBus:
    def __init__(self, port: str, protocol: Protocol, baudrate: int = 1_000_000, timeout_s: float = 0.02) -> None:
        self.port, self.protocol, self.baudrate, self.timeout_s = port, protocol, baudrate, timeout_s
        self._serial: serial.Serial | None = None
        self._buf = bytearray()
        self.servo_errors: dict[int, int] = {}  # last non-zero error byte per servo (overload, voltage, ...)

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        self.close()
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=self.timeout_s, write_timeout=self.timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise BusDisconnected(f"cannot open servo bus {self.port!r}: {exc}") from exc
        self._buf.clear()

    def close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError, termios.error):  # a vanished device
                self._serial.close()
            self._serial = None

    def sync_read(self, ids: list[int], address: int, size: int) -> dict[int, bytes]:
        """``{id: data}`` for every id, or BusTimeout / ChecksumError / BusDisconnected."""
        if self._serial is None:
            raise BusDisconnected(f"servo bus {self.port!r} is not open")
        try:
            self._serial.reset_input_buffer()  # late replies of an earlier, timed-out read
            self._buf.clear()
            self._serial.write(self.protocol.sync_read(ids, address, size))
            return self._collect(ids, size)
        except (serial.SerialException, OSError, termios.error) as exc:  # termios.error: a vanished pty/tty
            self.close()
            raise BusDisconnected(f"servo bus {self.port!r} disconnected: {exc}") from exc

    def _collect(self, ids: list[int], size: int) -> dict[int, bytes]:
        assert self._serial is not None
        wanted, got, bad = set(ids), {}, []
        deadline = time.monotonic() + self.timeout_s
        while len(got) + len(bad) < len(wanted):
            frame, used = self.protocol.cut(self._buf)
            if frame is not None:
                del self._buf[:used]
                if not frame.ok:
                    bad.append(frame.id)
                elif frame.id in wanted and len(frame.params) >= size:
                    got[frame.id] = frame.params[:size]
                    if frame.code:
                        self.servo_errors[frame.id] = frame.code
                    else:
                        self.servo_errors.pop(frame.id, None)
                continue
            del self._buf[:used]
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._serial.timeout = left
            chunk = self._serial.read(max(1, self._serial.in_waiting))
            if chunk:
                self._buf += chunk
        if bad:
            raise ChecksumError(f"bad checksum in the reply of servo(s) {sorted(set(bad))}")
        missing = sorted(wanted - set(got))
        if missing:
            raise BusTimeout(f"no reply from servo(s) {missing} within {self.timeout_s * 1000:.0f} ms")
        return got

    def read_positions(self, ids: list[int]) -> dict[int, int]:
        p = self.protocol
        return {i: p.decode_position(d) for i, d in self.sync_read(ids, p.position_address, p.position_size).items()}


@dataclass
class ReadStats:
    reads: int = 0
    checksum_errors: int = 0
    timeouts: int = 0
    disconnects: int = 0
    reconnects: int = 0


class LeaderArmReader:
    """Non-blocking ``poll()`` for a control loop: raw positions by id, or None while the bus is down."""

    def __init__(
        self,
        cal: Calibration,
        port: str = "",
        timeout_s: float = 0.02,
        retries: int = 2,
        max_timeouts: int = 5,
        backoff_s: tuple[float, float] = (0.05, 2.0),
        logger: logging.Logger | None = None,
    ) -> None:
        self.cal = cal
        port = port or cal.port
        if not port:
            raise ValueError("no serial port: set 'port' in the calibration file or the node's port parameter")
        self.bus = ServoBus(port, make_protocol(cal.protocol), cal.baudrate, timeout_s)
        self.retries, self.max_timeouts, self.backoff_s = retries, max_timeouts, backoff_s
        self.log = logger or logging.getLogger("hiwm.leader")
        self.stats = ReadStats()
        self.connected = False
        self.last_error = ""
        self._delay = backoff_s[0]
        self._next_try = 0.0
        self._silent = 0
        self._ever_connected = False
        self._reported: dict[int, int] = {}

    def _down(self, message: str) -> None:
        if self.connected or not self.last_error:
            self.log.error(f"{message}; reconnecting with backoff up to {self.backoff_s[1]:g} s")
            self.stats.disconnects += self.connected
        self.connected, self.last_error = False, message
        self.bus.close()
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.backoff_s[1])

    def _read(self) -> dict[int, int]:
        for attempt in range(self.retries + 1):
            try:
                return self.bus.read_positions(self.cal.ids)
            except ChecksumError as exc:
                self.stats.checksum_errors += 1
                if attempt == self.retries:
                    raise
                self.log.debug(f"{exc}; retrying")
        raise AssertionError("unreachable")

    def poll(self) -> dict[int, int] | None:
        if not self.connected:
            if time.monotonic() < self._next_try:
                return None
            try:
                self.bus.open()
            except BusDisconnected as exc:
                self._down(str(exc))
                return None
        try:
            positions = self._read()
        except BusDisconnected as exc:
            self._down(str(exc))
            return None
        except ChecksumError as exc:
            self.log.warning(f"{exc} ({self.stats.checksum_errors} so far); keeping the last reading")
            return None
        except BusTimeout as exc:
            self.stats.timeouts += 1
            self._silent += 1
            if self._silent >= self.max_timeouts or not self.connected:
                self._down(f"servo bus {self.bus.port!r}: {exc} ({self._silent} reads in a row): check power/cable")
            return None
        if not self.connected:
            if self._ever_connected:
                self.stats.reconnects += 1
                self.log.info(f"servo bus {self.bus.port!r} reconnected after: {self.last_error}")
            else:
                self.log.info(f"servo bus {self.bus.port!r}: {len(positions)} servo(s) answering")
            self.connected, self._ever_connected, self.last_error = True, True, ""
            self._delay = self.backoff_s[0]
        self._silent = 0
        self.stats.reads += 1
        if self.bus.servo_errors != self._reported:
            self._reported = dict(self.bus.servo_errors)
            if self._reported:
                flags = ", ".join(f"servo {i}: 0x{code:02x}" for i, code in sorted(self._reported.items()))
                self.log.warning(f"servos report errors in their status ({flags}); positions are still read")
        return positions

    def close(self) -> None:
        self.bus.close()

"""Wire formats of the two servo buses leader arms use, written from the public protocol specs.

Dynamixel Protocol 2.0 (Robotis): ``FF FF FD 00 | id | len_lo len_hi | instruction | params | crc_lo crc_hi``
with ``len = params + 3`` (after byte stuffing), CRC-16 (polynomial 0x8005, init 0, not reflected) over
every byte before the CRC, and byte stuffing of ``FF FF FD`` -> ``FF FF FD FD`` in instruction and params.
A status packet has instruction 0x55 followed by an error byte.

Feetech SCS/STS (SO-100/101, Dynamixel 1.0 style): ``FF FF | id | len | instruction-or-error | params |
checksum`` with ``len = params + 2`` and ``checksum = ~(id + len + instruction + sum(params)) & 0xFF``.
STS servos store words little-endian with bit 15 as sign; SCS servos big-endian.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

PING, READ, WRITE, SYNC_READ = 0x01, 0x02, 0x03, 0x82
BROADCAST = 0xFE


@dataclass(frozen=True)
class Frame:
    """One packet cut from the byte stream. ``code`` is the instruction (or a status's error byte)."""

    id: int
    code: int
    params: bytes
    ok: bool  # checksum matched
    status: bool  # a reply from a servo (vs an instruction from the host)


class Protocol(ABC):
    name: str
    position_address: int
    position_size: int

    @abstractmethod
    def instruction(self, servo_id: int, code: int, params: bytes = b"") -> bytes: ...

    @abstractmethod
    def status(self, servo_id: int, error: int, params: bytes = b"") -> bytes: ...

    @abstractmethod
    def cut(self, buf: bytes | bytearray) -> tuple[Frame | None, int]:
        """The first complete frame in ``buf`` and the bytes it (plus leading junk) used; ``(None, n)`` if none yet."""

    @abstractmethod
    def sync_read(self, ids: list[int], address: int, size: int) -> bytes: ...

    @abstractmethod
    def decode_position(self, data: bytes) -> int: ...

    @abstractmethod
    def encode_position(self, value: int) -> bytes: ...

    def read(self, servo_id: int, address: int, size: int) -> bytes:
        return self.instruction(servo_id, READ, self.address_bytes(address) + self.address_bytes(size))

    @abstractmethod
    def address_bytes(self, value: int) -> bytes: ...


# -- Dynamixel Protocol 2.0 ------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray) -> int:
    """CRC-16 of the Robotis Protocol 2.0 spec (CRC-16/BUYPASS)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]) & 0xFFFF
    return crc


def stuff(data: bytes) -> bytes:
    """Insert 0xFD after every ``FF FF FD`` so a payload never looks like a header."""
    out = bytearray()
    for byte in data:
        out.append(byte)
        if byte == 0xFD and out[-3:-1] == b"\xff\xff":
            out.append(0xFD)
    return bytes(out)


def unstuff(data: bytes) -> bytes:
    return data.replace(b"\xff\xff\xfd\xfd", b"\xff\xff\xfd")


class Dynamixel2(Protocol):
    """Protocol 2.0 with the X-series control table (Present Position: address 132, 4 bytes, signed)."""

    name = "dynamixel"
    position_address = 132
    position_size = 4
    HEADER = b"\xff\xff\xfd\x00"
    STATUS = 0x55
    MAX_LENGTH = 1024  # far above any reply a leader arm asks for

    def _packet(self, servo_id: int, body: bytes) -> bytes:
        body = stuff(body)
        head = self.HEADER + bytes([servo_id]) + (len(body) + 2).to_bytes(2, "little")
        packet = head + body
        return packet + crc16(packet).to_bytes(2, "little")

    def instruction(self, servo_id: int, code: int, params: bytes = b"") -> bytes:
        return self._packet(servo_id, bytes([code]) + params)

    def status(self, servo_id: int, error: int, params: bytes = b"") -> bytes:
        return self._packet(servo_id, bytes([self.STATUS, error]) + params)

    def cut(self, buf: bytes | bytearray) -> tuple[Frame | None, int]:
        start = bytes(buf).find(self.HEADER)
        if start < 0:
            return None, max(0, len(buf) - 3)  # keep a possible partial header
        if len(buf) < start + 7:
            return None, start
        length = int.from_bytes(buf[start + 5 : start + 7], "little")
        end = start + 7 + length
        if not 3 <= length <= self.MAX_LENGTH:
            return None, start + 4  # a corrupt length: skip this header, look for the next one
        if len(buf) < end:
            return None, start
        packet = bytes(buf[start:end])
        ok = crc16(packet[:-2]) == int.from_bytes(packet[-2:], "little")
        body = unstuff(packet[7:-2])
        servo_id, code = packet[4], body[0]
        if code == self.STATUS:
            error = body[1] if len(body) > 1 else 0
            return Frame(servo_id, error, body[2:], ok, True), end
        return Frame(servo_id, code, body[1:], ok, False), end

    def address_bytes(self, value: int) -> bytes:
        return value.to_bytes(2, "little")

    def sync_read(self, ids: list[int], address: int, size: int) -> bytes:
        params = self.address_bytes(address) + self.address_bytes(size) + bytes(ids)
        return self.instruction(BROADCAST, SYNC_READ, params)

    def decode_position(self, data: bytes) -> int:
        return int.from_bytes(data[: self.position_size], "little", signed=True)

    def encode_position(self, value: int) -> bytes:
        return int(value).to_bytes(self.position_size, "little", signed=True)


# -- Feetech SCS/STS -------------------------------------------------------------------------------


def checksum(body: bytes | bytearray) -> int:
    """Feetech/Dynamixel 1.0 checksum of ``id, len, instruction, params``."""
    return ~sum(body) & 0xFF


class Feetech(Protocol):
    """SCS/STS with the STS3215 control table (Present Position: address 56, 2 bytes)."""

    name = "feetech"
    position_address = 56
    position_size = 2
    HEADER = b"\xff\xff"

    def __init__(self, big_endian: bool = False) -> None:
        self.order = "big" if big_endian else "little"  # SCS series: big-endian words
        if big_endian:
            self.name = "feetech_scs"

    def _packet(self, servo_id: int, code: int, params: bytes) -> bytes:
        body = bytes([servo_id, len(params) + 2, code]) + params
        return self.HEADER + body + bytes([checksum(body)])

    def instruction(self, servo_id: int, code: int, params: bytes = b"") -> bytes:
        return self._packet(servo_id, code, params)

    def status(self, servo_id: int, error: int, params: bytes = b"") -> bytes:
        return self._packet(servo_id, error, params)

    def cut(self, buf: bytes | bytearray) -> tuple[Frame | None, int]:
        start = bytes(buf).find(self.HEADER)
        if start < 0:
            return None, max(0, len(buf) - 1)
        while start + 2 < len(buf) and buf[start + 2] == 0xFF:  # tolerate extra 0xFF before the id
            start += 1
        if len(buf) < start + 4:
            return None, start
        length = buf[start + 3]
        end = start + 4 + length
        if length < 2:
            return None, start + 2
        if len(buf) < end:
            return None, start
        body = bytes(buf[start + 2 : end - 1])
        ok = checksum(body) == buf[end - 1]
        # Instructions and replies share one format here: the reader of the stream knows which it gets.
        return Frame(body[0], body[2], body[3:], ok, True), end

    def address_bytes(self, value: int) -> bytes:
        return bytes([value & 0xFF])

    def sync_read(self, ids: list[int], address: int, size: int) -> bytes:
        return self.instruction(BROADCAST, SYNC_READ, bytes([address, size, *ids]))

    def decode_position(self, data: bytes) -> int:
        raw = int.from_bytes(data[:2], self.order)
        return -(raw & 0x7FFF) if raw & 0x8000 else raw  # sign-magnitude, bit 15

    def encode_position(self, value: int) -> bytes:
        value = int(value)
        raw = (-value & 0x7FFF) | 0x8000 if value < 0 else value & 0x7FFF
        return raw.to_bytes(2, self.order)


PROTOCOLS = ("dynamixel", "feetech", "feetech_scs")


def make_protocol(name: str) -> Protocol:
    if name == "dynamixel":
        return Dynamixel2()
    if name == "feetech":
        return Feetech()
    if name == "feetech_scs":
        return Feetech(big_endian=True)
    raise ValueError(f"unknown servo protocol {name!r}; expected one of {PROTOCOLS}")

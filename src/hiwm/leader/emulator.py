"""A servo bus emulator speaking the real wire protocol over a pseudo-terminal, with fault injection.

Run ``python -m hiwm.leader.emulator --protocol feetech --ids 1,2 --link /tmp/leader_bus`` and point a
reader at ``/tmp/leader_bus`` (a symlink to the pty's slave, like ``/dev/serial/by-id/...``; it is
re-pointed when the bus comes back after a disconnect). Commands on stdin, one per line:

  ``pos ID VALUE``   set a servo's Present Position (raw ticks)
  ``error ID CODE``  set the error byte a servo sends in its status (0 clears it)
  ``corrupt N``      corrupt the checksum of the next N replies
  ``drop N``         drop the next N replies
  ``disconnect``     close the pty (readers see an I/O error, the link disappears)
  ``connect``        open a new pty and re-point the link
  ``quit``
Each command is acknowledged on stdout (``ok <command>``), so a test can wait for it; ``--sweep`` moves
the servos along a slow sine instead (for benchmarks and demos).
"""

from __future__ import annotations

import argparse
import math
import os
import select
import sys
import time
import tty
from pathlib import Path

from hiwm.files import replacing
from hiwm.leader.protocol import PING, READ, SYNC_READ, WRITE, Dynamixel2, Frame, Protocol, make_protocol


class ServoEmulator:
    """The servos of one bus: a 256-byte control table each; answers instruction frames."""

    def __init__(self, protocol: Protocol, ids: list[int]) -> None:
        self.protocol = protocol
        self.tables = {i: bytearray(256) for i in ids}
        self.corrupt = 0
        self.drop = 0
        self.replies = 0
        self.errors: dict[int, int] = {}  # status error byte per servo (e.g. 0x20 overload on STS)

    def set_position(self, servo_id: int, value: int) -> None:
        p = self.protocol
        self.tables[servo_id][p.position_address : p.position_address + p.position_size] = p.encode_position(value)

    def _addr(self, params: bytes, wide: bool) -> tuple[int, int, bytes]:
        if wide:  # Protocol 2.0: 2-byte address and length
            return int.from_bytes(params[0:2], "little"), int.from_bytes(params[2:4], "little"), params[4:]
        return params[0], params[1], params[2:]

    def handle(self, frame: Frame) -> list[bytes]:
        if not frame.ok:
            return []  # real servos ignore packets with a bad checksum
        p, wide = self.protocol, isinstance(self.protocol, Dynamixel2)
        if frame.code == SYNC_READ and frame.id == 0xFE:
            address, size, ids = self._addr(frame.params, wide)
            return [
                p.status(i, self.errors.get(i, 0), bytes(self.tables[i][address : address + size]))
                for i in ids
                if i in self.tables
            ]
        if frame.id not in self.tables:
            return []
        table = self.tables[frame.id]
        if frame.code == PING:
            return [p.status(frame.id, 0, b"\x06\x04\x26" if wide else b"")]
        if frame.code == READ:
            address, size, _ = self._addr(frame.params, wide)
            return [p.status(frame.id, 0, bytes(table[address : address + size]))]
        if frame.code == WRITE:
            address = int.from_bytes(frame.params[:2], "little") if wide else frame.params[0]
            data = frame.params[2:] if wide else frame.params[1:]
            table[address : address + len(data)] = data
            return [p.status(frame.id, 0)]
        return [p.status(frame.id, 0x02)]  # instruction error

    def faults(self, replies: list[bytes]) -> list[bytes]:
        out = []
        for reply in replies:
            self.replies += 1
            if self.drop > 0:
                self.drop -= 1
                continue
            if self.corrupt > 0:
                self.corrupt -= 1
                reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
            out.append(reply)
        return out


class PtyBus:
    """The emulator behind a pty whose slave is reachable through a stable symlink."""

    def __init__(self, emulator: ServoEmulator, link: Path, baud: int = 0, return_delay_us: float = 0.0) -> None:
        self.emu, self.link = emulator, link
        self.byte_s = 10.0 / baud if baud > 0 else 0.0  # 8N1: 10 bits a byte on the wire; 0: instant
        self.return_delay_s = return_delay_us * 1e-6
        self.master = self.slave = -1
        self.buf = bytearray()

    def connect(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo or line editing: bytes pass untouched
        with replacing(self.link) as tmp:
            tmp.symlink_to(os.ttyname(self.slave))
        self.buf.clear()

    def disconnect(self) -> None:
        self.link.unlink(missing_ok=True)
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1

    def pump(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self.buf += data
        self._wire(len(data))
        while True:
            frame, used = self.emu.protocol.cut(self.buf)
            del self.buf[:used]
            if frame is None:
                return
            for reply in self.emu.faults(self.emu.handle(frame)):
                time.sleep(self.return_delay_s)  # each servo waits its Return Delay Time before answering
                self._wire(len(reply))
                os.write(self.master, reply)

    def _wire(self, n: int) -> None:
        if self.byte_s:
            time.sleep(n * self.byte_s)  # the time these bytes would take at the bus's baud rate


def command(bus: PtyBus, line: str) -> bool:
    words = line.split()
    if not words:
        return True
    op, args = words[0], [int(w) for w in words[1:]]
    if op == "pos":
        bus.emu.set_position(args[0], args[1])
    elif op == "error":
        bus.emu.errors[args[0]] = args[1]
    elif op == "corrupt":
        bus.emu.corrupt = args[0]
    elif op == "drop":
        bus.emu.drop = args[0]
    elif op == "disconnect":
        bus.disconnect()
    elif op == "connect":
        bus.connect()
    elif op == "quit":
        return False
    else:
        raise ValueError(f"unknown command {op!r}")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", default="feetech", help="dynamixel | feetech | feetech_scs")
    ap.add_argument("--ids", default="1,2", help="comma-separated servo ids")
    ap.add_argument("--positions", default="", help="initial raw positions, comma-separated (default 2048)")
    ap.add_argument("--link", required=True, help="symlink to create for the pty slave")
    ap.add_argument("--sweep", action="store_true", help="move every servo along a slow sine")
    ap.add_argument("--baud", type=int, default=0, help="emulate the wire time at this baud rate (0: instant)")
    ap.add_argument("--return-delay-us", type=float, default=0.0, help="each servo's Return Delay Time")
    args = ap.parse_args(argv)
    ids = [int(x) for x in args.ids.split(",")]
    positions = [int(x) for x in args.positions.split(",")] if args.positions else [2048] * len(ids)
    emu = ServoEmulator(make_protocol(args.protocol), ids)
    for i, v in zip(ids, positions, strict=True):
        emu.set_position(i, v)
    bus = PtyBus(emu, Path(args.link), args.baud, args.return_delay_us)
    bus.connect()
    print(f"ready {args.link}", flush=True)
    stdin_open, t0 = True, time.monotonic()
    try:
        while True:
            fds = ([sys.stdin.fileno()] if stdin_open else []) + ([bus.master] if bus.master >= 0 else [])
            readable, _, _ = select.select(fds, [], [], 0.01)
            if args.sweep:
                t = time.monotonic() - t0
                for k, i in enumerate(ids):
                    emu.set_position(i, int(2048 + 800 * math.sin(0.5 * t + k)))
            if bus.master in readable:
                bus.pump()
            if sys.stdin.fileno() in readable:
                line = sys.stdin.readline()
                if not line:
                    stdin_open = False  # no controller: keep serving until killed
                    continue
                try:
                    if not command(bus, line):
                        break
                    print(f"ok {line.strip()}", flush=True)
                except (ValueError, IndexError) as exc:
                    print(f"error {line.strip()}: {exc}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        bus.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

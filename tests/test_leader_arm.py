"""Leader arm: wire formats, calibration, and the reader and node against the servo emulator in its own
process over a pseudo-terminal (both protocols, checksum errors, dropped replies, a vanished bus)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT

from hiwm.comm import create_node, new_message
from hiwm.comm.qos import KEEP_ALL
from hiwm.leader.bus import LeaderArmReader
from hiwm.leader.calibration import CalibrationError, load_calibration, parse_calibration
from hiwm.leader.mapping import build_action_map
from hiwm.leader.protocol import PING, Dynamixel2, Feetech, crc16

IDS = [1, 2, 3]


class Emulator:
    """The emulator process, driven line by line on stdin (each command acknowledged on stdout)."""

    def __init__(self, protocol: str, link: Path, positions: list[int], ids: list[int] = IDS) -> None:
        self.link = link
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hiwm.leader.emulator", "--protocol", protocol, "--ids", ",".join(map(str, ids)),
             "--positions", ",".join(map(str, positions)), "--link", str(link)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stdout.readline().startswith("ready"), "emulator did not start"

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == f"ok {line}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def emulator(tmp_path):
    started: list[Emulator] = []

    def start(protocol: str, positions: list[int], ids: list[int] = IDS) -> Emulator:
        started.append(Emulator(protocol, tmp_path / "leader_bus", positions, ids))
        return started[-1]

    yield start
    for emu in started:
        emu.stop()


def calibration_doc(protocol: str, port: str) -> dict:
    return {
        "protocol": protocol,
        "port": port,
        "joints": [
            {"name": "pan", "id": 1, "homing": 2048, "direction": 1, "range": [0, 4095]},
            {"name": "lift", "id": 2, "homing": 2048, "direction": -1, "range": [0, 4095]},
            {"name": "elbow", "id": 3, "homing": 1000, "direction": 1, "range": [500, 1500]},
        ],
    }


def test_wire_formats_match_the_specs():
    # Robotis' Protocol 2.0 ping example and the CRC-16/BUYPASS check value.
    assert Dynamixel2().instruction(1, PING).hex() == "fffffd0001030001194e"
    assert crc16(b"123456789") == 0xFEE8
    # Feetech ping of id 1: checksum = ~(1 + 2 + 1).
    assert Feetech().instruction(1, PING).hex() == "ffff010201fb"
    dxl = Dynamixel2()
    packet = dxl.instruction(7, 0x03, b"\xff\xff\xfd\x10")  # needs byte stuffing
    assert b"\xff\xff\xfd\xfd" in packet
    frame, used = dxl.cut(b"\x00\x01" + packet + b"\xff")
    assert (
        frame.ok and (frame.id, frame.code, frame.params) == (7, 0x03, b"\xff\xff\xfd\x10") and used == 2 + len(packet)
    )
    broken = packet[:-1] + bytes([packet[-1] ^ 1])
    assert not dxl.cut(broken)[0].ok
    junk = b"\xff\xff\xfd\x00\x01\xff\xff"  # a header with an absurd length: skipped, the stream resyncs
    buf = bytearray(junk + packet)
    frame, used = dxl.cut(buf)
    while frame is None and used:
        del buf[:used]
        frame, used = dxl.cut(buf)
    assert frame is not None and frame.ok and frame.id == 7
    sts = Feetech()
    for value in (0, 4095, -300):
        assert sts.decode_position(sts.encode_position(value)) == value
    assert sts.encode_position(-1) == b"\x01\x80"  # sign-magnitude, bit 15
    assert Feetech(big_endian=True).encode_position(0x0102) == b"\x01\x02"
    assert dxl.cut(dxl.status(3, 0, dxl.encode_position(-5)))[0].params == (-5).to_bytes(4, "little", signed=True)


def test_calibration_yaml_and_action_maps(tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text(yaml.safe_dump(calibration_doc("feetech", "/dev/null")))
    cal = load_calibration(path)
    assert cal.names == ["pan", "lift", "elbow"] and cal.ids == IDS
    q = cal.to_radians({1: 2048 + 512, 2: 2048 + 512, 3: 2000})
    np.testing.assert_allclose(q, [math.pi / 4, -math.pi / 4, 500 * 2 * math.pi / 4096])  # elbow clamped to range
    action = build_action_map(cal)(q)  # default: first two joints -> Push-T x, y
    np.testing.assert_allclose(action, [512.0, 0.0], atol=1e-3)
    for root in ("config/leader/so101_pusht.yaml", "config/leader/koch_fk_pusht.yaml"):
        shipped = load_calibration(ROOT / root)
        amap = build_action_map(shipped)
        home = amap(np.zeros(len(shipped.joints)))
        assert amap.dim == 2 and np.all((home >= 0) & (home <= 512))
    fk = build_action_map(load_calibration(ROOT / "config/leader/koch_fk_pusht.yaml"))
    np.testing.assert_allclose(fk(np.array([0.0, 0.0])), [0.21 * 1280, 256.0])
    c, sn = math.cos(math.pi / 6), math.sin(math.pi / 6)
    np.testing.assert_allclose(fk(np.array([math.pi / 6, 0.0])), [0.21 * c * 1280, 256 + 0.21 * sn * 1280])
    np.testing.assert_allclose(fk(np.array([math.pi / 2, 0.0])), [0.0, 512.0], atol=1e-6)  # clipped to the box
    for bad, match in [
        ({"protocol": "can", "joints": []}, "protocol"),
        ({**calibration_doc("feetech", ""), "joints": [{"name": "a", "id": 1}]}, "homing"),
        (
            {**calibration_doc("feetech", ""), "joints": [{"name": "a", "id": 1, "homing": 0, "direction": 2}]},
            "direction",
        ),
        ({**calibration_doc("feetech", ""), "color": 1}, "unknown"),
    ]:
        with pytest.raises(CalibrationError, match=match):
            parse_calibration(bad)
    with pytest.raises(CalibrationError, match="unknown joint"):
        build_action_map(
            parse_calibration({**calibration_doc("feetech", ""), "action": {"joint_map": [{"joint": "x", "axis": 0}]}})
        )
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "missing.yaml")


def test_the_default_action_map_is_the_task_leader_map(tmp_path):
    """Without an action section a calibration drives its task's leader-arm map within the task's limits:
    by joint name, else (names the map does not know) by position."""
    from hiwm.leader.mapping import default_section
    from hiwm.tasks import DEFAULT_TASK, get_task

    pusht = get_task("pusht")
    cal = parse_calibration(calibration_doc("feetech", "/dev/null"))  # joints pan, lift, elbow
    assert default_section(cal) == default_section(cal, DEFAULT_TASK)
    section = default_section(cal, "pusht")
    assert section["task"] == "pusht"
    assert [(m["joint"], m["action"], m["scale"], m["offset"]) for m in section["joint_map"]] == [
        (joint, j.action, j.scale, j.offset) for joint, j in zip(("pan", "lift"), pusht.leader_arm.joints, strict=True)
    ]
    amap = build_action_map(cal, "pusht")
    np.testing.assert_allclose((amap.low, amap.high), (pusht.action.low, pusht.action.high))
    np.testing.assert_allclose(amap(np.array([0.1, -0.2, 1.0])), [256 + 325.95 * 0.1, 256 - 325.95 * 0.2])
    # named as the task's map names them: matched by name, in any order
    doc = calibration_doc("feetech", "/dev/null")
    doc["joints"][0]["name"], doc["joints"][1]["name"] = "shoulder_lift", "shoulder_pan"
    np.testing.assert_allclose(build_action_map(parse_calibration(doc))(np.array([0.1, -0.2, 0.0])),
                               [256 - 325.95 * 0.2, 256 + 325.95 * 0.1])  # fmt: skip
    doc["joints"][0]["name"] = "wrist"  # one of the map's joints, not the other: which is which is unknown
    with pytest.raises(CalibrationError, match="shoulder_lift"):
        build_action_map(parse_calibration(doc))
    # the arm task's map drives its six joints one to one, clipped to its limits
    arm = get_task("so101_pick")
    with pytest.raises(CalibrationError, match="drives 6 joints"):
        build_action_map(cal, "so101_pick")
    doc = arm_calibration("/dev/null")
    del doc["action"]
    amap = build_action_map(parse_calibration(doc), "so101_pick")
    np.testing.assert_allclose((amap.low, amap.high), (arm.action.low, arm.action.high))
    q = np.array([0.3, -0.4, 1.0, -1.2, 2.0, 0.8])
    np.testing.assert_allclose(amap(q), q)
    # a section without a task or limits: the map's task gives both (its action names too)
    doc = {**calibration_doc("feetech", ""), "action": {"joint_map": [{"joint": "pan", "action": "agent_y"}]}}
    amap = build_action_map(parse_calibration(doc))
    assert amap.dim == 2 and amap.entries[0].axis == 1


@pytest.mark.parametrize("protocol", ["dynamixel", "feetech"])
def test_vendor_sdks_read_and_write_the_emulator(protocol, emulator):
    """Robotis' and Feetech's own SDKs against the emulator: its wire format is the servos' wire format."""
    sdk = pytest.importorskip("dynamixel_sdk" if protocol == "dynamixel" else "scservo_sdk")
    emu = emulator(protocol, [100, 2048, 3000])
    port = sdk.PortHandler(str(emu.link))
    assert port.openPort() and port.setBaudRate(1_000_000)
    try:
        if protocol == "dynamixel":
            packets, address, size = sdk.PacketHandler(2.0), 132, 4
            read, write = packets.read4ByteTxRx, packets.write4ByteTxRx
        else:
            packets, address, size = sdk.PacketHandler(0), 56, 2  # 0: STS (little-endian)
            read, write = packets.read2ByteTxRx, packets.write2ByteTxRx
        assert packets.ping(port, 1)[1] == sdk.COMM_SUCCESS
        group = sdk.GroupSyncRead(port, packets, address, size)
        for i in IDS:
            group.addParam(i)
        assert group.txRxPacket() == sdk.COMM_SUCCESS
        assert [group.getData(i, address, size) for i in IDS] == [100, 2048, 3000]
        assert write(port, 2, address, 1234)[0] == sdk.COMM_SUCCESS
        assert read(port, 2, address)[:2] == (1234, sdk.COMM_SUCCESS)
    finally:
        port.closePort()
    # Our reader sees what the vendor SDK wrote.
    reader = LeaderArmReader(parse_calibration(calibration_doc(protocol, str(emu.link))), timeout_s=0.2)
    assert poll_until(reader) == {1: 100, 2: 1234, 3: 3000}
    reader.close()


def poll_until(reader: LeaderArmReader, timeout: float = 10.0) -> dict[int, int] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = reader.poll()
        if got is not None:
            return got
        time.sleep(0.01)
    return None


@pytest.mark.parametrize("protocol", ["feetech", "dynamixel"])
def test_reader_survives_checksum_errors_drops_and_a_vanished_bus(protocol, emulator, tmp_path):
    positions = [100, 2048, -30 if protocol == "dynamixel" else 4000]
    emu = emulator(protocol, positions)
    cal = parse_calibration(calibration_doc(protocol, str(emu.link)))
    reader = LeaderArmReader(
        cal, timeout_s=0.2, retries=2, max_timeouts=3, backoff_s=(0.02, 0.2)
    )  # slack for a busy CI
    assert poll_until(reader) == dict(zip(IDS, positions, strict=True))
    assert reader.connected

    emu.send("pos 2 3000")
    assert reader.poll()[2] == 3000

    emu.send("corrupt 1")  # one corrupt reply: the read is retried and succeeds
    assert reader.poll() == {1: 100, 2: 3000, 3: positions[2]}
    assert reader.stats.checksum_errors == 1
    emu.send("corrupt 9")  # three bad reads in a row: this poll gives up, the next one reads again
    assert reader.poll() is None and reader.connected
    assert reader.stats.checksum_errors == 4
    assert reader.poll()[2] == 3000

    emu.send("error 2 32")  # an overloaded servo still reports its position, flagged in its status
    assert reader.poll()[2] == 3000 and reader.bus.servo_errors == {2: 32}
    emu.send("error 2 0")
    assert reader.poll() is not None and reader.bus.servo_errors == {}

    emu.send("drop 3")  # one read's replies lost: a counted timeout, still connected
    assert reader.poll() is None and reader.stats.timeouts == 1 and reader.connected
    assert reader.poll() is not None

    emu.send("disconnect")
    assert reader.poll() is None
    assert not reader.connected and "disconnected" in reader.last_error
    time.sleep(0.1)
    assert reader.poll() is None and "cannot open" in reader.last_error  # the link is gone
    emu.send("pos 1 1234")
    emu.send("connect")
    assert poll_until(reader) == {1: 1234, 2: 3000, 3: positions[2]}
    assert reader.connected and reader.stats.disconnects == 1 and reader.stats.reconnects == 1

    emu.send("drop 1000")  # servos powered off: the bus goes silent, then counts as disconnected
    for _ in range(3):
        assert reader.poll() is None
    assert not reader.connected and "check power" in reader.last_error
    emu.send("drop 0")
    assert poll_until(reader) is not None and reader.stats.reconnects == 2
    reader.close()


def test_node_publishes_joint_states_and_operator_actions_over_dds(emulator, procs, tmp_path):
    emu = emulator("feetech", [2048 + 256, 2048 - 256, 1000])
    cal_path = tmp_path / "cal.yaml"
    cal_path.write_text(yaml.safe_dump(calibration_doc("feetech", str(emu.link))))
    proc = procs.python(
        "hiwm.nodes.leader_arm",
        "--ros-args",
        "-r",
        "__ns:=/op",
        "-p",
        f"calibration:={cal_path}",
        "-p",
        "rate_hz:=60.0",
    )
    node = create_node("leader_test")
    states, actions = [], []
    node.create_subscription("sensor_msgs/msg/JointState", "/op/leader/joint_states", states.append)
    node.create_subscription("hiwm_msgs/msg/ActionChunk", "/op/operator/action", actions.append)
    try:
        assert node.spin_until(lambda: len(states) >= 5 and len(actions) >= 5, 20.0), procs.output(proc)
        assert len(states) > len(actions)  # joint states at rate_hz (60), actions at action_rate_hz (10)
        msg = states[-1]
        assert list(msg.name) == ["pan", "lift", "elbow"]
        np.testing.assert_allclose(msg.position, [math.pi / 8, math.pi / 8, 0.0], atol=1e-9)
        act = actions[-1]
        assert (act.source, act.horizon, act.action_dim) == (1, 1, 2)  # SOURCE_HUMAN
        np.testing.assert_allclose(act.data, [256 + 128, 256 + 128], atol=1e-2)

        emu.send("disconnect")  # the node logs a clear error and keeps running
        time.sleep(0.5)
        emu.send("pos 1 2048")
        emu.send("connect")
        n = len(states)
        assert node.spin_until(lambda: len(states) > n and abs(states[-1].position[0]) < 1e-9, 20.0), procs.output(proc)
        assert proc.poll() is None
        log = procs.output(proc)
        assert "disconnected" in log and "reconnected" in log
    finally:
        node.destroy()


def test_calibrate_records_homing_and_ranges_from_the_bus(emulator, tmp_path):
    emu = emulator("dynamixel", [2048, 1000, 3000])
    out = tmp_path / "recorded.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hiwm.cli.main", "leader", "calibrate", "--protocol", "dynamixel", "--port",
         str(emu.link), "--ids", "1,2,3", "--names", "pan,lift,elbow", "--directions", "1,-1,1", "--seconds", "2",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[1].startswith("homing recorded"), lines
        for line in ("pos 1 1500", "pos 1 2600", "pos 2 700", "pos 2 1100"):  # the operator sweeps two joints
            emu.send(line)
            time.sleep(0.1)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    cal = load_calibration(out)
    assert cal.protocol == "dynamixel" and cal.names == ["pan", "lift", "elbow"]
    assert [j.homing for j in cal.joints] == [2048, 1000, 3000]
    assert [j.range for j in cal.joints] == [(1500, 2600), (700, 1100), (3000, 3001)]  # elbow never moved
    assert [j.direction for j in cal.joints] == [1, -1, 1]
    assert build_action_map(cal).dim == 2  # the default Push-T joint map is written too


def test_node_without_calibration_exits_with_a_clear_error(procs, tmp_path):
    proc = procs.python("hiwm.nodes.leader_arm")
    assert proc.wait(30) == 2
    assert "calibration" in procs.output(proc)
    proc = procs.python("hiwm.nodes.leader_arm", "--ros-args", "-p", f"calibration:={tmp_path / 'none.yaml'}")
    assert proc.wait(30) == 2
    assert "cannot read calibration file" in procs.output(proc)


def arm_calibration(port: str) -> dict:
    """The shipped SO-101 arm calibration (joint to joint onto so101_pick) on the emulator's bus."""
    doc = yaml.safe_load((ROOT / "config/leader/so101_arm.yaml").read_text())
    return {**doc, "port": port}


def test_arm_joint_map_is_identity_onto_the_task_clipped_to_its_limits(tmp_path):
    from hiwm.tasks import get_task

    space = get_task("so101_pick").action
    cal = parse_calibration(arm_calibration("/dev/null"))
    amap = build_action_map(cal)
    assert amap.dim == 6 and cal.names == list(space.names)
    np.testing.assert_allclose((amap.low, amap.high), (space.low, space.high))
    q = np.array([0.3, -0.4, 1.0, -1.2, 2.0, 0.8])
    np.testing.assert_allclose(amap(q), q)  # no kinematics in between: the same radians
    np.testing.assert_allclose(amap(np.full(6, 3.0)), space.high)  # clipped to the joint limits
    raw = {j.id: j.to_raw(a) for j, a in zip(cal.joints, q, strict=True)}
    np.testing.assert_allclose(amap(cal.to_radians(raw)), q, atol=2 * math.pi / 4096)  # one tick
    wrong = arm_calibration("")
    wrong["action"] = {**wrong["action"], "joint_map": [{"joint": "gripper", "action": "jaw"}]}
    with pytest.raises(CalibrationError, match="jaw"):
        build_action_map(parse_calibration(wrong))


def test_leader_drives_the_arm_joints_through_the_arbiter(emulator, procs, tmp_path):
    from hiwm.tasks import get_task

    space = get_task("so101_pick").action
    ids = [1, 2, 3, 4, 5, 6]
    cal = parse_calibration(arm_calibration("/dev/null"))
    pose = np.array([0.4, -0.3, 0.6, -0.5, 1.0, 0.9])  # rad, inside the task's limits
    emu = emulator("feetech", [j.to_raw(a) for j, a in zip(cal.joints, pose, strict=True)], ids)
    cal_path = tmp_path / "so101_arm.yaml"
    cal_path.write_text(yaml.safe_dump(arm_calibration(str(emu.link))))
    ros = ["--ros-args", "-r", "__ns:=/lead"]
    leader = procs.python("hiwm.nodes.leader_arm", *ros, "-p", f"calibration:={cal_path}")
    arbiter = procs.python("hiwm.nodes.arbiter", *ros, "-p", "task:=so101_pick", "-p", "initial_phase:=paused")
    node = create_node("leader_arm_test")
    actions, commands = [], []
    node.create_subscription("hiwm_msgs/msg/ActionChunk", "/lead/operator/action", actions.append, KEEP_ALL)
    node.create_subscription("hiwm_msgs/msg/ActionChunk", "/lead/robot/command", commands.append, KEEP_ALL)
    state = node.create_publisher("sensor_msgs/msg/JointState", "/lead/robot/state", KEEP_ALL)
    try:
        assert node.spin_until(lambda: len(actions) >= 2, 30.0), procs.output(leader)
        assert (actions[-1].action_dim, actions[-1].horizon) == (6, 1)
        expected = np.array(cal.to_radians({i: j.to_raw(a) for i, j, a in zip(ids, cal.joints, pose, strict=True)}))
        np.testing.assert_allclose(actions[-1].data, expected, atol=1e-5)
        assert not commands  # paused: the operator is ignored
        # The follower reports where it is (by joint name, in another order) before the operator takes over.
        order = [5, 4, 3, 2, 1, 0]
        here = np.zeros(6)
        node.spin_until(lambda: state.matched_count() > 0, 10.0)
        state.publish(
            new_message(
                "sensor_msgs/msg/JointState", header=node.header(), name=[cal.names[i] for i in order],
                position=here[order], velocity=np.zeros(0), effort=np.zeros(0),
            )
        )  # fmt: skip
        time.sleep(0.5)
        take_over = node.create_client("hiwm_msgs/srv/SetPhase", "/lead/arbiter/set_phase")
        assert take_over.wait_for_service(20.0)
        assert take_over.call(new_message("hiwm_msgs/srv/SetPhase_Request", phase=2, reason="test")).success
        assert node.spin_until(lambda: len(commands) >= 8, 30.0), procs.output(arbiter)
        rows = np.array([c.data for c in commands])
        assert all((c.source, c.action_dim) == (1, 6) for c in commands)  # HUMAN, the arm's joints
        span = np.asarray(space.high) - np.asarray(space.low)
        steps = np.linalg.norm(np.diff(np.vstack([here, rows]), axis=0) / span, axis=1)
        assert np.all(steps[:5] <= 0.05 + 1e-6)  # the hand-over is rate-limited in joint space
        np.testing.assert_allclose(rows[-1], expected, atol=1e-5)  # then the leader's joints, one to one

        emu.send("pos 1 2048")  # the operator turns the leader's shoulder to zero
        assert node.spin_until(lambda: abs(commands[-1].data[0]) < 1e-6, 20.0), procs.output(leader)
        np.testing.assert_allclose(commands[-1].data[1:], expected[1:], atol=1e-5)
        assert leader.poll() is None and arbiter.poll() is None
    finally:
        node.destroy()

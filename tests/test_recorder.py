"""The recorder node beside a task's robot node (Push-T's, the SO-101 arm's), each in its own process over DDS."""

from __future__ import annotations

import json
import signal
import sys
import time

import numpy as np
import pytest

from hiwm.comm import create_node, new_message
from hiwm.comm.images import numpy_to_image
from hiwm.comm.qos import KEEP_ALL
from hiwm.data import LeRobotDataset, verify
from hiwm.data.bag import bag_topics
from hiwm.tasks import contract, get_task
from hiwm.tasks.pusht.expert import ScriptedExpert

NS = "/rec"
CAMERA = contract.camera_topics(get_task("pusht"))["top"]  # the Push-T camera's topic
NEAR_GOAL = [100.0, 400.0, 256.0 + 25.0, 256.0 - 10.0, np.pi / 4 + 0.15]


class Driver:
    """Resets the robot and runs the scripted expert on its true state, one lockstep command at a time."""

    def __init__(self, ns: str = NS) -> None:
        self.node = create_node("recorder_test_driver")
        self.task_states: list = []
        self.statuses: list = []
        self.node.create_subscription(
            "sensor_msgs/msg/JointState", f"{ns}/task/state", self.task_states.append, KEEP_ALL
        )
        self.node.create_subscription("hiwm_msgs/msg/TaskStatus", f"{ns}/task/status", self.statuses.append, KEEP_ALL)
        self.command = self.node.create_publisher("hiwm_msgs/msg/ActionChunk", f"{ns}/robot/command", KEEP_ALL)
        self.image = self.node.create_publisher("sensor_msgs/msg/Image", f"{ns}/{CAMERA}", KEEP_ALL)
        self.reset_client = self.node.create_client("hiwm_msgs/srv/Reset", f"{ns}/robot/reset")
        self.stats_client = self.node.create_client("std_srvs/srv/Trigger", f"{ns}/recorder/stats")

    def reset(self, **fields) -> None:
        n = len(self.statuses)
        response = self.reset_client.call(new_message("hiwm_msgs/srv/Reset_Request", **fields), timeout=10.0)
        assert response.success, response.message
        assert self.node.spin_until(lambda: len(self.statuses) > n and len(self.task_states) > n, 10.0)

    def send(self, action) -> None:
        self.command.publish(
            new_message(
                "hiwm_msgs/msg/ActionChunk",
                header=self.node.header(),
                source=2,
                source_id="expert",
                horizon=1,
                action_dim=2,
                dt=0.1,
                data=np.asarray(action, dtype=np.float32),
            )
        )

    def run_expert(self, steps: int) -> int:
        """Up to ``steps`` expert steps, stopping at done; returns the steps taken."""
        expert = ScriptedExpert(seed=0)
        for k in range(steps):
            if self.statuses[-1].done:
                return k
            n = len(self.statuses)
            self.send(expert.act(np.asarray(self.task_states[-1].position)))
            assert self.node.spin_until(lambda n=n: len(self.statuses) > n and len(self.task_states) > n, 10.0)
        return steps

    def stats(self) -> dict:
        response = self.stats_client.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10.0)
        return json.loads(response.message)


@pytest.fixture
def graph(procs, tmp_path):
    robot = procs.python("hiwm.nodes.sim_robot", "--ros-args", "-r", f"__ns:={NS}", "-p", "clock:=lockstep")
    recorder = procs.python(
        "hiwm.nodes.recorder",
        "--ros-args",
        "-r",
        f"__ns:={NS}",
        "-p",
        f"dataset:={tmp_path / 'ds'}",
        "-p",
        f"bag:={tmp_path / 'bag'}",
    )
    driver = Driver(NS)
    assert driver.reset_client.wait_for_service(30.0), procs.output(robot)
    assert driver.stats_client.wait_for_service(30.0), procs.output(recorder)
    assert driver.node.spin_until(lambda: driver.command.matched_count() >= 2, 10.0)
    # the recorder's image reader matched ours; give it time to match the robot's writers too (a
    # loaded CI machine's discovery round can take a while, and the bag counts every message)
    assert driver.node.spin_until(lambda: driver.image.matched_count() >= 1, 10.0)
    time.sleep(2.0)
    yield driver, robot, recorder, tmp_path
    driver.node.destroy()


def test_recorder_saves_whole_episodes_and_a_bag(graph, procs):
    driver, robot, recorder, tmp = graph
    driver.reset(use_state=True, state=np.array(NEAR_GOAL))
    solved = driver.run_expert(150)
    assert driver.statuses[-1].done and driver.statuses[-1].success, "the expert did not finish near the goal"
    driver.reset(seed=5)
    assert driver.run_expert(12) == 12
    # bad input: a NaN command and an image of the wrong size are refused; the recorder keeps going
    driver.send([float("nan"), 1.0])
    driver.image.publish(numpy_to_image(np.zeros((10, 10, 3), np.uint8), driver.node.header()))
    driver.reset(seed=6)  # cuts the seed-5 episode short: kept (keep_truncated)
    driver.run_expert(8)  # unfinished at shutdown: dropped
    assert driver.node.spin_until(lambda: driver.stats()["episodes"] == 2, 10.0), driver.stats()
    # the recorder may lag the robot on a loaded machine: stop it once it has every step sent (what
    # is still in flight at SIGTERM is lost, as with any DDS reader)
    images, commands = (solved + 1) + 13 + 9, solved + 12 + 8

    def caught_up() -> bool:
        counts = driver.stats()["bag_messages"]
        return counts.get(f"/rec/{CAMERA}", 0) >= images and counts.get("/rec/robot/command", 0) >= commands

    assert driver.node.spin_until(caught_up, 20.0), driver.stats()
    recorder.send_signal(signal.SIGTERM)
    assert recorder.wait(15) == 0, procs.output(recorder)
    log = procs.output(recorder)
    assert "refused message" in log and "non-finite" in log and "expected 96x96" in log, log
    assert "unfinished at shutdown" in log

    ds = LeRobotDataset(tmp / "ds")
    assert ds.num_episodes == 2 and verify(tmp / "ds").ok
    first, second = ds.episode(0), ds.episode(1)
    assert len(first["action"]) == solved and first["next.done"][-1] and first["next.success"][-1]
    np.testing.assert_allclose(first["observation.environment_state"][0], NEAR_GOAL, atol=1e-3)
    assert len(second["action"]) == 12 and not second["next.done"].any()
    assert second["observation.image"].shape == (12, 96, 96, 3) and not second["intervention"].any()
    # the bag is complete after a clean stop, and holds every step the recorder accepted
    meta = bag_topics(tmp / "bag")["topics"]
    assert meta[f"/rec/{CAMERA}"]["count"] == images
    assert meta["/rec/robot/command"]["count"] == commands
    assert robot.poll() is None


def test_recorder_killed_mid_episode_keeps_a_valid_dataset(graph):
    driver, _, recorder, tmp = graph
    driver.reset(use_state=True, state=np.array(NEAR_GOAL))
    solved = driver.run_expert(150)
    driver.reset(seed=8)
    driver.run_expert(10)
    assert driver.node.spin_until(lambda: driver.stats()["episodes"] == 1, 10.0)
    recorder.send_signal(signal.SIGKILL)
    recorder.wait(10)
    report = verify(tmp / "ds")
    assert report.ok and report.episodes == 1 and report.frames == solved, report.text()


def test_robot_and_recorder_under_hiwm_launch(procs, tmp_path):
    ns = "/launched"
    launcher = procs.start(
        sys.executable, "-m", "hiwm.cli.main", "launch", "sim", f"namespace:={ns}", "clock:=lockstep",
        "record:=true", f"dataset:={tmp_path / 'ds'}", f"bag:={tmp_path / 'bag'}", name="launch",
    )  # fmt: skip
    driver = Driver(ns)
    try:
        assert driver.reset_client.wait_for_service(30.0), procs.output(launcher)
        assert driver.stats_client.wait_for_service(30.0), procs.output(launcher)
        assert driver.node.spin_until(lambda: driver.command.matched_count() >= 2, 10.0)
        time.sleep(0.5)
        driver.reset(seed=1)
        assert driver.run_expert(5) == 5  # every command answered by a step (lockstep)
        driver.reset(seed=2)
        assert driver.node.spin_until(lambda: driver.stats()["episodes"] == 1, 10.0), procs.output(launcher)
    finally:
        driver.node.destroy()
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(20) == 0, procs.output(launcher)
    assert LeRobotDataset(tmp_path / "ds").num_frames == 5
    assert bag_topics(tmp_path / "bag")["topics"][f"{ns}/robot/command"]["count"] == 5


@pytest.mark.probe("recorder started after a real-time robot is already stepping (its first steps never arrive)",
                   "the episode is kept from the first step received, not dropped as a gap")  # fmt: skip
def test_recorder_keeps_an_episode_whose_first_steps_it_missed(procs, tmp_path):
    ns = "/late"
    robot = procs.python("hiwm.nodes.sim_robot", "--ros-args", "-r", f"__ns:={ns}", "-p", "clock:=realtime")
    driver = Driver(ns)
    try:
        assert driver.reset_client.wait_for_service(30.0), procs.output(robot)
        # the robot ticks on its own: let it run some steps before anyone records
        assert driver.node.spin_until(lambda: driver.statuses and driver.statuses[-1].step >= 8, 30.0)
        recorder = procs.python(
            "hiwm.nodes.recorder", "--ros-args", "-r", f"__ns:={ns}", "-p", f"dataset:={tmp_path / 'ds'}"
        )
        assert driver.stats_client.wait_for_service(30.0), procs.output(recorder)
        assert driver.node.spin_until(lambda: driver.command.matched_count() >= 2, 10.0)
        first_step = driver.statuses[-1].step
        expert = ScriptedExpert(seed=0)
        for _ in range(20):  # about 2 s of commands at the control rate
            driver.send(expert.act(np.asarray(driver.task_states[-1].position)))
            driver.node.spin_until(lambda: False, 0.1)
        driver.reset(seed=5)  # ends the first episode (cut short: kept)
        assert driver.node.spin_until(lambda: driver.stats()["episodes"] == 1, 15.0), (
            driver.stats(), procs.output(recorder))  # fmt: skip
        assert driver.stats()["dropped"] == 0
        assert "recorded from there" in procs.output(recorder)
        recorder.send_signal(signal.SIGTERM)
        assert recorder.wait(15) == 0, procs.output(recorder)
        ds = LeRobotDataset(tmp_path / "ds")
        assert ds.num_episodes == 1 and ds.num_frames >= 5 and verify(tmp_path / "ds").ok
        assert first_step > 0 and robot.poll() is None
    finally:
        driver.node.destroy()


def test_recorder_records_the_arm_task_from_its_topic_contract(procs, tmp_path):
    """The so101_pick contract (one camera on realsense-ros's topic, six joints, a 13-entry state, lift as
    the metric), published from its world's messages: one video per camera and the task's names."""
    from hiwm.data.lerobot import SOURCE_SCRIPTED, read_tasks
    from hiwm.tasks.world import camera_key, load_world

    ns, task = "/arm_rec", get_task("so101_pick")
    world = load_world(task)
    recorder = procs.python(
        "hiwm.nodes.recorder", "--ros-args", "-r", f"__ns:={ns}", "-p", f"task:={task.name}",
        "-p", f"dataset:={tmp_path / 'ds'}", "-p", f"bag:={tmp_path / 'bag'}",
    )  # fmt: skip
    node = create_node("arm_contract_publisher")
    try:
        pubs = {t: node.create_publisher(kind, f"{ns}/{t}", KEEP_ALL) for t, kind in contract.topics(task).items()}
        stats = node.create_client("std_srvs/srv/Trigger", f"{ns}/recorder/stats")
        assert stats.wait_for_service(30.0), procs.output(recorder)
        assert node.spin_until(lambda: all(p.matched_count() >= 1 for p in pubs.values()), 10.0)
        time.sleep(0.5)
        env, expert = world.make_env(), world.make_expert(0.0, seed=2)
        obs = env.reset(seed=2)
        start, dt, steps = time.time_ns(), 100_000_000, 6
        seen, actions, best = [obs], [], world.metric(obs)

        def publish(o, t: int, done: bool) -> None:
            for topic, msg in world.observation_messages(o, "arm-ep", start + t * dt, done, best).items():
                pubs[topic].publish(msg)

        publish(obs, 0, False)
        for t in range(steps):
            action = expert.act(world.state(obs))
            pubs[contract.ROBOT_COMMAND].publish(world.action_chunk(action, start + t * dt + dt // 2, SOURCE_SCRIPTED))
            obs = env.step(action)
            best = max(best, world.metric(obs))
            publish(obs, t + 1, t == steps - 1)  # the episode ends here
            actions.append(action)
            seen.append(obs)
            node.spin_until(lambda: False, 0.02)

        def saved() -> int:
            reply = stats.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10.0)
            return json.loads(reply.message)["episodes"]

        assert node.spin_until(lambda: saved() == 1, 15.0), procs.output(recorder)
        env.close()
    finally:
        node.destroy()
    recorder.send_signal(signal.SIGTERM)
    assert recorder.wait(15) == 0, procs.output(recorder)

    ds = LeRobotDataset(tmp_path / "ds")
    assert verify(tmp_path / "ds").ok and ds.info["robot_type"] == "so101_pick"
    want = world.features()
    assert {k: ds.features[k]["shape"] for k in want} == {k: f["shape"] for k, f in want.items()}
    assert ds.features["observation.state"]["names"] == list(task.observations.proprio)
    ep = ds.episode(0)
    assert ep[camera_key("front")].shape == (steps, 128, 128, 3)
    np.testing.assert_allclose(ep["action"], np.asarray(actions, np.float32), atol=1e-6)
    np.testing.assert_allclose(ep["observation.state"], [world.proprio(o) for o in seen[:-1]], atol=1e-5)
    np.testing.assert_allclose(ep["observation.environment_state"], [world.state(o) for o in seen[:-1]], atol=1e-5)
    np.testing.assert_allclose(ep["next.lift"], [world.metric(o) for o in seen[1:]], atol=1e-6)
    assert ep["next.done"].tolist() == [False] * (steps - 1) + [True]
    assert read_tasks(tmp_path / "ds") == [world.instruction]
    meta = bag_topics(tmp_path / "bag")["topics"]
    assert meta[f"{ns}/camera/front/color/image_raw"]["count"] == steps + 1
    assert meta[f"{ns}/robot/command"]["count"] == steps

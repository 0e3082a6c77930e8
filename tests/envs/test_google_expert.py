"""The Google-robot scripted expert: its geometry and phase logic against a stand-in simulator (pure numpy), and one
real pick-coke-can episode in the SimplerEnv interpreter."""

from __future__ import annotations

import json
import math
import os
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest

from envs.action_adapters import (
    GoogleRobotAdapter,
    euler_to_axis_angle,
    euler_to_quaternion,
)
from envs.geometry import matrix_to_euler, quaternion_multiply, quaternion_to_matrix, rotation_angle, rotation_step
from envs.google_expert import (
    APPROACH_CLEARANCE,
    LIFT,
    MIN_APPROACH,
    PLACE_CLEARANCE,
    REACHED,
    REGRASP_STEPS,
    GoogleScriptedExpert,
    GripperClock,
    approach_point,
    capped,
    grasp_point,
    grasp_rotation,
    object_geometry,
    place_point,
)
from envs.google_expert_episodes import parse_range, parse_shard
from tests.conftest import REPO


def orthonormal(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    return u @ vt


# The robot's TCP rotation at reset (base frame, as measured to 3 digits): approach about 18 degrees off vertical.
START = orthonormal(np.array([[-0.219, -0.932, 0.289], [-0.953, 0.269, 0.143], [-0.211, -0.244, -0.947]]))
CAN_BOX = (np.array([-0.033, -0.0615, -0.033]), np.array([0.033, 0.0615, 0.033]))  # opened_coke_can, long axis y


def rotation_from_axis_angle(vector: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(vector))
    if angle < 1e-12:
        return np.eye(3)
    half = angle / 2
    return quaternion_to_matrix(np.array([math.cos(half), *(np.sin(half) * vector / angle)]))


def test_euler_angles_round_trip_through_the_adapters_convention():
    rng = np.random.default_rng(0)
    for _ in range(300):
        rpy = rng.uniform([-3, -1.5, -3], [3, 1.5, 3])
        rotation = quaternion_to_matrix(euler_to_quaternion(*rpy))
        np.testing.assert_allclose(quaternion_to_matrix(euler_to_quaternion(*matrix_to_euler(rotation))), rotation,
                                   atol=1e-9)


def test_a_rotation_step_through_the_adapter_lands_on_the_goal_or_turns_by_the_cap():
    """The controller applies the adapter's axis-angle on the left of the TCP rotation (frame "ee_align")."""
    goal = quaternion_to_matrix(euler_to_quaternion(0.1, -0.2, 0.3)) @ START
    step = rotation_step(START, goal, max_angle=1.0)
    np.testing.assert_allclose(rotation_from_axis_angle(euler_to_axis_angle(step)) @ START, goal, atol=1e-9)
    far = quaternion_to_matrix(euler_to_quaternion(0.0, 0.0, 1.2)) @ START
    turned = rotation_from_axis_angle(euler_to_axis_angle(rotation_step(START, far, max_angle=0.35))) @ START
    assert rotation_angle(turned @ START.T) == pytest.approx(0.35)
    assert rotation_angle(far @ turned.T) == pytest.approx(1.2 - 0.35)


def test_capped_keeps_the_direction():
    np.testing.assert_allclose(capped(np.array([0.3, 0.4, 0.0]), 0.1), [0.06, 0.08, 0.0])
    np.testing.assert_allclose(capped(np.array([0.01, 0.0, 0.0]), 0.1), [0.01, 0.0, 0.0])


@pytest.mark.parametrize("closing", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.6, -0.8, 0.0), (-0.8, -0.6, 0.0)])
def test_the_grasp_rotation_rolls_about_the_approach_axis_until_the_fingers_close_along_the_side(closing):
    closing = np.array(closing)
    rotation = grasp_rotation(closing, START)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(rotation[:, 2], START[:, 2], atol=1e-9)  # the tilt is kept
    y = rotation[:, 1]
    assert abs(y[0] * closing[1] - y[1] * closing[0]) < 1e-9  # seen from above, y lies along closing
    assert rotation_angle(rotation @ START.T) <= math.pi / 2 + 1e-9  # the shorter of the two turns


def test_object_geometry_closes_across_a_lying_can_whichever_way_it_lies():
    along_y = object_geometry(np.array([0.6, 0.0, 0.835]), np.eye(3), *CAN_BOX, START[:, 1])
    np.testing.assert_allclose(np.abs(along_y.closing), [1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(along_y.low, [0.567, -0.0615, 0.802])
    np.testing.assert_allclose(along_y.high, [0.633, 0.0615, 0.868])
    turned = quaternion_to_matrix(euler_to_quaternion(0.0, 0.0, math.pi / 2))  # SIMPLER's "laid_vertically"
    along_x = object_geometry(np.array([0.6, 0.0, 0.835]), turned, *CAN_BOX, START[:, 1])
    np.testing.assert_allclose(np.abs(along_x.closing), [0.0, 1.0, 0.0], atol=1e-9)


def test_a_standing_can_is_closed_on_from_the_side_the_wrist_already_faces():
    standing = quaternion_to_matrix(euler_to_quaternion(math.pi / 2, 0.0, 0.0))  # SIMPLER's "upright"
    for preferred in (np.array([0.9, 0.3, 0.1]), np.array([0.2, -0.9, 0.0])):
        geometry = object_geometry(np.array([0.6, 0.0, 0.87]), standing, *CAN_BOX, preferred)
        axis = int(np.argmax(np.abs(preferred[:2])))
        assert abs(geometry.closing[axis]) == pytest.approx(1.0)
        assert geometry.high[2] - geometry.low[2] == pytest.approx(0.123)


def test_the_grasp_point_is_the_box_centre_unless_the_nails_would_touch_the_table():
    sponge = object_geometry(np.array([0.6, 0.0, 0.81]), np.eye(3), np.array([-0.035, -0.05, -0.01]),
                             np.array([0.035, 0.05, 0.01]), START[:, 1])
    np.testing.assert_allclose(grasp_point(sponge), [0.6, 0.0, 0.815])
    can = object_geometry(np.array([0.6, 0.0, 0.835]), np.eye(3), *CAN_BOX, START[:, 1])
    np.testing.assert_allclose(grasp_point(can), [0.6, 0.0, 0.835])


def test_the_descent_starts_on_the_approach_axis_above_the_object():
    grasp, approach = np.array([0.6, 0.0, 0.835]), START[:, 2]
    start = approach_point(grasp, top=0.87, approach=approach)
    assert start[2] == pytest.approx(0.87 + APPROACH_CLEARANCE)
    np.testing.assert_allclose(np.cross(start - grasp, approach), 0.0, atol=1e-12)  # along the fingers' length
    low = approach_point(grasp, top=0.80, approach=approach)  # a flat object: still MIN_APPROACH above the grasp
    assert low[2] == pytest.approx(0.835 + MIN_APPROACH)


def test_the_place_point_is_on_the_sources_side_of_the_target_unless_another_object_is_there():
    target, source = np.array([0.5, 0.0]), np.array([0.5, 0.3])
    np.testing.assert_allclose(place_point(target, source, [np.array([0.8, 0.0])], 0.12), [0.5, 0.12], atol=1e-12)
    crowded = place_point(target, source, [np.array([0.5, 0.2])], 0.12)
    assert np.linalg.norm(crowded - target) == pytest.approx(0.12)
    assert np.linalg.norm(crowded - np.array([0.5, 0.2])) >= 0.17


def test_the_gripper_clock_waits_for_the_adapters_sticky_command_to_end():
    """Replays the expert's gripper values through the real adapter: each change acts when the clock says."""
    clock, adapter = GripperClock(sticky_repeat=10), GoogleRobotAdapter()
    commands = []
    for step in range(40):
        if step == 5:
            clock.set(0.0, step)  # close
        if step == 8:
            clock.set(1.0, step)  # open again, before the close's sticky repeat is over
        commands.append(adapter(np.array([0, 0, 0, 0, 0, 0, clock.value]))[6])
    assert commands[5:15] == [1.0] * 10 and commands[15:25] == [-1.0] * 10
    assert clock.changed_at == 15 and not clock.settled(18) and clock.settled(19)


def test_episode_ranges_and_shards():
    assert parse_range("0:300:13") == range(0, 300, 13) and parse_range("5:7") == range(5, 7)
    assert parse_shard("1/2") == (1, 2)
    for bad in ("3", "1:2:3:4"):
        with pytest.raises(Exception, match="--episodes"):
            parse_range(bad)
    for bad in ("2/2", "x"):
        with pytest.raises(Exception, match="--shard"):
            parse_shard(bad)


# -- the phase logic, against a stand-in simulator ------------------------------------------------------------------


class Pose:
    """The part of ``sapien.Pose`` the expert uses: p, q (w, x, y, z), inv(), composition."""

    def __init__(self, p, q=(1.0, 0.0, 0.0, 0.0)) -> None:
        self.p = np.asarray(p, dtype=np.float64)
        self.q = np.asarray(q, dtype=np.float64)

    def inv(self) -> Pose:
        conjugate = self.q * [1, -1, -1, -1]
        return Pose(-(quaternion_to_matrix(self.q).T @ self.p), conjugate)

    def __mul__(self, other: Pose) -> Pose:
        return Pose(quaternion_to_matrix(self.q) @ other.p + self.p, quaternion_multiply(self.q, other.q))


def matrix_to_quaternion(r: np.ndarray) -> np.ndarray:
    return euler_to_quaternion(*matrix_to_euler(r))


class FakeGoogleTask:
    """A perfect arm (each delta lands exactly) facing back along -x, as SIMPLER places the robot, through the real
    ``GoogleRobotAdapter``. The fingers close on +1 commands and, if ``grasps``, carry the source object."""

    BASE = Pose([0.35, 0.2, 0.079], [0.0, 0.0, 0.0, 1.0])

    def __init__(self, objects: list[tuple[str, np.ndarray, np.ndarray]], grasps: bool = True,
                 move_near: bool = False) -> None:
        self.adapter = GoogleRobotAdapter()
        self.spec = SimpleNamespace(max_steps=80)
        self.grasps = grasps
        self.closed = False
        actors = [SimpleNamespace(name=name, pose=Pose(p, q)) for name, p, q in objects]
        tcp_world = self.BASE * Pose([0.44, -0.218, 0.962], matrix_to_quaternion(START))
        model_db = {name: {"bbox": {"min": list(CAN_BOX[0]), "max": list(CAN_BOX[1])}} for name, _, _ in objects}
        self.env = SimpleNamespace(tcp=SimpleNamespace(pose=tcp_world), model_db=model_db,
                                   agent=SimpleNamespace(robot=SimpleNamespace(pose=self.BASE),
                                                         check_grasp=lambda actor: self.closed and self.grasps))
        if move_near:
            self.env.episode_objs = actors
            self.env.episode_source_obj, self.env.episode_target_obj = actors[0], actors[1]
            self.env.episode_model_ids = [a.name for a in actors]
            self.env.episode_model_scales = [1.0] * len(actors)
            self.env.episode_source_obj_bbox_world = self.env.episode_target_obj_bbox_world = np.array([0.066] * 3)
        else:
            self.env.obj, self.env.model_id, self.env.model_scale = actors[0], objects[0][0], 1.0
        self.env.unwrapped = self.env
        self.source = actors[0]

    def step(self, action: np.ndarray) -> None:
        env_action = self.adapter(action)
        tcp = self.BASE.inv() * self.env.tcp.pose
        rotation = rotation_from_axis_angle(env_action[3:6].astype(np.float64)) @ quaternion_to_matrix(tcp.q)
        moved = Pose(tcp.p + env_action[:3], matrix_to_quaternion(rotation))
        if self.env.agent.check_grasp(self.source):
            carried = (self.BASE * moved).p - self.env.tcp.pose.p
            self.source.pose = Pose(self.source.pose.p + carried, self.source.pose.q)
        self.env.tcp.pose = self.BASE * moved
        if env_action[6] != 0:
            self.closed = env_action[6] > 0


def run(task: FakeGoogleTask) -> tuple[GoogleScriptedExpert, list[str]]:
    """A whole episode; checks every action on the way and returns the phase at each step."""
    expert = GoogleScriptedExpert()
    expert.reset(task)
    phases = []
    for _ in range(task.spec.max_steps):
        action = expert.act()
        assert action.shape == (7,) and np.isfinite(action).all()
        assert np.linalg.norm(action[:3]) <= expert.max_step + 1e-12
        task.step(action)
        phases.append(expert.phase_name)
    return expert, phases


def collapsed(phases: list[str]) -> list[str]:
    return [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]


def test_the_coke_can_phases_end_holding_the_can_above_its_start():
    can = ("opened_coke_can", np.array([-0.24, 0.1, 0.914]), np.array([1.0, 0.0, 0.0, 0.0]))
    task = FakeGoogleTask([can])
    expert, phases = run(task)
    assert collapsed(phases) == ["approach", "descend", "close", "lift", "hold"]
    assert expert.regrasps == 0 and task.closed
    # up and back towards the robot, which faces -x: back is +x in the world
    np.testing.assert_allclose(task.source.pose.p, [-0.24 - LIFT[0], 0.1, 0.914 + LIFT[2]], atol=0.01)


def test_a_missed_grasp_is_retried_while_steps_remain():
    can = ("opened_coke_can", np.array([-0.24, 0.1, 0.914]), np.array([1.0, 0.0, 0.0, 0.0]))
    expert, phases = run(FakeGoogleTask([can], grasps=False))
    assert "reopen" in phases and expert.regrasps >= 1
    # a retry starts only while one fits in the episode
    last_retry = max(i for i, p in enumerate(phases) if p == "reopen" and phases[i - 1] != "reopen")
    assert 80 - last_retry >= REGRASP_STEPS


def test_move_near_carries_the_source_beside_the_target_and_lets_go():
    standing = euler_to_quaternion(math.pi / 2, 0.0, 0.0)
    objects = [("source_can", np.array([-0.33, 0.04, 0.95]), standing),
               ("target_can", np.array([-0.33, 0.34, 0.95]), standing),
               ("other_can", np.array([-0.13, 0.19, 0.95]), standing)]
    task = FakeGoogleTask(objects, move_near=True)
    _, phases = run(task)
    assert collapsed(phases) == ["approach", "descend", "close", "lift", "carry", "lower", "open", "retreat"]
    assert not task.closed
    source, target, other = (o.pose.p for o in task.env.episode_objs)
    near = np.linalg.norm([0.066, 0.066]) + 0.10  # the env's rule: both half box diagonals + 0.10
    assert np.linalg.norm(source[:2] - target[:2]) < near
    assert np.linalg.norm(source[:2] - target[:2]) < np.linalg.norm(source[:2] - other[:2])
    # set down just above where it stood (PLACE_CLEARANCE, give or take the tolerance a waypoint is reached to)
    assert 0.95 + PLACE_CLEARANCE - REACHED <= source[2] <= 0.95 + PLACE_CLEARANCE + REACHED


@pytest.mark.slow
@pytest.mark.sim
def test_the_expert_picks_the_coke_can_in_simplerenv(real2sim_assets):
    from envs.real2sim_workers import real2sim_python

    code = ("import json; from envs.registry import TASKS; from envs.real2sim_env import Real2SimTask; "
            "from envs.google_expert_episodes import run_expert_episode; "
            "task = Real2SimTask(TASKS['simplerenv/google_pick_coke_can']); "
            "print('RESULT', json.dumps(run_expert_episode(task, 12, 12))); task.close()")
    env = dict(os.environ, PYTHONPATH=str(REPO), MS2_REAL2SIM_ASSET_DIR=str(real2sim_assets))
    result = subprocess.run([str(real2sim_python()), "-c", code], check=False, capture_output=True, text=True, cwd=REPO,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert record["instruction"] == "pick coke can" and record["steps"] == 80
    assert record["success_final"] and record["final_phase"] == "hold"

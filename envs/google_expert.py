"""A privileged scripted expert for SIMPLER's Google-robot pick-coke-can and move-near tasks.

It reads the true object poses and bounding boxes from ManiSkill2_real2sim and the gripper's tool-centre point (TCP)
from the robot, and emits actions in the policy's convention ([dx, dy, dz] metres in the robot-base frame, [droll,
dpitch, dyaw], open_gripper 1 = open / 0 = closed). ``Real2SimTask.step`` sends them through ``GoogleRobotAdapter``
exactly as it sends a policy's, so a success here shows the tasks are solvable through vlart's own action path.

The arm controller (``arm_pd_ee_delta_pose_align_interpolate_by_planner``) adds each delta to the TCP's *measured*
pose, and its joint-space planner covers only part of a large delta in one 1/3 s step; so every step asks for the
whole remaining error (capped at ``max_step``), which converges in a few steps without overshoot. When its inverse
kinematics fails (the edge of the workspace) the controller keeps the pose, so a phase also ends when a step made
no progress. The TCP is where the closed fingernails meet and the fingers close along its y axis. The grasp keeps
the arm's starting tilt (about 18 degrees off vertical) and rolls the gripper about its approach axis until the
fingers close across the object's narrowest horizontal side (across a lying can, whichever way it lies); the arm
travels above every object, descends along the approach axis, and lifts up and back towards the robot.

The gripper goes through the adapter's sticky relative command: a change of open_gripper fires +-1 for
``sticky_repeat`` steps and a second change is ignored until that is over, so the expert never changes its
gripper value again sooner (``GripperClock``). If a lift ends without the object between the fingers, it opens,
re-plans from the object's current pose and tries again while enough steps are left.

``envs.google_expert_episodes`` runs it for whole episodes, and over a task's grid from the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.geometry import quaternion_to_matrix, rotation_angle, rotation_step

APPROACH_CLEARANCE = 0.03  # TCP above the object's top before descending (the open nails sit 3.4 cm behind it)
MIN_APPROACH = 0.05  # and at least this far above the grasp point
TRANSIT_CLEARANCE = 0.03  # TCP above the tallest object's top while travelling to the approach point
MIN_GRASP_HEIGHT = 0.015  # TCP above the object's bottom: the closed nails reach 3 mm past the TCP
# Up and back towards the robot (base frame): straight up from the far edge of the table the wrist joint would
# have to pass its limit.
LIFT = np.array([-0.06, 0.0, 0.10])
PLACE_CLEARANCE = 0.01  # the carried object's bottom above the table when it is let go
RETREAT_HEIGHT = 0.08
PLACE_MARGIN = 0.05  # inside the "near" radius (and beyond the two half diagonals) when choosing where to put it
FINGER_STEPS = 4  # control steps the fingers take to close or open (measured: closedness settles after 4)
REACHED = 0.012  # metres: a waypoint counts as reached
ALIGNED = 0.08  # radians: the wrist counts as turned
MAX_PHASE_STEPS = 20  # a phase that has not converged by then moves on (a blocked finger, an unreachable pose)
STALLED = (0.002, 0.01)  # metres, radians: a step that moved and turned the TCP less than this made no progress
MAX_ROTATION_STEP = 0.35  # radians per step
GRASP_CHECK_STEPS = 3  # lift steps before judging the grasp (the object must have left the table)
REGRASP_STEPS = 30  # steps a retry needs (reopen, descend, close, lift): not started with fewer left
TIE = 0.01  # metres: horizontal sides this close count as equal (a standing can): then the wrist turns least


def capped(delta: np.ndarray, limit: float) -> np.ndarray:
    norm = float(np.linalg.norm(delta))
    return delta if norm <= limit else delta * (limit / norm)


@dataclass(frozen=True)
class ObjectGeometry:
    """An object's axis-aligned box in the base frame and the direction the fingers should close along."""

    low: np.ndarray  # (3,)
    high: np.ndarray  # (3,)
    closing: np.ndarray  # (3,) unit, horizontal

    @property
    def center(self) -> np.ndarray:
        return (self.low + self.high) / 2


def object_geometry(position: np.ndarray, rotation: np.ndarray, box_min: np.ndarray, box_max: np.ndarray,
                    preferred_closing: np.ndarray) -> ObjectGeometry:
    """The box of an object (pose in the base frame, model box in its own frame) and its closing direction: along
    the object's axis that is nearest horizontal-and-shortest, so the fingers span its narrow side; between sides
    equal within ``TIE`` (a standing can, an orange) the one nearest ``preferred_closing`` (least wrist turn)."""
    corners = np.array([[x, y, z] for x in (box_min[0], box_max[0]) for y in (box_min[1], box_max[1])
                        for z in (box_min[2], box_max[2])])
    world = corners @ rotation.T + position
    sizes = np.asarray(box_max, dtype=np.float64) - np.asarray(box_min, dtype=np.float64)
    # the two object axes that lie flattest span its footprint
    flat = sorted(range(3), key=lambda i: abs(rotation[2, i]))[:2]
    narrow = min(sizes[i] for i in flat)
    candidates = [_horizontal(rotation[:, i]) for i in flat if sizes[i] <= narrow + TIE]
    preferred = _horizontal(preferred_closing)
    closing = max(candidates, key=lambda axis: abs(float(axis @ preferred)))
    return ObjectGeometry(world.min(axis=0), world.max(axis=0), closing)


def _horizontal(vector: np.ndarray) -> np.ndarray:
    flat = np.array([vector[0], vector[1], 0.0])
    norm = np.linalg.norm(flat)
    return flat / norm if norm > 1e-9 else np.array([1.0, 0.0, 0.0])


def grasp_rotation(closing: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Base-frame TCP rotation for the grasp: the start rotation turned about its own approach axis (z) until the
    fingers close (y) along ``closing`` as seen from above. The arm keeps its starting tilt (about 18 degrees off
    vertical, leaning away from the robot): straight down, or the tilt swung sideways by a turn about the vertical,
    drives the wrist joint into its limit at the far side of the table; the roll about the approach axis is the
    last joint's, which has room both ways. The gripper is symmetric, so the turn is the shorter one."""
    # the y axis after a turn t, seen from above, is cos(t) y - sin(t) x: parallel to closing where its cross is 0
    turn = float(np.arctan2(_cross2(start[:, 1], closing), _cross2(start[:, 0], closing)))
    turn = (turn + np.pi / 2) % np.pi - np.pi / 2
    c, s = np.cos(turn), np.sin(turn)
    return start @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _cross2(a: np.ndarray, b: np.ndarray) -> float:
    """The vertical component of a x b: the cross product of the two vectors as seen from above."""
    return float(a[0] * b[1] - a[1] * b[0])


def approach_point(grasp: np.ndarray, top: float, approach: np.ndarray) -> np.ndarray:
    """Where the descent starts: back from the grasp point along the approach axis (the fingers move along their
    own length, not sideways into the object) to ``APPROACH_CLEARANCE`` above the object's top."""
    height = max(top + APPROACH_CLEARANCE - grasp[2], MIN_APPROACH)
    return grasp - approach * (height / -approach[2])


def grasp_point(geometry: ObjectGeometry) -> np.ndarray:
    """TCP position for the grasp: the box centre, but high enough that the closing nails clear the table."""
    point = geometry.center.copy()
    point[2] = max(point[2], geometry.low[2] + MIN_GRASP_HEIGHT)
    return point


def place_point(target_xy: np.ndarray, source_xy: np.ndarray, others_xy: list[np.ndarray],
                distance: float) -> np.ndarray:
    """Where to set the source down: ``distance`` from the target, on the side it comes from, turned away (in 30
    degree steps, least turn first) when that spot would lie within ``distance + PLACE_MARGIN`` of another object
    (move near also wants the source closer to the target than to anything else)."""
    offset = np.asarray(source_xy, dtype=np.float64) - target_xy
    heading = float(np.arctan2(offset[1], offset[0]))
    spots = []
    for turn in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6):
        angle = heading + turn * np.pi / 6
        spot = target_xy + distance * np.array([np.cos(angle), np.sin(angle)])
        clearance = min((float(np.linalg.norm(spot - other)) for other in others_xy), default=np.inf)
        if clearance >= distance + PLACE_MARGIN:
            return spot
        spots.append((clearance, spot))
    return max(spots, key=lambda item: item[0])[1]


class GripperClock:
    """When the adapter will act on a change of open_gripper: not before the previous sticky command is over."""

    def __init__(self, sticky_repeat: int) -> None:
        self.sticky_repeat = sticky_repeat
        self.value = 1.0  # the robot starts open; the adapter takes the first value as its reference
        self.changed_at = -sticky_repeat

    def set(self, value: float, step: int) -> None:
        if value != self.value:
            self.value = value
            self.changed_at = max(step, self.changed_at + self.sticky_repeat)

    def settled(self, step: int) -> bool:
        """The fingers have had time to finish the last change."""
        return step >= self.changed_at + FINGER_STEPS


class GoogleScriptedExpert:
    """Call ``reset(task)`` after each ``Real2SimTask.reset``, then ``act()`` for each step's 7-d policy action."""

    def __init__(self, max_step: float = 0.1) -> None:
        self.max_step = max_step
        self.env: Any = None
        self.phases: list[str] = []
        self.phase = 0
        self.phase_steps = 0
        self.step = 0
        self.regrasps = 0
        self.max_steps = 0

    # -- reading the simulator ---------------------------------------------------------------------------------------

    def reset(self, task: Any) -> None:
        self.env = task.env.unwrapped
        self.max_steps = task.spec.max_steps
        self.move_near = hasattr(self.env, "episode_source_obj")
        self.source = self.env.episode_source_obj if self.move_near else self.env.obj
        self.gripper = GripperClock(task.adapter.sticky_repeat)
        self.step = 0
        self.regrasps = 0
        self.start_rotation = self._tcp()[1]
        self._plan_grasp()
        tail = ["lift", "carry", "lower", "open", "retreat"] if self.move_near else ["lift", "hold"]
        self.phases = ["approach", "descend", "close", *tail]
        self._enter(0)

    def _to_base(self, pose: Any) -> tuple[np.ndarray, np.ndarray]:
        local = self.env.agent.robot.pose.inv() * pose
        return np.asarray(local.p, dtype=np.float64), quaternion_to_matrix(local.q)

    def _tcp(self) -> tuple[np.ndarray, np.ndarray]:
        return self._to_base(self.env.tcp.pose)

    def _geometry(self, actor: Any) -> ObjectGeometry:
        if self.move_near:
            index = self.env.episode_objs.index(actor)
            model_id, scale = self.env.episode_model_ids[index], self.env.episode_model_scales[index]
        else:
            model_id, scale = self.env.model_id, self.env.model_scale
        box = self.env.model_db[model_id]["bbox"]
        position, rotation = self._to_base(actor.pose)
        return object_geometry(position, rotation, np.asarray(box["min"]) * scale, np.asarray(box["max"]) * scale,
                               self.start_rotation[:, 1])

    def _plan_grasp(self) -> None:
        """Grasp point and wrist rotation from the source object's current pose (at reset and before a retry)."""
        geometry = self._geometry(self.source)
        self.source_box = geometry
        self.grasp = grasp_point(geometry)
        self.rotation = grasp_rotation(geometry.closing, self.start_rotation)
        actors = self.env.episode_objs if self.move_near else [self.source]
        # move near's third object can stand taller than the arm's path to the source (a 17 cm red bull can)
        self.transit_height = max(self._geometry(a).high[2] for a in actors) + TRANSIT_CLEARANCE
        if self.move_near:
            self.place = self._place_xy()

    def _place_xy(self) -> np.ndarray:
        """Where the source's centre goes: inside the env's "near" radius (the two objects' half box diagonals +
        0.10 m) by PLACE_MARGIN, and closer to the target than to the third object."""
        env = self.env
        near = (np.linalg.norm(env.episode_target_obj_bbox_world[:2]) / 2
                + np.linalg.norm(env.episode_source_obj_bbox_world[:2]) / 2 + 0.10)
        target = self._to_base(env.episode_target_obj.pose)[0][:2]
        others = [self._to_base(obj.pose)[0][:2] for obj in env.episode_objs
                  if obj is not env.episode_source_obj and obj is not env.episode_target_obj]
        return place_point(target, self.source_box.center[:2], others, near - PLACE_MARGIN)

    def _holding(self) -> bool:
        return bool(self.env.agent.check_grasp(self.source))

    # -- phases ----------------------------------------------------------------------------------------------------

    @property
    def phase_name(self) -> str:
        return self.phases[self.phase]

    def _enter(self, phase: int) -> None:
        """Start a phase: its TCP goal (base frame) and gripper value, fixed for the phase."""
        self.phase = phase
        self.phase_steps = 0
        name = self.phases[phase]
        tcp, _ = self._tcp()
        self.last_progress = (tcp, np.inf)
        if name in ("approach", "reopen"):
            # above the start of the descent, high enough to pass over every object on the way there
            start = approach_point(self.grasp, self.source_box.high[2], self.rotation[:, 2])
            self.goal, value = np.array([*start[:2], max(start[2], self.transit_height)]), 1.0
        elif name == "descend":
            self.goal, value = self.grasp, 1.0
        elif name == "close":
            self.goal, value = tcp, 0.0
        elif name in ("lift", "hold"):
            self.goal, value = self.grasp + LIFT, 0.0
        elif name == "carry":
            # keep where the fingers hold the object, so its centre (not the TCP) lands on the place point
            offset = tcp - self._geometry(self.source).center
            self.goal, value = np.array([*(self.place + offset[:2]), tcp[2]]), 0.0
        elif name == "lower":
            self.goal, value = np.array([*self.goal[:2], self.grasp[2] + PLACE_CLEARANCE]), 0.0
        elif name == "open":
            self.goal, value = tcp, 1.0
        else:  # retreat
            self.goal, value = tcp + [0.0, 0.0, RETREAT_HEIGHT], 1.0
        self.gripper.set(value, self.step)

    def _done(self, tcp: np.ndarray, tcp_rotation: np.ndarray) -> bool:
        name = self.phase_name
        if name in ("hold", "retreat"):
            return False  # the last phase: hold the pose to the end of the episode
        if name in ("close", "open", "reopen") and not self.gripper.settled(self.step):
            return False
        if name == "lift" and self.phase_steps <= GRASP_CHECK_STEPS:
            return False  # not before the grasp has been judged
        misalignment = rotation_angle(self.rotation @ tcp_rotation.T)
        if self.phase_steps >= MAX_PHASE_STEPS or self._stalled(tcp, misalignment):
            return True
        reached = np.linalg.norm(self.goal - tcp) < (3 * REACHED if name == "lift" else REACHED)
        return bool(reached and misalignment < ALIGNED)

    def _stalled(self, tcp: np.ndarray, misalignment: float) -> bool:
        """The last step neither moved nor turned the TCP: the goal is out of the arm's reach (the controller keeps
        the pose when its inverse kinematics fails), or the fingers are blocked; waiting longer would not help."""
        last_tcp, last_misalignment = self.last_progress
        self.last_progress = (tcp, misalignment)
        return (self.phase_steps >= 3 and np.linalg.norm(tcp - last_tcp) < STALLED[0]
                and abs(misalignment - last_misalignment) < STALLED[1])

    def _missed(self) -> bool:
        """The lift is under way but the object is not between the fingers, and a retry still fits."""
        return (self.phase_name == "lift" and self.phase_steps == GRASP_CHECK_STEPS and not self._holding()
                and self.max_steps - self.step >= REGRASP_STEPS)

    def _regrasp(self) -> None:
        self.regrasps += 1
        self._plan_grasp()
        tail = self.phases[self.phases.index("lift"):]
        self.phases = ["reopen", "descend", "close", *tail]
        self._enter(0)

    def act(self) -> np.ndarray:
        """The next action, (7,) in the policy's convention."""
        tcp, tcp_rotation = self._tcp()
        if self._missed():
            self._regrasp()
        elif self._done(tcp, tcp_rotation):
            self._enter(self.phase + 1)
        self.phase_steps += 1
        self.step += 1
        action = np.zeros(7)
        action[:3] = capped(self.goal - tcp, self.max_step)
        action[3:6] = rotation_step(tcp_rotation, self.rotation, MAX_ROTATION_STEP)
        action[6] = self.gripper.value
        return action

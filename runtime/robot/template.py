"""TEMPLATE: a real arm as a ``RobotAdapter``. Copy this file into your own package, fill in every method, and run

    vlart robot --connect tcp://SERVER:5555 --robot my_package.my_arm:MyArmAdapter

This class itself drives nothing: every method raises ``NotImplementedError`` saying what to implement, so
``--robot runtime.robot.template:RealArmAdapter`` only shows that error.

What the runner expects (``runtime/robot/runner.py``):

- ``observe()`` and ``act()`` are called once per control tick, from one thread, at the server's control rate
  (``--rate`` overrides it); keep both short: a tick that runs over its period delays the next one.
- ``act(action)`` receives CogACT's Bridge convention: ``[dx, dy, dz, droll, dpitch, dyaw, gripper]``, metres and
  radians of end-effector motion for one period (xyz in the robot base frame, roll/pitch/yaw as static-frame xyz
  Euler deltas), gripper absolute (1 = open, 0 = closed; it may be fractional after ensembling: threshold it at 0.5
  as CogACT's WidowX wrapper does). When the loop has no fresh action it sends the hold action through ``act`` too:
  zero deltas with the gripper unchanged.
- ``hold()`` is called once at the end of every run, whatever ended it (tick count, Ctrl-C/SIGTERM, a dead
  server, an exception), and must leave the arm still and safe. ``stop()`` follows it, once.
- The loop never sends NaN or infinity, but clamp deltas to your arm's limits anyway: the policy knows nothing of
  your workspace.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from policies.api.interface import Observation
from runtime.robot.runner import RobotAdapter

TEMPLATE_HINT = "runtime/robot/template.py is a template: copy it into your package and implement"


class RealArmAdapter(RobotAdapter):
    """Skeleton of a real-arm adapter. Replace each ``raise NotImplementedError`` with your robot's code."""

    # Per-period limits for one action, in metres and radians: clamp the policy's deltas to what is safe.
    MAX_TRANSLATION_M = 0.02
    MAX_ROTATION_RAD = 0.1

    def __init__(self, instruction: str = "put the spoon on the towel", camera: Optional[Any] = None,
                 arm: Optional[Any] = None) -> None:
        self.instruction = instruction
        self.gripper = 1.0  # the last commanded gripper (1 = open), kept by hold()
        # Connect here: open the camera (e.g. cv2.VideoCapture, a ROS image topic, a RealSense pipeline) and the
        # arm's controller (its SDK, a ROS action client); home the arm if your setup requires it.
        self.camera = camera
        self.arm = arm
        if camera is None or arm is None:
            raise NotImplementedError(
                f"{TEMPLATE_HINT} RealArmAdapter.__init__: open your camera and connect to your arm's controller "
                "(and set the instruction the policy is given)")

    def observe(self) -> Observation:
        # Grab the newest camera frame (never a queued old one: drop the backlog) as (H, W, 3) uint8 RGB (convert
        # from BGR if your driver gives BGR). Use the camera pose the policy was trained with (Bridge: a fixed
        # 3rd-person view over the table). Proprioception is optional; CogACT ignores it.
        raise NotImplementedError(f"{TEMPLATE_HINT} RealArmAdapter.observe: return "
                                  "Observation(image=<(H, W, 3) uint8 RGB frame>, instruction=self.instruction)")

    def act(self, action: np.ndarray) -> None:
        # Turn [dx, dy, dz, droll, dpitch, dyaw, gripper] into one end-effector delta command for one control
        # period and send it without waiting for the motion to finish (non-blocking; the loop keeps the rate):
        #   delta = np.clip(action[:3], -self.MAX_TRANSLATION_M, self.MAX_TRANSLATION_M)
        #   rotation = np.clip(action[3:6], -self.MAX_ROTATION_RAD, self.MAX_ROTATION_RAD)
        #   self.arm.send_ee_delta(delta, rotation)                # your SDK's Cartesian delta / servo command
        #   self.gripper = float(action[6])
        #   self.arm.set_gripper(open=self.gripper > 0.5)
        raise NotImplementedError(f"{TEMPLATE_HINT} RealArmAdapter.act: send one end-effector delta command "
                                  "(xyz, roll/pitch/yaw; gripper 1 = open) at the robot's rate, non-blocking")

    def hold(self) -> None:
        # Stop all motion now and keep the gripper as it is (do not drop what it holds): e.g. a zero-velocity
        # command, the controller's "stop"/"hold position", or a target equal to the current pose.
        raise NotImplementedError(f"{TEMPLATE_HINT} RealArmAdapter.hold: command zero motion now, gripper kept "
                                  f"(last commanded {self.gripper})")

    def stop(self) -> None:
        # Release what __init__ opened: close the camera, disconnect from the controller (leave the arm holding or
        # move it to a rest pose, as your setup requires).
        raise NotImplementedError(f"{TEMPLATE_HINT} RealArmAdapter.stop: close the camera and the arm connection")

    def summary(self) -> dict[str, Any]:
        return {"gripper": self.gripper}

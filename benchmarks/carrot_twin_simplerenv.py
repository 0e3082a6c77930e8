"""The SimplerEnv side of the carrot twin check (``benchmarks.carrot_twin_check``): SIMPLER's original
``PutCarrotOnPlateInScene-v0`` replaying the ManiSkill3 expert's actions.

Runs in the SimplerEnv interpreter (``.venv-real2sim``: numpy < 2, SAPIEN 2; no torch, no mani_skill), started by the
check as ``python -m benchmarks.carrot_twin_simplerenv --inputs ACTIONS.npz --outputs RESULTS.npz``; it reads the
episodes, seed and actions from the one file and writes the first and last frames, the camera, the per-step states
and the successes to the other.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MS2_ENV_ID = "PutCarrotOnPlateInScene-v0"
CAMERA = "3rd_view_camera"
CARROT = "bridge_carrot_generated_modified"
PLATE = "bridge_plate_objaverse_larger"


def run_simplerenv_side(inputs: Path, outputs: Path) -> None:
    """Each episode of ``inputs`` reset with its seed and replayed open-loop (and, if asked, once more with the
    pivot fix), its records saved to ``outputs``."""
    from envs.action_adapters import WidowXBridgeAdapter
    from envs.geometry import axis_angle_to_matrix
    from envs.real2sim_env import configure_real2sim_rendering

    configure_real2sim_rendering()  # before sapien / mani_skill2_real2sim are imported
    import gymnasium as gym
    import mani_skill2_real2sim.envs  # noqa: F401  (registers the environments)

    data = np.load(inputs)
    episodes = [int(e) for e in data["episodes"]]
    seed = int(data["seed"])
    started = time.perf_counter()
    # as simpler_env.make("widowx_carrot_on_plate") builds it: the env's prepackaged visual-matching configuration
    env = gym.make(MS2_ENV_ID, obs_mode="rgbd", prepackaged_config=True)
    out: dict[str, Any] = {"make_s": time.perf_counter() - started}
    u = env.unwrapped
    out["control_mode"] = np.array(u.control_mode)
    out["control_sim_freq"] = np.array([u._control_freq, u._sim_freq])
    out["max_episode_steps"] = np.array(env.spec.max_episode_steps)
    adapter = WidowXBridgeAdapter()
    objs = lambda: {o.name: o for o in u.episode_objs}

    def state() -> dict[str, np.ndarray]:
        pose = u.tcp.pose
        arm = u.agent.controller.controllers["arm"]
        base = u.agent.robot.pose
        target_world = base * arm._target_pose  # the controller's target, in the world frame
        o = objs()
        return {"ee": np.r_[pose.p, pose.q], "carrot": np.r_[o[CARROT].pose.p, o[CARROT].pose.q],
                "plate": np.r_[o[PLATE].pose.p, o[PLATE].pose.q], "qpos": u.agent.robot.get_qpos().copy(),
                "target": np.asarray(target_world.p)}

    def replay(ep: int, prefix: str, pivot_fix: bool) -> None:
        t0 = time.perf_counter()
        obs, info = env.reset(seed=seed, options={"obj_init_options": {"episode_id": ep}})
        out[f"{prefix}_reset_s"] = time.perf_counter() - t0
        out[f"{prefix}_instruction"] = np.array(u.get_language_instruction())
        out[f"{prefix}_frame0"] = np.ascontiguousarray(obs["image"][CAMERA]["rgb"], dtype=np.uint8)
        out[f"{prefix}_cam2world_gl"] = obs["camera_param"][CAMERA]["cam2world_gl"]
        out[f"{prefix}_intrinsic"] = obs["camera_param"][CAMERA]["intrinsic_cv"]
        out[f"{prefix}_base"] = np.r_[u.agent.robot.pose.p, u.agent.robot.pose.q]
        arm = u.agent.controller.controllers["arm"]
        adapter.reset()
        states = [state()]
        success, grasp = [], []
        t0 = time.perf_counter()
        for action in data[f"ep{ep}_actions"]:
            env_action = adapter(action).astype(np.float64)
            if pivot_fix:
                # diagnostic only: "ee_align2" turns the target about the measured end effector, ManiSkill3 about
                # the previous target; shift the translation so this controller's new target lands where
                # ManiSkill3's rule would put it (identical when the action has no rotation)
                lag = np.asarray(arm._target_pose.p) - np.asarray(arm.ee_pose_at_base.p)
                env_action[:3] += lag - axis_angle_to_matrix(env_action[3:6]) @ lag
            obs, _, _, _, info = env.step(env_action)
            states.append(state())
            success.append(bool(info["success"]))
            grasp.append(bool(info["consecutive_grasp"]))
        out[f"{prefix}_step_s"] = (time.perf_counter() - t0) / max(len(success), 1)
        out[f"{prefix}_frame_last"] = np.ascontiguousarray(obs["image"][CAMERA]["rgb"], dtype=np.uint8)
        for key in states[0]:
            out[f"{prefix}_{key}"] = np.stack([s[key] for s in states])
        out[f"{prefix}_success"] = np.array(success)
        out[f"{prefix}_grasp"] = np.array(grasp)

    for ep in episodes:
        replay(ep, f"ep{ep}", pivot_fix=False)
    if bool(data["pivot_fix"]):
        for ep in episodes:
            replay(ep, f"fix{ep}", pivot_fix=True)
    env.close()
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "mani_skill"))
    if leaked:
        raise RuntimeError(f"the SimplerEnv side imported {leaked[:5]}")
    np.savez(outputs, **out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, required=True, help="the actions .npz the ManiSkill3 side wrote")
    parser.add_argument("--outputs", type=Path, required=True, help="where to write this side's results .npz")
    args = parser.parse_args()
    run_simplerenv_side(args.inputs, args.outputs)


if __name__ == "__main__":
    main()

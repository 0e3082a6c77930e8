"""Cross-check of SIMPLER's carrot-on-plate task in its two simulators: prints a table, writes JSON and PNGs.

    MS_ASSET_DIR=../shared/simpler_assets \\
    MS2_REAL2SIM_ASSET_DIR=../shared/simpler_real2sim/ManiSkill2_real2sim/data \\
    .venv/bin/python benchmarks/carrot_twin_check.py [--episodes 0 5 11 17 23] [--seed 0] [--steps 60]
        [--out docs/results/carrot_twin.json] [--runs runs/benchmarks/carrot_twin]

The two sides:
- ManiSkill3's Bridge twin ``PutCarrotOnPlateInScene-v1``, built by vlart (``envs.sim_env.SimTask``, this
  interpreter);
- the original SimplerEnv's ``PutCarrotOnPlateInScene-v0`` (ManiSkill2_real2sim on SAPIEN 2.2.2), with SimplerEnv's
  prepackaged visual-matching configuration (robot ``widowx`` at (0.147, 0.028), ``bridge_table_1_v1``, overlay
  ``bridge_real_eval_1.png``, ``3rd_view_camera``, 5 Hz control, 500 Hz sim, 60 steps), run by this same file in the
  SimplerEnv interpreter (``.venv-real2sim``, ``--side real2sim``; it imports neither torch nor mani_skill), which
  exchanges ``.npz`` files with this side. The simulators run one after the other, never together.

For each episode id of the official 24-entry grid (same ``episode_id`` and reset seed on both sides):
1. first frame: the greenscreened 3rd-view RGB after reset on both sides; mean |difference| over all pixels and
   channels (0-255), and over the mask of pixels where either frame differs from the overlay photo by more than
   ``MASK_THRESHOLD`` in some channel (what the simulators drew: robot, carrot, plate); PNGs side by side and of the
   difference (under ``--runs``, out of the repository: full-size frames; the JSON names them).
2. scripted-expert replay: vlart's privileged ``ScriptedExpert`` runs closed-loop on the ManiSkill3 twin for the
   whole episode; its policy-convention actions (7,) are then replayed open-loop through ``WidowXBridgeAdapter`` in
   SimplerEnv, and, as a control for open-loop replay, in a fresh reset of the ManiSkill3 twin. Compared: success at
   the last step and at any step, and the end-effector (``ee_gripper_link``) and carrot positions step by step.
3. controller check: both arm controllers keep a target pose and add each delta to it, but they turn it about
   different points. ManiSkill3 (``root_translation:root_aligned_body_rotation``) puts the new target at
   previous target + dp; SimplerEnv's ``ee_align2`` at measured EE + dp + dR (previous target - measured EE), so a
   rotation while the arm lags behind its target also moves the target. Each rule is fitted to each run's recorded
   targets, and (``--no-pivot-fix`` skips it) SimplerEnv replays the actions once more with each translation shifted
   by (I - dR)(previous target - measured EE), which makes its targets follow ManiSkill3's rule: a diagnostic of how
   much of the gap the pivot explains, not part of the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.evidence import RESULTS, RUNS, write_stamped  # noqa: E402

TASK = "simpler/widowx_carrot_on_plate"
MS2_ENV_ID = "PutCarrotOnPlateInScene-v0"
CAMERA = "3rd_view_camera"
CARROT = "bridge_carrot_generated_modified"
PLATE = "bridge_plate_objaverse_larger"
EE_LINK = "ee_gripper_link"
OVERLAY = "real_inpainting/bridge_real_eval_1.png"  # under the SimplerEnv data folder (identical file in both packs)
MASK_THRESHOLD = 8  # a pixel belongs to the drawn region if some channel differs from the overlay by more than this
DIFF_GAIN = 4  # the abs-diff PNG shows 4 x |difference| (clipped), so small differences stay visible
DEFAULT_EPISODES = (0, 5, 11, 17, 23)
SHARED = REPO.parent / "shared"


def rotvec_to_matrix(v: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) -> rotation matrix (Rodrigues)."""
    v = np.asarray(v, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


# ---------------------------------------------------------------------------------------------------------------- #
# SimplerEnv side (the .venv-real2sim interpreter: numpy < 2, SAPIEN 2; no torch, no mani_skill)
# ---------------------------------------------------------------------------------------------------------------- #
def run_real2sim_side(inputs: Path, outputs: Path) -> None:
    from envs.action_adapters import WidowXBridgeAdapter
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
                env_action[:3] += lag - rotvec_to_matrix(env_action[3:6]) @ lag
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


# ---------------------------------------------------------------------------------------------------------------- #
# ManiSkill3 side (this interpreter)
# ---------------------------------------------------------------------------------------------------------------- #
def run_maniskill3_side(episodes: list[int], seed: int, steps: int, control: bool) -> dict[str, Any]:
    from envs.registry import TASKS
    from envs.scripted_expert import ScriptedExpert
    from envs.sim_env import SimTask

    started = time.perf_counter()
    task = SimTask(TASKS[TASK])
    out: dict[str, Any] = {"make_s": time.perf_counter() - started}
    u = task.env.unwrapped
    ee_link = u.agent.robot.links_map[EE_LINK]
    arm = u.agent.controller.controllers["arm"]
    vec = lambda pose: pose.raw_pose[0].cpu().numpy().astype(np.float64)  # [p (3), q wxyz (4)]

    def state() -> dict[str, np.ndarray]:
        target_world = u.agent.robot.pose * arm._target_pose
        return {"ee": vec(ee_link.pose), "carrot": vec(u.objs[CARROT].pose), "plate": vec(u.objs[PLATE].pose),
                "qpos": u.agent.robot.get_qpos()[0].cpu().numpy().astype(np.float64),
                "target": target_world.p[0].cpu().numpy().astype(np.float64)}

    def episode(ep: int, actions: np.ndarray | None) -> dict[str, Any]:
        """Closed-loop expert (actions None) or open-loop replay of ``actions``, from a fresh reset."""
        t0 = time.perf_counter()
        first = task.reset(ep, seed)
        rec: dict[str, Any] = {"reset_s": time.perf_counter() - t0, "frame0": first.image,
                               "instruction": first.instruction}
        if actions is None:
            params = u.get_obs()["sensor_param"][CAMERA]
            rec["cam2world_gl"] = params["cam2world_gl"][0].cpu().numpy()
            rec["intrinsic"] = params["intrinsic_cv"][0].cpu().numpy()
            rec["base"] = vec(u.agent.robot.pose)
            expert = ScriptedExpert()
            expert.reset(task)
        states, success, grasp, taken, phases = [state()], [], [], [], []
        t0 = time.perf_counter()
        for i in range(steps):
            action = expert.act() if actions is None else actions[i]
            result = task.step(action)
            taken.append(np.asarray(action, dtype=np.float64))
            states.append(state())
            success.append(result.success)
            grasp.append(bool(result.grasped))
            if actions is None:
                phases.append(expert.phase_name)
        rec["step_s"] = (time.perf_counter() - t0) / steps
        rec["frame_last"] = result.observation.image
        for key in states[0]:
            rec[key] = np.stack([s[key] for s in states])
        rec.update(actions=np.stack(taken), success=np.array(success), grasp=np.array(grasp))
        if actions is None:
            rec["phases"] = phases
            rec["regrasps"] = expert.regrasps
        return rec

    for ep in episodes:
        out[f"expert{ep}"] = episode(ep, None)
        if control:
            out[f"replay{ep}"] = episode(ep, out[f"expert{ep}"]["actions"])
        e = out[f"expert{ep}"]
        print(f"  ManiSkill3 ep {ep}: expert success final={bool(e['success'][-1])} any={bool(e['success'].any())}"
              + (f", open-loop replay final={bool(out[f'replay{ep}']['success'][-1])}" if control else ""),
              flush=True)
    task.close()
    return out


# ---------------------------------------------------------------------------------------------------------------- #
# comparison
# ---------------------------------------------------------------------------------------------------------------- #
def yaw(q: np.ndarray) -> float:
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def angle_between(q1: np.ndarray, q2: np.ndarray) -> float:
    """Rotation angle (deg) between two unit quaternions (wxyz)."""
    return float(np.degrees(2 * np.arccos(np.clip(abs(np.dot(q1, q2)), 0.0, 1.0))))


def frame_stats(a: np.ndarray, b: np.ndarray, overlay: np.ndarray) -> dict[str, Any]:
    a16, b16, o16 = (x.astype(np.int16) for x in (a, b, overlay))
    diff = np.abs(a16 - b16)
    drawn_a = np.abs(a16 - o16).max(-1) > MASK_THRESHOLD
    drawn_b = np.abs(b16 - o16).max(-1) > MASK_THRESHOLD
    mask = drawn_a | drawn_b
    return {
        "mad_all": float(diff.mean()),
        "mad_mask": float(diff[mask].mean()) if mask.any() else 0.0,
        "mask_pixels": int(mask.sum()),
        "mask_fraction": float(mask.mean()),
        "drawn_only_in_maniskill3": int((drawn_a & ~drawn_b).sum()),
        "drawn_only_in_simplerenv": int((drawn_b & ~drawn_a).sum()),
        "frac_pixels_diff_gt30": float((diff.max(-1) > 30).mean()),
        "max_pixel_diff": int(diff.max()),
        "_mask": mask,
        "_diff": diff,
    }


def write_pngs(out_dir: Path, ep: int, a: np.ndarray, b: np.ndarray, stats: dict[str, Any], prefix: str) -> list[str]:
    from PIL import Image, ImageDraw

    gap = np.full((a.shape[0], 8, 3), 255, np.uint8)
    side = Image.fromarray(np.concatenate([a, gap, b], axis=1))
    draw = ImageDraw.Draw(side)
    draw.text((8, 8), f"ManiSkill3 PutCarrotOnPlateInScene-v1  ep {ep}", fill=(255, 255, 0))
    draw.text((a.shape[1] + 16, 8), f"SimplerEnv PutCarrotOnPlateInScene-v0  ep {ep}", fill=(255, 255, 0))
    paths = [out_dir / f"ep{ep:02d}_{prefix}_side_by_side.png"]
    side.save(paths[0])
    if stats is not None:
        diff = np.clip(stats["_diff"].max(-1).astype(np.int32) * DIFF_GAIN, 0, 255).astype(np.uint8)
        vis = np.repeat(diff[..., None], 3, -1)
        edge = stats["_mask"] & ~(np.roll(stats["_mask"], 1, 0) & np.roll(stats["_mask"], -1, 0)
                                  & np.roll(stats["_mask"], 1, 1) & np.roll(stats["_mask"], -1, 1))
        vis[edge] = (0, 160, 255)  # outline of the drawn-region mask
        img = Image.fromarray(vis)
        ImageDraw.Draw(img).text((8, 8), f"ep {ep}: {DIFF_GAIN} x max-channel |MS3 - SimplerEnv| (white = "
                                         f">= {255 // DIFF_GAIN}); blue: mask outline", fill=(255, 80, 80))
        paths.append(out_dir / f"ep{ep:02d}_{prefix}_absdiff.png")
        img.save(paths[1])
    return [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in paths]


def trajectory_gap(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Per-step distance (cm) between two (T+1, >=3) trajectories of positions."""
    d = np.linalg.norm(a[:, :3] - b[:, :3], axis=1) * 100
    return {"max_cm": float(d.max()), "at_step": int(d.argmax()), "final_cm": float(d[-1]), "mean_cm": float(d.mean())}


def controller_rule_check(actions: np.ndarray, ee: np.ndarray, target: np.ndarray, base_q: np.ndarray) -> dict:
    """How each step's new arm target follows from the previous one, in a run's recorded (world-frame) data: the
    largest error (cm) of two rules for the translation part of a delta pose (dp, dR) given in the base frame:
    ``pivot_target``: new = previous target + dp (ManiSkill3's root_translation:root_aligned_body_rotation);
    ``pivot_measured_ee``: new = measured EE + dp + dR (previous target - measured EE) (SimplerEnv's "ee_align2")."""
    from envs.action_adapters import WidowXBridgeAdapter
    from envs.geometry import quaternion_to_matrix

    adapter, rb = WidowXBridgeAdapter(), quaternion_to_matrix(base_q / np.linalg.norm(base_q))
    err_target, err_ee = [], []
    for t, action in enumerate(actions):
        a = adapter(action).astype(np.float64)
        dp, dr = rb @ a[:3], rb @ rotvec_to_matrix(a[3:6]) @ rb.T
        err_target.append(np.linalg.norm(target[t] + dp - target[t + 1]))
        err_ee.append(np.linalg.norm(ee[t, :3] + dp + dr @ (target[t] - ee[t, :3]) - target[t + 1]))
    return {"pivot_target_max_err_cm": float(100 * max(err_target)),
            "pivot_measured_ee_max_err_cm": float(100 * max(err_ee))}


def first_true(x: np.ndarray) -> int | None:
    idx = np.flatnonzero(x)
    return int(idx[0]) + 1 if idx.size else None


def compare(ep: int, ms3: dict[str, Any], ms2: dict[str, np.ndarray], overlay: np.ndarray, out_dir: Path,
            control: bool, pivot_fix: bool) -> dict[str, Any]:
    e = ms3[f"expert{ep}"]
    g = lambda key: ms2[f"ep{ep}_{key}"]
    fix = lambda key: ms2[f"fix{ep}_{key}"]
    first = frame_stats(e["frame0"], g("frame0"), overlay)
    pngs = write_pngs(out_dir, ep, e["frame0"], g("frame0"), first, "first")
    pngs += write_pngs(out_dir, ep, e["frame_last"], g("frame_last"), None, "last")
    carrot3, carrot2 = e["carrot"][0], g("carrot")[0]
    reset = {
        "carrot_pos_diff_mm": (1000 * (carrot3[:3] - carrot2[:3])).round(2).tolist(),
        "carrot_maniskill3": carrot3.round(4).tolist(), "carrot_simplerenv": carrot2.round(4).tolist(),
        "carrot_yaw_deg": [round(np.degrees(yaw(carrot3[3:])), 2), round(np.degrees(yaw(carrot2[3:])), 2)],
        "carrot_rot_diff_deg": round(angle_between(carrot3[3:], carrot2[3:]), 3),
        "plate_pos_diff_mm": (1000 * (e["plate"][0, :3] - g("plate")[0, :3])).round(2).tolist(),
        "ee_pos_diff_mm": (1000 * (e["ee"][0, :3] - g("ee")[0, :3])).round(3).tolist(),
        "qpos_max_abs_diff": float(np.abs(e["qpos"][0] - g("qpos")[0]).max()),
        "base_pose_diff": float(np.abs(e["base"] - g("base")).max()),
        "cam2world_max_abs_diff": float(np.abs(e["cam2world_gl"] - g("cam2world_gl")).max()),
        "intrinsic_max_abs_diff": float(np.abs(e["intrinsic"] - g("intrinsic")).max()),
        "instructions": [e["instruction"], str(g("instruction"))],
    }
    row: dict[str, Any] = {
        "episode_id": ep,
        "first_frame": {k: v for k, v in first.items() if not k.startswith("_")},
        "reset_state": reset,
        "pngs": pngs,
        "expert_actions": {"steps": len(e["actions"]), "regrasps": e["regrasps"],
                           "phase_at_step": {p: e["phases"].index(p) + 1 for p in dict.fromkeys(e["phases"])},
                           "max_abs_yaw_rad": float(np.abs(e["actions"][:, 5]).max())},
        "maniskill3_expert": {"success_final": bool(e["success"][-1]), "success_any": bool(e["success"].any()),
                              "first_success_step": first_true(e["success"]),
                              "consecutive_grasp_any": bool(e["grasp"].any())},
        "simplerenv_replay": {"success_final": bool(g("success")[-1]), "success_any": bool(g("success").any()),
                              "first_success_step": first_true(g("success")),
                              "consecutive_grasp_any": bool(g("grasp").any())},
        "divergence_simplerenv_vs_maniskill3_expert": {
            "ee": trajectory_gap(e["ee"], g("ee")), "carrot": trajectory_gap(e["carrot"], g("carrot")),
            "controller_target": trajectory_gap(e["target"], g("target")),
            "finger_qpos_max_abs_diff_mm": float(1000 * np.abs(e["qpos"][:, 6:] - g("qpos")[:, 6:]).max()),
            "carrot_final_maniskill3": e["carrot"][-1, :3].round(4).tolist(),
            "carrot_final_simplerenv": g("carrot")[-1, :3].round(4).tolist(),
            "plate_final_gap_cm": float(100 * np.linalg.norm(e["plate"][-1, :3] - g("plate")[-1, :3])),
        },
        "controller_rule_check": {
            "maniskill3_expert_run": controller_rule_check(e["actions"], e["ee"], e["target"], e["base"][3:]),
            "simplerenv_replay": controller_rule_check(e["actions"], g("ee"), g("target"), g("base")[3:]),
        },
        "timing_s": {"maniskill3_reset": e["reset_s"], "maniskill3_step": e["step_s"],
                     "simplerenv_reset": float(g("reset_s")), "simplerenv_step": float(g("step_s"))},
    }
    if pivot_fix:
        row["simplerenv_replay_pivot_fixed"] = {
            "what": "diagnostic: SimplerEnv replay with each translation shifted by (I - dR)(target - measured EE), "
                    "so its ee_align2 target follows ManiSkill3's rule",
            "success_final": bool(fix("success")[-1]), "success_any": bool(fix("success").any()),
            "first_success_step": first_true(fix("success")), "consecutive_grasp_any": bool(fix("grasp").any()),
            "ee": trajectory_gap(e["ee"], fix("ee")), "carrot": trajectory_gap(e["carrot"], fix("carrot")),
            "controller_target": trajectory_gap(e["target"], fix("target")),
        }
    if control:
        r = ms3[f"replay{ep}"]
        row["maniskill3_open_loop_replay"] = {
            "success_final": bool(r["success"][-1]), "success_any": bool(r["success"].any()),
            "first_success_step": first_true(r["success"]),
            "ee_gap_vs_expert": trajectory_gap(e["ee"], r["ee"]),
            "carrot_gap_vs_expert": trajectory_gap(e["carrot"], r["carrot"]),
        }
    return row


def print_table(rows: list[dict[str, Any]], control: bool, pivot_fix: bool) -> None:
    yn = lambda s: f"{'Y' if s['success_final'] else 'n'}/{'Y' if s['success_any'] else 'n'}"
    head = (f"{'ep':>3} {'MAD all':>8} {'MAD mask':>9} {'mask %':>7} {'>30 %':>6} {'carrot d0 mm':>13} "
            f"{'MS3 exp':>8} {'MS3 rep':>8} {'SE rep':>7} {'EE max cm':>10} {'carrot max cm':>14} "
            f"{'tgt max cm':>11} {'rule T/E cm':>12} {'SE fix':>7} {'fix EE/carrot cm':>17}")
    print(head)
    print("-" * len(head))
    for r in rows:
        f, d = r["first_frame"], r["divergence_simplerenv_vs_maniskill3_expert"]
        c0 = np.linalg.norm(r["reset_state"]["carrot_pos_diff_mm"])
        rep = yn(r["maniskill3_open_loop_replay"]) if control else "-"
        rule = r["controller_rule_check"]["simplerenv_replay"]
        rule_s = f"{rule['pivot_target_max_err_cm']:.2f}/{rule['pivot_measured_ee_max_err_cm']:.3f}"
        fx = r.get("simplerenv_replay_pivot_fixed")
        fix_s = yn(fx) if fx else "-"
        fix_d = f"{fx['ee']['max_cm']:.2f}/{fx['carrot']['max_cm']:.2f}" if fx else "-"
        print(f"{r['episode_id']:>3} {f['mad_all']:>8.3f} {f['mad_mask']:>9.2f} {100 * f['mask_fraction']:>7.2f} "
              f"{100 * f['frac_pixels_diff_gt30']:>6.3f} {c0:>13.2f} {yn(r['maniskill3_expert']):>8} {rep:>8} "
              f"{yn(r['simplerenv_replay']):>7} {d['ee']['max_cm']:>10.2f} {d['carrot']['max_cm']:>14.2f} "
              f"{d['controller_target']['max_cm']:>11.2f} {rule_s:>12} {fix_s:>7} {fix_d:>17}")
    print("MAD: mean |MS3 - SimplerEnv| first frame (0-255), all pixels / drawn-region mask; >30 %: pixels differing "
          "by > 30; carrot d0: carrot position gap after reset.\nsuccess columns: final/any step (Y = success); "
          "MS3 exp = expert closed-loop on ManiSkill3, MS3 rep = its actions replayed open-loop on ManiSkill3, "
          "SE rep = replayed open-loop in SimplerEnv; EE / carrot / tgt (controller target) max cm: largest distance "
          "between the SimplerEnv replay and the ManiSkill3 expert run.\nrule T/E: in the SimplerEnv replay, max "
          "error of 'new target = old target + dp' (ManiSkill3's rule) / of 'rotate about the measured EE' "
          "(ee_align2); SE fix: SimplerEnv replay with the pivot compensated (diagnostic)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=("main", "real2sim"), default="main")
    parser.add_argument("--inputs", type=Path, help="(--side real2sim) the actions .npz")
    parser.add_argument("--outputs", type=Path, help="(--side real2sim) where to write its results .npz")
    parser.add_argument("--episodes", type=int, nargs="+", default=list(DEFAULT_EPISODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60, help="steps per episode (SIMPLER's carrot task: 60)")
    parser.add_argument("--no-control", action="store_true", help="skip the open-loop replay on ManiSkill3")
    parser.add_argument("--no-pivot-fix", action="store_true",
                        help="skip the diagnostic SimplerEnv replay whose translations compensate ee_align2's pivot")
    parser.add_argument("--real2sim-python", type=Path, default=REPO / ".venv-real2sim" / "bin" / "python")
    parser.add_argument("--out", type=Path, default=RESULTS / "carrot_twin.json")
    parser.add_argument("--runs", type=Path, default=RUNS / "carrot_twin",
                        help="the frame PNGs and the .npz files the two sides exchange (bulky: not evidence)")
    args = parser.parse_args()
    if args.side == "real2sim":
        run_real2sim_side(args.inputs, args.outputs)
        return

    started = time.perf_counter()
    if not os.environ.get("MS_ASSET_DIR") and (SHARED / "simpler_assets").is_dir():
        os.environ["MS_ASSET_DIR"] = str((SHARED / "simpler_assets").resolve())
    data_dir = os.environ.get("MS2_REAL2SIM_ASSET_DIR") or str(SHARED / "simpler_real2sim/ManiSkill2_real2sim/data")
    data_dir = str(Path(data_dir).resolve())
    args.runs.mkdir(parents=True, exist_ok=True)
    control = not args.no_control
    episodes = [e % 24 for e in args.episodes]

    print(f"ManiSkill3 side: episodes {episodes}, seed {args.seed}, {args.steps} steps", flush=True)
    t0 = time.perf_counter()
    ms3 = run_maniskill3_side(episodes, args.seed, args.steps, control)
    ms3_wall = time.perf_counter() - t0

    inputs, outputs = args.runs / "actions.npz", args.runs / "simplerenv.npz"
    pivot_fix = not args.no_pivot_fix
    np.savez(inputs, episodes=np.array(episodes), seed=np.array(args.seed), pivot_fix=np.array(pivot_fix),
             **{f"ep{ep}_actions": ms3[f"expert{ep}"]["actions"] for ep in episodes})
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": python_path, "MS2_REAL2SIM_ASSET_DIR": data_dir}
    print("SimplerEnv side (subprocess) ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run([str(args.real2sim_python), str(Path(__file__).resolve()), "--side", "real2sim",
                           "--inputs", str(inputs), "--outputs", str(outputs)], env=env, cwd=REPO, check=False,
                          capture_output=True, text=True)
    ms2_wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the SimplerEnv side failed (exit {proc.returncode})")
    ms2 = dict(np.load(outputs))

    from PIL import Image

    overlay = np.asarray(Image.open(Path(data_dir) / OVERLAY).convert("RGB").resize((640, 480)), dtype=np.uint8)
    rows = [compare(ep, ms3, ms2, overlay, args.runs, control, pivot_fix) for ep in episodes]
    print()
    print_table(rows, control, pivot_fix)

    def mean(path: list[str]) -> float:
        vals = []
        for r in rows:
            v: Any = r
            for k in path:
                v = v[k]
            vals.append(float(v))
        return float(np.mean(vals))

    rate = lambda side, key: mean([side, key])
    summary = {
        "first_frame_mad_all": mean(["first_frame", "mad_all"]),
        "first_frame_mad_mask": mean(["first_frame", "mad_mask"]),
        "first_frame_frac_pixels_diff_gt30": mean(["first_frame", "frac_pixels_diff_gt30"]),
        "carrot_reset_pos_diff_mm": float(np.mean([np.linalg.norm(r["reset_state"]["carrot_pos_diff_mm"])
                                                   for r in rows])),
        "maniskill3_expert_success_final": rate("maniskill3_expert", "success_final"),
        "maniskill3_expert_success_any": rate("maniskill3_expert", "success_any"),
        "simplerenv_replay_success_final": rate("simplerenv_replay", "success_final"),
        "simplerenv_replay_success_any": rate("simplerenv_replay", "success_any"),
        "ee_max_divergence_cm": mean(["divergence_simplerenv_vs_maniskill3_expert", "ee", "max_cm"]),
        "carrot_max_divergence_cm": mean(["divergence_simplerenv_vs_maniskill3_expert", "carrot", "max_cm"]),
        "controller_target_max_divergence_cm": mean(["divergence_simplerenv_vs_maniskill3_expert",
                                                     "controller_target", "max_cm"]),
    }
    summary["simplerenv_controller_rule_pivot_target_max_err_cm"] = mean(
        ["controller_rule_check", "simplerenv_replay", "pivot_target_max_err_cm"])
    summary["simplerenv_controller_rule_pivot_measured_ee_max_err_cm"] = mean(
        ["controller_rule_check", "simplerenv_replay", "pivot_measured_ee_max_err_cm"])
    summary["maniskill3_controller_rule_pivot_target_max_err_cm"] = mean(
        ["controller_rule_check", "maniskill3_expert_run", "pivot_target_max_err_cm"])
    if pivot_fix:
        summary["simplerenv_pivot_fixed_success_final"] = rate("simplerenv_replay_pivot_fixed", "success_final")
        summary["simplerenv_pivot_fixed_success_any"] = rate("simplerenv_replay_pivot_fixed", "success_any")
        summary["simplerenv_pivot_fixed_ee_max_divergence_cm"] = mean(["simplerenv_replay_pivot_fixed", "ee", "max_cm"])
        summary["simplerenv_pivot_fixed_carrot_max_divergence_cm"] = mean(
            ["simplerenv_replay_pivot_fixed", "carrot", "max_cm"])
    if control:
        summary["maniskill3_replay_success_final"] = rate("maniskill3_open_loop_replay", "success_final")
        summary["maniskill3_replay_success_any"] = rate("maniskill3_open_loop_replay", "success_any")
    print("\nmean over episodes:", json.dumps({k: round(v, 4) for k, v in summary.items()}, indent=1))
    result = {
        "what": "ManiSkill3 PutCarrotOnPlateInScene-v1 (vlart SimTask) vs SimplerEnv PutCarrotOnPlateInScene-v0 "
                "(ManiSkill2_real2sim, prepackaged visual-matching config); first frames, and the ManiSkill3 "
                "scripted expert's actions replayed open-loop through WidowXBridgeAdapter",
        "episodes": episodes, "seed": args.seed, "steps": args.steps,
        "mask": f"pixels where either frame differs from the overlay photo by > {MASK_THRESHOLD} in some channel",
        "simplerenv": {"control_mode": str(ms2["control_mode"]), "control_sim_freq": ms2["control_sim_freq"].tolist(),
                       "max_episode_steps": int(ms2["max_episode_steps"]), "make_s": float(ms2["make_s"])},
        "maniskill3_make_s": ms3["make_s"],
        "wall_s": {"maniskill3_side": ms3_wall, "simplerenv_side": ms2_wall,
                   "total": time.perf_counter() - started},
        "summary": summary,
        "per_episode": rows,
    }
    write_stamped(args.out, result, "envs/scripted_expert.py")
    inputs.unlink()
    outputs.unlink()
    print(f"PNGs in {args.runs}; wall {result['wall_s']['total']:.0f} s "
          f"(ManiSkill3 side {ms3_wall:.0f} s, SimplerEnv side {ms2_wall:.0f} s)")


if __name__ == "__main__":
    main()

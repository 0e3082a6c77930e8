"""The comparison half of the carrot twin check (``benchmarks.carrot_twin_check``): per episode, the two simulators'
first frames, reset states, expert and replay outcomes, trajectory gaps and controller rules; the table it prints and
the means over episodes it writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.evidence import REPO
from envs.geometry import axis_angle_to_matrix, quaternion_to_matrix
from envs.placements import quat_angle

MASK_THRESHOLD = 8  # a pixel belongs to the drawn region if some channel differs from the overlay by more than this
DIFF_GAIN = 4  # the abs-diff PNG shows 4 x |difference| (clipped), so small differences stay visible


def yaw(q: np.ndarray) -> float:
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def angle_between(q1: np.ndarray, q2: np.ndarray) -> float:
    """Rotation angle (deg) between two unit quaternions (wxyz)."""
    return float(np.degrees(quat_angle(q1, q2)))


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

    adapter, rb = WidowXBridgeAdapter(), quaternion_to_matrix(base_q / np.linalg.norm(base_q))
    err_target, err_ee = [], []
    for t, action in enumerate(actions):
        a = adapter(action).astype(np.float64)
        dp, dr = rb @ a[:3], rb @ axis_angle_to_matrix(a[3:6]) @ rb.T
        err_target.append(np.linalg.norm(target[t] + dp - target[t + 1]))
        err_ee.append(np.linalg.norm(ee[t, :3] + dp + dr @ (target[t] - ee[t, :3]) - target[t + 1]))
    return {"pivot_target_max_err_cm": float(100 * max(err_target)),
            "pivot_measured_ee_max_err_cm": float(100 * max(err_ee))}


def first_true(x: np.ndarray) -> int | None:
    idx = np.flatnonzero(x)
    return int(idx[0]) + 1 if idx.size else None


def outcome(success: np.ndarray) -> dict[str, Any]:
    """A run's success at the last step (SIMPLER's rule), at any step, and the first step it held."""
    return {"success_final": bool(success[-1]), "success_any": bool(success.any()),
            "first_success_step": first_true(success)}


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
        "maniskill3_expert": {**outcome(e["success"]), "consecutive_grasp_any": bool(e["grasp"].any())},
        "simplerenv_replay": {**outcome(g("success")), "consecutive_grasp_any": bool(g("grasp").any())},
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
            **outcome(fix("success")), "consecutive_grasp_any": bool(fix("grasp").any()),
            "ee": trajectory_gap(e["ee"], fix("ee")), "carrot": trajectory_gap(e["carrot"], fix("carrot")),
            "controller_target": trajectory_gap(e["target"], fix("target")),
        }
    if control:
        r = ms3[f"replay{ep}"]
        row["maniskill3_open_loop_replay"] = {
            **outcome(r["success"]),
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



def summarize(rows: list[dict[str, Any]], control: bool, pivot_fix: bool) -> dict[str, float]:
    """The means over episodes of the rows' headline numbers (a success rate is the mean of its booleans)."""

    def mean(*path: str) -> float:
        values = []
        for row in rows:
            value: Any = row
            for key in path:
                value = value[key]
            values.append(float(value))
        return float(np.mean(values))

    divergence = "divergence_simplerenv_vs_maniskill3_expert"
    summary = {
        "first_frame_mad_all": mean("first_frame", "mad_all"),
        "first_frame_mad_mask": mean("first_frame", "mad_mask"),
        "first_frame_frac_pixels_diff_gt30": mean("first_frame", "frac_pixels_diff_gt30"),
        "carrot_reset_pos_diff_mm": float(np.mean([np.linalg.norm(r["reset_state"]["carrot_pos_diff_mm"])
                                                   for r in rows])),
        "maniskill3_expert_success_final": mean("maniskill3_expert", "success_final"),
        "maniskill3_expert_success_any": mean("maniskill3_expert", "success_any"),
        "simplerenv_replay_success_final": mean("simplerenv_replay", "success_final"),
        "simplerenv_replay_success_any": mean("simplerenv_replay", "success_any"),
        "ee_max_divergence_cm": mean(divergence, "ee", "max_cm"),
        "carrot_max_divergence_cm": mean(divergence, "carrot", "max_cm"),
        "controller_target_max_divergence_cm": mean(divergence, "controller_target", "max_cm"),
        "simplerenv_controller_rule_pivot_target_max_err_cm": mean(
            "controller_rule_check", "simplerenv_replay", "pivot_target_max_err_cm"),
        "simplerenv_controller_rule_pivot_measured_ee_max_err_cm": mean(
            "controller_rule_check", "simplerenv_replay", "pivot_measured_ee_max_err_cm"),
        "maniskill3_controller_rule_pivot_target_max_err_cm": mean(
            "controller_rule_check", "maniskill3_expert_run", "pivot_target_max_err_cm"),
    }
    if pivot_fix:
        summary["simplerenv_pivot_fixed_success_final"] = mean("simplerenv_replay_pivot_fixed", "success_final")
        summary["simplerenv_pivot_fixed_success_any"] = mean("simplerenv_replay_pivot_fixed", "success_any")
        summary["simplerenv_pivot_fixed_ee_max_divergence_cm"] = mean("simplerenv_replay_pivot_fixed", "ee", "max_cm")
        summary["simplerenv_pivot_fixed_carrot_max_divergence_cm"] = mean(
            "simplerenv_replay_pivot_fixed", "carrot", "max_cm")
    if control:
        summary["maniskill3_replay_success_final"] = mean("maniskill3_open_loop_replay", "success_final")
        summary["maniskill3_replay_success_any"] = mean("maniskill3_open_loop_replay", "success_any")
    return summary

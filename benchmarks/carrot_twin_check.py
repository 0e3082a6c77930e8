"""Cross-check of SIMPLER's carrot-on-plate task in its two simulators: prints a table, writes JSON and PNGs.

    MS_ASSET_DIR=../shared/simpler_assets \\
    MS2_REAL2SIM_ASSET_DIR=../shared/simpler_real2sim/ManiSkill2_real2sim/data \\
    .venv/bin/python -m benchmarks.carrot_twin_check [--episodes 0 5 11 17 23] [--seed 0] [--steps 60]
        [--out docs/results/carrot_twin.json] [--runs runs/benchmarks/carrot_twin]

The two sides:
- ManiSkill3's Bridge twin ``PutCarrotOnPlateInScene-v1``, built by vlart (``envs.sim_env.SimTask``, this
  interpreter);
- the original SimplerEnv's ``PutCarrotOnPlateInScene-v0`` (ManiSkill2_real2sim on SAPIEN 2.2.2), with SimplerEnv's
  prepackaged visual-matching configuration (robot ``widowx`` at (0.147, 0.028), ``bridge_table_1_v1``, overlay
  ``bridge_real_eval_1.png``, ``3rd_view_camera``, 5 Hz control, 500 Hz sim, 60 steps), run by
  ``benchmarks.carrot_twin_simplerenv`` in the SimplerEnv interpreter (``.venv-real2sim``; it imports neither torch
  nor mani_skill), which exchanges ``.npz`` files with this side. The simulators run one after the other, never
  together; ``benchmarks.carrot_twin_compare`` compares what they recorded.

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

from benchmarks.carrot_twin_compare import MASK_THRESHOLD, compare, print_table, summarize
from benchmarks.carrot_twin_simplerenv import CAMERA, CARROT, PLATE
from benchmarks.evidence import REPO, RESULTS, RUNS, write_stamped

TASK = "ms3_twin/widowx_carrot_on_plate"
EE_LINK = "ee_gripper_link"
OVERLAY = "real_inpainting/bridge_real_eval_1.png"  # under the SimplerEnv data folder (identical file in both packs)
DEFAULT_EPISODES = (0, 5, 11, 17, 23)
SHARED = REPO.parent / "shared"


def run_maniskill3_side(episodes: list[int], seed: int, steps: int, control: bool) -> dict[str, Any]:
    """The ManiSkill3 side, in this interpreter: per episode the expert closed-loop and, with ``control``, its
    actions replayed open-loop from a fresh reset; each run's frames, camera, states and successes."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    proc = subprocess.run([str(args.real2sim_python), "-m", "benchmarks.carrot_twin_simplerenv",
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

    summary = summarize(rows, control, pivot_fix)
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

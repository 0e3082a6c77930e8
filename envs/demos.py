"""Scripted demonstrations for the SIMPLER WidowX tasks (``vlart demos``), stored as one HDF5 file per episode.

Placements never coincide with the official evaluation grid (``envs/placements.py`` says how); each attempt's
placement replaces the environment's configuration table (``SimTask.place``, ``Real2SimTask.place``), so the
simulator's own reset (settling, bounding boxes, success checks) runs unchanged. The ManiSkill3 twins run here, the
original SimplerEnv's tasks (``simplerenv/widowx_*``) in its own interpreter (``.venv-real2sim``: this module re-runs
itself there). Only successful episodes are kept. The layout is in ``docs/demonstrations.md``.
With ``action_noise`` the expert's actions are executed perturbed and recorded clean (DART; see
``envs/scripted_expert.py``), so the demonstrations include corrections from off-course states.
With a policy to drive (``policy_endpoint``: a ``vlart serve`` endpoint), the episodes are DAgger's
(``envs/dagger.py``): the policy's rollouts labelled with the expert's actions, every one kept, under the task's
``@dagger`` folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from envs.placements import Placement
from envs.registry import TASKS, TaskSpec
from policies.training.demo_dataset import episode_files, read_episode

LAYOUT_VERSION = 1
DATASET_NAME = "vlart_simpler_bridge"


def attempt_seed(seed: int, attempt: int) -> int:
    return seed * 1_000_003 + attempt


def episode_path(out: Path, collection: str, attempt: int) -> Path:
    return out / "episodes" / collection.replace("/", "__") / f"attempt_{attempt:06d}.h5"


def collection_name(task_name: str, driven: bool) -> str:
    """Where a task's episodes are logged and stored: the expert's under the task's name, DAgger's beside them."""
    return f"{task_name}@dagger" if driven else task_name


# The WidowX tasks the scripted expert solves: the ManiSkill3 twins and the original SimplerEnv's Bridge tasks.
DEMO_TASKS = [name for name, spec in TASKS.items() if spec.simpler and spec.backend == "maniskill3"] + [
    name for name in TASKS if name.startswith("simplerenv/widowx_")]


# -- worker ----------------------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(task_name: str, image_size: int, policy_endpoint: Optional[str] = None) -> None:
    from envs.tasks import make_task

    spec = TASKS[task_name]
    if spec.backend == "maniskill3":
        import torch

        torch.set_num_threads(1)
    _WORKER.update(task=make_task(spec), image_size=image_size, policy=None)
    if policy_endpoint is not None:
        from envs.episodes import connect_remote

        _WORKER["policy"], _ = connect_remote(policy_endpoint, timeout_s=120.0)


def run_attempt(args: tuple[int, int, str, float, float]) -> dict[str, Any]:
    """One attempt in a worker: returns its record, and writes the file when it is kept (the expert's when it
    succeeds, every DAgger episode)."""
    from envs.dagger import run_dagger_episode
    from envs.scripted_expert import run_expert_episode
    from policies.image_transforms import resize_naive

    attempt, seed, out, action_noise, expert_share = args
    task, policy = _WORKER["task"], _WORKER["policy"]
    placement = task.placements.sample(np.random.default_rng(attempt_seed(seed, attempt)))
    assert not task.placements.coincides(placement)
    task.place(placement)
    started = time.perf_counter()
    try:
        if policy is None:
            episode = run_expert_episode(task, episode_id=0, seed=attempt_seed(seed, attempt),
                                         action_noise=action_noise)
        else:
            episode = run_dagger_episode(task, policy, episode_id=0, seed=attempt_seed(seed, attempt),
                                         expert_share=expert_share)
    except Exception as exc:  # a simulator failure loses one attempt, not the run
        return {"attempt": attempt, "success": False, "kept": False, "error": f"{type(exc).__name__}: {exc}"}
    kept = policy is not None or episode["success"]
    record = {"attempt": attempt, "success": episode["success"], "kept": kept, "steps": episode["steps"],
              "grasped": episode["grasped"], "regrasps": episode["regrasps"],
              "wall_time_s": round(time.perf_counter() - started, 3)}
    if kept:
        frames = np.stack([resize_naive(f, _WORKER["image_size"]) for f in episode["frames"][:-1]])
        write_episode(episode_path(Path(out), collection_name(task.spec.name, policy is not None), attempt),
                      task.spec, attempt, seed, placement, episode["instruction"], frames, episode["actions"],
                      action_noise, success=episode["success"], executed=episode.get("executed"),
                      expert_steps=episode.get("expert_steps"))
    return record


def write_episode(path: Path, spec: TaskSpec, attempt: int, seed: int, placement: Placement, instruction: str,
                  frames: np.ndarray, actions: np.ndarray, action_noise: float = 0.0, success: bool = True,
                  executed: Optional[np.ndarray] = None, expert_steps: Optional[np.ndarray] = None) -> None:
    """One episode: ``actions`` (T, 7) are the expert's for ``frames`` (T, S, S, 3); a DAgger episode also stores
    the ``executed`` actions (T, 7) and which steps the expert drove (T,)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with h5py.File(partial, "w") as file:
        file.attrs.update(layout_version=LAYOUT_VERSION, task=spec.name, env_id=spec.env_id, instruction=instruction,
                          attempt=attempt, seed=seed, control_rate_hz=spec.control_rate_hz, success=success,
                          steps=len(actions), action_noise=action_noise,
                          action_convention="dx,dy,dz,droll,dpitch,dyaw (base frame, m/rad),gripper (1 open, 0 closed)")
        file.create_dataset("observation/image", data=frames, compression="gzip", compression_opts=4)
        file.create_dataset("action", data=actions.astype(np.float32))
        if executed is not None and expert_steps is not None:
            file.create_dataset("executed_action", data=executed.astype(np.float32))
            file.create_dataset("expert_step", data=expert_steps.astype(bool))
        file.create_dataset("placement/xyz", data=placement.xyz)
        file.create_dataset("placement/quat", data=placement.quat)
    partial.rename(path)  # a file that exists is complete: resuming skips it


# -- parent ----------------------------------------------------------------------------------------------------------


def compute_statistics(data_dir: Path) -> dict[str, Any]:
    """CogACT's ``dataset_statistics.json`` entry from every stored action (gripper absolute, not normalised)."""
    files = episode_files(data_dir)
    actions = np.concatenate([read_episode(p)["actions"] for p in files]).astype(np.float64)
    episodes = len(files)
    return {DATASET_NAME: {
        "action": {
            "mean": actions.mean(0).tolist(), "std": actions.std(0).tolist(), "max": actions.max(0).tolist(),
            "min": actions.min(0).tolist(), "q01": np.quantile(actions, 0.01, axis=0).tolist(),
            "q99": np.quantile(actions, 0.99, axis=0).tolist(), "mask": [True] * 6 + [False],
        },
        "num_transitions": int(len(actions)),
        "num_trajectories": episodes,
    }}


def _attempt_log(out: Path) -> Path:
    return out / "attempts.jsonl"


def generate_demos(task_name: str, episodes: int, out: Path, workers: int = 1, seed: int = 0,
                   image_size: int = 224, progress: bool = True, max_attempts: Optional[int] = None,
                   action_noise: float = 0.0, policy_endpoint: Optional[str] = None, expert_share: float = 0.0,
                   policy_name: Optional[str] = None) -> dict[str, Any]:
    """Run attempts until ``episodes`` of ``task_name`` are kept under ``out`` (resumable: attempts already logged
    are skipped), then write ``dataset_statistics.json`` and ``meta.json``. The expert's attempts are kept when they
    succeed; with ``policy_endpoint`` the policy served there drives (DAgger: ``expert_share`` of the steps the
    expert's) and every attempt is kept. ``action_noise``: standard deviation (metres) of the Gaussian noise added to
    each translation the expert executes. ``policy_name``: what the driving policy is, for ``meta.json``."""
    from tqdm import tqdm

    if task_name not in DEMO_TASKS:
        raise ValueError(f"--task: expected a SIMPLER WidowX task ({', '.join(DEMO_TASKS)})")
    if not action_noise >= 0:
        raise ValueError(f"--action-noise: expected a standard deviation >= 0 in metres, got {action_noise}")
    if not 0.0 <= expert_share <= 1.0:
        raise ValueError(f"--expert-share: expected a probability in [0, 1], got {expert_share}")
    if TASKS[task_name].backend == "real2sim" and importlib.util.find_spec("mani_skill2_real2sim") is None:
        return _in_simplerenv(task_name, episodes, out, workers, seed, image_size, max_attempts, action_noise,
                              policy_endpoint, expert_share, policy_name)
    collection = collection_name(task_name, policy_endpoint is not None)
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"layout_version": LAYOUT_VERSION, "tasks": {}}
    made_with = meta["tasks"].get(collection, {}).get("action_noise", 0.0)
    if collection in meta["tasks"] and made_with != action_noise:
        raise ValueError(f"--action-noise: {out} holds {task_name} demonstrations made with {made_with}; resume with "
                         f"that value or use another --out")
    out.mkdir(parents=True, exist_ok=True)
    log_path = _attempt_log(out)
    done = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    done = [r for r in done if r.get("task") == collection]
    tried = {r["attempt"] for r in done}
    kept = sum(r.get("kept", r["success"]) for r in done)
    limit = max_attempts or 4 * episodes + 20
    pending = [a for a in range(limit) if a not in tried]
    started = time.perf_counter()
    bar = tqdm(total=episodes, initial=min(kept, episodes), desc=f"demos {collection}", unit="episode",
               disable=not progress, file=sys.stderr)
    context = mp.get_context("spawn")
    with context.Pool(workers, initializer=_worker_init, initargs=(task_name, image_size, policy_endpoint)) as pool, \
            log_path.open("a") as log:
        for record in pool.imap(run_attempt, [(a, seed, str(out), action_noise, expert_share) for a in pending]):
            if kept >= episodes:
                break
            record["task"] = collection
            log.write(json.dumps(record) + "\n")
            log.flush()
            done.append(record)
            if record["kept"]:
                kept += 1
                bar.update(1)
            bar.set_postfix_str(f"success {sum(r['success'] for r in done)}/{len(done)}")
        pool.terminate()
    bar.close()
    logged = {r["attempt"] for r in done if r.get("kept", r["success"])}
    folder = episode_path(out, collection, 0).parent
    for path in folder.glob("attempt_*"):
        if int(path.stem.split("_")[1].split(".")[0]) not in logged:
            path.unlink()  # finished by a worker after the target count was reached: not logged, not kept
    statistics = compute_statistics(out)
    (out / "dataset_statistics.json").write_text(json.dumps(statistics, indent=2))
    successful = [r for r in done if r["success"]]
    meta["tasks"][collection] = {
        "episodes": sum(1 for p in episode_files(out) if p.parent == folder),
        "attempts": len(done),
        ("policy_success_rate" if policy_endpoint else "expert_success_rate"):
            round(len(successful) / max(len(done), 1), 4),
        "seed": seed,
        "image_size": image_size,
        "action_noise": action_noise,
        "regrasp_episodes": sum(1 for r in successful if r.get("regrasps")),
    }
    if policy_endpoint is not None:
        meta["tasks"][collection].update(policy=policy_name or policy_endpoint, expert_share=expert_share,
                                         grasped=sum(bool(r.get("grasped")) for r in done))
    meta["dataset_name"] = DATASET_NAME
    meta_path.write_text(json.dumps(meta, indent=2))
    return {**meta["tasks"][collection], "wall_time_s": round(time.perf_counter() - started, 2),
            "out": str(out), "workers": workers, "cpus": os.cpu_count()}


def _in_simplerenv(task_name: str, episodes: int, out: Path, workers: int, seed: int, image_size: int,
                   max_attempts: Optional[int], action_noise: float, policy_endpoint: Optional[str],
                   expert_share: float, policy_name: Optional[str]) -> dict[str, Any]:
    """``generate_demos`` run by SimplerEnv's interpreter (its progress on this stderr); its summary."""
    from envs.real2sim_workers import real2sim_python

    repo = Path(__file__).resolve().parents[1]
    command = [str(real2sim_python()), "-m", "envs.demos", "--task", task_name, "--episodes", str(episodes),
               "--out", str(out), "--workers", str(workers), "--seed", str(seed), "--image-size", str(image_size),
               "--action-noise", str(action_noise), "--expert-share", str(expert_share)]
    if max_attempts is not None:
        command += ["--max-attempts", str(max_attempts)]
    if policy_endpoint is not None:
        command += ["--policy-endpoint", policy_endpoint, "--policy-name", policy_name or policy_endpoint]
    path = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=repo,
                            env=dict(os.environ, PYTHONPATH=path))
    if result.returncode != 0:
        raise RuntimeError(f"demonstrations of {task_name} in SimplerEnv's interpreter failed (exit "
                           f"{result.returncode}); its error is above")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """What ``_in_simplerenv`` runs: ``generate_demos`` with its arguments, the summary as JSON on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", required=True)
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--max-attempts", type=int, default=None)
    parser.add_argument("--action-noise", type=float, default=0.0)
    parser.add_argument("--policy-endpoint", default=None)
    parser.add_argument("--policy-name", default=None)
    parser.add_argument("--expert-share", type=float, default=0.0)
    args = parser.parse_args()
    summary = generate_demos(args.task, args.episodes, args.out, args.workers, args.seed, args.image_size,
                             max_attempts=args.max_attempts, action_noise=args.action_noise,
                             policy_endpoint=args.policy_endpoint, expert_share=args.expert_share,
                             policy_name=args.policy_name)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""On-policy demonstrations (DAgger, Ross et al. 2011): the learner drives, the privileged expert labels.

A DAgger episode runs like a lockstep evaluation: every step the policy sees the frame and answers with its
(ensembled) action. With probability ``expert_share`` the expert's action is executed instead (the beta of the DAgger
paper, drawn per step from the episode's seed); either way the step is recorded with the expert's action for that
state, so training on it teaches the learner to recover from the states its own mistakes lead to, such as a grasp
that closed beside the object. The expert labels in shadow mode (``ScriptedExpert(shadow=True)``): its phases follow
the arm wherever the learner moves it, and it retries every missed grasp.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from envs.scripted_expert import ScriptedExpert
from policies.api.interface import Policy


def run_dagger_episode(task: Any, policy: Policy, episode_id: int, seed: int, expert_share: float = 0.0,
                       max_steps: Optional[int] = None) -> dict[str, Any]:
    """One episode driven by ``policy`` (and the expert at ``expert_share`` of the steps): the frames it visited,
    the expert's action at each (``actions``, the labels), the executed ones (``executed``), which steps the
    expert drove (``expert_steps``) and whether it solved the task. It ends with the task's step limit or at the
    first step that solves the task."""
    if not 0.0 <= expert_share <= 1.0:
        raise ValueError(f"--expert-share: expected a probability in [0, 1], got {expert_share}")
    rng = np.random.default_rng(seed)
    observation = task.reset(episode_id, seed)
    instruction = observation.instruction
    policy.reset()
    expert = ScriptedExpert(shadow=True)
    expert.reset(task)
    frames, labels, executed, expert_steps, successes, grasped = [observation.image], [], [], [], [], None
    for step in range(max_steps or task.spec.max_steps):
        label = expert.act()
        learner = np.asarray(policy.predict_action(observation, seed=seed * 1000 + step).action, dtype=np.float64)
        by_expert = bool(rng.random() < expert_share)
        action = label if by_expert else learner
        expert.executed(action)
        result = task.step(action)
        observation = result.observation
        labels.append(label)
        executed.append(action)
        expert_steps.append(by_expert)
        successes.append(result.success)
        grasped = result.grasped
        frames.append(observation.image)
        if result.success:  # the expert's plan after someone else's success is no lesson
            break
    return {"instruction": instruction, "frames": frames, "actions": np.array(labels), "executed": np.array(executed),
            "expert_steps": np.array(expert_steps), "success": bool(successes and successes[-1]),
            "grasped": grasped, "steps": len(labels), "regrasps": expert.regrasps}

"""DAgger episodes (``envs.dagger``, ``vlart demos --policy``): the learner drives, the expert labels every state it
visits (real simulator, shared SIMPLER assets)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from envs.registry import TASKS
from policies.training.demo_dataset import read_episode
from tests.conftest import running_server
from tests.envs.test_demos import CARROT, FIXED_EPISODES

pytestmark = pytest.mark.sim


class StillPolicy:
    """A learner that never moves and keeps its gripper closed; counts what it is asked."""

    def __init__(self) -> None:
        self.resets = self.predictions = 0

    def reset(self) -> None:
        self.resets += 1

    def predict_action(self, observation, seed=None):
        self.predictions += 1
        return SimpleNamespace(action=np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))


@pytest.fixture(scope="module")
def carrot_task(simpler_assets):
    from envs.sim_env import SimTask

    task = SimTask(TASKS[CARROT])
    yield task
    task.close()


def test_with_the_expert_at_every_step_it_solves_the_episode_as_alone(carrot_task):
    from envs.dagger import run_dagger_episode
    from envs.scripted_expert import run_expert_episode

    episode_id = FIXED_EPISODES[CARROT]
    expert = run_expert_episode(carrot_task, episode_id, episode_id)
    learner = StillPolicy()
    dagger = run_dagger_episode(carrot_task, learner, episode_id, episode_id, expert_share=1.0)
    assert dagger["success"] and dagger["expert_steps"].all() and dagger["regrasps"] == 0
    assert learner.resets == 1 and learner.predictions == dagger["steps"]  # it sees every frame, as in lockstep
    np.testing.assert_array_equal(dagger["executed"], dagger["actions"])
    # the same approach (the shadow expert only ends its close when the fingers hold the carrot, not on a count)
    approach = int(np.argmax(expert["actions"][:, 6] == 0))
    np.testing.assert_array_equal(dagger["actions"][:approach], expert["actions"][:approach])


class ExpertByAnotherPath:
    """A learner that is an expert going straight down to the grasp (no approach point above the object): the
    labelling expert must follow it through the grasp, not keep asking for its own approach."""

    def __init__(self, task) -> None:
        from envs.scripted_expert import ScriptedExpert

        class Direct(ScriptedExpert):
            def _plan(self) -> None:
                super()._plan()
                self.waypoints[0] = ("approach", self.waypoints[1][1] + [0, 0, 0.01], 1.0)

        self.task, self.expert = task, Direct()

    def reset(self) -> None:
        self.expert.reset(self.task)

    def predict_action(self, observation, seed=None):
        return SimpleNamespace(action=self.expert.act())


def test_the_learner_drives_and_the_expert_labels_what_it_should_have_done(carrot_task):
    from envs.dagger import run_dagger_episode

    dagger = run_dagger_episode(carrot_task, StillPolicy(), 1, 1, expert_share=0.0, max_steps=12)
    assert dagger["steps"] == 12 and not dagger["success"] and not dagger["expert_steps"].any()
    assert (dagger["executed"] == 0).all()  # the arm never moved and the gripper stayed closed ...
    labels = dagger["actions"]
    assert (labels[:, 6] == 1.0).all()  # ... so the expert keeps asking to open it and approach the carrot
    assert (np.linalg.norm(labels[:, :3], axis=1) > 0.005).all()
    with pytest.raises(ValueError, match=r"--expert-share: expected a probability in \[0, 1\], got 1.5"):
        run_dagger_episode(carrot_task, StillPolicy(), 1, 1, expert_share=1.5)


def test_the_labels_follow_a_learner_that_grasps_by_another_path(carrot_task):
    from envs.dagger import run_dagger_episode

    episode_id = FIXED_EPISODES[CARROT]
    dagger = run_dagger_episode(carrot_task, ExpertByAnotherPath(carrot_task), episode_id, episode_id)
    assert dagger["success"] and dagger["regrasps"] == 0
    labels, executed = dagger["actions"][:, 6] > 0.5, dagger["executed"][:, 6] > 0.5
    assert (labels == executed).mean() >= 0.9  # the fingers: closed while the learner carries, as the expert would


@pytest.mark.slow
def test_dagger_demos_from_a_served_policy_are_kept_with_their_labels(simpler_assets, tiny_policy, tmp_path):
    from envs.demos import generate_demos

    out = tmp_path / "demos"
    with running_server(tiny_policy) as server:
        summary = generate_demos(CARROT, episodes=1, out=out, image_size=64, progress=False,
                                 policy_endpoint=server.endpoint, expert_share=0.5, policy_name="cogact-tiny")
    (path,) = (out / "episodes" / "ms3_twin__widowx_carrot_on_plate@dagger").glob("*.h5")
    episode = read_episode(path)
    steps = episode["attrs"]["steps"]
    assert episode["images"].shape == (steps, 64, 64, 3) and episode["actions"].shape == (steps, 7)
    assert episode["attrs"]["success"] == summary["policy_success_rate"]  # one attempt, kept whatever its outcome
    meta = json.loads((out / "meta.json").read_text())["tasks"][f"{CARROT}@dagger"]
    assert meta["policy"] == "cogact-tiny" and meta["expert_share"] == 0.5 and meta["episodes"] == 1
    import h5py

    with h5py.File(path) as file:
        executed, by_expert = file["executed_action"][()], file["expert_step"][()]
    assert 0 < by_expert.sum() < steps  # both drove
    np.testing.assert_allclose(executed[by_expert], episode["actions"][by_expert], atol=1e-6)
    assert not np.allclose(executed[~by_expert], episode["actions"][~by_expert], atol=1e-3)

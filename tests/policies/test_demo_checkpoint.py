"""The shipped demo checkpoint (checkpoints/cogact-demo, trained by vlart train on vlart demos): it loads, stays small,
and acts like its demonstrations on the first frame of a SIMPLER episode."""

import numpy as np
import pytest
from PIL import Image

from policies.loading import load_policy
from policies.api.interface import Observation
from tests.conftest import REPO

CHECKPOINT = REPO / "checkpoints" / "cogact-demo"
FIRST_FRAME = REPO / "configs" / "samples" / "widowx_carrot_episode0.png"


@pytest.fixture(scope="module")
def demo_policy():
    return load_policy(CHECKPOINT)


def test_checkpoint_is_small_and_self_contained():
    files = {p.name for p in CHECKPOINT.iterdir()}
    assert {"config.yaml", "model.safetensors", "dataset_statistics.json", "tokenizer", "README.md"} <= files
    assert (CHECKPOINT / "model.safetensors").stat().st_size < 50e6


def test_checkpoint_loads_and_predicts(demo_policy):
    assert demo_policy.conventions.unnorm_key == "vlart_simpler_bridge"
    assert demo_policy.conventions.image_size == 112
    assert 8e6 < sum(p.numel() for p in demo_policy.parameters()) < 10e6
    frame = np.asarray(Image.open(FIRST_FRAME).convert("RGB"))
    demo_policy.reset()
    out = demo_policy.predict_action(Observation(frame, "put carrot on plate"), seed=0)
    assert out.actions.shape == (16, 7) and np.isfinite(out.actions).all()
    # every demonstration starts with the gripper open and the arm moving towards the carrot at the step limit
    assert out.actions[0, 6] == 1.0
    assert np.linalg.norm(out.actions[0, :3]) > 0.015

import numpy as np
import pytest
import torch

from envs.demos import Placement, write_episode
from envs.registry import TASKS
from policies.action_config import ActionHeadConfig, SamplerConfig
from policies.action_head import DiffusionTransformer
from policies.diffusion import make_scheduler
from policies.normalization import select_statistics
from policies.training.augment import augment_frame
from policies.training.demo_dataset import DemoDataset
from policies.training.objective import CommittedRows, diffusion_loss

STATS = {"toy": {"action": {"q01": [-0.02] * 6 + [0.0], "q99": [0.02] * 6 + [1.0], "mask": [True] * 6 + [False]}}}


@pytest.fixture()
def demo_dir(tmp_path):
    rng = np.random.default_rng(0)
    spec = TASKS["ms3_twin/widowx_carrot_on_plate"]
    placement = Placement(np.zeros((2, 3)), np.tile([1.0, 0, 0, 0], (2, 1)))
    for attempt, steps in ((0, 5), (1, 20)):
        actions = rng.uniform(-0.02, 0.02, (steps, 7)).astype(np.float32)
        actions[:, 6] = np.arange(steps) % 2  # gripper alternates; the last value decides the padding
        frames = rng.integers(0, 256, (steps, 32, 32, 3), dtype=np.uint8)
        path = tmp_path / "episodes" / "ms3_twin__widowx_carrot_on_plate" / f"attempt_{attempt:06d}.h5"
        write_episode(path, spec, attempt, 0, placement, "put carrot on plate", frames, actions)
    return tmp_path


def test_chunks_are_normalised_and_padded_as_cogact(demo_dir):
    stats = select_statistics(STATS, "toy", 7)
    dataset = DemoDataset(demo_dir, stats, chunk_length=16)
    assert len(dataset) == 25
    short = dataset.episodes[0]["actions"]
    chunk = dataset.chunk(0, 2)
    assert chunk.shape == (16, 7) and chunk.dtype == np.float32
    np.testing.assert_allclose(chunk[:3, :6], np.clip(2 * (short[2:, :6] + 0.02) / (0.04 + 1e-8) - 1, -1, 1),
                               atol=1e-5)
    # Past the end: a zero action normalised is 2 * (0 - q01) / (q99 - q01) - 1 = 0; the gripper repeats its last value.
    np.testing.assert_allclose(chunk[3:, :6], 0.0, atol=1e-5)
    assert np.all(chunk[3:, 6] == short[-1, 6])
    batch = dataset.sample(4, np.random.default_rng(1))
    assert batch.images.shape == (4, 32, 32, 3) and batch.actions.shape == (4, 16, 7)
    assert batch.instructions == ["put carrot on plate"] * 4


def test_augmentation_keeps_shape_and_is_seeded():
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    a = augment_frame(frame, np.random.default_rng(5))
    b = augment_frame(frame, np.random.default_rng(5))
    c = augment_frame(frame, np.random.default_rng(6))
    assert a.shape == frame.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, frame)


def test_objective_goes_down_on_a_fixed_batch():
    torch.manual_seed(0)
    head = DiffusionTransformer(ActionHeadConfig(size="custom", depth=2, hidden_size=32, num_heads=2), 16)
    alphas = make_scheduler(SamplerConfig()).alphas_cumprod
    cognition = torch.randn(4, 16)
    actions = torch.rand(4, 16, 7) * 2 - 1
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = diffusion_loss(head, cognition, actions, alphas, repeats=4, condition_dropout=0.1,
                              generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert head.z_embedder.uncondition.grad is not None  # dropout reaches the null condition


def test_a_few_training_steps_reduce_the_loss_of_the_whole_policy(demo_dir, tmp_path, caplog):
    """vlart train on the tiny config: end to end (front end, LLM, DiT), checkpoints, resume."""
    import json as json_module

    from policies.loading import load_policy
    from policies.training.trainer import TrainConfig, train
    from tests.conftest import TINY

    stats = {"vlart_simpler_bridge": STATS["toy"]}
    (demo_dir / "dataset_statistics.json").write_text(json_module.dumps(stats))
    out = tmp_path / "run"
    config = TrainConfig(steps=6, batch=4, lr=1e-3, repeats=2, checkpoint_every=3, keep_every=2, seed=0)
    summary = train(str(TINY), demo_dir, out, config, progress=False, val_data=demo_dir)
    assert summary["steps"] == 6 and (out / "latest" / "model.safetensors").is_file()
    # each checkpoint scored its sampled chunks on the held-out frames (here the training episodes themselves)
    assert [row["step"] for row in summary["validation"]] == [3, 6]
    assert all(0 < row["val_action_mse"] < 100 for row in summary["validation"])
    assert sorted(p.name for p in out.glob("step_*")) == ["step_000002", "step_000004", "step_000006"]
    assert (out / "loss.png").stat().st_size > 1000 and len((out / "loss.csv").read_text().splitlines()) == 7
    resumed = train(str(TINY), demo_dir, out, TrainConfig(steps=8, batch=4, lr=1e-3, repeats=2, checkpoint_every=3),
                    progress=False)
    assert resumed["steps"] == 8 and len(resumed["validation"]) == 2  # kept, not scored again without val_data
    # the training time adds up over the segments, and a changed setting on resume is logged
    assert resumed["wall_time_s"] >= summary["wall_time_s"] > 0
    assert "steps 6 -> 8" in caplog.text and resumed["config"]["steps"] == 8
    policy = load_policy(out / "latest")
    assert policy.conventions.unnorm_key == "vlart_simpler_bridge"
    assert policy.config.vision.inference_crop_area == 0.9  # trained on 90 % crops only: acts on the central one
    frame = np.zeros((32, 32, 3), np.uint8)
    from policies.api.interface import Observation

    assert policy.predict_action(Observation(frame, "put carrot on plate"), seed=0).actions.shape == (16, 7)
    # fine-tuning that checkpoint on data with other statistics: the new checkpoint carries the new data's
    wider = {"vlart_simpler_bridge": {"action": {**STATS["toy"]["action"], "q99": [0.05] * 6 + [1.0]}}}
    (demo_dir / "dataset_statistics.json").write_text(json_module.dumps(wider))
    train(str(out / "latest"), demo_dir, tmp_path / "finetune", TrainConfig(steps=2, batch=4, repeats=2),
          progress=False)
    tuned = load_policy(tmp_path / "finetune" / "latest")
    np.testing.assert_allclose(tuned.statistics.q99[:6], 0.05)


def test_training_reduces_the_loss_on_a_fixed_batch(demo_dir):
    from policies.factory import build_policy
    from policies.config import load_config
    from tests.conftest import TINY

    config = load_config(TINY)
    config.actions.statistics = None
    policy = build_policy(config)
    policy.train()
    dataset = DemoDataset(demo_dir, select_statistics(STATS, "toy", 7), 16)
    batch = dataset.sample(4, np.random.default_rng(0))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    alphas = policy.sampler.scheduler.alphas_cumprod
    losses = []
    for _ in range(15):
        cognition = policy.cognition_features(list(batch.images), batch.instructions)
        loss = diffusion_loss(policy.action_head, cognition, torch.from_numpy(batch.actions), alphas, 2, 0.1,
                              torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert policy.language_model.llm.model.layers[0].mlp.gate_proj.weight.grad is not None  # end to end


def test_cognition_regressor_fits_a_fixed_batch():
    from policies.training.objective import CognitionRegressor

    torch.manual_seed(0)
    regressor = CognitionRegressor(8, 16, 7)
    cognition, actions = torch.randn(4, 8), torch.rand(4, 16, 7) * 2 - 1
    optimizer = torch.optim.Adam(regressor.parameters(), lr=1e-2)
    first = regressor.loss(cognition, actions).item()
    for _ in range(200):
        optimizer.zero_grad()
        loss = regressor.loss(cognition, actions)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01 * first


def test_learning_rate_warms_up_then_follows_a_cosine_to_the_floor():
    from policies.training.trainer import TrainConfig

    config = TrainConfig(steps=110, lr=1e-3, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert config.learning_rate(0) == pytest.approx(1e-4)
    assert config.learning_rate(9) == pytest.approx(1e-3)
    assert config.learning_rate(60) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half way through the decay
    assert config.learning_rate(110) == pytest.approx(1e-4)
    assert TrainConfig(lr=2e-4).learning_rate(500) == 2e-4
    with pytest.raises(ValueError, match="--precision"):
        TrainConfig(precision="float16")


def test_bfloat16_training_with_the_auxiliary_regression(demo_dir, tmp_path):
    import json as json_module

    from policies.loading import load_policy
    from policies.training.trainer import TrainConfig, train
    from tests.conftest import TINY

    (demo_dir / "dataset_statistics.json").write_text(json_module.dumps({"vlart_simpler_bridge": STATS["toy"]}))
    config = TrainConfig(steps=4, batch=4, lr=1e-3, repeats=2, precision="bfloat16", warmup_steps=2, schedule="cosine",
                         aux_weight=1.0, checkpoint_every=2)
    summary = train(str(TINY), demo_dir, tmp_path / "run", config, progress=False)
    assert np.isfinite(summary["final_loss"])
    rows = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,aux_loss" and len(rows) == 5 and float(rows[-1].split(",")[2]) > 0
    # the regressor is part of the training state (exact resume) but not of the policy
    assert torch.load(tmp_path / "run" / "train_state.pt", weights_only=False)["regressor"] is not None
    policy = load_policy(tmp_path / "run" / "latest")
    assert all(p.dtype == torch.float32 for p in policy.parameters())


def test_committed_rows_are_drawn_per_sample_with_plenty_of_none():
    generator = torch.Generator().manual_seed(0)
    committed = CommittedRows(max_rows=4, zero_fraction=0.5).draw(4000, 16, generator)
    rows = committed.sum(1)
    assert committed[:, 4:].sum() == 0 and set(rows.tolist()) == {0, 1, 2, 3, 4}
    assert torch.equal(committed, torch.arange(16)[None, :] < rows[:, None])  # leading rows only
    assert 0.45 < (rows == 0).float().mean() < 0.55
    assert abs((rows == 4).float().mean().item() - 0.125) < 0.03
    assert CommittedRows(3, zero_fraction=1.0).draw(50, 16, generator).sum() == 0
    with pytest.raises(ValueError, match="--max-committed-rows: expected >= 1"):
        CommittedRows(0)
    with pytest.raises(ValueError, match="--zero-committed-fraction: expected a fraction in"):
        CommittedRows(2, zero_fraction=1.5)


class NoiseOracle(torch.nn.Module):
    """An action head that knows the noise of the uncommitted rows and answers garbage on the committed ones;
    records what it was given."""

    def __init__(self, x0, noise_of):
        super().__init__()
        self.z_embedder = torch.nn.Module()
        self.z_embedder.uncondition = torch.nn.Parameter(torch.zeros(1, 8))
        self.x0, self.noise_of, self.calls = x0, noise_of, []

    def forward(self, noisy, timesteps, condition, committed=None):
        self.calls.append((noisy, committed))
        noise = self.noise_of(noisy, timesteps)
        return torch.where(committed[..., None], torch.full_like(noise, 100.0), noise)


def test_the_loss_counts_only_uncommitted_rows_and_the_head_sees_them_clean():
    alphas = make_scheduler(SamplerConfig()).alphas_cumprod
    x0 = torch.rand(3, 16, 7) * 2 - 1

    def noise_of(noisy, timesteps):
        abar = alphas[timesteps].view(-1, 1, 1)
        return (noisy - abar.sqrt() * x0.repeat_interleave(2, 0)) / (1 - abar).sqrt()

    head = NoiseOracle(x0, noise_of)
    loss = diffusion_loss(head, torch.randn(3, 8), x0, alphas, repeats=2, condition_dropout=0.1,
                          generator=torch.Generator().manual_seed(1), committed_rows=CommittedRows(6, 0.0))
    assert loss.item() < 1e-8  # the garbage on committed rows costs nothing
    noisy, committed = head.calls[0]
    assert committed.any(1).all()  # zero_fraction 0: every sample has committed rows
    expected = x0.repeat_interleave(2, 0)
    torch.testing.assert_close(noisy[committed], expected[committed])


def test_training_with_committed_rows_ships_a_conditioning_checkpoint(demo_dir, tmp_path):
    import json as json_module

    from policies.api.interface import ChunkContinuation, Observation
    from policies.loading import load_policy
    from policies.training.trainer import TrainConfig, train
    from tests.conftest import TINY

    (demo_dir / "dataset_statistics.json").write_text(json_module.dumps({"vlart_simpler_bridge": STATS["toy"]}))
    config = TrainConfig(steps=2, batch=4, repeats=2, checkpoint_every=2, max_committed_rows=5)
    train(str(TINY), demo_dir, tmp_path / "run", config, progress=False)
    policy = load_policy(tmp_path / "run" / "latest")
    assert policy.config.sampler.continuation_method == "conditioning"
    assert policy.config.action_head.max_committed_rows == 5
    prefix = np.tile(np.array([[0.01, -0.01, 0.0, 0.005, 0.0, 0.0, 1.0]], np.float32), (4, 1))
    out = policy.predict_action(Observation(np.zeros((32, 32, 3), np.uint8), "put carrot on plate"), seed=0,
                                continuation=ChunkContinuation(prefix, 2))
    np.testing.assert_allclose(out.actions[:2], prefix[:2], atol=1e-5)
    with pytest.raises(ValueError, match="--max-committed-rows: expected at most the chunk length, 16, got 17"):
        train(str(TINY), demo_dir, tmp_path / "too-many", TrainConfig(steps=1, max_committed_rows=17),
              progress=False)

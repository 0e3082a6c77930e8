"""``vlart train``: CogACT-style training of a policy on vlart demonstrations.

The whole model is trained end to end (as CogACT fine-tunes everything) on the action objective only: images go
through CogACT's augmentation, the LLM's cognition feature conditions the DiT, and the DiT learns to predict the
noise of normalised action chunks (``policies.training.objective``). AdamW with gradient clipping; checkpoints in
vlart's format every ``checkpoint_every`` steps (and kept ones every ``keep_every`` steps), with the optimizer and random states so a run resumes exactly where
it stopped; the loss goes to ``loss.csv`` and ``loss.png``. With ``val_data`` (demonstrations of other placements),
each checkpoint also measures the sampled chunks' error on held-out frames (``val.csv``, on the plot). The same code runs on a GPU (``--device cuda``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from policies.config import load_config
from policies.factory import build_policy, save_pretrained
from policies.loading import load_policy
from policies.normalization import read_statistics_file, select_statistics
from policies.training.augment import CROP_AREA, augment_frames
from policies.training.demo_dataset import DemoDataset
from policies.training.objective import CognitionRegressor, CommittedRows, diffusion_loss

log = logging.getLogger("vlart.train")

STATE_FILE = "train_state.pt"
LATEST = "latest"


@dataclass
class TrainConfig:
    steps: int = 1000
    batch: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    repeats: int = 4  # CogACT's repeated_diffusion_steps (8 in its release); each sample gets this many noise draws
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    # > 0: also keep the weights of every keep_every-th step in step_NNNNNN/ (latest/ is overwritten), so that the
    # step to ship can be chosen afterwards on held-out episodes
    keep_every: int = 0
    augment: bool = True
    seed: int = 0
    # bfloat16: autocast mixed precision as CogACT trains (weights and optimizer stay float32); about 1.7x faster
    # on a CPU with AVX512-BF16 (benchmarks/train_step.py) and the usual choice on a GPU
    precision: str = "float32"
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    schedule: str = "constant"  # or "cosine": decay to min_lr_ratio * lr at the last step, after the warm-up
    min_lr_ratio: float = 0.1
    # > 0: add this times the MSE of a linear regression of the chunk from the cognition feature (objective.py's
    # CognitionRegressor); for models trained from scratch, whose DiT otherwise ignores the cognition feature
    aux_weight: float = 0.0
    val_samples: int = 256  # held-out frames scored at each checkpoint when train() is given val_data
    # > 0: training-time action conditioning (objective.py's CommittedRows): up to this many leading rows of a
    # chunk are given clean and marked committed, none with probability zero_committed_fraction; the checkpoint
    # then continues a robot's plan by conditioning (sampler.continuation_method=conditioning)
    max_committed_rows: int = 0
    zero_committed_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.repeats < 1 or self.checkpoint_every < 1:
            raise ValueError("--steps, --batch, --repeats and --checkpoint-every must be >= 1")
        if self.keep_every < 0:
            raise ValueError("--keep-every must be >= 0 (0: keep only the latest checkpoint)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"--schedule: expected constant or cosine, got {self.schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError("--warmup-steps must be >= 0")
        if self.aux_weight < 0:
            raise ValueError("--aux-weight must be >= 0")
        if self.val_samples < 1:
            raise ValueError("--val-samples must be >= 1")
        if self.max_committed_rows < 0:
            raise ValueError(f"--max-committed-rows: expected >= 0, got {self.max_committed_rows}")
        if self.max_committed_rows:
            self.committed_rows()  # names the flag that is wrong

    def committed_rows(self) -> Optional[CommittedRows]:
        if self.max_committed_rows == 0:
            return None
        return CommittedRows(self.max_committed_rows, self.zero_committed_fraction)

    def learning_rate(self, step: int) -> float:
        """The learning rate of the update that makes step ``step + 1`` (0-based ``step``)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _dataset_key(data_dir: Path) -> str:
    stats = read_statistics_file(data_dir / "dataset_statistics.json")
    if len(stats) != 1:
        raise ValueError(f"{data_dir}/dataset_statistics.json: expected one dataset, found {', '.join(stats)}")
    return next(iter(stats))


def _build(model: str, data_dir: Path, overrides: Optional[list[str]], device: Optional[str]) -> Any:
    """The policy to train, reading its action statistics from the demonstrations (also when fine-tuning a
    checkpoint made on other data: its checkpoints must unnormalise with the statistics the training normalised by)."""
    key = _dataset_key(data_dir)
    statistics = str((data_dir / "dataset_statistics.json").resolve())
    if Path(model).is_dir():
        return load_policy(model, unnorm_key=key, device=device,
                           overrides=[*(overrides or []), f"actions.statistics={statistics}"])
    config = load_config(model, overrides)
    config.actions.statistics = statistics
    config.actions.unnorm_key = key
    return build_policy(config, device=device)


class HeldOutFrames:
    """A fixed draw of ``count`` frames from held-out demonstrations, scored by the mean squared error between the
    chunks the policy samples for them (seed 0, its inference crop, CFG) and the expert's chunks, both normalised:
    how far the policy's actions are from the expert's on placements it never trained on (a zero chunk scores the
    mean square of the normalised actions)."""

    def __init__(self, data_dir: Path, statistics: Any, chunk_length: int, count: int, batch: int = 64) -> None:
        dataset = DemoDataset(data_dir, statistics, chunk_length)
        picked = dataset.sample(count, np.random.default_rng(12345))
        self.images, self.instructions, self.actions = picked.images, picked.instructions, picked.actions
        self.batch = batch

    def action_mse(self, policy: Any) -> float:
        errors = []
        for start in range(0, len(self.images), self.batch):
            stop = start + self.batch
            sampled = policy.sample_normalized(list(self.images[start:stop]), self.instructions[start:stop], seed=0)
            errors.append(((sampled.float().cpu().numpy() - self.actions[start:stop]) ** 2).mean(axis=(1, 2)))
        return float(np.concatenate(errors).mean())


def _plot(losses: list[tuple[int, float, float]], path: Path, with_aux: bool,
          validation: Optional[list[tuple[int, float]]] = None) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, values = zip(*[(row[0], row[1]) for row in losses])
    window = max(1, len(values) // 50)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, values, alpha=0.3, label="noise-prediction MSE (CogACT objective)")
    ax.plot(steps[window - 1:], smooth, label=f"mean of {window}")
    if with_aux:
        aux = np.convolve([row[2] for row in losses], np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], aux, label=f"auxiliary regression MSE, mean of {window}")
    if validation:
        ax.plot(*zip(*validation), "o-", label="held-out frames: sampled chunk MSE")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(model: str, data_dir: str | Path, out_dir: str | Path, config: TrainConfig,
          overrides: Optional[list[str]] = None, device: Optional[str] = None, progress: bool = True,
          val_data: Optional[str | Path] = None) -> dict[str, Any]:
    """Train (or resume) a policy on ``data_dir``; ``val_data``: demonstrations to score each checkpoint on."""
    from tqdm import tqdm

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / STATE_FILE
    resuming = state_path.exists() and (out_dir / LATEST).is_dir()
    policy = _build(str(out_dir / LATEST) if resuming else model, data_dir, overrides, device)
    statistics = select_statistics(read_statistics_file(data_dir / "dataset_statistics.json"), _dataset_key(data_dir),
                                   policy.config.action_head.action_dim)
    dataset = DemoDataset(data_dir, statistics, policy.config.action_head.chunk_length)
    held_out = (HeldOutFrames(Path(val_data), statistics, policy.config.action_head.chunk_length, config.val_samples)
                if val_data is not None else None)
    # the policy learns only from crops of CROP_AREA of each frame, so when it acts it is shown the central crop
    policy.config.vision.inference_crop_area = CROP_AREA if config.augment else 1.0
    committed_rows = config.committed_rows()
    if committed_rows is not None:
        if committed_rows.max_rows > policy.config.action_head.chunk_length:
            raise ValueError(f"--max-committed-rows: expected at most the chunk length, "
                             f"{policy.config.action_head.chunk_length}, got {committed_rows.max_rows}")
        head_config = policy.config.action_head
        head_config.max_committed_rows = max(head_config.max_committed_rows, committed_rows.max_rows)
        policy.config.sampler.continuation_method = "conditioning"
    trainable = [p for p in policy.parameters() if p.requires_grad]  # front ends freeze what their method freezes
    head = policy.config.action_head
    regressor = None
    if config.aux_weight > 0:
        regressor = CognitionRegressor(policy.config.llm.hidden_size, head.chunk_length, head.action_dim)
        regressor.to(policy.device)
    optimizer = torch.optim.AdamW(trainable + (list(regressor.parameters()) if regressor is not None else []),
                                  lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    step, losses, validation, elapsed_before = 0, [], [], 0.0
    if resuming:
        state = torch.load(state_path, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        if regressor is not None:
            regressor.load_state_dict(state["regressor"])
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["generator"])
        step, losses, validation = state["step"], state["losses"], state.get("validation", [])
        elapsed_before = state.get("elapsed_s", 0.0)
        changed = {k: (v, getattr(config, k)) for k, v in state["config"].items() if getattr(config, k, v) != v}
        if changed:  # a deliberate change (e.g. switching to cosine decay) is allowed, but it must show in the log
            log.warning("resuming at step %d with changed settings: %s", step,
                        ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()))
    alphas = policy.sampler.scheduler.alphas_cumprod
    dropout = policy.config.action_head.condition_dropout
    policy.train()
    started = time.perf_counter()
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", disable=not progress)

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    def checkpoint() -> None:
        if held_out is not None and (not validation or validation[-1][0] != step):
            policy.eval()
            validation.append((step, round(held_out.action_mse(policy), 6)))
            policy.train()
            with (out_dir / "val.csv").open("w", newline="") as file:
                csv.writer(file).writerows([("step", "val_action_mse"), *validation])
        save_pretrained(policy, out_dir / LATEST)
        torch.save({"optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state,
                    "generator": generator.get_state(), "step": step, "losses": losses, "validation": validation,
                    "regressor": regressor.state_dict() if regressor is not None else None,
                    "config": asdict(config), "elapsed_s": elapsed()}, state_path)
        with (out_dir / "loss.csv").open("w", newline="") as file:
            header = ("step", "loss", "aux_loss") if regressor is not None else ("step", "loss")
            csv.writer(file).writerows([header, *[row[: len(header)] for row in losses]])
        _plot(losses, out_dir / "loss.png", regressor is not None, validation)

    while step < config.steps:
        batch = dataset.sample(config.batch, rng)
        images = augment_frames(batch.images, rng) if config.augment else batch.images
        actions = torch.from_numpy(batch.actions).to(policy.device)
        with _autocast(policy.device, config.precision):
            cognition = policy.cognition_features(list(images), batch.instructions)
            loss = diffusion_loss(policy.action_head, cognition, actions, alphas, config.repeats, dropout, generator,
                                  committed_rows)
            aux = regressor.loss(cognition, actions) if regressor is not None else torch.zeros(())
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate(step)
        optimizer.zero_grad(set_to_none=True)
        (loss + config.aux_weight * aux).backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        step += 1
        losses.append((step, round(loss.item(), 6), round(aux.item(), 6)))
        bar.update(1)
        bar.set_postfix_str(f"loss {loss.item():.4f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint()
        if config.keep_every and step % config.keep_every == 0:
            save_pretrained(policy, out_dir / f"step_{step:06d}")
    bar.close()
    policy.eval()
    summary = {"steps": step, "final_loss": float(np.mean([row[1] for row in losses[-20:]])), "samples": len(dataset),
               "episodes": len(dataset.episodes), "wall_time_s": round(elapsed(), 1),
               "checkpoint": str(out_dir / LATEST), "config": asdict(config),
               "validation": [{"step": s, "val_action_mse": v} for s, v in validation]}
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary

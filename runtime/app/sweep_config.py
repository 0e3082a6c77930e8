"""What ``vlart sweep`` runs: a YAML of axes and fixed settings, expanded to cells (one ``vlart eval`` run each).

    name: bridge-presets                  # the sweep's name (default: the file's stem)
    axes:                                 # every combination of these values is one cell
      suite: [ms3_twin/widowx_spoon_on_towel, ms3_twin/widowx_carrot_on_plate]
      preset: [baseline, efficientvla]
    model: checkpoints/cogact-demo        # any setting not in axes holds for every cell
    episodes: 24
    workers: 2                            # shards per cell: episode i runs on shard i mod workers, as vlart eval
    resources:                            # Ray resources of one policy server and of one episode worker
      server: {num_cpus: 1, num_gpus: 0}
      episode: {num_cpus: 1}

Settings (axes or fixed; the names of ``vlart eval``'s options): suite, model, preset, plan, set (a list of
``--set`` overrides), unnorm_key, budget, seed, grid, episodes, max_steps, timing, execution, latency_ms,
rtc_soft_rows, via (zmq: through a policy server actor, the default; inproc: the policy loaded in each episode
worker), workers, video, step_timeout, episode_timeout, max_batch and batch_wait_ms (the server's dynamic batching:
default one row per episode worker, 100 ms;
``max_batch: 1`` runs every inference alone, so that reruns agree to the bit). ``parallel``: episode workers in the
whole sweep (default: as many as the Ray resources allow). Unknown keys are refused, naming the key.

A cell's name lists its axis values in the axes' order (``suite=widowx_spoon_on_towel,preset=baseline``): the same
YAML gives the same names, which is how a resumed sweep finds the episodes it has done.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from envs.eval_config import EvalConfig
from envs.timed_episode import TimingConfig

SETTINGS = ("suite", "model", "preset", "plan", "set", "unnorm_key", "budget", "seed", "grid", "episodes",
            "max_steps", "timing", "execution", "latency_ms", "rtc_soft_rows", "via", "workers", "video",
            "step_timeout", "episode_timeout", "max_batch", "batch_wait_ms")
TOP_LEVEL = ("name", "axes", "resources", "parallel", *SETTINGS)
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")
DEFAULT_RESOURCES = {"server": {"num_cpus": 1, "num_gpus": 0}, "episode": {"num_cpus": 1}}


class SweepConfigError(ValueError):
    """A sweep YAML that cannot run; the message names the key and what was expected."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its name, its axis values and the ``vlart eval`` settings it runs with."""

    name: str
    values: dict[str, Any]
    eval_config: EvalConfig

    @property
    def server_key(self) -> tuple:
        """Cells with the same key share one policy server (the same model, preset and conventions)."""
        c = self.eval_config
        return (c.model, c.preset, c.plan, c.unnorm_key, tuple(c.overrides), c.budget, c.max_batch, c.batch_wait_ms)


@dataclass
class SweepConfig:
    name: str
    axes: dict[str, list[Any]]
    fixed: dict[str, Any]
    resources: dict[str, dict[str, float]] = field(default_factory=lambda: {k: dict(v) for k, v in
                                                                             DEFAULT_RESOURCES.items()})
    parallel: Optional[int] = None
    source: str = ""  # the YAML text, for the report's provenance

    def cells(self, out: Path) -> list[Cell]:
        """Every combination of the axes, in the axes' order; their results go under ``out/cells/NAME``."""
        names = list(self.axes)
        cells = []
        for combination in itertools.product(*(self.axes[axis] for axis in names)):
            values = dict(zip(names, combination))
            name = ",".join(f"{axis}={_label(value)}" for axis, value in values.items()) or self.name
            settings = {**self.fixed, **values}
            try:
                config = eval_config(settings, out / "cells" / name)
            except ValueError as exc:
                raise SweepConfigError(f"cell {name}: {exc}") from None
            if any(cell.name == name for cell in cells):
                raise SweepConfigError(f"cell {name}: two cells get this name (values that differ only before a "
                                       "slash); rename a folder")
            cells.append(Cell(name, values, config))
        return cells


def _label(value: Any) -> str:
    """An axis value as it appears in a cell's name: a path's or task's last part (names are folder names)."""
    if isinstance(value, list):
        return "+".join(_label(item) for item in value)
    return str(value).rstrip("/").rsplit("/", 1)[-1].replace(",", "_") or str(value).replace("/", "_")


def eval_config(settings: dict[str, Any], out: Path) -> EvalConfig:
    """One cell's settings -> the ``EvalConfig`` of the same run of ``vlart eval`` (ValueError naming the option)."""
    if "suite" not in settings:
        raise ValueError("suite: every cell needs a suite or task (simpler/...)")
    timing = TimingConfig(settings.get("timing", "lockstep"), settings.get("execution", "ensemble"),
                          settings.get("latency_ms"), "latency_ms" if settings.get("latency_ms") is not None else None,
                          settings.get("rtc_soft_rows", 0))
    overrides = settings.get("set") or []
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise ValueError("set: expected a list of KEY=VALUE overrides")
    return EvalConfig(
        suite=settings["suite"], model=settings.get("model"), via=settings.get("via", "zmq"),
        episodes=settings.get("episodes"), max_steps=settings.get("max_steps"), workers=settings.get("workers", 1),
        out=out, seed=settings.get("seed", 0), overrides=list(overrides), unnorm_key=settings.get("unnorm_key"),
        budget=settings.get("budget"), step_timeout_s=settings.get("step_timeout", 120.0),
        episode_timeout_s=settings.get("episode_timeout"), video=settings.get("video", True),
        max_batch=settings.get("max_batch"),
        batch_wait_ms=settings.get("batch_wait_ms", 100.0),
        preset=settings.get("preset"), plan=settings.get("plan"), grid=settings.get("grid", "official"),
        timing=timing,
    )


def _resources(raw: Any) -> dict[str, dict[str, float]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict) or set(raw) - set(DEFAULT_RESOURCES):
        raise SweepConfigError(f"resources: expected a map with keys {list(DEFAULT_RESOURCES)}, got {raw!r}")
    resources = {}
    for role, defaults in DEFAULT_RESOURCES.items():
        given = raw.get(role) or {}
        if not isinstance(given, dict) or set(given) - set(RESOURCE_KEYS):
            raise SweepConfigError(f"resources.{role}: expected a map with keys from {list(RESOURCE_KEYS)}, "
                                   f"got {given!r}")
        for key, value in given.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise SweepConfigError(f"resources.{role}.{key}: expected a number >= 0, got {value!r}")
        resources[role] = {**defaults, **given}
    return resources


def parse_sweep(text: str, default_name: str = "sweep") -> SweepConfig:
    """A sweep YAML's text -> ``SweepConfig``; ``SweepConfigError`` naming the key for anything wrong."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SweepConfigError(f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SweepConfigError("expected a map of settings at the top level")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise SweepConfigError(f"{unknown[0]}: unknown key; expected one of {list(TOP_LEVEL)}")
    axes = raw.get("axes") or {}
    if not isinstance(axes, dict):
        raise SweepConfigError("axes: expected a map from setting to a list of values")
    for axis, values in axes.items():
        if axis not in SETTINGS:
            raise SweepConfigError(f"axes.{axis}: unknown setting; expected one of {list(SETTINGS)}")
        if not isinstance(values, list) or not values:
            raise SweepConfigError(f"axes.{axis}: expected a non-empty list of values")
        if axis in raw:
            raise SweepConfigError(f"{axis}: set both as an axis and as a fixed setting")
    parallel = raw.get("parallel")
    if parallel is not None and (not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1):
        raise SweepConfigError(f"parallel: expected an integer >= 1, got {parallel!r}")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name or "/" in name:
        raise SweepConfigError(f"name: expected a name without slashes, got {name!r}")
    fixed = {key: value for key, value in raw.items() if key in SETTINGS}
    return SweepConfig(name, {axis: list(values) for axis, values in axes.items()}, fixed,
                       _resources(raw.get("resources")), parallel, text)


def load_sweep(path: str | Path) -> SweepConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepConfigError(f"SWEEP.yaml: cannot read {path}: {exc.strerror}") from None
    return parse_sweep(text, default_name=path.stem)


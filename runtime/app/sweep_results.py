"""A sweep's ``results.json``: every planned episode's standing attempt and per-cell aggregates."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from envs.results import SUCCESS_RULES, EpisodeRecord, aggregate
from runtime.app.evaluation import plan_eval
from runtime.app.sweep_config import Cell, SweepConfig
from runtime.app.sweep_store import EpisodeStore
from runtime.core.provenance import provenance


def server_label(cell: Cell) -> str:
    """A policy server's name in results.json: its model and preset."""
    return f"{cell.eval_config.model} / {cell.eval_config.preset or 'baseline'}"


def cell_settings(cell: Cell) -> dict[str, Any]:
    c = cell.eval_config
    return {"suite": c.suite, "model": c.model, "preset": c.preset or "baseline", "plan": c.plan, "via": c.via,
            "overrides": c.overrides, "unnorm_key": c.unnorm_key, "seed": c.seed, "grid": c.grid,
            "max_batch": c.max_batch, "batch_wait_ms": c.batch_wait_ms,
            "episodes": c.episodes, "max_steps": c.max_steps, "workers": c.workers,
            "timing": c.timing.describe({}), "budget": c.budget}


def write_sweep_results(out: Path, config: SweepConfig, cells: list[Cell], store: EpisodeStore,
                        run: dict[str, Any], model_configs: dict[str, Any]) -> dict[str, Any]:
    """``out/results.json``: every planned episode's standing attempt (with ``cell`` and ``attempt``), per-cell
    aggregates and the model config each cell's policy announced (None for a cell with nothing run this time), the
    sweep's YAML and where it ran."""
    episodes, cell_entries = [], {}
    for cell in cells:
        records, missing = [], 0
        for job in plan_eval(cell.eval_config).jobs:
            entry = store.final((cell.name, job.task, job.episode_id))
            if entry is None:
                missing += 1
                continue
            episodes.append(entry)
            fields = {k: v for k, v in entry.items() if k not in ("cell", "attempt")}
            records.append(EpisodeRecord(**fields))
        cell_entries[cell.name] = {"values": cell.values, "settings": cell_settings(cell),
                                   "episodes": len(records), "missing": missing, "tasks": aggregate(records),
                                   "model_config": model_configs.get(cell.name)}
    result = {
        "sweep": config.name,
        "success_rules": SUCCESS_RULES,
        "cells": cell_entries,
        "episodes": episodes,
        "run": run,
        "provenance": {**provenance(), "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                       "sweep_yaml": config.source},
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result

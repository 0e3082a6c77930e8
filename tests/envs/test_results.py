import pytest

from envs.registry import SUITES, TASKS, resolve_suite
from envs.results import EpisodeRecord, aggregate, summary_table, wilson_interval


@pytest.mark.parametrize(
    "successes, trials, expected",
    [(0, 2, (0.0, 0.6576)), (5, 10, (0.2366, 0.7634)), (24, 24, (0.862, 1.0)), (0, 0, (0.0, 1.0))],
)
def test_wilson_interval(successes, trials, expected):
    low, high = wilson_interval(successes, trials)
    assert (round(low, 4), round(high, 4)) == expected


def test_aggregate_and_table():
    records = [EpisodeRecord("t", i, i, success_final=i < 3, success_any=i < 5) for i in range(10)]
    records.append(EpisodeRecord("t", 10, 10, failure="RuntimeError: boom"))
    tasks = aggregate(records)
    assert tasks["t"]["episodes"] == 11 and tasks["t"]["failed_runs"] == 1
    assert tasks["t"]["success_final"]["successes"] == 3 and tasks["t"]["success_any"]["successes"] == 5
    table = summary_table({"tasks": tasks})
    assert "27.3%" in table and "45.5%" in table and "official rule" in table
    assert "grasped" not in tasks["t"] and table.splitlines()[1].split()[-2] == "-"  # no partial-success measure


def test_grasp_rate_is_aggregated_when_the_task_measures_it():
    records = [EpisodeRecord("t", i, i, success_final=i < 1, grasped=i < 4) for i in range(8)]
    tasks = aggregate(records)
    assert tasks["t"]["grasped"] == {"successes": 4, "rate": 0.5, "ci95": [0.2152, 0.7848]}
    assert "50.0% [21.5,  78.5]" in summary_table({"tasks": tasks})


def test_registry():
    assert [t.grid_size for t in resolve_suite("ms3_twin_bridge")] == [24, 24, 24, 64]
    assert resolve_suite("maniskill/pick_cube")[0].env_id == "PickCube-v1"
    assert set(SUITES["ms3_twin_bridge"]) <= set(TASKS)
    suites = "simplerenv_bridge, simplerenv_google_vm, simplerenv, ms3_twin_bridge, quick"
    with pytest.raises(ValueError, match=f"unknown suite or task .libero.; suites: {suites}"):
        resolve_suite("libero")

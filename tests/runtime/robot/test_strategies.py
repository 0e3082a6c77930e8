"""Each execution strategy alone: how a chunk joins the plan, what a tick executes, what RTC asks to continue."""

import numpy as np
import pytest

from policies.api.ensemble import adaptive_blend
from runtime.robot.control_loop import ControlLoopConfig
from runtime.robot.strategies import STRATEGIES, Prediction


def chunk(number: float, rows: int = 4) -> np.ndarray:
    """Row k of chunk ``number``: dx = number, dz = k, gripper 0.5."""
    actions = np.zeros((rows, 7), np.float32)
    actions[:, 0], actions[:, 2], actions[:, 6] = number, np.arange(rows), 0.5
    return actions


def strategy(name: str, **settings):
    return STRATEGIES[name](ControlLoopConfig(rate_hz=5, execution=name, **settings))


def test_the_registry_names_each_strategy_once():
    assert list(STRATEGIES) == ["hold", "ensemble", "blend", "rtc"]
    assert all(cls.name == name for name, cls in STRATEGIES.items())


@pytest.mark.parametrize("name", ["hold", "rtc"])
def test_hold_and_rtc_replace_the_plan_and_drop_stale_rows(name):
    execution = strategy(name)
    plan = execution.merge({}, chunk(1), origin=0, now=0)
    plan = execution.merge(plan, chunk(2), origin=1, now=2)  # chunk 2's row 0 (tick 1) has passed
    assert sorted(plan) == [2, 3, 4]
    assert [p.action[0] for p in plan[2]] == [2.0] and plan[2][0].origin == 1
    assert execution.action(plan[2], tick=2)[2] == 1.0  # chunk 2's row 1


def test_ensemble_keeps_at_most_horizon_predictions_and_blends_the_young_ones():
    execution = strategy("ensemble", ensemble_horizon=2, ensemble_alpha=0.1)
    plan: dict = {}
    for number in (1, 2, 3):
        plan = execution.merge(plan, chunk(number), origin=number, now=number)
    assert [p.origin for p in plan[3]] == [2, 3]  # chunk 1's prediction for tick 3 fell out of the horizon
    blended = execution.action(plan[3], tick=3)
    np.testing.assert_array_equal(blended, adaptive_blend([plan[3][0].action, plan[3][1].action], 0.1)
                                  .astype(np.float32))
    # at tick 4 the prediction of tick 2 is two ticks old, as old as the horizon: only the newest counts
    assert execution.action(plan[4], tick=4) is plan[4][-1].action


def test_blend_mixes_the_old_plan_and_the_new_chunk_where_they_overlap():
    execution = strategy("blend", blend_old_weight=0.3)
    plan = execution.merge({}, chunk(1), origin=0, now=0)
    plan = execution.merge(plan, chunk(2), origin=2, now=2)
    assert [len(plan[tick]) for tick in sorted(plan)] == [1] * 6  # ticks 0-5 (the loop drops the passed ones)
    assert plan[2][0].action[0] == pytest.approx(0.3 * 1 + 0.7 * 2)  # overlap: ticks 2 and 3
    assert plan[4][0].action[0] == 2.0 and plan[5][0].action[0] == 2.0  # the new chunk alone


def test_only_rtc_asks_for_a_continuation():
    hold = np.zeros(7, np.float32)
    plan = {3: [Prediction(0, chunk(1)[3])]}
    for name in ("hold", "ensemble", "blend"):
        assert strategy(name).continuation(plan, 3, [2], hold) is None
    assert strategy("rtc").continuation({}, 3, [2], hold) is None  # nothing planned: an ordinary sample


def test_rtc_freezes_the_largest_recent_delay_and_fills_uncovered_ticks_with_hold():
    execution = strategy("rtc", rtc_delay_window=2, rtc_soft_rows=1)
    plan = {2: [Prediction(0, chunk(1)[2])]}  # only tick 2 is planned
    hold = np.zeros(7, np.float32)
    hold[6] = 1.0
    continuation = execution.continuation(plan, 2, delays=[5, 3, 1], hold=hold)
    assert continuation.delay_ticks == 3  # the largest of the last two delays
    rows = continuation.prefix
    assert rows.shape == (3, 7) and rows[0, 0] == 1.0 and rows[0, 2] == 2.0
    # ticks 3 and 4 are not planned but execute before the chunk lands: hold, gripper where tick 2 leaves it
    assert rows[1:, :6].tolist() == [[0.0] * 6] * 2 and rows[1:, 6].tolist() == [0.5, 0.5]


def test_rtc_soft_rows_cap_the_overlap_after_the_frozen_rows():
    plan = {tick: [Prediction(0, chunk(1, rows=12)[tick])] for tick in range(12)}
    hold = np.zeros(7, np.float32)
    hard = strategy("rtc", rtc_soft_rows=0).continuation(plan, 0, [2], hold)
    soft = strategy("rtc", rtc_soft_rows=3).continuation(plan, 0, [2], hold)
    whole = strategy("rtc", rtc_soft_rows=None).continuation(plan, 0, [2], hold)
    assert (len(hard.prefix), len(soft.prefix), len(whole.prefix)) == (2, 5, 12)
    assert strategy("rtc", rtc_delay_ticks=4).continuation(plan, 0, [], hold).delay_ticks == 4  # before any delay

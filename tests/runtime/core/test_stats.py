"""The one percentile definition: numpy's linear interpolation, zeros for an empty sample, rounded ``pNN`` keys."""

from collections import deque

import numpy as np
import pytest

from runtime.core.stats import percentile, percentiles


def test_percentile_interpolates_between_ranks_as_numpy_does():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5  # between the two middle values, not one of them
    assert percentile(deque(values), 95) == pytest.approx(float(np.percentile(values, 95)))
    assert percentile(np.array([7.0]), 99) == 7.0


def test_no_values_give_zero():
    assert percentile([], 50) == 0.0


def test_percentiles_are_keyed_and_rounded():
    assert percentiles([1.0, 2.0, 3.0, 10.0], (50, 95, 99.9), 2) == {"p50": 2.5, "p95": 8.95, "p99.9": 9.98}

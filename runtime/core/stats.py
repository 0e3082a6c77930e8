"""Percentiles of a measured sample, by one definition for every report vlart and its benchmarks write: numpy's
default, linear interpolation between the two nearest ranks (``np.percentile``), so that a p95 in one JSON file
means what it means in another. Numpy only (runs on the robot side).
"""

from __future__ import annotations

from typing import Iterable, Sequence, Union

import numpy as np

Sample = Union[Sequence[float], np.ndarray]


def percentile(values: Sample, q: float) -> float:
    """The ``q``-th percentile (0 to 100) of ``values``; 0.0 for no values, so that the report of a run that measured
    nothing holds zeros rather than NaN."""
    array = np.asarray(values, dtype=np.float64)
    return float(np.percentile(array, q)) if array.size else 0.0


def percentiles(values: Sample, qs: Iterable[float], digits: int) -> dict[str, float]:
    """``{"p50": ..., "p95": ...}``: the percentiles ``qs`` of ``values``, each rounded to ``digits`` decimals."""
    return {f"p{q:g}": round(percentile(values, q), digits) for q in qs}

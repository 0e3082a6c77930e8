"""The one source of real camera frames: the shipped Bridge photo, or SIMPLER's first frame when it can render."""

import numpy as np
import pytest

from envs import sample_frames


def test_sample_frame_is_the_shipped_bridge_photo():
    frame = sample_frames.sample_frame()
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8 and frame.std() > 10


def test_without_assets_the_real_frame_is_the_sample_frame(monkeypatch):
    monkeypatch.delenv("MS_ASSET_DIR", raising=False)
    assert not sample_frames.simpler_available()
    frame, source = sample_frames.real_frame()
    np.testing.assert_array_equal(frame, sample_frames.sample_frame())
    assert "bridge_table.png" in source and "MS_ASSET_DIR" in source


@pytest.mark.sim
@pytest.mark.slow
def test_with_assets_the_real_frame_is_simplers_first_frame(simpler_assets):
    assert sample_frames.simpler_available()
    frame, source = sample_frames.real_frame()
    assert frame.shape == (480, 640, 3) and "ms3_twin/widowx_carrot_on_plate episode 0" in source
    assert not np.array_equal(frame, sample_frames.sample_frame())  # the robot and the carrot are drawn on it

"""The colour-wheel flow images (pipeline/flowviz.py): direction sets the hue, magnitude the saturation."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.flowviz import RAMPS, colour_wheel, flow_to_rgb, wheel_legend


def _one(u: float, v: float, max_px: float = 1.0) -> np.ndarray:
    return flow_to_rgb(np.array([[[u]], [[v]]], float), max_px)[0, 0].astype(int)


def test_wheel_has_the_middlebury_ramps():
    w = colour_wheel()
    assert len(w) == sum(RAMPS) == 55
    assert np.allclose(w[0], [1, 0, 0]) and np.allclose(w[15], [1, 1, 0]) and np.allclose(w[21], [0, 1, 0])
    assert ((w >= 0) & (w <= 1)).all()


def test_directions_and_magnitudes():
    assert _one(1, 0).tolist() == [255, 0, 0]                     # rightward: red
    left = _one(-1, 0)
    assert left[2] == 255 and left[0] == 0                          # leftward: cyan-blue
    down = _one(0, 1)
    assert down[0] == 255 and down[1] > 200 and down[2] == 0        # downward (+v): yellow
    assert _one(0, 0).tolist() == [255, 255, 255]                   # no motion: white
    half = _one(0.5, 0)
    assert half.tolist() == [255, 128, 128]                         # half the scale: half-saturated red
    assert _one(2, 0).tolist() == [191, 0, 0]                      # beyond the scale: darkened
    # The scale defaults to the largest magnitude: doubling every vector changes nothing.
    f = np.random.default_rng(0).normal(size=(2, 8, 8))
    assert np.array_equal(flow_to_rgb(f), flow_to_rgb(2 * f))


def test_legend_and_bad_input():
    leg = wheel_legend(32)
    assert leg.shape == (32, 32, 3) and leg.dtype == np.uint8
    assert leg[0, 0].tolist() == [255, 255, 255]                    # outside the disc
    with pytest.raises(ValueError):
        flow_to_rgb(np.zeros((3, 4, 4)))

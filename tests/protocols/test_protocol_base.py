"""The shared protocol pieces: Stimulus validation and option checks."""

from __future__ import annotations

import math

import pytest

from mepkit.protocols import ProtocolError, Stimulus, check_intensity, check_number


@pytest.mark.parametrize("value", [-0.1, 100.01, math.nan, math.inf, "x", None])
def test_stimulus_intensity_is_within_0_100(value):
    with pytest.raises(ProtocolError, match="intensity_pct_mso"):
        Stimulus(value)
    with pytest.raises(ProtocolError, match="start"):
        check_intensity(value, "start")


def test_stimulus_keeps_a_float_intensity_and_its_marker():
    s = Stimulus(55, hemisphere="left", site="A3")
    assert s.intensity_pct_mso == 55.0 and isinstance(s.intensity_pct_mso, float)
    assert s.marker_fields() == {"intensity": 55.0, "hemisphere": "left", "site": "A3"}
    assert check_intensity("42.5") == 42.5


@pytest.mark.parametrize("kwargs, value, match", [
    ({}, True, "finite number"),
    ({}, math.nan, "finite number"),
    ({}, "a", "must be a number"),
    ({"integer": True}, 2.5, "whole number"),
    ({"low": 0.0, "low_open": True}, 0.0, r"within \(0, inf\]"),
    ({"low": 1, "high": 10}, 11, r"within \[1, 10\]"),
])
def test_check_number_errors_name_the_option(kwargs, value, match):
    with pytest.raises(ProtocolError, match="opt"):
        check_number("opt", value, **kwargs)
    with pytest.raises(ProtocolError, match=match):
        check_number("opt", value, **kwargs)


def test_check_number_values():
    n = check_number("n", 3.0, integer=True)
    assert n == 3 and isinstance(n, int)
    assert check_number("x", "0.5", low=0.0, high=1.0) == 0.5

"""Fixtures of the protocol tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def intensity_for_median():
    """``f(subject, amplitude_uv, activation=0.0)``: the intensity (%MSO) at which the left
    hemisphere's FDI gives median MEPs of ``amplitude_uv`` (bisection on the truth)."""

    def f(subject, amplitude_uv: float, activation: float = 0.0) -> float:
        lo, hi = 0.0, 100.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            below = subject.expected_amplitude(mid, hemisphere="left",
                                               activation=activation) < amplitude_uv
            lo, hi = (mid, hi) if below else (lo, mid)
        return 0.5 * (lo + hi)

    return f

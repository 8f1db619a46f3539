"""Input checks shared by the analysis functions: one-line errors that say what is wrong."""

from __future__ import annotations

import numpy as np

from mepkit.errors import MepkitError

__all__ = ["AnalysisError", "check_trials", "intensity_range_text"]


class AnalysisError(MepkitError, ValueError):
    """Trials that cannot be analysed as asked (missing intensities, NaN amplitudes, ...)."""


def _where(bad: np.ndarray, limit: int = 5) -> str:
    idx = np.flatnonzero(bad)
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    return f"at index {shown}" + (" ..." if idx.size > limit else "")


def check_trials(intensity_pct_mso, amplitude_uv, rejected=None):
    """Validate one set of trials; return the kept (not rejected) intensities and amplitudes.

    Raises
    ------
    AnalysisError
        Shapes differ, an intensity is missing or outside 0–100 %MSO, or a trial that
        is not rejected has a NaN or negative amplitude.
    """
    x = np.asarray(intensity_pct_mso, dtype=float).ravel()
    a = np.asarray(amplitude_uv, dtype=float).ravel()
    if x.shape != a.shape:
        raise AnalysisError(f"intensity_pct_mso has {x.size} values but amplitude_uv has {a.size}")
    if rejected is None:
        rej = np.zeros(x.size, bool)
    else:
        rej = np.asarray(rejected, dtype=bool).ravel()
        if rej.shape != x.shape:
            raise AnalysisError(f"rejected has {rej.size} values but there are {x.size} trials")
    keep = ~rej
    bad = keep & ~np.isfinite(x)
    if bad.any():
        raise AnalysisError(f"{int(bad.sum())} trial(s) have no intensity (NaN {_where(bad)}); "
                            f"every trial needs its intensity in %MSO")
    bad = keep & ((x < 0) | (x > 100))
    if bad.any():
        raise AnalysisError(f"intensity_pct_mso must be within 0–100 %MSO, got "
                            f"{x[bad][0]:g} {_where(bad)}")
    bad = keep & ~np.isfinite(a)
    if bad.any():
        raise AnalysisError(f"{int(bad.sum())} trial(s) that are not rejected have a NaN or "
                            f"infinite amplitude_uv ({_where(bad)}); mark them rejected or drop them")
    bad = keep & (a < 0)
    if bad.any():
        raise AnalysisError(f"amplitude_uv must be >= 0 (peak-to-peak), got {a[bad][0]:g} "
                            f"{_where(bad)}")
    return x[keep], a[keep]


def intensity_range_text(x: np.ndarray) -> str:
    lo, hi = float(np.min(x)), float(np.max(x))
    return f"{lo:g} %MSO" if lo == hi else f"{lo:g}–{hi:g} %MSO"

"""Filter design (scipy) and streaming application (numba) for EMG.

Examples
--------
>>> import numpy as np
>>> from mepkit.dsp.filters import design_bandpass, StreamingFilter
>>> sos = design_bandpass(5000.0, (20.0, 2000.0))
>>> filt = StreamingFilter(sos, n_channels=2)
>>> filt.process(np.ones((10, 2))).shape
(10, 2)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "design_bandpass",
    "design_lowpass",
    "design_notch",
    "design_monitor_filter",
    "StreamingFilter",
    "apply_sos",
]


def _check_fs(sfreq_hz: float) -> float:
    sfreq_hz = float(sfreq_hz)
    if not np.isfinite(sfreq_hz) or sfreq_hz <= 0:
        raise ValueError(f"sfreq_hz must be a positive number, got {sfreq_hz!r}")
    return sfreq_hz


def design_bandpass(sfreq_hz: float, band_hz: tuple[float, float], *, order: int = 2) -> np.ndarray:
    """Butterworth band-pass as second-order sections.

    The upper edge is dropped (high-pass only) when it is at or above 0.45 × ``sfreq_hz``.
    """
    from scipy import signal

    fs = _check_fs(sfreq_hz)
    lo, hi = (float(v) for v in band_hz)
    if not 0 < lo < hi:
        raise ValueError(f"band_hz must satisfy 0 < low < high, got {band_hz!r}")
    if lo >= 0.45 * fs:
        raise ValueError(f"band_hz low edge {lo} Hz is too high for sfreq {fs} Hz")
    if hi >= 0.45 * fs:
        return signal.butter(order, lo, btype="highpass", fs=fs, output="sos")
    return signal.butter(order, (lo, hi), btype="bandpass", fs=fs, output="sos")


def design_lowpass(sfreq_hz: float, cutoff_hz: float, *, order: int = 2) -> np.ndarray | None:
    """Butterworth low-pass, or ``None`` when ``cutoff_hz`` ≥ 0.45 × ``sfreq_hz``."""
    from scipy import signal

    fs = _check_fs(sfreq_hz)
    if cutoff_hz is None or cutoff_hz >= 0.45 * fs:
        return None
    return signal.butter(order, float(cutoff_hz), btype="lowpass", fs=fs, output="sos")


def design_notch(sfreq_hz: float, freq_hz: float, *, q: float = 10.0) -> np.ndarray:
    """Second-order IIR notch at ``freq_hz`` with quality factor ``q`` (one section)."""
    from scipy import signal

    fs = _check_fs(sfreq_hz)
    if not 0 < freq_hz < fs / 2:
        raise ValueError(f"notch frequency {freq_hz} Hz must lie in (0, {fs / 2}) Hz")
    b, a = signal.iirnotch(float(freq_hz), float(q), fs=fs)
    return signal.tf2sos(b, a)


def design_monitor_filter(sfreq_hz: float, params) -> np.ndarray:
    """The continuous display/background-monitor filter: band-pass plus notches.

    With ``line_freq_hz == "auto"`` (not decided when the filter is built) it notches both
    50 and 60 Hz and their harmonics: the monitor is for display only."""
    parts = [design_bandpass(sfreq_hz, params.monitor_band_hz)]
    line = params.line_freq_hz
    bases = (50.0, 60.0) if line == "auto" else (() if line is None else (line,))
    for base in bases:
        for k in range(1, params.line_harmonics + 1):
            f = k * base
            if f < 0.45 * sfreq_hz:
                parts.append(design_notch(sfreq_hz, f, q=params.notch_q))
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float64)


def _as_sos(sos) -> np.ndarray:
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError(f"sos must have shape (n_sections, 6), got {sos.shape}")
    if not np.allclose(sos[:, 3], 1.0):
        raise ValueError("sos must be normalised so that a0 == 1 in every section")
    return sos


def steady_state_zi(sos: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Initial state for a constant input ``level`` per channel: (n_channels, n_sections, 2)."""
    from scipy import signal

    unit = signal.sosfilt_zi(sos)  # (n_sections, 2)
    level = np.atleast_1d(np.asarray(level, dtype=np.float64))
    return np.ascontiguousarray(level[:, None, None] * unit[None, :, :])


class StreamingFilter:
    """Causal SOS filter applied chunk by chunk with carried state.

    Parameters
    ----------
    sos : array, shape (n_sections, 6)
        Second-order sections (from the ``design_*`` functions or scipy).
    n_channels : int
        Number of channels of every chunk.

    Notes
    -----
    The state is seeded at the first chunk's per-channel mean (steady state for
    that level), so a DC offset does not produce a start-up transient. Output of
    any chunking equals one call over the whole signal.
    """

    def __init__(self, sos, n_channels: int) -> None:
        self.sos = _as_sos(sos)
        self.n_channels = int(n_channels)
        if self.n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels!r}")
        self.zi: np.ndarray | None = None
        from mepkit.dsp._filters import sosfilt_inplace

        self._kernel = sosfilt_inplace

    def reset(self) -> None:
        """Forget the state; the next chunk seeds it again."""
        self.zi = None

    def process(self, chunk: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """Filter one chunk (n_samples, n_channels); returns the filtered copy (or ``out``)."""
        if out is None:
            out = np.array(chunk, dtype=np.float64, order="C", copy=True)
            if out.ndim != 2 or out.shape[1] != self.n_channels:
                raise ValueError(
                    f"chunk must have shape (n_samples, {self.n_channels}), got {np.shape(chunk)}")
        else:
            out[...] = chunk
        if out.shape[0] == 0:
            return out
        if self.zi is None:
            self.zi = steady_state_zi(self.sos, out.mean(axis=0))
        self._kernel(self.sos, out, self.zi)
        return out


def apply_sos(sos, x: np.ndarray, zi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Filter a whole signal (n_samples, n_channels); returns (y, final_zi).

    ``zi`` defaults to zeros, like ``scipy.signal.sosfilt``.
    """
    from mepkit.dsp._filters import sosfilt_inplace

    sos = _as_sos(sos)
    y = np.array(x, dtype=np.float64, order="C", copy=True)
    if y.ndim == 1:
        y = y[:, None]
    if zi is None:
        zi = np.zeros((y.shape[1], sos.shape[0], 2))
    else:
        zi = np.array(zi, dtype=np.float64, order="C", copy=True)
        expected = (y.shape[1], sos.shape[0], 2)
        if zi.shape != expected:
            raise ValueError(f"zi must have shape {expected}, got {zi.shape}")
    sosfilt_inplace(sos, y, zi)
    return y, zi

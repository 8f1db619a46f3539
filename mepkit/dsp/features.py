"""Public wrapper around the per-trial feature kernel."""

from __future__ import annotations

import numpy as np

from mepkit.params import REJECT_REASONS, Params

__all__ = ["measure_epochs", "measure_rows", "reason_names", "FEATURES"]

#: Numeric feature arrays returned by :func:`measure_epochs`, each (n_trials, n_channels).
FEATURES = ("amplitude_uv", "latency_ms", "area_uv_ms", "background_rms_uv", "peak_time_ms")

#: Samples x channels of a live trial above which its channels are split over the cores
#: (64 channels at 20 kHz: yes; 16 channels at 5 kHz: no, thread wake-up costs more).
PARALLEL_MIN_WORK = 100_000

_REASONS = np.array(("",) + REJECT_REASONS, dtype=object)
_LP_CACHE: dict = {}


def reason_names(codes: np.ndarray) -> np.ndarray:
    """Map the kernel's reject codes to strings ('' for kept trials)."""
    return _REASONS[np.asarray(codes, dtype=np.int64)]


def _lowpass(sfreq_hz: float, cutoff_hz: float | None) -> tuple[np.ndarray, np.ndarray]:
    key = (sfreq_hz, cutoff_hz)
    if key not in _LP_CACHE:
        if cutoff_hz is None or cutoff_hz >= 0.45 * sfreq_hz:
            _LP_CACHE[key] = (np.zeros((0, 6)), np.zeros((0, 2)))
        else:
            _LP_CACHE[key] = butter2_lowpass(sfreq_hz, cutoff_hz)
    return _LP_CACHE[key]


def butter2_lowpass(sfreq_hz: float, cutoff_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """2nd-order Butterworth low-pass (bilinear, pre-warped) as one SOS row, and its
    steady-state state for a unit input; equal to ``scipy.signal.butter(2, ...,
    output='sos')`` and ``sosfilt_zi`` without importing scipy.signal (~0.7 s)."""
    k = np.tan(np.pi * cutoff_hz / sfreq_hz)
    norm = 1.0 / (1.0 + np.sqrt(2.0) * k + k * k)
    b0 = k * k * norm
    a1 = 2.0 * (k * k - 1.0) * norm
    a2 = (1.0 - np.sqrt(2.0) * k + k * k) * norm
    sos = np.array([[b0, 2.0 * b0, b0, 1.0, a1, a2]])
    zi = np.array([[3.0 * b0 - a1 - a2, b0 - a2]])
    return sos, zi


def measure_epochs(
    epochs_uv: np.ndarray,
    sfreq_hz: float,
    params: Params,
    *,
    t0_ms: np.ndarray | float,
    first: np.ndarray | int = 0,
    gap: np.ndarray | bool = False,
) -> dict[str, np.ndarray]:
    """Measure every trial and channel of raw epochs.

    Parameters
    ----------
    epochs_uv : array, shape (n_trials, n_channels, n_samples)
        Raw EMG in µV (not modified).
    sfreq_hz : float
        Sampling rate.
    params : Params
        Windows and criteria.
    t0_ms : float or array, shape (n_trials,)
        Time of sample 0 relative to the stimulus, per trial.
    first : int or array, shape (n_trials,)
        Index of the first sample present in each epoch (earlier ones are ignored).
    gap : bool or array, shape (n_trials,)
        Whether a timestamp gap falls inside the epoch.

    Returns
    -------
    dict
        ``FEATURES`` arrays (n_trials, n_channels) plus ``detected`` (bool) and
        ``reject_code`` (int, see :func:`reason_names`).
    """
    x = np.asarray(epochs_uv)
    if x.ndim != 3:
        raise ValueError(f"epochs must have shape (n_trials, n_channels, n_samples), got {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    n_trials, n_channels, n_samples = x.shape
    return _run(np.zeros((0, n_channels)), np.zeros(n_trials, dtype=np.int64), x, n_samples,
                sfreq_hz, params, t0_ms, first, gap)


def measure_rows(src: np.ndarray, start: np.ndarray, n_samples: int, sfreq_hz: float,
                 params: Params, *, t0_ms, first=0, gap=False) -> dict[str, np.ndarray]:
    """Measure epochs that are row ranges of a sample-major array (no copies).

    ``src`` is (n_rows, n_channels) float64 C-contiguous (e.g. a ring-buffer view);
    epoch ``k`` is rows ``start[k] + i`` for ``i`` in ``first[k]..n_samples``.
    Returns the same dict as :func:`measure_epochs`.
    """
    src = np.ascontiguousarray(src, dtype=np.float64)
    if src.ndim != 2:
        raise ValueError(f"src must have shape (n_rows, n_channels), got {src.shape}")
    return _run(src, np.ascontiguousarray(start, dtype=np.int64), np.zeros((0, src.shape[1], 0)),
                int(n_samples), sfreq_hz, params, t0_ms, first, gap)


def _run(src, start, src3, n_samples, sfreq_hz, params, t0_ms, first, gap):
    from mepkit.dsp import _features

    n_trials = len(start)
    n_channels = src.shape[1]
    t0 = np.ascontiguousarray(np.broadcast_to(np.asarray(t0_ms, dtype=np.float64), (n_trials,)))
    first_a = np.ascontiguousarray(np.broadcast_to(np.asarray(first, dtype=np.int64), (n_trials,)))
    gap_a = np.ascontiguousarray(np.broadcast_to(np.asarray(gap, dtype=np.bool_), (n_trials,)))
    lp_sos, lp_zi = _lowpass(float(sfreq_hz), params.lowpass_hz)
    out = {name: np.empty((n_trials, n_channels)) for name in FEATURES}
    detected = np.zeros((n_trials, n_channels), dtype=np.bool_)
    reject = np.zeros((n_trials, n_channels), dtype=np.int64)
    args = (
        src, start, src3, int(n_samples), t0, first_a, gap_a,
        1000.0 / float(sfreq_hz),
        params.response_window_ms[0], params.response_window_ms[1],
        params.background_window_ms[0], params.background_window_ms[1],
        params.artifact_window_ms[0], params.artifact_window_ms[1],
        params.line_freq_hz if params.line_freq_hz is not None else 0.0,
        params.line_harmonics, lp_sos, lp_zi,
        params.detection_threshold_uv, params.background_limit_uv, params.onset_sd,
        params.clip_run,
        out["amplitude_uv"], out["latency_ms"], out["area_uv_ms"],
        out["background_rms_uv"], out["peak_time_ms"], detected, reject,
    )
    # many exported epochs: spread blocks of trials over the cores; live trials: one call
    if src3.shape[0] >= 64:
        import numba

        _features.measure_epochs_parallel(4 * numba.get_num_threads(), *args)
    elif src3.shape[0] == 0 and n_channels >= 16 and n_channels * n_samples >= PARALLEL_MIN_WORK:
        import numba

        n_threads = numba.get_num_threads()
        if n_threads > 1:
            _features.measure_channels_parallel(n_threads, *args)
        else:
            _features.measure_epochs(*args)
    else:
        _features.measure_epochs(*args)
    out["detected"] = detected
    out["reject_code"] = reject
    return out

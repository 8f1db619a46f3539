"""Public wrapper around the per-trial feature kernel."""

from __future__ import annotations

import numpy as np

from mepkit.params import REJECT_REASONS, Params

__all__ = ["measure_epochs", "measure_rows", "reason_names", "FEATURES", "Design"]

#: Numeric feature arrays returned by :func:`measure_epochs`, each (n_trials, n_channels).
FEATURES = ("amplitude_uv", "latency_ms", "area_uv_ms", "background_rms_uv", "peak_time_ms")

#: ``reject_reason`` of each kernel reject code ('' = kept).
REASON_NAMES: tuple[str, ...] = ("",) + REJECT_REASONS
_REASONS = np.array(REASON_NAMES, dtype=object)
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
    tmin_s: np.ndarray | float,
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
    tmin_s : float or array, shape (n_trials,)
        Time of sample 0 relative to the stimulus, in seconds (per trial or for all).
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
    tmin_ms = np.asarray(tmin_s, dtype=np.float64) * 1000.0
    return _run(np.zeros((0, n_channels)), np.zeros(n_trials, dtype=np.int64), x, n_samples,
                sfreq_hz, params, tmin_ms, first, gap)


class Design:
    """What every trial of one stream shares: the parameters as the kernels take them,
    the fit's regressors for every epoch row, its cached factorisation and the low-pass.

    Building one costs a few trigonometric functions per epoch sample; a `Pipeline`
    builds it once, so a live trial does not pay it.
    """

    def __init__(self, params: Params, sfreq_hz: float, n_samples: int) -> None:
        from mepkit.dsp import _features as k

        self.params = params
        self.sfreq_hz = float(sfreq_hz)
        self.n_samples = int(n_samples)
        dt_ms = 1000.0 / self.sfreq_hz
        line_hz = params.line_freq_hz if params.line_freq_hz is not None else 0.0
        prm = np.zeros(k.N_PRM)
        prm[k.P_DT] = dt_ms
        prm[k.P_RESP_LO], prm[k.P_RESP_HI] = params.response_window_ms
        prm[k.P_BG_LO], prm[k.P_BG_HI] = params.background_window_ms
        prm[k.P_ART_LO], prm[k.P_ART_HI] = params.artifact_window_ms
        prm[k.P_LINE] = line_hz
        prm[k.P_NHARM] = params.line_harmonics
        prm[k.P_DETECT] = params.detection_threshold_uv
        prm[k.P_BG_LIMIT] = params.background_limit_uv
        prm[k.P_ONSET_SD] = params.onset_sd
        prm[k.P_CLIP_RUN] = params.clip_run
        self.prm = prm
        max_basis = 2 + 2 * params.line_harmonics
        self.basis = np.empty((self.n_samples, max_basis))
        k.fill_basis(self.basis, dt_ms, line_hz)
        self.dkey = np.zeros(6, dtype=np.int64)
        self.lower = np.zeros((max_basis, max_basis))
        self.xtx = np.zeros((max_basis, max_basis))
        self.lp_sos, self.lp_zi = _lowpass(self.sfreq_hz, params.lowpass_hz)
        self.state_rows = k.state_rows(params.line_harmonics, self.lp_sos.shape[0])

    def matches(self, params: Params, sfreq_hz: float, n_samples: int) -> bool:
        return (self.params == params and self.sfreq_hz == float(sfreq_hz)
                and self.n_samples == int(n_samples))


def measure_rows(src: np.ndarray, start: np.ndarray, n_samples: int, sfreq_hz: float,
                 params: Params, *, tmin_ms, first=0, gap=False,
                 design: Design | None = None) -> dict[str, np.ndarray]:
    """Measure epochs that are row ranges of a sample-major array (no copies).

    ``src`` is (n_rows, n_channels) float64 C-contiguous (e.g. a ring-buffer view);
    epoch ``k`` is rows ``start[k] + i`` for ``i`` in ``first[k]..n_samples``, its sample 0
    at ``tmin_ms`` (per epoch or for all) from the stimulus: milliseconds here, the unit the
    kernels and the Pipeline work in.
    ``design`` (for these params, rate and length) saves rebuilding it.
    Returns the same dict as :func:`measure_epochs`.
    """
    src = np.ascontiguousarray(src, dtype=np.float64)
    if src.ndim != 2:
        raise ValueError(f"src must have shape (n_rows, n_channels), got {src.shape}")
    return _run(src, np.ascontiguousarray(start, dtype=np.int64), np.zeros((0, src.shape[1], 0)),
                int(n_samples), sfreq_hz, params, tmin_ms, first, gap, design)


def _run(src, start, src3, n_samples, sfreq_hz, params, tmin_ms, first, gap, design=None):
    from mepkit.dsp import _features

    if design is None or not design.matches(params, sfreq_hz, n_samples):
        design = Design(params, sfreq_hz, n_samples)
    d = design
    n_trials = len(start)
    n_channels = src.shape[1] if src3.shape[0] == 0 else src3.shape[1]
    t0 = np.ascontiguousarray(np.broadcast_to(np.asarray(tmin_ms, dtype=np.float64), (n_trials,)))
    first_a = np.ascontiguousarray(np.broadcast_to(np.asarray(first, dtype=np.int64), (n_trials,)))
    gap_a = np.ascontiguousarray(np.broadcast_to(np.asarray(gap, dtype=np.bool_), (n_trials,)))
    out = {name: np.empty((n_trials, n_channels)) for name in FEATURES}
    detected = np.zeros((n_trials, n_channels), dtype=np.bool_)
    reject = np.zeros((n_trials, n_channels), dtype=np.int64)
    args = (
        src, start, src3, int(n_samples), t0, first_a, gap_a, d.prm, d.basis, d.dkey,
        d.lower, d.xtx, d.lp_sos, d.lp_zi,
        out["amplitude_uv"], out["latency_ms"], out["area_uv_ms"],
        out["background_rms_uv"], out["peak_time_ms"], detected, reject,
    )
    # many exported epochs: spread blocks of trials over the cores
    if src3.shape[0] >= 64:
        import numba

        _features.measure_epochs_parallel(4 * numba.get_num_threads(), *args)
    else:
        _features.measure_epochs(*args)
    out["detected"] = detected
    out["reject_code"] = reject
    return out

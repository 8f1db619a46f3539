"""Numba kernels: per-trial MEP features from raw epochs.

One call measures every trial and channel of an array of epochs. Steps per
epoch (see ``docs/methods.md``): validity and clipping checks on the raw
samples, stimulus-artifact replacement by a straight line, baseline and
mains removal by a least-squares fit over the pre-stimulus window (offset,
slope and mains harmonics) extrapolated across the epoch, an optional causal
low-pass, then peak-to-peak amplitude, onset latency, rectified area and
background RMS.
"""

import math

import numpy as np
from numba import njit, prange

from mepkit.config import JIT

#: Highest rate at which background samples enter the baseline/mains fit.
FIT_RATE_HZ = 5000.0

# Reject codes (order = priority); names in mepkit.params.REJECT_REASONS.
OK = 0
INVALID = 1
GAP = 2
CLIPPED = 3
BACKGROUND = 4


@njit(**JIT)
def _cholesky(a, lower):
    """Cholesky factor of a small symmetric positive definite ``a`` into ``lower``.

    Returns False when ``a`` is singular to working precision.
    """
    n = a.shape[0]
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= lower[j, k] * lower[j, k]
        if s <= 1e-12 * max(abs(a[j, j]), 1e-300):
            return False
        lower[j, j] = math.sqrt(s)
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= lower[i, k] * lower[j, k]
            lower[i, j] = s / lower[j, j]
    return True


@njit(**JIT)
def _set_invalid(tr, ch, amplitude_uv, latency_ms, area_uv_ms, background_rms_uv,
                 peak_time_ms, detected, reject):
    """No numbers for an invalid trial/channel: NaN features, not detected, INVALID."""
    amplitude_uv[tr, ch] = np.nan
    latency_ms[tr, ch] = np.nan
    area_uv_ms[tr, ch] = np.nan
    background_rms_uv[tr, ch] = np.nan
    peak_time_ms[tr, ch] = np.nan
    detected[tr, ch] = False
    reject[tr, ch] = INVALID


@njit(**JIT)
def _chol_solve_col(lower, n, b, col):
    """Solve (L L^T) x = b[:n, col] in place."""
    for i in range(n):
        s = b[i, col]
        for k in range(i):
            s -= lower[i, k] * b[k, col]
        b[i, col] = s / lower[i, i]
    for i in range(n - 1, -1, -1):
        s = b[i, col]
        for k in range(i + 1, n):
            s -= lower[k, i] * b[k, col]
        b[i, col] = s / lower[i, i]


@njit(**JIT)
def _fill_basis(basis, lo, hi, t0, dt_ms, n_basis, line_freq_hz):
    """Rows lo..hi of the regressors: 1, t (s), then cos/sin of the mains harmonics."""
    for i in range(lo, hi):
        t_s = (t0 + i * dt_ms) * 1e-3
        basis[i, 0] = 1.0
        if n_basis > 1:
            basis[i, 1] = t_s
        k = 1
        j = 2
        while j < n_basis:
            w = 2.0 * math.pi * k * line_freq_hz * t_s
            basis[i, j] = math.cos(w)
            basis[i, j + 1] = math.sin(w)
            j += 2
            k += 1


@njit(**JIT)
def measure_epochs(
    src,  # (n_rows, n_channels) float64, µV, sample-major (read only)
    start,  # (n_trials,) int64: row of src holding epoch sample 0 (may be < 0, see first)
    src3,  # (n_trials, n_channels, n_samples) epochs; when it has trials, read instead of src
    n_samples,  # samples per epoch
    t0_ms,  # (n_trials,) time of sample 0 relative to the stimulus
    first,  # (n_trials,) int64: samples before this index are absent
    gap,  # (n_trials,) bool: a timestamp gap inside the epoch
    dt_ms,
    resp_lo_ms, resp_hi_ms,
    bg_lo_ms, bg_hi_ms,
    art_lo_ms, art_hi_ms,
    line_freq_hz,  # <= 0 disables the mains fit
    n_harmonics,
    lp_sos,  # (n_sections, 6); zero sections disables the low-pass
    lp_zi_unit,  # (n_sections, 2) steady-state state for unit input
    detection_uv, background_limit_uv, onset_sd, clip_run,
    amplitude_uv, latency_ms, area_uv_ms, background_rms_uv, peak_time_ms,
    detected, reject,  # outputs (n_trials, n_channels)
):
    """Measure every trial and channel.

    Epoch ``tr`` is rows ``start[tr] + i`` of ``src`` for ``i`` in ``first[tr]..n_samples``
    (a live ring buffer is measured in place, without copying epochs out of it), or
    ``src3[tr, :, i]`` when ``src3`` holds the trials (epochs as exported). Channels of
    a trial are processed together (channel-minor inner loops) so the recurrences of
    different channels overlap and the per-sample loops vectorise."""
    from_rows = src3.shape[0] == 0
    n_trials = start.shape[0] if from_rows else src3.shape[0]
    n_channels = src.shape[1] if from_rows else src3.shape[1]
    nyq_hz = 500.0 / dt_ms
    max_basis = 2 + 2 * n_harmonics
    basis = np.empty((n_samples, max_basis))
    xtx = np.empty((max_basis, max_basis))
    lower = np.zeros((max_basis, max_basis))
    coef = np.empty((max_basis, n_channels))
    n_sec = lp_sos.shape[0]
    zi = np.empty((max(n_sec, 1), 2, n_channels))
    x = np.empty((n_samples, n_channels))  # scratch: the input epochs are never modified
    valid = np.empty(n_channels, dtype=np.bool_)
    clipped = np.empty(n_channels, dtype=np.bool_)
    acc = np.empty(n_channels)
    hi_v = np.empty(n_channels)
    lo_v = np.empty(n_channels)
    peak_abs = np.empty(n_channels)
    peak_i = np.empty(n_channels, dtype=np.int64)
    area = np.empty(n_channels)
    # cache key of the design (shared by trials with the same windows)
    c_lo = -1
    c_hi = -1
    c_nb = -1
    c_b0 = -1
    solved = False
    n_onset = int(round(5.0 / dt_ms))
    # the fit uses at most FIT_RATE_HZ samples per second of background (every sample up
    # to 5 kHz): plenty for 8 smooth regressors, and 4x less work at 20 kHz
    fit_step = max(1, int(round(1000.0 / (dt_ms * FIT_RATE_HZ))))
    for tr in range(n_trials):
        t0 = t0_ms[tr]
        f0 = first[tr]
        # ---- index ranges of the windows: sample i is at t0 + i*dt
        b0 = max(f0, int(math.ceil((bg_lo_ms - t0) / dt_ms - 1e-9)))
        b1 = min(n_samples, int(math.ceil((bg_hi_ms - t0) / dt_ms - 1e-9)))
        r0 = max(f0, int(math.ceil((resp_lo_ms - t0) / dt_ms - 1e-9)))
        r1 = min(n_samples, int(math.floor((resp_hi_ms - t0) / dt_ms + 1e-9)) + 1)
        a0 = max(f0, int(math.ceil((art_lo_ms - t0) / dt_ms - 1e-9)))
        a1 = min(n_samples, int(math.floor((art_hi_ms - t0) / dt_ms + 1e-9)) + 1)
        nb = max(0, b1 - b0)
        lo = max(f0, min(b0, a0, r0)) if nb > 0 else max(f0, min(a0, r0))
        hi = r1
        if hi <= lo or r1 <= r0:
            for ch in range(n_channels):
                _set_invalid(tr, ch, amplitude_uv, latency_ms, area_uv_ms, background_rms_uv,
                             peak_time_ms, detected, reject)
            continue
        # ---- regression design over the background window
        n_basis = 1
        bg_ms = nb * dt_ms
        if bg_ms >= 20.0 and nb >= 8:
            n_basis = 2
        if line_freq_hz > 0 and bg_ms >= 1.5 * 1000.0 / line_freq_hz:
            h = 0
            while h < n_harmonics and (h + 1) * line_freq_hz < 0.9 * nyq_hz:
                h += 1
            if nb >= 4 * (2 + 2 * h):
                n_basis = 2 + 2 * h
        # The regressors are built on the epoch's own sample index: a time shift only
        # changes the phase of a sinusoid and the offset of a line, so the fitted subspace
        # (and the fit) is the same for any t0, and trials of one stream share the design.
        if nb >= 2 and not (lo == c_lo and hi == c_hi and n_basis == c_nb and b0 == c_b0):
            _fill_basis(basis, lo, hi, 0.0, dt_ms, n_basis, line_freq_hz)
            for p in range(n_basis):
                for q in range(p + 1):
                    s = 0.0
                    for i in range(b0, b1, fit_step):
                        s += basis[i, p] * basis[i, q]
                    xtx[p, q] = s
                    xtx[q, p] = s
            solved = _cholesky(xtx[:n_basis, :n_basis], lower)
            c_lo = lo
            c_hi = hi
            c_nb = n_basis
            c_b0 = b0
        # ---- copy the samples used and check them
        c0 = max(f0, min(lo, a0) - 1)
        c1 = min(n_samples, max(hi, a1 + 1))
        if from_rows:
            row0 = start[tr]
            for i in range(c0, c1):
                for ch in range(n_channels):
                    x[i, ch] = src[row0 + i, ch]
        else:
            for ch in range(n_channels):
                for i in range(c0, c1):
                    x[i, ch] = src3[tr, ch, i]
        # NaN and inf propagate through v * 0.0 (inf * 0 is NaN): branch-free, vectorises
        for ch in range(n_channels):
            acc[ch] = 0.0
        for i in range(lo, hi):
            for ch in range(n_channels):
                acc[ch] += x[i, ch] * 0.0
        for ch in range(n_channels):
            valid[ch] = acc[ch] == 0.0
        for ch in range(n_channels):
            # clipping: a run of equal samples at the response window's extreme
            top = -np.inf
            bot = np.inf
            for i in range(r0, r1):
                v = x[i, ch]
                if v > top:
                    top = v
                if v < bot:
                    bot = v
            run = 1
            clip = False
            if top > bot:
                for i in range(r0 + 1, r1):
                    v = x[i, ch]
                    if v == x[i - 1, ch] and (v == top or v == bot):
                        run += 1
                        if run >= clip_run:
                            clip = True
                            break
                    else:
                        run = 1
            clipped[ch] = clip
            # artifact: straight line between the samples around the window
            if a1 > a0:
                left = a0 - 1
                right = a1
                if left < f0 and right < n_samples:
                    for i in range(a0, a1):
                        x[i, ch] = x[right, ch]
                elif right >= n_samples and left >= f0:
                    for i in range(a0, a1):
                        x[i, ch] = x[left, ch]
                elif left >= f0 and right < n_samples:
                    span = right - left
                    xl = x[left, ch]
                    xr = x[right, ch]
                    for i in range(a0, a1):
                        w = (i - left) / span
                        x[i, ch] = (1.0 - w) * xl + w * xr
        # ---- baseline, drift and mains: fit on the background, subtract where used
        if nb >= 2 and solved:
            for p in range(n_basis):
                for ch in range(n_channels):
                    acc[ch] = 0.0
                for i in range(b0, b1, fit_step):
                    bp = basis[i, p]
                    for ch in range(n_channels):
                        acc[ch] += bp * x[i, ch]
                for ch in range(n_channels):
                    coef[p, ch] = acc[ch]
            for ch in range(n_channels):
                _chol_solve_col(lower, n_basis, coef, ch)
            for i in range(lo, hi):
                for ch in range(n_channels):
                    acc[ch] = 0.0
                for p in range(n_basis):
                    bp = basis[i, p]
                    for ch in range(n_channels):
                        acc[ch] += coef[p, ch] * bp
                for ch in range(n_channels):
                    x[i, ch] -= acc[ch]
        elif nb >= 1:
            for ch in range(n_channels):
                acc[ch] = 0.0
            for i in range(b0, b1):
                for ch in range(n_channels):
                    acc[ch] += x[i, ch]
            for ch in range(n_channels):
                acc[ch] /= nb
            for i in range(lo, hi):
                for ch in range(n_channels):
                    x[i, ch] -= acc[ch]
        # ---- causal low-pass from the first sample used (steady state)
        if n_sec > 0:
            for s in range(n_sec):
                for ch in range(n_channels):
                    zi[s, 0, ch] = lp_zi_unit[s, 0] * x[lo, ch]
                    zi[s, 1, ch] = lp_zi_unit[s, 1] * x[lo, ch]
            for i in range(lo, hi):
                for s in range(n_sec):
                    b0s = lp_sos[s, 0]
                    b1s = lp_sos[s, 1]
                    b2s = lp_sos[s, 2]
                    a1s = lp_sos[s, 4]
                    a2s = lp_sos[s, 5]
                    for ch in range(n_channels):
                        v = x[i, ch]
                        y = b0s * v + zi[s, 0, ch]
                        zi[s, 0, ch] = b1s * v - a1s * y + zi[s, 1, ch]
                        zi[s, 1, ch] = b2s * v - a2s * y
                        x[i, ch] = y
        # ---- background RMS
        for ch in range(n_channels):
            acc[ch] = 0.0
        for i in range(b0, b1):
            for ch in range(n_channels):
                acc[ch] += x[i, ch] * x[i, ch]
        # ---- response: peak-to-peak, peak time, rectified area
        for ch in range(n_channels):
            hi_v[ch] = -np.inf
            lo_v[ch] = np.inf
            peak_abs[ch] = -1.0
            peak_i[ch] = r0
            area[ch] = 0.0
        for i in range(r0, r1):
            for ch in range(n_channels):
                v = x[i, ch]
                if v > hi_v[ch]:
                    hi_v[ch] = v
                if v < lo_v[ch]:
                    lo_v[ch] = v
                av = abs(v)
                area[ch] += av
                if av > peak_abs[ch]:
                    peak_abs[ch] = av
                    peak_i[ch] = i
        for ch in range(n_channels):
            if not valid[ch]:
                _set_invalid(tr, ch, amplitude_uv, latency_ms, area_uv_ms, background_rms_uv,
                             peak_time_ms, detected, reject)
                continue
            bg = math.sqrt(acc[ch] / nb) if nb > 0 else np.nan
            amp = hi_v[ch] - lo_v[ch]
            amplitude_uv[tr, ch] = amp
            area_uv_ms[tr, ch] = area[ch] * dt_ms
            background_rms_uv[tr, ch] = bg
            pk = peak_i[ch]
            peak_time_ms[tr, ch] = t0 + pk * dt_ms
            is_mep = amp >= detection_uv
            detected[tr, ch] = is_mep
            # ---- onset: first crossing of onset_sd x background before the peak,
            # walked back to where the deflection leaves the noise band
            lat = np.nan
            if is_mep:
                noise = bg if bg == bg else 0.0
                thr = onset_sd * noise
                floor_thr = 0.1 * detection_uv
                if thr < floor_thr:
                    thr = floor_thr
                if thr > 0.5 * peak_abs[ch]:
                    thr = 0.5 * peak_abs[ch]
                # local level just before the response window absorbs the few µV
                # left by extrapolating the drift fit across the stimulus
                l0 = max(a1, lo, r0 - n_onset)
                lb = 0.0
                if r0 > l0:
                    for i in range(l0, r0):
                        lb += x[i, ch]
                    lb /= r0 - l0
                cross = -1
                for i in range(r0, pk + 1):
                    if abs(x[i, ch] - lb) >= thr:
                        cross = i
                        break
                if cross >= 0:
                    sign = 1.0 if x[cross, ch] > lb else -1.0
                    stop = max(a1, lo)
                    j = cross
                    while j > stop and sign * (x[j - 1, ch] - lb) > noise:
                        j -= 1
                    lat = t0 + j * dt_ms
            latency_ms[tr, ch] = lat
            # ---- rejection, by priority
            reason = OK
            if nb == 0:
                reason = INVALID
            elif gap[tr]:
                reason = GAP
            elif clipped[ch]:
                reason = CLIPPED
            elif not (bg <= background_limit_uv):
                reason = BACKGROUND
            reject[tr, ch] = reason


@njit(parallel=True, **JIT)
def measure_epochs_parallel(
    n_blocks, src, start, src3, n_samples, t0_ms, first, gap, dt_ms,
    resp_lo_ms, resp_hi_ms, bg_lo_ms, bg_hi_ms, art_lo_ms, art_hi_ms,
    line_freq_hz, n_harmonics, lp_sos, lp_zi_unit,
    detection_uv, background_limit_uv, onset_sd, clip_run,
    amplitude_uv, latency_ms, area_uv_ms, background_rms_uv, peak_time_ms, detected, reject,
):
    """:func:`measure_epochs` over ``n_blocks`` blocks of trials on the numba thread pool
    (epochs as ``src3``; each block writes its own rows of the outputs)."""
    n_trials = src3.shape[0]
    for b in prange(n_blocks):
        lo = b * n_trials // n_blocks
        hi = (b + 1) * n_trials // n_blocks
        if hi > lo:
            measure_epochs(
                src, start[lo:hi], src3[lo:hi], n_samples, t0_ms[lo:hi], first[lo:hi],
                gap[lo:hi], dt_ms, resp_lo_ms, resp_hi_ms, bg_lo_ms, bg_hi_ms, art_lo_ms,
                art_hi_ms, line_freq_hz, n_harmonics, lp_sos, lp_zi_unit,
                detection_uv, background_limit_uv, onset_sd, clip_run,
                amplitude_uv[lo:hi], latency_ms[lo:hi], area_uv_ms[lo:hi],
                background_rms_uv[lo:hi], peak_time_ms[lo:hi], detected[lo:hi], reject[lo:hi])



@njit(parallel=True, **JIT)
def measure_channels_parallel(
    n_blocks, src, start, src3, n_samples, t0_ms, first, gap, dt_ms,
    resp_lo_ms, resp_hi_ms, bg_lo_ms, bg_hi_ms, art_lo_ms, art_hi_ms,
    line_freq_hz, n_harmonics, lp_sos, lp_zi_unit,
    detection_uv, background_limit_uv, onset_sd, clip_run,
    amplitude_uv, latency_ms, area_uv_ms, background_rms_uv, peak_time_ms, detected, reject,
):
    """:func:`measure_epochs` over ``n_blocks`` blocks of channels on the numba thread pool
    (many channels at a high rate: one live trial measured on every core)."""
    n_channels = src.shape[1]
    for b in prange(n_blocks):
        lo = b * n_channels // n_blocks
        hi = (b + 1) * n_channels // n_blocks
        if hi > lo:
            measure_epochs(
                src[:, lo:hi], start, src3, n_samples, t0_ms, first, gap, dt_ms,
                resp_lo_ms, resp_hi_ms, bg_lo_ms, bg_hi_ms, art_lo_ms, art_hi_ms,
                line_freq_hz, n_harmonics, lp_sos, lp_zi_unit,
                detection_uv, background_limit_uv, onset_sd, clip_run,
                amplitude_uv[:, lo:hi], latency_ms[:, lo:hi], area_uv_ms[:, lo:hi],
                background_rms_uv[:, lo:hi], peak_time_ms[:, lo:hi], detected[:, lo:hi],
                reject[:, lo:hi])

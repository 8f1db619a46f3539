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
from numba import njit

from mepkit.config import JIT

# Reject codes (order = priority); names in mepkit.params.REJECT_REASONS.
OK = 0
INVALID = 1
GAP = 2
CLIPPED = 3
BACKGROUND = 4


@njit(**JIT)
def _solve_spd(a, b):
    """Solve a @ x = b for a small symmetric positive (semi)definite ``a`` (Cholesky).

    Returns False when ``a`` is singular to working precision.
    """
    n = a.shape[0]
    lower = np.zeros((n, n))
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
    # forward then back substitution, columns of b in place
    for col in range(b.shape[1]):
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
    return True


@njit(**JIT)
def _basis(t_ms, n_basis, line_freq_hz, out):
    """Regressors at time ``t_ms``: 1, t (s), then cos/sin of mains harmonics."""
    out[0] = 1.0
    if n_basis > 1:
        out[1] = t_ms * 1e-3
    k = 1
    j = 2
    while j < n_basis:
        w = 2.0 * math.pi * k * line_freq_hz * t_ms * 1e-3
        out[j] = math.cos(w)
        out[j + 1] = math.sin(w)
        j += 2
        k += 1


@njit(**JIT)
def measure_epochs(
    epochs,  # (n_trials, n_channels, n_samples) float64, µV, modified in place
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
    n_trials, n_channels, n_samples = epochs.shape
    nyq_hz = 500.0 / dt_ms
    max_basis = 2 + 2 * n_harmonics
    basis = np.empty(max_basis)
    zi = np.empty((lp_sos.shape[0], 2))
    for tr in range(n_trials):
        t0 = t0_ms[tr]
        f0 = first[tr]
        # ---- index ranges of the windows (inclusive lo, exclusive hi)
        # sample i is at t0 + i*dt; a window [lo, hi) in ms covers ceil((lo-t0)/dt) ..
        b0 = max(f0, int(math.ceil((bg_lo_ms - t0) / dt_ms - 1e-9)))
        b1 = min(n_samples, int(math.ceil((bg_hi_ms - t0) / dt_ms - 1e-9)))
        r0 = max(f0, int(math.ceil((resp_lo_ms - t0) / dt_ms - 1e-9)))
        r1 = min(n_samples, int(math.floor((resp_hi_ms - t0) / dt_ms + 1e-9)) + 1)
        a0 = max(f0, int(math.ceil((art_lo_ms - t0) / dt_ms - 1e-9)))
        a1 = min(n_samples, int(math.floor((art_hi_ms - t0) / dt_ms + 1e-9)) + 1)
        nb = b1 - b0
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
        xtx = np.zeros((n_basis, n_basis))
        xty = np.zeros((n_basis, n_channels))
        solved = False
        if nb >= 2:
            for i in range(b0, b1):
                _basis(t0 + i * dt_ms, n_basis, line_freq_hz, basis)
                for p in range(n_basis):
                    for q in range(n_basis):
                        xtx[p, q] += basis[p] * basis[q]
            # filled per channel below (xty depends on data after artifact step)
        for ch in range(n_channels):
            x = epochs[tr, ch]
            reason = OK
            # ---- validity: NaN / inf anywhere that is used
            lo_used = min(b0, a0, r0) if nb > 0 else min(a0, r0)
            for i in range(max(f0, lo_used), n_samples):
                if not math.isfinite(x[i]):
                    reason = INVALID
                    break
            if r1 <= r0:
                reason = INVALID
            if reason == INVALID:
                amplitude_uv[tr, ch] = np.nan
                latency_ms[tr, ch] = np.nan
                area_uv_ms[tr, ch] = np.nan
                background_rms_uv[tr, ch] = np.nan
                peak_time_ms[tr, ch] = np.nan
                detected[tr, ch] = False
                reject[tr, ch] = INVALID
                continue
            # ---- clipping: a run of equal samples at the response window's extreme
            hi_v = -np.inf
            lo_v = np.inf
            for i in range(r0, r1):
                if x[i] > hi_v:
                    hi_v = x[i]
                if x[i] < lo_v:
                    lo_v = x[i]
            run = 1
            clipped = False
            for i in range(r0 + 1, r1):
                if x[i] == x[i - 1] and (x[i] == hi_v or x[i] == lo_v) and hi_v > lo_v:
                    run += 1
                    if run >= clip_run:
                        clipped = True
                        break
                else:
                    run = 1
            # ---- artifact: straight line between the samples around the window
            if a1 > a0:
                left = a0 - 1
                right = a1
                if left < f0 and right < n_samples:
                    for i in range(a0, a1):
                        x[i] = x[right]
                elif right >= n_samples and left >= f0:
                    for i in range(a0, a1):
                        x[i] = x[left]
                elif left >= f0 and right < n_samples:
                    span = right - left
                    for i in range(a0, a1):
                        w = (i - left) / span
                        x[i] = (1.0 - w) * x[left] + w * x[right]
            # ---- baseline, drift and mains: fit on the background, subtract everywhere
            if nb >= 2:
                for p in range(n_basis):
                    xty[p, ch] = 0.0
                for i in range(b0, b1):
                    _basis(t0 + i * dt_ms, n_basis, line_freq_hz, basis)
                    for p in range(n_basis):
                        xty[p, ch] += basis[p] * x[i]
                a = xtx.copy()
                coef = np.empty((n_basis, 1))
                for p in range(n_basis):
                    coef[p, 0] = xty[p, ch]
                solved = _solve_spd(a, coef)
                if not solved:
                    # fall back to the mean
                    m = 0.0
                    for i in range(b0, b1):
                        m += x[i]
                    m /= nb
                    for i in range(f0, n_samples):
                        x[i] -= m
                else:
                    for i in range(f0, n_samples):
                        _basis(t0 + i * dt_ms, n_basis, line_freq_hz, basis)
                        fit = 0.0
                        for p in range(n_basis):
                            fit += coef[p, 0] * basis[p]
                        x[i] -= fit
            elif nb == 1:
                m = x[b0]
                for i in range(f0, n_samples):
                    x[i] -= m
            # ---- causal low-pass from the first sample present (steady state)
            if lp_sos.shape[0] > 0:
                x0 = x[f0]
                for s in range(lp_sos.shape[0]):
                    zi[s, 0] = lp_zi_unit[s, 0] * x0
                    zi[s, 1] = lp_zi_unit[s, 1] * x0
                for i in range(f0, n_samples):
                    v = x[i]
                    for s in range(lp_sos.shape[0]):
                        y = lp_sos[s, 0] * v + zi[s, 0]
                        zi[s, 0] = lp_sos[s, 1] * v - lp_sos[s, 4] * y + zi[s, 1]
                        zi[s, 1] = lp_sos[s, 2] * v - lp_sos[s, 5] * y
                        v = y
                    x[i] = v
            # ---- background RMS
            if nb > 0:
                ss = 0.0
                for i in range(b0, b1):
                    ss += x[i] * x[i]
                bg = math.sqrt(ss / nb)
            else:
                bg = np.nan
            # ---- response: peak-to-peak, peak time, rectified area
            hi_v = -np.inf
            lo_v = np.inf
            peak_abs = -1.0
            peak_i = r0
            area = 0.0
            for i in range(r0, r1):
                v = x[i]
                if v > hi_v:
                    hi_v = v
                if v < lo_v:
                    lo_v = v
                av = abs(v)
                area += av
                if av > peak_abs:
                    peak_abs = av
                    peak_i = i
            amp = hi_v - lo_v
            amplitude_uv[tr, ch] = amp
            area_uv_ms[tr, ch] = area * dt_ms
            background_rms_uv[tr, ch] = bg
            peak_time_ms[tr, ch] = t0 + peak_i * dt_ms
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
                if thr > 0.5 * peak_abs:
                    thr = 0.5 * peak_abs
                # local level just before the response window absorbs the few µV
                # left by extrapolating the drift fit across the stimulus
                l0 = max(a1, f0, r0 - int(round(5.0 / dt_ms)))
                lb = 0.0
                if r0 > l0:
                    for i in range(l0, r0):
                        lb += x[i]
                    lb /= r0 - l0
                cross = -1
                for i in range(r0, peak_i + 1):
                    if abs(x[i] - lb) >= thr:
                        cross = i
                        break
                if cross >= 0:
                    sign = 1.0 if x[cross] > lb else -1.0
                    level = 1.0 * noise
                    stop = max(a1, f0)
                    j = cross
                    while j > stop and sign * (x[j - 1] - lb) > level:
                        j -= 1
                    lat = t0 + j * dt_ms
            latency_ms[tr, ch] = lat
            # ---- rejection, by priority
            if nb == 0:
                reason = INVALID
            elif gap[tr]:
                reason = GAP
            elif clipped:
                reason = CLIPPED
            elif not (bg <= background_limit_uv):
                reason = BACKGROUND
            reject[tr, ch] = reason

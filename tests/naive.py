"""Slow, obviously correct NumPy twins of the numba kernels.

Used by the tests (kernel == twin) and by ``benchmarks/features.py`` as the
plain-NumPy reference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal



def measure_epoch(x, t_ms, params, *, first=0, gap=False, sfreq_hz):
    """Features of one raw epoch (1-D, µV); returns a dict like the kernel's."""
    p = params
    x = np.array(x, dtype=np.float64)
    dt = 1000.0 / sfreq_hz
    n = x.size
    i = np.arange(n)
    # the windows, chosen from the samples' times (not the kernel's index arithmetic):
    # background [lo, hi), response and artifact [lo, hi], none before `first`
    t0 = t_ms[0]
    eps = 1e-6  # ms

    def span(lo, hi, closed):
        inside = (i >= first) & (t_ms >= lo - eps) & ((t_ms <= hi + eps) if closed
                                                       else (t_ms < hi - eps))
        idx = np.flatnonzero(inside)
        return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (first, first)

    b0, b1 = span(*p.background_window_ms, closed=False)
    r0, r1 = span(*p.response_window_ms, closed=True)
    a0, a1 = span(*p.artifact_window_ms, closed=True)
    nb = max(0, b1 - b0)
    nan = dict(amplitude_uv=np.nan, latency_ms=np.nan, area_uv_ms=np.nan,
               background_rms_uv=np.nan, peak_time_ms=np.nan, detected=False, reason="invalid")
    lo = max(first, min(b0, a0, r0)) if nb > 0 else max(first, min(a0, r0))
    hi = r1
    if not np.all(np.isfinite(x[lo:hi])) or r1 <= r0:
        return nan
    resp = x[r0:r1]
    hi_v, lo_v = resp.max(), resp.min()
    clipped = False
    if hi_v > lo_v:
        run = 1
        for k in range(1, resp.size):
            if resp[k] == resp[k - 1] and resp[k] in (hi_v, lo_v):
                run += 1
                if run >= p.clip_run:
                    clipped = True
                    break
            else:
                run = 1
    if a1 > a0:
        left, right = a0 - 1, a1
        if left >= first and right < n:
            x[a0:a1] = np.interp(i[a0:a1], [left, right], [x[left], x[right]])
        elif left < first and right < n:
            x[a0:a1] = x[right]
        elif left >= first:
            x[a0:a1] = x[left]
    tt = t0 + i * dt
    if nb >= 2:
        cols = [np.ones(n)]
        bg_ms = nb * dt
        if bg_ms >= 20 and nb >= 8:
            cols.append(tt * 1e-3)
            f = p.line_freq_hz or 0.0
            if f > 0 and bg_ms >= 1.5 * 1000 / f:
                h = 0
                while h < p.line_harmonics and (h + 1) * f < 0.9 * sfreq_hz / 2:
                    h += 1
                if nb >= 4 * (2 + 2 * h):
                    for k in range(1, h + 1):
                        w = 2 * np.pi * k * f * tt * 1e-3
                        cols += [np.cos(w), np.sin(w)]
        design = np.stack(cols, axis=1)
        step = max(1, int(round(sfreq_hz / 5000.0)))  # fit rate <= 5 kHz, as the kernel
        coef, *_ = np.linalg.lstsq(design[b0:b1:step], x[b0:b1:step], rcond=None)
        x[lo:hi] -= design[lo:hi] @ coef
    elif nb == 1:
        x[lo:hi] -= x[b0]
    if p.lowpass_hz is not None and p.lowpass_hz < 0.45 * sfreq_hz:
        sos = signal.butter(2, p.lowpass_hz, fs=sfreq_hz, output="sos")
        zi = signal.sosfilt_zi(sos) * x[lo]
        x[lo:hi], _ = signal.sosfilt(sos, x[lo:hi], zi=zi)
    bg = math.sqrt(np.mean(x[b0:b1] ** 2)) if nb > 0 else np.nan
    resp = x[r0:r1]
    amp = resp.max() - resp.min()
    pk = r0 + int(np.argmax(np.abs(resp)))
    out = dict(amplitude_uv=amp, area_uv_ms=np.abs(resp).sum() * dt, background_rms_uv=bg,
               peak_time_ms=t0 + pk * dt, detected=bool(amp >= p.detection_threshold_uv),
               latency_ms=np.nan)
    if out["detected"]:
        noise = bg if bg == bg else 0.0
        thr = max(p.onset_sd * noise, 0.1 * p.detection_threshold_uv)
        thr = min(thr, 0.5 * abs(x[pk]))
        l0 = max(a1, lo, r0 - int(round(5.0 / dt)))
        lb = x[l0:r0].mean() if r0 > l0 else 0.0
        above = np.nonzero(np.abs(x[r0:pk + 1] - lb) >= thr)[0]
        if above.size:
            c = r0 + above[0]
            sign = 1.0 if x[c] > lb else -1.0
            j = c
            while j > max(a1, lo) and sign * (x[j - 1] - lb) > noise:
                j -= 1
            out["latency_ms"] = t0 + j * dt
    if nb == 0:
        reason = "invalid"
    elif gap:
        reason = "gap"
    elif clipped:
        reason = "clipped"
    elif not bg <= p.background_limit_uv:
        reason = "background"
    else:
        reason = ""
    out["reason"] = reason
    return out


def measure_epochs(epochs, sfreq_hz, params, *, tmin_ms):
    """Twin of ``mepkit.dsp.features.measure_epochs`` for shared t0 (arrays out)."""
    n_tr, n_ch, n_s = epochs.shape
    t = tmin_ms + np.arange(n_s) * 1000.0 / sfreq_hz
    keys = ("amplitude_uv", "latency_ms", "area_uv_ms", "background_rms_uv", "peak_time_ms")
    out = {k: np.empty((n_tr, n_ch)) for k in keys}
    out["detected"] = np.zeros((n_tr, n_ch), bool)
    out["reason"] = np.empty((n_tr, n_ch), object)
    for a in range(n_tr):
        for c in range(n_ch):
            r = measure_epoch(epochs[a, c], t, params, sfreq_hz=sfreq_hz)
            for k in keys:
                out[k][a, c] = r[k]
            out["detected"][a, c] = r["detected"]
            out["reason"][a, c] = r["reason"]
    return out

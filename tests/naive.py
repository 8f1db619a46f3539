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
    if p.line_freq_hz == "auto":
        raise ValueError("the twin measures with a given mains frequency, not 'auto'")
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
               clean=dict(x=x, r0=r0, r1=r1, pk=pk, a1=a1, lo=lo, dt=dt, t0=t0),
               peak_time_ms=t0 + pk * dt, detected=bool(amp >= p.detection_threshold_uv),
               latency_ms=np.nan)
    out["onset_ambiguous"] = False
    if out["detected"]:
        onsets, amb = onset_rows(x, dt=dt, r0=r0, r1=r1, pk=pk, a1=a1, lo=lo, b0=b0, b1=b1,
                                 bg=bg, params=p)
        chosen = onsets[p.onset_method]
        out["latency_ms"] = t0 + chosen * dt if chosen is not None else np.nan
        out["onset_ambiguous"] = amb
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


def onset_rows(x, *, dt, r0, r1, pk, a1, lo, b0, b1, bg, params):
    """Onset of every method (row, or None) on the cleaned, filtered epoch ``x``, and
    whether the chosen one is ambiguous (docs/methods.md, "Onset methods")."""
    p = params
    noise = bg if bg == bg else 0.0
    peak_abs = abs(x[pk])
    thr = min(max(p.onset_sd * noise, 0.1 * p.detection_threshold_uv), 0.5 * peak_abs)
    l0 = max(a1, lo, r0 - int(round(5.0 / dt)))
    lb = x[l0:r0].mean() if r0 > l0 else 0.0
    dev = x - lb
    y_bg = x[b0:b1]
    diffs = np.diff(y_bg)
    dnoise = math.sqrt(np.mean(diffs ** 2)) if diffs.size else 0.0
    # slope at every row of the window with both neighbours in it (central difference)
    rows = np.arange(r0 + 1, r1 - 1)
    cslope = (x[rows + 1] - x[rows - 1]) / 2
    # anchor: the later of half the peak (level) and half the steepest slope, passing over
    # a steep stretch under way at the window's start
    resp = np.abs(dev[r0:pk + 1])
    big = np.flatnonzero(resp >= 0.5 * peak_abs)
    anchor = r0 + int(big[0]) if big.size else pk
    mag = np.abs(cslope)
    if mag.size:
        steep_rows = mag >= 0.5 * mag.max()
        if steep_rows.all():
            anchor = max(anchor, r0 + 1)
        else:
            start = int(np.argmin(steep_rows)) if steep_rows[0] else 0
            after = np.flatnonzero(mag[start:] >= 0.5 * mag[start:].max())
            anchor = max(anchor, int(rows[start + after[0]]))
    anchor = min(max(anchor, r0 + 1), r1 - 2)
    s0 = 1.0 if x[anchor + 1] >= x[anchor - 1] else -1.0
    c = anchor
    while c > r0 and s0 * dev[c - 1] >= thr:
        c -= 1
    onsets = {}
    # threshold: back from the anchor while the signal falls steeply, next to the noise
    # (over 2 samples, or on average over up to 0.6 ms more) and next to the phase's
    # steepest slope (a tenth of it); over the turn of an earlier phase of the other sign
    # if that phase moves by the threshold and is steep (a fifth of the later one's slope)
    # or large (0.3 x the peak)
    n = 2
    noise_min = max(0.5 * dnoise * n, 1e-3 * thr)
    look = int(round(0.6 / dt))

    def steep(k, sign, top):
        need = max(noise_min, 0.1 * top * n)
        if k - n < r0:
            return False
        spans = np.arange(n, n + look + 1)
        spans = spans[k - spans >= r0]
        return bool(np.any(sign * (x[k] - x[k - spans]) >= need * spans / n))

    # the anchor phase's steepest slope: from the anchor to its extremum
    p1 = anchor
    while p1 + 2 < r1 and s0 * (x[p1 + 1] - x[p1]) > 0:
        p1 += 1
    top = max(0.0, float(np.max(s0 * (x[anchor + 1:p1 + 2] - x[anchor - 1:p1]) / 2)))
    top_anchor = top
    sign = s0
    j = anchor
    while True:
        while steep(j, sign, top):
            top = max(top, sign * (x[j] - x[j - n]) / 2)
            j -= 1
        if j - n < r0:
            break
        # back to the extremum of an earlier movement of the other sign (0.6 ms at most)
        turn = j
        while turn > max(r0, j - look) and sign * (x[turn - 1] - x[turn]) < 0:
            turn -= 1
        if turn - n < r0:
            j = r0
            break
        def rise(start):
            foot, top2 = start, 0.0
            while steep(foot, -sign, top2):
                top2 = max(top2, -sign * (x[foot] - x[foot - n]) / 2)
                foot -= 1
            return foot, top2

        foot, top2 = rise(turn)
        # a turn standing 0.3 x the peak or more beyond the baseline (other side) may be the
        # flat top of an earlier phase: back over the top (while the signal stays beyond
        # half the turn's level) to the first rise that climbs half that level; a rise that
        # does not is a wiggle on the top, passed over
        level = -sign * dev[turn]
        big = level >= 0.3 * peak_abs
        if big:
            start = turn
            from_turn = foot, top2
            while -sign * (x[start] - x[foot]) < 0.5 * level:
                start = min(foot, start - 1)
                if start - n < r0 or -sign * dev[start] < 0.5 * level:
                    # none: not a phase, unless the movement from the turn runs into
                    # the window's start (the response may have begun before it)
                    foot, top2 = from_turn if from_turn[0] - n < r0 else (turn, 0.0)
                    big = False
                    break
                foot, top2 = rise(start)
        if foot == turn:  # nothing rises steeply before it: the foot of the response
            break
        # a phase of the MEP: it moves by the threshold, and is steep (a fifth of the later
        # phase's slope) or, rising to a top found as above, large (0.3 x the peak)
        moved = -sign * (x[turn] - x[foot])
        if moved < thr or (top2 < 0.2 * top and not (big and moved >= 0.3 * peak_abs)):
            break
        j, sign, top = foot, -sign, top2
    if j < r0 + n:  # the walk ran into the window's start
        j = r0
    onsets["threshold"] = float(j)
    floor_uv = 0.02 * p.detection_threshold_uv
    # Hodges & Bui: first window (1 ms) whose mean |deviation| exceeds mean + 3 SD
    w = max(1, int(round(1.0 / dt)))
    onsets["hodges"] = None
    if b1 - b0 > 1 and r1 - r0 > w:
        m_abs = np.mean(np.abs(y_bg))
        sd_abs = math.sqrt(max(np.mean(y_bg ** 2) - m_abs ** 2, 0.0))
        h_thr = max(m_abs + 3.0 * sd_abs, floor_uv)
        last = min(pk, r1 - 1 - w)
        means = np.array([np.abs(dev[i:i + w]).mean() for i in range(r0, last + 1)])
        hit = np.flatnonzero(means >= h_thr * (1 - 1e-12))
        onsets["hodges"] = float(r0 + hit[0]) if hit.size else None
    # TKEO: two rows in a row above mean + 8 SD of the background operator, walked back
    onsets["tkeo"] = None
    if b1 - b0 > 2:
        psi_bg = y_bg[1:-1] ** 2 - y_bg[:-2] * y_bg[2:]
        m_tk, sd_tk = psi_bg.mean(), psi_bg.std()
        t_thr = max(m_tk + 8.0 * sd_tk, floor_uv ** 2)
        psi = lambda i: dev[i] ** 2 - dev[i - 1] * dev[i + 1]  # noqa: E731
        last = min(pk, r1 - 2)
        for i in range(r0 + 2, last + 1):
            if psi(i) > t_thr and psi(i - 1) > t_thr:
                k = i - 1
                while k > r0 + 1 and psi(k - 1) > m_tk:
                    k -= 1
                onsets["tkeo"] = float(k)
                break
    # slope: tangent at the steepest point from the threshold onset to the first peak
    last = min(pk, r1 - 2)
    p1 = c
    while p1 < last and s0 * (x[p1 + 1] - x[p1]) > 0:
        p1 += 1
    lo_i = max(int(onsets["threshold"]), r0 + 1)
    cand = np.array([0.5 * s0 * (x[i + 1] - x[i - 1]) for i in range(lo_i, p1 + 1)])
    onsets["slope"] = None
    if cand.size and cand.max() > 0:
        im = lo_i + int(np.argmax(cand))
        onsets["slope"] = float(min(max(im - s0 * dev[im] / cand.max(), r0), im))
    chosen = onsets[p.onset_method]
    if chosen is None:
        return onsets, True
    # onsets before the threshold onset from which the signal moves on average slower than
    # a tenth of the MEP's steepest slope lie on a slow deviation: they do not count
    j = onsets["threshold"]
    found = [v for m, v in onsets.items() if v is not None and (
        m == "threshold" or v >= j
        or abs(x[int(j)] - x[int(v)]) >= 0.1 * top_anchor * (j - int(v)))]
    med = np.median(found) if found else chosen
    # also ambiguous: the response's largest deviation is not after the onset
    return onsets, bool(chosen <= r0 or abs(chosen - med) * dt > 1.0 or chosen >= pk)


def measure_epochs(epochs, sfreq_hz, params, *, tmin_ms):
    """Twin of ``mepkit.dsp.features.measure_epochs`` for shared t0 (arrays out)."""
    n_tr, n_ch, n_s = epochs.shape
    t = tmin_ms + np.arange(n_s) * 1000.0 / sfreq_hz
    keys = ("amplitude_uv", "latency_ms", "area_uv_ms", "background_rms_uv", "peak_time_ms")
    out = {k: np.empty((n_tr, n_ch)) for k in keys}
    out["detected"] = np.zeros((n_tr, n_ch), bool)
    out["onset_ambiguous"] = np.zeros((n_tr, n_ch), bool)
    out["reason"] = np.empty((n_tr, n_ch), object)
    for a in range(n_tr):
        for c in range(n_ch):
            r = measure_epoch(epochs[a, c], t, params, sfreq_hz=sfreq_hz)
            for k in keys:
                out[k][a, c] = r[k]
            out["detected"][a, c] = r["detected"]
            out["onset_ambiguous"][a, c] = r.get("onset_ambiguous", False)
            out["reason"][a, c] = r["reason"]
    return out
